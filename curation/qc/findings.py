"""Reading a QC run's findings back: the latest run, and its findings as a frame.

The tables themselves are declared in :mod:`curation.qc.tables`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
    import polars as pl


#: Runs recorded by ``curation validate`` (one per expectation suite) are named this way.
EXPECTATION_RUN_PREFIX = "expectations/"


def latest_run_id(con: duckdb.DuckDBPyConnection, suite: str | None = None) -> int | None:
    """The id of the most recent finished rule-suite run (or of suite ``suite``), or None.

    Expectation-suite runs also land in ``qc_runs``; they are not rule-suite runs and are skipped
    unless ``suite`` names one.
    """
    rows = con.sql(
        """SELECT max(run_id) FROM qc_runs
           WHERE finished_at IS NOT NULL
             AND CASE WHEN $suite IS NULL THEN NOT starts_with(suite_name, $prefix)
                      ELSE suite_name = $suite END""",
        params={"suite": suite, "prefix": EXPECTATION_RUN_PREFIX},
    ).fetchall()
    return None if rows[0][0] is None else int(rows[0][0])


def findings(con: duckdb.DuckDBPyConnection, run_id: int | None = None) -> pl.DataFrame:
    """The findings of run ``run_id`` (default: the latest finished run) as a polars frame."""
    run = latest_run_id(con) if run_id is None else run_id
    return con.sql(
        "SELECT * FROM qc_findings WHERE run_id = $r ORDER BY rule_id, SeriesInstanceUID",
        params={"r": run},
    ).pl()
