"""Expectation suites (great-expectations) over the catalog tables and the cohort manifest.

All great-expectations code of curation lives in this module, and ``great_expectations`` is imported
only when a suite runs (the import alone takes seconds).

A suite is a great-expectations ``ExpectationSuite`` saved as plain JSON (``expectations/*.json``),
with one addition in its ``meta``: what it runs on::

    {"name": "catalog_series",
     "meta": {"curation": {"source": "series", "description": "..."}},
     "expectations": [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "SeriesInstanceUID"},
         "meta": {"rule_id": "series_uid_unique"}},
        {"type": "expect_column_values_to_be_between", "severity": "warning", ...}]}

``source`` is a catalog table name, or ``manifest`` for a cohort's ``manifest.parquet``.

How it runs (see ../shared/docs/GX-DUCKDB.md): GX's SQL datasource cannot read DuckDB through public
API, so each source is queried by DuckDB into pandas (only the columns the suite names, unless a
table-level expectation needs them all) and validated by GX's pandas datasource in an ephemeral
context (no ``gx/`` folder, no analytics, no progress bars).

Results are recorded like a QC run (one ``qc_runs`` row per suite, named ``expectations/<suite>``;
one ``qc_rule_runs`` row per expectation; one ``qc_findings`` row, level ``cohort``, per failed
expectation), so that the report and CI see QC and expectations in one place. Severities map
``critical`` → ``error``, ``warning`` → ``warning``, ``info`` → ``info``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation import __version__
from curation.errors import CatalogError, InputError
from curation.qc.findings import EXPECTATION_RUN_PREFIX

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

log = logging.getLogger("curation.expectations")

#: Source name of a cohort manifest (``manifest.parquet`` of a cohort folder).
MANIFEST = "manifest"
#: Prefix of the ``qc_runs.suite_name`` of an expectation suite run (rule-suite queries skip these).
RUN_PREFIX = EXPECTATION_RUN_PREFIX
#: great-expectations severities as QC severities.
SEVERITIES = {"critical": "error", "warning": "warning", "info": "info"}
_RANK = {"info": 0, "warning": 1, "error": 2}
#: Columns whose values never go into a finding's message (identifiers stay inside the catalog).
IDENTIFYING_COLUMNS = frozenset(
    {
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "OtherPatientIDs",
        "OtherPatientNames",
        "AccessionNumber",
        "path",
    }
)
#: Expectations that look at the table's whole column set, so every column must be loaded.
_TABLE_SHAPE = (
    "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list",
    "expect_table_column_count_to_equal",
    "expect_table_column_count_to_be_between",
)
_COLUMN_KWARGS = ("column", "column_A", "column_B")


@dataclass(frozen=True)
class SuiteFile:
    """An expectation suite as read from its JSON file."""

    name: str
    path: Path
    source: str
    description: str
    data: dict[str, Any]
    sha256: str

    def columns(self) -> list[str] | None:
        """Columns the suite names, or None when it needs every column of its source."""
        names: list[str] = []
        for e in self.data["expectations"]:
            if e["type"] in _TABLE_SHAPE:
                return None
            kwargs = e.get("kwargs", {})
            names += [kwargs[k] for k in _COLUMN_KWARGS if k in kwargs]
            names += list(kwargs.get("column_list", []))
        return list(dict.fromkeys(names))


@dataclass(frozen=True)
class ExpectationOutcome:
    """How one expectation went."""

    rule_id: str
    expectation_type: str
    column: str | None
    severity: str
    success: bool
    value: str | None
    message: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class SuiteOutcome:
    """How one suite went: ``status`` is ``ok``, or ``skipped`` (with ``reason``) when its source
    is absent (a catalog table not written yet, no manifest given)."""

    suite: SuiteFile
    status: str
    outcomes: tuple[ExpectationOutcome, ...] = ()
    n_rows: int = 0
    seconds: float = 0.0
    reason: str | None = None
    run_id: int | None = None

    @property
    def failures(self) -> list[ExpectationOutcome]:
        """The expectations that failed (or could not be evaluated)."""
        return [o for o in self.outcomes if not o.success]


@dataclass(frozen=True)
class ValidationResult:
    """What :func:`validate` returns: one outcome per suite."""

    suites: tuple[SuiteOutcome, ...]

    @property
    def counts(self) -> dict[str, int]:
        """Failed expectations per severity."""
        out = dict.fromkeys(("error", "warning", "info"), 0)
        for s in self.suites:
            for o in s.failures:
                out[o.severity] += 1
        return out

    @property
    def skipped(self) -> list[SuiteOutcome]:
        """Suites that did not run because their source is absent."""
        return [s for s in self.suites if s.status == "skipped"]

    def failed(self, fail_on: str = "error") -> bool:
        """True when an expectation at or above ``fail_on`` failed (``never`` never fails)."""
        if fail_on == "never":
            return False
        if fail_on not in _RANK:
            raise InputError(f"fail_on must be error, warning, info or never, not {fail_on!r}")
        return any(_RANK[o.severity] >= _RANK[fail_on] for s in self.suites for o in s.failures)


# -- suite files --------------------------------------------------------------------------------


def suites_dir() -> Path:
    """The ``expectations/`` folder of a source checkout, or of the current directory."""
    for candidate in (
        Path(__file__).resolve().parents[1] / "expectations",
        Path.cwd() / "expectations",
    ):
        if candidate.is_dir():
            return candidate
    raise InputError("no expectations/ folder next to the package or in the current directory")


def _rule_id(suite: str, expectation: dict[str, Any]) -> str:
    own = expectation.get("meta", {}).get("rule_id")
    if own:
        return f"expect.{suite}.{own}"
    kwargs = expectation.get("kwargs", {})
    column = kwargs.get("column") or "_".join(kwargs.get("column_list", [])) or None
    short = str(expectation["type"]).removeprefix("expect_")
    return f"expect.{suite}.{short}" + (f".{column}" if column else "")


def load_suite(path: str | Path) -> SuiteFile:
    """Read one suite file; raises :class:`InputError` naming the file and what is wrong."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        data = json.loads(raw)
    except OSError as exc:
        raise InputError(f"{p}: cannot read the suite: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise InputError(f"{p}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
        raise InputError(f"{p}: a suite is a JSON object with 'name' and 'expectations'")
    name = str(data.get("name") or p.stem)
    meta = data.get("meta", {}).get("curation", {})
    source = meta.get("source")
    if not isinstance(source, str) or not source:
        raise InputError(f"{p}: meta.curation.source must name a catalog table or 'manifest'")
    for i, e in enumerate(data["expectations"]):
        if not isinstance(e, dict) or not str(e.get("type", "")).startswith("expect_"):
            raise InputError(f"{p}: expectation {i} has no 'type' starting with expect_")
        if e.get("severity", "critical") not in SEVERITIES:
            raise InputError(
                f"{p}: expectation {i} ({e['type']}): severity must be one of "
                f"{', '.join(SEVERITIES)}, not {e['severity']!r}"
            )
    rule_ids = [_rule_id(name, e) for e in data["expectations"]]
    dupes = sorted({r for r in rule_ids if rule_ids.count(r) > 1})
    if dupes:
        raise InputError(f"{p}: rule ids repeat ({', '.join(dupes)}): give each a meta.rule_id")
    return SuiteFile(
        name=name,
        path=p,
        source=source,
        description=str(meta.get("description", "")),
        data=data,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def find_suites(names: Sequence[str | Path] | None = None) -> list[SuiteFile]:
    """The suites to run: every ``expectations/*.json`` by default, else the named ones.

    A name is a path to a JSON file or the stem of a file in :func:`suites_dir` (``catalog_series``).
    """
    if not names:
        return [load_suite(p) for p in sorted(suites_dir().glob("*.json"))]
    out = []
    for n in names:
        p = Path(n)
        if not p.is_file():
            folder = suites_dir()
            p = folder / f"{n}.json"
            if not p.is_file():
                known = ", ".join(sorted(q.stem for q in folder.glob("*.json")))
                raise InputError(f"no suite {str(n)!r} (a JSON file, or one of: {known})")
        out.append(load_suite(p))
    return out


# -- running ------------------------------------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _load_frame(
    con: duckdb.DuckDBPyConnection, suite: SuiteFile, relation: str, available: list[str]
) -> pd.DataFrame:
    wanted = suite.columns()
    cols = available if wanted is None else [c for c in wanted if c in available]
    # A suite naming only missing columns still needs the rows (its column-existence checks fail).
    select = ", ".join(_quote(c) for c in cols) if cols else "1 AS __row"
    return con.sql(f"SELECT {select} FROM {relation}").df()


def _summary(result: dict[str, Any], column: str | None) -> tuple[str | None, str]:
    """(value, text) of a failed expectation's result, without identifying values."""
    if "unexpected_count" in result:
        n, total = result.get("unexpected_count") or 0, result.get("element_count") or 0
        pct = result.get("unexpected_percent") or 0.0
        text = f"{n} of {total} rows unexpected ({pct:.2f}%)"
        sample = result.get("partial_unexpected_list") or []
        if sample and column not in IDENTIFYING_COLUMNS:
            shown = ", ".join(repr(v) for v in list(dict.fromkeys(map(str, sample)))[:5])
            text += f", e.g. {shown}"
        return str(n), text
    if "observed_value" in result:
        observed = result["observed_value"]
        if column in IDENTIFYING_COLUMNS:
            return None, "observed value withheld (identifying column)"
        return str(observed)[:200], f"observed {str(observed)[:200]}"
    return None, "failed"


def _outcomes(suite: SuiteFile, gx_results: Iterable[Any]) -> list[ExpectationOutcome]:
    order = {_rule_id(suite.name, e): i for i, e in enumerate(suite.data["expectations"])}
    out = []
    for r in gx_results:
        d = r.to_json_dict()
        config = d["expectation_config"]
        kwargs = {k: v for k, v in config.get("kwargs", {}).items() if k != "batch_id"}
        rule_id = config.get("meta", {}).get("__rule_id") or _rule_id(suite.name, config)
        column = kwargs.get("column")
        severity = SEVERITIES.get(str(config.get("severity", "critical")), "error")
        info = d.get("exception_info") or {}
        raised = bool(info.get("raised_exception"))
        if raised:
            error = str(info.get("exception_message") or "raised")
            value, message = None, f"could not be evaluated: {error.splitlines()[0][:300]}"
        else:
            error = None
            value, message = (None, "ok") if d["success"] else _summary(d["result"] or {}, column)
            if not d["success"] and config["type"] == "expect_column_to_exist":
                message = "the column is missing"
        where = f" on {column}" if column else ""
        out.append(
            ExpectationOutcome(
                rule_id=rule_id,
                expectation_type=str(config["type"]),
                column=column,
                severity=severity,
                success=bool(d["success"]) and not raised,
                value=value,
                message=f"{suite.name}: {config['type']}{where}: {message}",
                kwargs=kwargs,
                error=error,
            )
        )
    out.sort(key=lambda o: order.get(o.rule_id, len(order)))
    return out


def _run_suite(
    con: duckdb.DuckDBPyConnection,
    suite: SuiteFile,
    relation: str,
    available: list[str],
    context: Any,
) -> SuiteOutcome:
    import great_expectations as gx

    t0 = time.perf_counter()
    frame = _load_frame(con, suite, relation, available)
    data = json.loads(json.dumps(suite.data))
    for e in data["expectations"]:
        # Carry the stable rule id through GX (results come back in GX's order, not the file's).
        e.setdefault("meta", {})["__rule_id"] = _rule_id(suite.name, e)
    data.pop("meta", None)
    data["name"] = suite.name
    # GX logs and drops an expectation of unknown type instead of raising: a typo would silently
    # switch a check off, so unknown types are refused before GX sees them.
    unknown = sorted({e["type"] for e in data["expectations"]} - expectation_types())
    if unknown:
        raise InputError(
            f"{suite.path}: unknown expectation type(s) {', '.join(unknown)} "
            f"(great_expectations {gx.__version__})"
        )
    try:
        gx_suite = context.suites.add(gx.ExpectationSuite(**data))
    except Exception as exc:  # GX rejects bad kwargs here
        raise InputError(f"{suite.path}: great-expectations rejects the suite: {exc}") from exc
    if len(gx_suite.expectations) != len(data["expectations"]):
        raise InputError(f"{suite.path}: great-expectations dropped some of the expectations")
    asset = context.data_sources.add_pandas(f"ds_{suite.name}").add_dataframe_asset(suite.source)
    batch = asset.add_batch_definition_whole_dataframe("all")
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"vd_{suite.name}", data=batch, suite=gx_suite)
    )
    result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    outcomes = _outcomes(suite, result.results)
    return SuiteOutcome(
        suite, "ok", tuple(outcomes), n_rows=len(frame), seconds=time.perf_counter() - t0
    )


