"""Loading labels into the catalog's ``labels`` table, which cohort specs filter and stratify on.

Weak labels from report text are a later step; for now any table with StudyInstanceUID, label and
value (and optionally SeriesInstanceUID, PatientID) can be loaded, e.g. the synthetic cohort's truth.
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
    frame = frame.select(LABELS.column_names).cast(pl.String)
    LABELS.ensure(con)
    if replace_source:
        for src in frame["source"].unique().to_list():
            con.execute("DELETE FROM labels WHERE source IS NOT DISTINCT FROM $s", {"s": src})
    con.register("_labels_in", frame)
    con.execute("INSERT INTO labels SELECT * FROM _labels_in")
    con.unregister("_labels_in")
    return frame.height


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
