"""Collecting a catalog's identifier values, and finding them in an output: one helper for every
test that checks that an output leaks none."""

from __future__ import annotations

import re
from collections.abc import Iterable

import duckdb

#: Identifier columns of ``instances``: values no output may hold unless asked.
IDENTIFIERS = (
    "PatientID",
    "PatientName",
    "AccessionNumber",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
)


def identifier_values(
    con: duckdb.DuckDBPyConnection,
    columns: Iterable[str] = IDENTIFIERS,
    *,
    table: str = "instances",
    min_len: int = 4,
) -> set[str]:
    """Every distinct non-blank value of ``columns`` (column names or SQL expressions over
    ``table``), as stripped text, at least ``min_len`` characters long (shorter ones are found
    everywhere by chance)."""
    return {
        str(v).strip()
        for c in columns
        for (v,) in con.sql(f"SELECT DISTINCT {c} FROM {table}").fetchall()
        if v is not None and len(str(v).strip()) >= min_len
    }


def leaked(values: Iterable[str], text: str) -> set[str]:
    """The ``values`` found in ``text`` as whole tokens (a PatientID "dicom" is not found in the
    rule id ``instance.not_dicom``); a value with a space in it, anywhere."""
    tokens = set(re.findall(r"[\w.^-]+", text))
    return {v for v in values if v in tokens or (" " in v and v in text)}