def expectation_types() -> set[str]:
    """The expectation types the installed great-expectations knows (``expect_...``)."""
    import great_expectations as gx

    types = (getattr(c, "expectation_type", None) for c in vars(gx.expectations).values())
    return {t for t in types if isinstance(t, str)}


def _context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        analytics_enabled=False,  # no network: CI and hospital machines are often offline
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.sql("SELECT table_name FROM information_schema.tables").fetchall()}


def _source(
    con: duckdb.DuckDBPyConnection, suite: SuiteFile, have: set[str], manifest: Path | None
) -> tuple[str, list[str]] | str:
    """(relation, its columns) of a suite's source, or why it is absent."""
    if suite.source == MANIFEST:
        if manifest is None:
            return "no cohort manifest given (--cohort)"
        if not manifest.is_file():
            return f"{manifest}: no manifest here"
        relation = "read_parquet('" + str(manifest).replace("'", "''") + "')"
    elif suite.source in have:
        relation = _quote(suite.source)
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
        Write the outcome into ``qc_runs`` / ``qc_rule_runs`` / ``qc_findings`` (see the module
        doc); needs a writable catalog.

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
    if isinstance(db, str | Path):
        from curation import catalog

        if not Path(db).exists():
            raise CatalogError(f"{db}: no catalog here (run `curation crawl` first)")
        con = catalog.connect(db, read_only=not record)
        try:
            return _validate(con, selected, manifest_path, record)
        finally:
            con.close()
    return _validate(db, selected, manifest_path, record)


