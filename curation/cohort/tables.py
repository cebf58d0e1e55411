"""The catalog tables the cohort builder writes: runs (provenance), attrition, exclusions, members.

A cohort run's rows share its ``cohort_id``; runs accumulate, like QC runs.
"""

from __future__ import annotations

from curation.schema import Table, col

COHORT_RUNS = Table(
    "cohort_runs",
    "cohort build",
    "Provenance of every cohort build: the spec, the QC run its criteria read, the catalog state.",
    (
        col("cohort_id", "INTEGER", "Sequential id of the build, 1 for the first"),
        col("name", "VARCHAR", "Name of the cohort (the spec's name)"),
        col("spec", "JSON", "The validated spec: criteria, split, labels"),
        col("spec_sha256", "VARCHAR", "SHA-256 of the spec file's text"),
        col("curation_version", "VARCHAR", "Version of curation that built the cohort"),
        col("created_at", "TIMESTAMP", "Local time the build started"),
        col("qc_run_id", "INTEGER", "QC run whose findings the criteria read; NULL if none"),
        col(
            "catalog_fingerprint",
            "VARCHAR",
            "Hash of the cataloged files (id, size, mtime) at build time",
        ),
        col(
            "key_fingerprint",
            "VARCHAR",
            "First 12 hex digits of SHA-256 of the pseudonym key (not the key)",
        ),
        col("n_patients", "BIGINT", "Patients in the final cohort"),
        col("n_studies", "BIGINT", "Studies in the final cohort"),
        col("n_series", "BIGINT", "Series in the final cohort"),
        col(
            "out_dir",
            "VARCHAR",
            "Folder the manifest was written to; NULL when built in memory only",
        ),
    ),
)

COHORT_ATTRITION = Table(
    "cohort_attrition",
    "criterion of a cohort build (CONSORT-style)",
    "How many patients, studies and series remain after each criterion, applied in spec order; "
    "step 0 is the catalog before any criterion.",
    (
        col("cohort_id", "INTEGER", "The build (cohort_runs.cohort_id)"),
        col("step", "INTEGER", "0 for the starting population, then 1, 2, ... per criterion"),
        col("criterion", "VARCHAR", "The criterion in words"),
        col("n_patients", "BIGINT", "Patients with at least one series left after this step"),
        col("n_studies", "BIGINT", "Studies with at least one series left after this step"),
        col("n_series", "BIGINT", "Series left after this step"),
        col("n_series_dropped", "BIGINT", "Series this criterion dropped"),
        col("n_patients_dropped", "BIGINT", "Patients whose last series this criterion dropped"),
    ),
)

COHORT_EXCLUSIONS = Table(
    "cohort_exclusions",
    "series dropped by a cohort build",
    "Why each series left the cohort: the first criterion it failed.",
    (
        col("cohort_id", "INTEGER", "The build (cohort_runs.cohort_id)"),
        col("SeriesInstanceUID", "VARCHAR", "The dropped series"),
        col("StudyInstanceUID", "VARCHAR", "Its study"),
        col("PatientID", "VARCHAR", "Its patient (an identifier: stays inside the catalog)"),
        col("step", "INTEGER", "The criterion (cohort_attrition.step) that dropped it"),
        col("criterion", "VARCHAR", "That criterion in words"),
    ),
)

COHORT_MEMBERS = Table(
    "cohort_members",
    "series in a cohort",
    "The series of each cohort build, with their split and pseudonyms.",
    (
        col("cohort_id", "INTEGER", "The build (cohort_runs.cohort_id)"),
        col("SeriesInstanceUID", "VARCHAR", "The series"),
        col("StudyInstanceUID", "VARCHAR", "Its study"),
        col("PatientID", "VARCHAR", "Its patient (an identifier: stays inside the catalog)"),
        col("split", "VARCHAR", "train, val, test (the spec's split names)"),
        col(
            "patient_key",
            "VARCHAR",
            "Pseudonym of the patient: HMAC-SHA256 of PatientID, 24 hex digits",
        ),
        col(
            "study_key",
            "VARCHAR",
            "Pseudonym of the study: HMAC-SHA256 of StudyInstanceUID, 24 hex digits",
        ),
        col(
            "series_key",
            "VARCHAR",
            "Pseudonym of the series: HMAC-SHA256 of SeriesInstanceUID, 24 hex digits",
        ),
    ),
)

LABELS = Table(
    "labels",
    "label of a study or series",
    "Labels a cohort can filter and stratify on (from reports, annotations or a spreadsheet). "
    "A row with a NULL SeriesInstanceUID labels every series of its study.",
    (
        col("PatientID", "VARCHAR", "Patient (an identifier: stays inside the catalog)"),
        col("StudyInstanceUID", "VARCHAR", "Study the label belongs to"),
        col(
            "SeriesInstanceUID",
            "VARCHAR",
            "Series the label belongs to; NULL for a study-level label",
        ),
        col("label", "VARCHAR", "Label name, e.g. pleural_effusion"),
        col(
            "value",
            "VARCHAR",
            "Label value: positive, negative or uncertain (older rows: negated, read as "
            "negative by cohort criteria), or a number as text",
        ),
        col(
            "source",
            "VARCHAR",
            "Where the label comes from (report labeler, report truth, reader, ...)",
        ),
        col(
            "report_key",
            "VARCHAR",
            "Key of the report the label was read from (reports.report_key; an identifier: "
            "stays inside the catalog); NULL for labels not read from a report",
        ),
        col(
            "evidence",
            "VARCHAR",
            "The sentence of the report that states the label; NULL when not read from a report",
        ),
        col(
            "span_start",
            "INTEGER",
            "Offset (characters, from 0) in the report text where the finding's words start",
        ),
        col("span_end", "INTEGER", "Offset in the report text just after the finding's words"),
        col(
            "labeler_version",
            "VARCHAR",
            "Version of the labeler and lexicon that wrote the row (<algorithm>-<lexicon hash>)",
        ),
    ),
)

#: Label values that mean the same; cohort criteria compare the canonical form (the first).
VALUE_SYNONYMS: dict[str, str] = {"negated": "negative"}

COHORT_TABLES = (COHORT_RUNS, COHORT_ATTRITION, COHORT_EXCLUSIONS, COHORT_MEMBERS)
