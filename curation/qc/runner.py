"""Run a suite over a catalog: every selected rule runs, every finding lands in ``qc_findings``.

The runner does the plumbing that rules must not: it builds the derived geometry tables once, binds
each rule's parameters, inserts its violations with the run's provenance, times it, and records a rule
whose query fails instead of stopping at it (run everything, then report).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation import __version__, catalog
from curation.errors import CatalogError
from curation.qc import views
from curation.qc.record import RuleRun, RunRecorder
from curation.qc.rule import Severity
from curation.qc.suite import SelectedRule, Suite, load_suite

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("curation.qc")

#: ``--fail-on`` values of ``curation qc`` (``RunResult.failed`` also takes ``info``).
FAIL_ON = ("error", "warning", "never")
#: Kept importable from here: the record a run keeps of each rule.
__all__ = ["FAIL_ON", "RuleRun", "RunResult", "run", "to_json"]


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` returns: the run id and how each rule went."""

    run_id: int
    suite: Suite
    rule_runs: tuple[RuleRun, ...]
    views_seconds: float
    seconds: float

    @property
    def n_findings(self) -> int:
        return sum(r.n_findings for r in self.rule_runs)

    @property
    def counts(self) -> dict[str, int]:
        """Findings per severity."""
        out = {s.value: 0 for s in Severity}
        for r in self.rule_runs:
            out[r.severity] += r.n_findings
        return out

    @property
    def errors(self) -> list[RuleRun]:
        """Rules whose query failed."""
        return [r for r in self.rule_runs if r.status == "error"]

    @property
    def skipped(self) -> list[RuleRun]:
        """Rules that did not apply: a table they read is not in the catalog yet."""
        return [r for r in self.rule_runs if r.status == "skipped"]

    def failed(self, fail_on: str | Severity = "error") -> bool:
        """True when a finding is at or above ``fail_on`` (``never`` never fails)."""
        return any(r.n_findings and Severity(r.severity).fails(fail_on) for r in self.rule_runs)

    def __str__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        line = (
            f"qc run {self.run_id} of suite {self.suite.name}: {self.n_findings} finding(s) "
            f"({counts}) from {len(self.rule_runs)} rules in {self.seconds:.2f} s"
        )
        if self.errors or self.skipped:
            line += f"; {len(self.errors)} rule(s) failed to run, {len(self.skipped)} skipped"
        return line

    def __repr__(self) -> str:
        # The suite holds every rule's SQL: a notebook printing the result wants the outcome.
        return (
            f"RunResult(run_id={self.run_id}, suite={self.suite.name!r}, "
            f"rules={len(self.rule_runs)}, counts={self.counts}, seconds={self.seconds:.2f})"
        )


def _run_rule(recorder: RunRecorder, sel: SelectedRule) -> int:
    rule = sel.rule
    args = (rule.id, sel.severity.value, rule.level.value)
    if isinstance(rule.query, str):
        used = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", rule.query))
        bound = {k: v for k, v in sel.params.items() if k in used}
        return recorder.add_findings(*args, rule.query, bound)
    return recorder.add_findings(*args, rule.query(recorder.con, dict(sel.params)))


def run(
    db: str | Path | duckdb.DuckDBPyConnection,
    suite: str | Path | Suite | None = None,
) -> RunResult:
    """Run ``suite`` (a file, a loaded :class:`Suite`, or the default) over the catalog ``db``.

    Parameters
    ----------
    db
        The catalog: a DuckDB file path or an open connection (left open).
    suite
        Suite file (YAML/TOML), a :class:`Suite`, or None for the shipped default suite.

    Returns
    -------
    RunResult
        The run id (rows in ``qc_runs``, ``qc_rule_runs``, ``qc_findings``) and per-rule outcome.

    Raises
    ------
    CatalogError
        The catalog cannot be opened or has no ``instances`` table.
    InputError
        The suite file cannot be read or names unknown rules/parameters.
    """
    loaded = suite if isinstance(suite, Suite) else load_suite(suite)
    with catalog.opened(db) as con:
        return _run(con, loaded)


