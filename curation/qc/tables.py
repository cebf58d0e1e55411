"""The tables a QC run writes: ``qc_runs`` (provenance), ``qc_rule_runs`` (one row per rule run) and
``qc_findings`` (one row per violation). Runs accumulate; a run's rows share its ``run_id``.

(The geometry tables the rules query are derived per run: :mod:`curation.qc.views`.)
"""

from __future__ import annotations

from curation.schema import Table, col

QC_RUNS = Table(
    "qc_runs",
    "QC run",
    "Provenance of every QC run: which suite, with which parameters, by which version, when.",
    (
        col("run_id", "INTEGER", "Sequential id of the run, 1 for the first"),
        col("suite_name", "VARCHAR", "Name of the suite (its 'name' key)"),
        col("suite_path", "VARCHAR", "Path of the suite file; NULL for the shipped default"),
        col("suite_sha256", "VARCHAR", "SHA-256 of the suite file's bytes"),
        col(
            "parameters",
            "JSON",
            "Every selected rule with its effective severity and parameters",
        ),
        col("curation_version", "VARCHAR", "Version of curation that ran the suite"),
        col("started_at", "TIMESTAMP", "Local time the run started"),
        col("finished_at", "TIMESTAMP", "Local time the run finished; NULL if interrupted"),
        col("n_rules", "INTEGER", "Rules run"),
        col("n_findings", "BIGINT", "Findings written"),
        col("n_rule_errors", "INTEGER", "Rules that could not run (see qc_rule_runs.error)"),
    ),
)

QC_RULE_RUNS = Table(
    "qc_rule_runs",
    "rule run within a QC run",
    "How each rule of a run went: its effective settings, findings count and time.",
    (
        col("run_id", "INTEGER", "The run (qc_runs.run_id)"),
        col("rule_id", "VARCHAR", "Stable dotted rule id"),
        col("level", "VARCHAR", "instance, series, study or cohort"),
        col("severity", "VARCHAR", "Effective severity: info, warning or error"),
        col("parameters", "JSON", "Effective parameters"),
        col("status", "VARCHAR", "ok, or error when the rule's query failed"),
        col("error", "VARCHAR", "Why the rule failed; NULL when ok"),
        col("n_findings", "BIGINT", "Findings the rule wrote"),
        col("seconds", "DOUBLE", "Wall-clock time of the rule's query and insert, seconds"),
    ),
)

QC_FINDINGS = Table(
    "qc_findings",
    "rule violation",
    "Every violation found by every QC run. Identifiers stay in their columns: value and "
    "message never contain a patient name or ID.",
    (
        col("run_id", "INTEGER", "The run (qc_runs.run_id)"),
        col("rule_id", "VARCHAR", "Stable dotted rule id (see docs/qc.md)"),
        col("severity", "VARCHAR", "info, warning or error, as set by the suite"),
        col("level", "VARCHAR", "What the finding is about: instance, series, study or cohort"),
        col("PatientID", "VARCHAR", "Patient concerned; NULL for cohort findings"),
        col("StudyInstanceUID", "VARCHAR", "Study concerned, when known"),
        col("SeriesInstanceUID", "VARCHAR", "Series concerned, when known"),
        col("SOPInstanceUID", "VARCHAR", "Instance concerned, for instance-level findings"),
        col("path", "VARCHAR", "File concerned, for file problems (may be the only handle)"),
        col("value", "VARCHAR", "The offending value as text (a gap in mm, a count, a code)"),
        col("message", "VARCHAR", "What is wrong, in words"),
    ),
)

QC_TABLES = (QC_RUNS, QC_RULE_RUNS, QC_FINDINGS)
