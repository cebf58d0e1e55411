"""``validate``: run expectation suites over the catalog (and a cohort manifest), record the outcome."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation import catalog
from curation.expectations import gx
from curation.expectations.outcome import SuiteOutcome, ValidationResult
from curation.expectations.record import record_findings
from curation.expectations.suites import MANIFEST, SuiteFile, find_suites

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("curation.expectations")


def _source(
    con: duckdb.DuckDBPyConnection, suite: SuiteFile, have: set[str], manifest: Path | None
) -> tuple[str, list[str]] | str:
    """(relation, its columns) of a suite's source, or why it is absent."""
    if suite.source == MANIFEST:
        if manifest is None:
            return "no cohort manifest given (--cohort)"
        if not manifest.is_file():
            return f"{manifest}: no manifest here"
        relation = f"read_parquet({catalog.quote_literal(str(manifest))})"
    elif suite.source in have:
        relation = catalog.quote_ident(suite.source)
    else:
        return f"the catalog has no table {suite.source!r} (run the step that writes it)"
    cols = [r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    return relation, cols


def validate(
    db: str | Path | duckdb.DuckDBPyConnection,
    suites: Sequence[str | Path | SuiteFile] | None = None,
    *,
    manifest: str | Path | None = None,
    record: bool = True,
) -> ValidationResult:
    """Run expectation suites over the catalog ``db`` (and a cohort manifest).

    Parameters
    ----------
    db
        The catalog: a DuckDB file path or an open connection (left open).
    suites
        Suite files, suite names in ``expectations/`` or loaded :class:`SuiteFile` s; default: all.
    manifest
        A cohort's ``manifest.parquet``, or the cohort folder holding it, for ``manifest`` suites.
        Suites whose source is absent are skipped, with the reason.
    record
        Write the outcome into ``qc_runs`` / ``qc_rule_runs`` / ``qc_findings`` (see
        :mod:`curation.expectations.record`); needs a writable catalog.

    Returns
    -------
    ValidationResult
        One :class:`SuiteOutcome` per suite; ``failed(fail_on)`` decides the exit code.

    Raises
    ------
    InputError
        A suite file cannot be read or great-expectations rejects it.
    CatalogError
        The catalog cannot be opened.
    """
    selected = (
        find_suites()
        if suites is None
        else [s if isinstance(s, SuiteFile) else find_suites([s])[0] for s in suites]
    )
    manifest_path = Path(manifest) if manifest is not None else None
    if manifest_path is not None and manifest_path.is_dir():
        manifest_path = manifest_path / "manifest.parquet"
    with catalog.opened(db, read_only=not record) as con:
        return _validate(con, selected, manifest_path, record)


def _validate(
    con: duckdb.DuckDBPyConnection,
    suites: list[SuiteFile],
    manifest: Path | None,
    record: bool,
) -> ValidationResult:
    have = catalog.table_names(con)
    context: Any = None
    outcomes = []
    for suite in suites:
        source = _source(con, suite, have, manifest)
        if isinstance(source, str):
            log.debug("suite %s skipped: %s", suite.name, source)
            outcomes.append(SuiteOutcome(suite, "skipped", reason=source))
            continue
        if context is None:
            context = gx.context()
        outcome = gx.run_suite(con, suite, source[0], source[1], context)
        if record:
            outcome = SuiteOutcome(
                outcome.suite,
                outcome.status,
                outcome.outcomes,
                outcome.n_rows,
                outcome.seconds,
                run_id=record_findings(con, outcome, manifest),
            )
        log.debug(
            "suite %s: %d of %d expectations failed",
            suite.name,
            len(outcome.failures),
            len(outcome.outcomes),
        )
        outcomes.append(outcome)
    return ValidationResult(tuple(outcomes))