def _validate(
    con: duckdb.DuckDBPyConnection,
    suites: list[SuiteFile],
    manifest: Path | None,
    record: bool,
) -> ValidationResult:
    have = _tables(con)
    context = None
    outcomes = []
    for suite in suites:
        source = _source(con, suite, have, manifest)
        if isinstance(source, str):
            log.info("suite %s skipped: %s", suite.name, source)
            outcomes.append(SuiteOutcome(suite, "skipped", reason=source))
            continue
        if context is None:
            context = _context()
        outcome = _run_suite(con, suite, source[0], source[1], context)
        if record:
            outcome = SuiteOutcome(
                outcome.suite,
                outcome.status,
                outcome.outcomes,
                outcome.n_rows,
                outcome.seconds,
                run_id=record_findings(con, outcome, manifest),
            )
        log.info(
            "suite %s: %d of %d expectations failed",
            suite.name,
            len(outcome.failures),
            len(outcome.outcomes),
        )
        outcomes.append(outcome)
    return ValidationResult(tuple(outcomes))


# -- recording ----------------------------------------------------------------------------------


def record_findings(
    con: duckdb.DuckDBPyConnection, outcome: SuiteOutcome, manifest: Path | None = None
) -> int:
    """Record one suite's outcome as a QC run; returns its ``run_id``.

    The qc package writes its own findings inside its runner and exposes no writer, so this
    function inserts into its tables (created by :func:`curation.qc.findings.ensure_tables`)
    with the same columns and meanings.
    """
    from curation.qc.findings import ensure_tables

    ensure_tables(con)
    suite = outcome.suite
    run_id = int(con.sql("SELECT coalesce(max(run_id), 0) + 1 FROM qc_runs").fetchall()[0][0])
    failures = outcome.failures
    now = datetime.now()
    params = {
        o.rule_id: {"severity": o.severity, "type": o.expectation_type, "kwargs": o.kwargs}
        for o in outcome.outcomes
    }
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "INSERT INTO qc_runs VALUES ($id, $name, $path, $sha, $params, $version, $t0, $t1, "
            "$n, $nf, $ne)",
            {
                "id": run_id,
                "name": RUN_PREFIX + suite.name,
                "path": str(suite.path),
                "sha": suite.sha256,
                "params": json.dumps(params, default=str),
                "version": __version__,
                "t0": now,
                "t1": now,
                "n": len(outcome.outcomes),
                "nf": len(failures),
                "ne": sum(o.error is not None for o in outcome.outcomes),
            },
        )
        rule_rows = [
            (
                run_id,
                o.rule_id,
                "cohort",
                o.severity,
                json.dumps(o.kwargs, default=str),
                "error" if o.error else "ok",
                o.error,
                0 if o.success else 1,
                None,
            )
            for o in outcome.outcomes
        ]
        if rule_rows:
            con.executemany(
                "INSERT INTO qc_rule_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rule_rows
            )
        where = str(manifest) if suite.source == MANIFEST and manifest is not None else None
        finding_rows = [
            (
                run_id,
                o.rule_id,
                o.severity,
                "cohort",
                None,
                None,
                None,
                None,
                where,
                o.value,
                o.message,
            )
            for o in failures
        ]
        if finding_rows:
            con.executemany(
                "INSERT INTO qc_findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", finding_rows
            )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return run_id