def _run(con: duckdb.DuckDBPyConnection, suite: Suite) -> RunResult:
    t_start = time.perf_counter()
    have = catalog.table_names(con)
    if "instances" not in have:
        raise CatalogError("the catalog has no table 'instances'; run `curation crawl` first")
    recorder = RunRecorder(
        con,
        name=suite.name,
        path=suite.path,
        sha256=suite.sha256,
        parameters=suite.provenance(),
        n_rules=len(suite.rules),
    )
    run_id = recorder.run_id
    needs_views = any(t in views.VIEW_NAMES for s in suite.rules for t in s.rule.requires)
    t0 = time.perf_counter()
    if needs_views:
        views.build(con)
        have |= set(views.VIEW_NAMES)
    views_seconds = time.perf_counter() - t0
    log.debug("qc run %d: suite %s, %d rules", run_id, suite.name, len(suite.rules))
    outcomes = []
    for sel in suite.rules:
        t0 = time.perf_counter()
        missing = [t for t in sel.rule.requires if t not in have]
        status, error, n = "ok", None, 0
        if missing:
            # A table another step writes (pixel_metrics before `curation pixels` ran): the rule
            # does not apply yet. Skipped, and said so, rather than failed.
            status, error = "skipped", f"the catalog has no table {missing[0]!r} yet"
        else:
            try:
                n = _run_rule(recorder, sel)
            except Exception as exc:  # a broken rule is reported, the others still run
                if catalog.catalog_failure(exc):
                    raise  # a damaged catalog file: no other rule can run either (exit 4)
                status, error = "error", f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
        if status == "skipped":
            log.debug("rule %s skipped: %s", sel.rule.id, error)
        elif error:
            log.error("rule %s could not run: %s", sel.rule.id, error)
        else:
            log.debug("rule %s: %d finding(s) in %.3f s", sel.rule.id, n, seconds)
        outcome = RuleRun(
            sel.rule.id, sel.rule.level.value, sel.severity.value, n, seconds, status, error
        )
        outcomes.append(outcome)
        recorder.add_rule_run(outcome, sel.params)
    recorder.finish()
    return RunResult(run_id, suite, tuple(outcomes), views_seconds, time.perf_counter() - t_start)


def to_json(
    result: RunResult, con: duckdb.DuckDBPyConnection, key: bytes | None = None
) -> dict[str, Any]:
    """The run as a JSON-ready mapping: provenance, per-rule outcome and every finding.

    A finding's identifiers (PatientID, the UIDs, the path) are given as pseudonyms
    (``patient_key``, ``study_key``, ``series_key``, ``instance_key``, ``file_key``) under ``key``
    (default: :func:`curation.pseudonym.catalog_key`): the JSON leaves the catalog.
    """
    from curation import pseudonym
    from curation.qc.tables import QC_FINDINGS

    pseudonym.install(con, key if key is not None else pseudonym.catalog_key(con)[0])
    cols = [c for c in QC_FINDINGS.column_names if c != "run_id"]
    rows = con.sql(
        f"SELECT {pseudonym.keyed_select(cols)} FROM qc_findings WHERE run_id = $r "
        "ORDER BY rule_id, SeriesInstanceUID, SOPInstanceUID, path",
        params={"r": result.run_id},
    ).pl()
    rows = pseudonym.label_sites(con, rows).to_dicts()
    return {
        "run_id": result.run_id,
        "suite": {
            "name": result.suite.name,
            "path": result.suite.path,
            "sha256": result.suite.sha256,
            "rules": result.suite.provenance(),
        },
        "curation_version": __version__,
        "counts": result.counts,
        "rules": [r.__dict__ for r in result.rule_runs],
        "findings": rows,
    }
