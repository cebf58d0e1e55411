"""Criteria as SQL, evaluated in one scan, and the CONSORT-style attrition they produce.

Every criterion becomes a predicate over ``harmonized_series`` (joined with ``pixel_metrics`` when
that table exists). Values go in as named parameters; column names only after they were found in
the catalog, and quoted (:func:`curation.catalog.quote_ident`); operators through the allow-list
:data:`COMPARISONS`. Rule ids and labels are checked against the QC run and the labels table, so a
typo is an error with a suggestion rather than a criterion that silently selects nothing. One query marks, for every series, the first criterion it fails (``dropped_at``); the
attrition table and the exclusion reasons are aggregates of that column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from curation.catalog import catalog_failure, has_table, quote_ident, quote_literal
from curation.cohort.spec import (
    DICOM_KEYWORD_FIELDS,
    SEVERITIES,
    CohortSpec,
    Criterion,
    did_you_mean,
)
from curation.cohort.tables import VALUE_SYNONYMS
from curation.errors import CatalogError, InputError

#: SQL of each comparison op of :data:`curation.cohort.spec.OPS` that compares with one value.
COMPARISONS: dict[str, str] = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


@dataclass
class Compiled:
    """The predicates of a spec and their parameters."""

    base: str  # FROM clause of the series the criteria filter
    keeps: list[str]  # per criterion: SQL that is true when the series stays
    params: dict[str, Any]
    columns: dict[str, str]  # available column -> type
    qc_run_id: int | None
    qc_selected_by: str | None = None  # how the QC run was chosen (for provenance)


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $t ORDER BY ordinal_position",
        {"t": table},
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def qc_run(con: duckdb.DuckDBPyConnection, spec: CohortSpec) -> tuple[int | None, str]:
    """The QC run the spec's QC criteria read, and how it was chosen.

    ``qc: {run: ID}`` names the run; ``qc: {suite: NAME}`` takes that suite's latest finished run;
    otherwise the latest finished rule-suite run (:func:`curation.qc.findings.latest_run_id`,
    which skips the runs ``curation validate`` records). None when QC never ran.

    Raises
    ------
    InputError
        The named run does not exist or did not finish, or the named suite never ran.
    """
    from curation.qc.findings import latest_run_id

    if not has_table(con, "qc_runs"):
        if spec.qc_run is not None or spec.qc_suite is not None:
            raise CatalogError(f"{spec.where or 'spec'}: qc: the catalog holds no QC run")
        return None, "latest rule-suite run"
    where = spec.where or "spec"
    if spec.qc_run is not None:
        rows = con.execute(
            "SELECT finished_at IS NOT NULL FROM qc_runs WHERE run_id = $r", {"r": spec.qc_run}
        ).fetchall()
        if not rows or not rows[0][0]:
            raise InputError(
                f"{where}: qc.run {spec.qc_run}: "
                + ("no such QC run" if not rows else "that run did not finish")
            )
        return spec.qc_run, f"run {spec.qc_run} named by the spec"
    if spec.qc_suite is not None:
        run = latest_run_id(con, spec.qc_suite)
        if run is None:
            suites = [r[0] for r in con.sql("SELECT DISTINCT suite_name FROM qc_runs").fetchall()]
            raise InputError(
                f"{where}: qc.suite {spec.qc_suite!r} has no finished run in this catalog"
                + did_you_mean(spec.qc_suite, suites)
            )
        return run, f"latest run of suite {spec.qc_suite!r}"
    return latest_run_id(con), "latest rule-suite run"


def _refuse_expectation_run(
    con: duckdb.DuckDBPyConnection, c: Criterion, run: int, selected_by: str | None
) -> None:
    """InputError when ``c`` would read a ``curation validate`` run.

    An expectation-suite run's findings are about a table or column, not a series: a QC
    criterion over them would silently drop nothing.
    """
    from curation.qc.findings import EXPECTATION_RUN_PREFIX

    rows = con.execute("SELECT suite_name FROM qc_runs WHERE run_id = $r", {"r": run}).fetchall()
    name = rows[0] if rows else None
    if name is not None and str(name[0]).startswith(EXPECTATION_RUN_PREFIX):
        raise InputError(
            f"{c.where or f'criterion {c.title!r}'}: {c.kind} reads QC run {run} ({selected_by}), "
            f"a `curation validate` run of {name[0]!r} whose findings name no series, so it "
            "would drop nothing; choose a `curation qc` run (qc: {run: N} or qc: {suite: NAME}) "
            "or leave qc out for the latest"
        )


def _field(c: Criterion, ref: str, ctype: str, p: str, params: dict[str, Any]) -> str:
    """Predicate of ``c`` over the (already quoted) column reference ``ref``."""
    op, v = c.op, c.value
    if op == "is null":
        return f"{ref} IS NULL"
    if op == "not null":
        return f"{ref} IS NOT NULL"
    if op in ("in", "not in"):
        params[p] = list(v)
        expr = f"list_contains(${p}, {ref})"
        return f"NOT {expr}" if op == "not in" else expr
    if op == "between":
        params[p + "_lo"], params[p + "_hi"] = v
        return f"{ref} BETWEEN ${p}_lo AND ${p}_hi"
    params[p] = v
    if op == "like":
        return f"{ref} LIKE ${p}"
    if op == "contains":
        return f"list_contains({ref}, ${p})" if ctype.endswith("[]") else f"contains({ref}, ${p})"
    if op not in COMPARISONS:  # Criterion refuses these; a check here costs nothing
        raise InputError(f"criterion {c.title!r}: unknown op {op!r}")
    return f"{ref} {COMPARISONS[op]} ${p}"


def _column(c: Criterion, columns: dict[str, str], tables: str) -> str:
    """The column a field criterion names, or an error saying which to use."""
    where = c.where or f"criterion {c.title!r}"
    if c.target in columns:
        return c.target
    if c.target in DICOM_KEYWORD_FIELDS and DICOM_KEYWORD_FIELDS[c.target] in columns:
        raise InputError(
            f"{where}: {c.target!r} is a DICOM keyword; use the harmonized field "
            f"{DICOM_KEYWORD_FIELDS[c.target]!r} (vendor-neutral, in its unit; see docs/harmonize.md)"
        )
    from pydicom.datadict import keyword_dict

    if c.target in keyword_dict:
        raise InputError(
            f"{where}: {c.target!r} is a DICOM keyword that {tables} do not carry; filter on one of "
            f"their columns{did_you_mean(c.target, columns)} (docs/catalog.md lists them)"
        )
    raise InputError(
        f"{where}: no column {c.target!r} in {tables}{did_you_mean(c.target, columns)}"
    )


def _canonical(value: Any) -> Any:
    """A label value in its canonical form (``negated`` -> ``negative``); other values as given."""
    return VALUE_SYNONYMS.get(value, value) if isinstance(value, str) else value


def check_labels(con: duckdb.DuckDBPyConnection, names: list[str], where: str) -> None:
    """Raise :class:`InputError` naming the first of ``names`` the labels table does not hold."""
    if not names:
        return
    if not has_table(con, "labels"):
        raise CatalogError(
            f"{where}: label {names[0]!r} needs a labels table (see curation.cohort.labels)"
        )
    have = [r[0] for r in con.sql("SELECT DISTINCT label FROM labels ORDER BY 1").fetchall()]
    for name in names:
        if name not in have:
            raise InputError(
                f"{where}: no label {name!r} in the labels table{did_you_mean(name, have)}"
            )


def _in_findings(where: str) -> str:
    return (
        f"(b.SeriesInstanceUID IN (SELECT SeriesInstanceUID FROM qc_findings WHERE {where}) "
        f"OR b.StudyInstanceUID IN (SELECT StudyInstanceUID FROM qc_findings "
        f"WHERE SeriesInstanceUID IS NULL AND {where}))"
    )


def compile_spec(con: duckdb.DuckDBPyConnection, spec: CohortSpec) -> Compiled:
    """Check every criterion against the catalog and turn it into SQL.

    Raises
    ------
    InputError
        A criterion names a column, rule or label the catalog does not have.
    CatalogError
        A criterion needs a table (qc_findings, labels) the catalog lacks.
    """
    own = _columns(con, "harmonized_series")
    columns = dict(own)
    base = "harmonized_series b"
    tables = "harmonized_series"
    if has_table(con, "pixel_metrics"):
        extra = {k: v for k, v in _columns(con, "pixel_metrics").items() if k not in columns}
        if extra:
            cols = ", ".join(quote_ident(k) for k in extra)
            base += f" LEFT JOIN (SELECT SeriesInstanceUID AS _pm_uid, {cols} FROM pixel_metrics) pm ON pm._pm_uid = b.SeriesInstanceUID"
            columns.update(extra)
            tables = "harmonized_series or pixel_metrics"
    needs_qc = (
        any(c.kind in ("qc_rule", "qc_severity") for c in spec.steps)
        or spec.qc_suite is not None
        or spec.qc_run is not None
    )
    run, selected_by = qc_run(con, spec) if needs_qc else (None, None)
    qc_criteria = [c for c in spec.steps if c.kind in ("qc_rule", "qc_severity")]
    if qc_criteria and run is not None:
        _refuse_expectation_run(con, qc_criteria[0], run, selected_by)
    params: dict[str, Any] = {}
    keeps = []
    for i, c in enumerate(spec.steps):
        p = f"p{i}"
        where = c.where or f"criterion {c.title!r}"
        if c.kind == "field":
            col = _column(c, columns, tables)
            ref = ("b." if col in own else "pm.") + quote_ident(col)
            pred = _field(c, ref, columns[col], p, params)
        elif c.kind in ("qc_rule", "qc_severity"):
            if run is None:
                raise CatalogError(f"{where}: needs QC findings: run `curation qc` first")
            params["qc_run"] = run
            if c.kind == "qc_rule":
                ran = [
                    r[0]
                    for r in con.execute(
                        "SELECT DISTINCT rule_id FROM qc_rule_runs WHERE run_id = $r ORDER BY 1",
                        {"r": run},
                    ).fetchall()
                ]
                if c.target not in ran:
                    raise InputError(
                        f"{where}: QC run {run} ({selected_by}) ran no rule {c.target!r}"
                        + did_you_mean(c.target, ran)
                    )
                params[p] = c.target
                pred = _in_findings(f"run_id = $qc_run AND rule_id = ${p}")
            else:
                params[p] = list(SEVERITIES[SEVERITIES.index(c.target) :])
                pred = _in_findings(f"run_id = $qc_run AND list_contains(${p}, severity)")
        else:  # label
            check_labels(con, [c.target], where)
            params[p + "_name"] = c.target
            cond = f"label = ${p}_name"
            if c.op is not None:
                # Old rows say "negated", new ones "negative": both sides compare canonically.
                value = (
                    [_canonical(str(x)) for x in c.value]
                    if isinstance(c.value, list)
                    else _canonical(c.value)
                )
                sub = Criterion(c.action, "field", "value", c.op, value, where=c.where)
                sub_params: dict[str, Any] = {}
                cond += " AND " + _field(sub, "value", "VARCHAR", p, sub_params)
                params.update(
                    {k: (str(v) if not isinstance(v, list) else v) for k, v in sub_params.items()}
                )
            canon = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in VALUE_SYNONYMS.items())
            labels = f"(SELECT * REPLACE (CASE value {canon} ELSE value END AS value) FROM labels)"
            pred = (
                f"(b.SeriesInstanceUID IN (SELECT SeriesInstanceUID FROM {labels} WHERE {cond}) "
                f"OR b.StudyInstanceUID IN (SELECT StudyInstanceUID FROM {labels} WHERE SeriesInstanceUID IS NULL AND {cond}))"
            )
        keep = f"coalesce({pred}, false)"
        keeps.append(keep if c.action == "include" else f"NOT {keep}")
    return Compiled(base, keeps, params, columns, run, selected_by)


def evaluate(con: duckdb.DuckDBPyConnection, spec: CohortSpec, compiled: Compiled) -> None:
    """Create temp table ``_cohort_eval``: every series with the step of the criterion that dropped it."""
    if compiled.keeps:
        case = " ".join(f"WHEN NOT ({k}) THEN {i + 1}" for i, k in enumerate(compiled.keeps))
        dropped = f"CASE {case} END"
    else:
        dropped = "CAST(NULL AS INTEGER)"
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _cohort_eval AS
            SELECT b.SeriesInstanceUID, b.StudyInstanceUID, b.PatientID, {dropped} AS dropped_at
            FROM {compiled.base}""",
            compiled.params,
        )
    except duckdb.Error as exc:
        if catalog_failure(exc):
            raise  # the catalog file is damaged, not the spec: the CLI says so (exit 4)
        raise InputError(f"cohort {spec.name!r}: a criterion cannot be evaluated: {exc}") from exc


def attrition_sql(spec: CohortSpec) -> str:
    """SELECT of the attrition table from ``_cohort_eval`` (steps 0..n, one scan per step-range join)."""
    titles = ["all series in the catalog"] + [c.title for c in spec.steps]
    names = "[" + ", ".join(quote_literal(t) for t in titles) + "]"
    return f"""
        WITH steps AS (SELECT range AS step FROM range(0, {len(titles)})),
        left_ AS (
            SELECT s.step, e.*
            FROM steps s JOIN _cohort_eval e ON e.dropped_at IS NULL OR e.dropped_at > s.step
        ),
        counts AS (
            SELECT step, count(DISTINCT PatientID) AS n_patients,
                count(DISTINCT StudyInstanceUID) AS n_studies, count(*) AS n_series
            FROM left_ GROUP BY step
        )
        SELECT CAST(s.step AS INTEGER) AS step, {names}[s.step + 1] AS criterion,
            coalesce(c.n_patients, 0) AS n_patients, coalesce(c.n_studies, 0) AS n_studies,
            coalesce(c.n_series, 0) AS n_series
        FROM steps s LEFT JOIN counts c USING (step) ORDER BY s.step
    """
