"""The tables a QC run writes: ``qc_runs`` (provenance), ``qc_rule_runs`` (one row per rule run) and
``qc_findings`` (one row per violation). Runs accumulate; a run's rows share its ``run_id``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curation.schema import Column, Table, register

if TYPE_CHECKING:
    import duckdb
    import polars as pl


def _c(name: str, sql_type: str, description: str) -> Column:
    return Column(name, sql_type, description)


QC_RUNS = register(
    Table(
        "qc_runs",
        "QC run",
        "Provenance of every QC run: which suite, with which parameters, by which version, when.",
        (
            _c("run_id", "INTEGER", "Sequential id of the run, 1 for the first"),
            _c("suite_name", "VARCHAR", "Name of the suite (its 'name' key)"),
            _c("suite_path", "VARCHAR", "Path of the suite file; NULL for the shipped default"),
            _c("suite_sha256", "VARCHAR", "SHA-256 of the suite file's bytes"),
            _c(
                "parameters",
                "JSON",
                "Every selected rule with its effective severity and parameters",
            ),
            _c("curation_version", "VARCHAR", "Version of curation that ran the suite"),
            _c("started_at", "TIMESTAMP", "Local time the run started"),
            _c("finished_at", "TIMESTAMP", "Local time the run finished; NULL if interrupted"),
            _c("n_rules", "INTEGER", "Rules run"),
            _c("n_findings", "BIGINT", "Findings written"),
            _c("n_rule_errors", "INTEGER", "Rules that could not run (see qc_rule_runs.error)"),
        ),
    )
)

QC_RULE_RUNS = register(
    Table(
        "qc_rule_runs",
        "rule run within a QC run",
        "How each rule of a run went: its effective settings, findings count and time.",
        (
            _c("run_id", "INTEGER", "The run (qc_runs.run_id)"),
            _c("rule_id", "VARCHAR", "Stable dotted rule id"),
            _c("level", "VARCHAR", "instance, series, study or cohort"),
            _c("severity", "VARCHAR", "Effective severity: info, warning or error"),
            _c("parameters", "JSON", "Effective parameters"),
            _c("status", "VARCHAR", "ok, or error when the rule's query failed"),
            _c("error", "VARCHAR", "Why the rule failed; NULL when ok"),
            _c("n_findings", "BIGINT", "Findings the rule wrote"),
            _c("seconds", "DOUBLE", "Wall-clock time of the rule's query and insert, seconds"),
        ),
    )
)

QC_FINDINGS = register(
    Table(
        "qc_findings",
        "rule violation",
        "Every violation found by every QC run. Identifiers stay in their columns: value and "
        "message never contain a patient name or ID.",
        (
            _c("run_id", "INTEGER", "The run (qc_runs.run_id)"),
            _c("rule_id", "VARCHAR", "Stable dotted rule id (see docs/qc.md)"),
            _c("severity", "VARCHAR", "info, warning or error, as set by the suite"),
            _c("level", "VARCHAR", "What the finding is about: instance, series, study or cohort"),
            _c("PatientID", "VARCHAR", "Patient concerned; NULL for cohort findings"),
            _c("StudyInstanceUID", "VARCHAR", "Study concerned, when known"),
            _c("SeriesInstanceUID", "VARCHAR", "Series concerned, when known"),
            _c("SOPInstanceUID", "VARCHAR", "Instance concerned, for instance-level findings"),
            _c("path", "VARCHAR", "File concerned, for file problems (may be the only handle)"),
            _c("value", "VARCHAR", "The offending value as text (a gap in mm, a count, a code)"),
            _c("message", "VARCHAR", "What is wrong, in words"),
        ),
    )
)

QC_TABLES = (QC_RUNS, QC_RULE_RUNS, QC_FINDINGS)


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the QC tables if they do not exist."""
    for table in QC_TABLES:
        con.execute(table.ddl())


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
