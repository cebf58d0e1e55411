"""Deterministic patient-level splits, stratified where asked, and the leakage check.

Patients, never series, are assigned: every series of a patient lands in the patient's split.
The order within a stratum is a keyed hash of the seed and PatientID (MD5: stable across DuckDB
versions, unlike ``hash()``), so the same catalog, spec and seed give the same splits.
"""

from __future__ import annotations

import duckdb

from curation.catalog import quote_ident
from curation.cohort.spec import SplitSpec, did_you_mean
from curation.errors import CurationError, InputError


class LeakageError(CurationError):
    """A patient or study landed in two splits (a bug: the assignment is per patient)."""


def _stratum_sql(split: SplitSpec, columns: set[str], has_labels: bool) -> str:
    """Per-patient stratum key: the patient's most common value of each stratify key."""
    parts = []
    for i, key in enumerate(split.stratify):
        if key.startswith("label:"):
            if not has_labels:
                raise InputError(f"split.stratify {key!r}: the catalog has no labels table")
            parts.append(f"coalesce(any_value(lab{i}.value), 'none')")
        elif key in columns:
            parts.append(f"coalesce(CAST(mode(h.{quote_ident(key)}) AS VARCHAR), 'none')")
        else:
            raise InputError(
                f"split.stratify: no column {key!r} in harmonized_series (or use label:NAME)"
                + did_you_mean(key, columns)
            )
    return "concat_ws('|', " + ", ".join(parts) + ")" if parts else "''"


def assign(
    con: duckdb.DuckDBPyConnection, split: SplitSpec, columns: set[str], has_labels: bool
) -> None:
    """Create temp table ``_cohort_split`` (PatientID, split) for the patients of ``_cohort_in``."""
    stratum = _stratum_sql(split, columns, has_labels)
    params: dict[str, object] = {}
    joins = ""
    for i, key in enumerate(split.stratify):
        if key.startswith("label:"):
            params[f"lab{i}"] = key[6:]
            joins += (
                f" LEFT JOIN labels lab{i} ON lab{i}.label = $lab{i} AND "
                f"lab{i}.StudyInstanceUID = m.StudyInstanceUID"
            )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _cohort_strata AS
        SELECT m.PatientID, {stratum} AS stratum
        FROM _cohort_in m JOIN harmonized_series h USING (SeriesInstanceUID){joins}
        GROUP BY m.PatientID""",
        params,
    )
    # Fraction through the stratum of each patient, in keyed-hash order.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _cohort_rank AS
        SELECT PatientID, stratum,
            (row_number() OVER w - 0.5) / count(*) OVER (PARTITION BY stratum) AS frac,
            md5($seed || '/' || PatientID) AS h
        FROM _cohort_strata
        WINDOW w AS (PARTITION BY stratum ORDER BY md5($seed || '/' || PatientID))""",
        {"seed": str(split.seed)},
    )
    if split.ratios is not None:
        whens: list[str] = []
        cum = 0.0
        p: dict[str, object] = {}
        names = list(split.ratios)
        for i, name in enumerate(names[:-1]):
            cum += split.ratios[name]
            p[f"c{i}"], p[f"n{i}"] = cum, name
            whens.append(f"WHEN frac < $c{i} THEN $n{i}")
        p["last"] = names[-1]
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _cohort_split AS
            SELECT PatientID, {f"CASE {' '.join(whens)} ELSE $last END" if whens else "$last"} AS split
            FROM _cohort_rank""",
            p,
        )
    else:
        assert split.counts is not None
        # Counts: take patients in order of their stratum fraction, so every split samples every stratum.
        whens = []
        count = 0
        p = {}
        for i, (name, n) in enumerate(split.counts.items()):
            count += n
            p[f"c{i}"], p[f"n{i}"] = count, name
            whens.append(f"WHEN r <= $c{i} THEN $n{i}")
        rest = "'train'" if "train" not in split.counts else "NULL"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _cohort_split AS
            SELECT PatientID, CASE {" ".join(whens)} ELSE {rest} END AS split
            FROM (SELECT PatientID, row_number() OVER (ORDER BY frac, h) AS r FROM _cohort_rank)""",
            p,
        )


def check_leakage(con: duckdb.DuckDBPyConnection, members: str) -> None:
    """Raise :class:`LeakageError` if a patient or a study of ``members`` is in two splits."""
    for key in ("PatientID", "StudyInstanceUID"):
        n = con.sql(
            f"SELECT count(*) FROM (SELECT {key} FROM {members} GROUP BY {key} HAVING count(DISTINCT split) > 1)"
        ).fetchall()[0][0]
        if n:
            raise LeakageError(f"{n} {key} value(s) appear in more than one split")
