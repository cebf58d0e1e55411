"""Loading labels into the catalog's ``labels`` table, which cohort specs filter and stratify on.

Weak labels from report text are written by :mod:`curation.labels` (``curation labels``); any table
with StudyInstanceUID, label and value (and optionally the other columns of
:data:`~curation.cohort.tables.LABELS`) can be loaded here too, e.g. the synthetic cohort's truth.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from curation.cohort.tables import LABELS
from curation.errors import InputError


def load_labels(
    con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, *, replace_source: bool = True
) -> int:
    """Append ``frame`` to ``labels`` (rows of the same ``source`` are replaced first).

    Returns the number of rows loaded.
    """
    need = {"StudyInstanceUID", "label", "value"}
    if not need <= set(frame.columns):
        raise InputError(f"labels need columns {sorted(need)}; got {frame.columns}")
    for c in LABELS.column_names:
        if c not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(c))
    frame = frame.select(LABELS.column_names).cast(
        {c.name: pl.Int32 if c.sql_type == "INTEGER" else pl.String for c in LABELS.columns}
    )
    ensure_labels_table(con)
    if replace_source:
        for src in frame["source"].unique().to_list():
            con.execute("DELETE FROM labels WHERE source IS NOT DISTINCT FROM $s", {"s": src})
    cols = ", ".join(f'"{c}"' for c in LABELS.column_names)
    con.register("_labels_in", frame)
    con.execute(f"INSERT INTO labels ({cols}) SELECT {cols} FROM _labels_in")
    con.unregister("_labels_in")
    return frame.height


def ensure_labels_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``labels``, or add the columns a catalog written by an older curation lacks (its
    rows are kept; the new columns are NULL for them)."""
    LABELS.ensure(con)
    have = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'labels'"
        ).fetchall()
    }
    for c in LABELS.columns:
        if c.name not in have:
            con.execute(f'ALTER TABLE labels ADD COLUMN "{c.name}" {c.sql_type}')


def synthetic_report_labels(reports_parquet: str | Path) -> pl.DataFrame:
    """The true finding labels of a synthetic cohort's ``reports.parquet``, one row per study and finding."""
    reports = pl.read_parquet(reports_parquet)
    return (
        reports.select("PatientID", "StudyInstanceUID", "findings")
        .explode("findings")
        .unnest("findings")
        .select(
            "PatientID",
            "StudyInstanceUID",
            pl.col("finding").alias("label"),
            pl.col("label").alias("value"),
            pl.lit("synthetic report truth").alias("source"),
        )
        .unique(["StudyInstanceUID", "label"], keep="first", maintain_order=True)
    )