def write_junit(result: ValidationResult, path: str | Path, fail_on: str = "error") -> Path:
    """JUnit XML: one ``testsuite`` per expectation suite, one ``testcase`` per expectation.

    A failed expectation at or above ``fail_on`` is a failure; below it, its message goes to
    ``system-out``; a suite whose source is absent is one skipped test case.
    """
    threshold = None if fail_on == "never" else _RANK[fail_on]
    root = ET.Element("testsuites", name="curation.expectations")
    for s in result.suites:
        failing = [
            o for o in s.failures if threshold is not None and _RANK[o.severity] >= threshold
        ]
        ts = ET.SubElement(
            root,
            "testsuite",
            name=f"expectations.{s.suite.name}",
            tests=str(max(len(s.outcomes), 1)),
            failures=str(len(failing)),
            errors="0",
            skipped="1" if s.status == "skipped" else "0",
            time=f"{s.seconds:.3f}",
        )
        if s.status == "skipped":
            case = ET.SubElement(ts, "testcase", classname=ts.get("name", ""), name=s.suite.name)
            ET.SubElement(case, "skipped", message=s.reason or "skipped")
            continue
        for o in s.outcomes:
            case = ET.SubElement(ts, "testcase", classname=ts.get("name", ""), name=o.rule_id)
            if o in failing:
                ET.SubElement(case, "failure", message=o.message, type=o.severity).text = o.message
            elif not o.success:
                ET.SubElement(case, "system-out").text = f"{o.severity}: {o.message}"
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return out
