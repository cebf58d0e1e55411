"""Criteria as SQL, evaluated in one scan, and the CONSORT-style attrition they produce.

Every criterion becomes a predicate over ``harmonized_series`` (joined with ``pixel_metrics`` when
that table exists). Values go in as named parameters; column names only after they were found in
the catalog. One query marks, for every series, the first criterion it fails (``dropped_at``); the
attrition table and the exclusion reasons are aggregates of that column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from curation.cohort.spec import SEVERITIES, CohortSpec, Criterion
from curation.cohort.tables import table_exists
from curation.errors import CatalogError, InputError


@dataclass
class Compiled:
    """The predicates of a spec and their parameters."""

    base: str  # FROM clause of the series the criteria filter
    keeps: list[str]  # per criterion: SQL that is true when the series stays
    params: dict[str, Any]
    columns: dict[str, str]  # available column -> type
    qc_run_id: int | None


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $t ORDER BY ordinal_position",
        {"t": table},
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def latest_qc_run(con: duckdb.DuckDBPyConnection) -> int | None:
    """The latest finished QC run id, or None when QC never ran on this catalog."""
    if not table_exists(con, "qc_runs"):
        return None
    rows = con.sql("SELECT max(run_id) FROM qc_runs WHERE finished_at IS NOT NULL").fetchall()
    return None if rows[0][0] is None else int(rows[0][0])


def _field(c: Criterion, col: str, ctype: str, p: str, params: dict[str, Any]) -> str:
    ref = f'b."{col}"'
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
    return f"{ref} {op} ${p}"


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
    columns = _columns(con, "harmonized_series")
    base = "harmonized_series b"
    if table_exists(con, "pixel_metrics"):
        extra = {k: v for k, v in _columns(con, "pixel_metrics").items() if k not in columns}
        if extra:
            cols = ", ".join(f'"{k}"' for k in extra)
            base += f" LEFT JOIN (SELECT SeriesInstanceUID AS _pm_uid, {cols} FROM pixel_metrics) pm ON pm._pm_uid = b.SeriesInstanceUID"
            columns.update(extra)
    qc_run = latest_qc_run(con)
    params: dict[str, Any] = {}
    keeps = []
    for i, c in enumerate(spec.criteria):
        p = f"p{i}"
        if c.kind == "field":
            if c.target not in columns:
                raise InputError(
                    f"criterion {c.title!r}: no column {c.target!r} in harmonized_series"
                    + (" or pixel_metrics" if "pm" in base else "")
                )
            pred = _field(c, c.target, columns[c.target], p, params)
            if c.target not in _columns(con, "harmonized_series"):
                pred = pred.replace(f'b."{c.target}"', f'pm."{c.target}"')
        elif c.kind in ("qc_rule", "qc_severity"):
            if qc_run is None:
                raise CatalogError(
                    f"criterion {c.title!r} needs QC findings: run `curation qc` first"
                )
            params["qc_run"] = qc_run
            if c.kind == "qc_rule":
                params[p] = c.target
                pred = _in_findings(f"run_id = $qc_run AND rule_id = ${p}")
            else:
                params[p] = list(SEVERITIES[SEVERITIES.index(c.target) :])
                pred = _in_findings(f"run_id = $qc_run AND list_contains(${p}, severity)")
        else:  # label
            if not table_exists(con, "labels"):
                raise CatalogError(
                    f"criterion {c.title!r} needs a labels table (see curation.cohort.labels)"
                )
            params[p + "_name"] = c.target
            cond = f"label = ${p}_name"
            if c.op is not None:
                sub = Criterion(c.action, "field", "value", c.op, c.value)
                cond += " AND " + _field(sub, "value", "VARCHAR", p, params).replace(
                    'b."value"', "value"
                )
                for k in list(params):
                    if k.startswith(p) and k != p + "_name":
                        v = params[k]
                        params[k] = [str(x) for x in v] if isinstance(v, list) else str(v)
            pred = (
                f"(b.SeriesInstanceUID IN (SELECT SeriesInstanceUID FROM labels WHERE {cond}) "
                f"OR b.StudyInstanceUID IN (SELECT StudyInstanceUID FROM labels WHERE SeriesInstanceUID IS NULL AND {cond}))"
            )
        keep = f"coalesce({pred}, false)"
        keeps.append(keep if c.action == "include" else f"NOT {keep}")
    return Compiled(base, keeps, params, columns, qc_run)


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
        raise InputError(f"cohort {spec.name!r}: a criterion cannot be evaluated: {exc}") from exc


def attrition_sql(spec: CohortSpec) -> str:
    """SELECT of the attrition table from ``_cohort_eval`` (steps 0..n, one scan per step-range join)."""
    titles = ["all series in the catalog"] + [c.title for c in spec.criteria]
    names = "[" + ", ".join("'" + t.replace("'", "''") + "'" for t in titles) + "]"
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
