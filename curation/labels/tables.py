"""The catalog tables of report ingestion: the reports and the rows that could not be used.

The labels themselves go to the ``labels`` table (:data:`curation.cohort.tables.LABELS`), which
cohort specs filter and stratify on.
"""

from __future__ import annotations

from curation.schema import Table, col

REPORTS = Table(
    "reports",
    "report text",
    "Report texts keyed by the user's key (AccessionNumber or StudyInstanceUID) or, for DICOM "
    "Structured Reports in the catalog, their SOPInstanceUID; the study they resolve to.",
    (
        col(
            "report_key",
            "VARCHAR",
            "The report's key as given (an identifier: stays inside the catalog)",
        ),
        col(
            "key_kind",
            "VARCHAR",
            "What report_key is: AccessionNumber, StudyInstanceUID or SOPInstanceUID (an SR)",
        ),
        col(
            "StudyInstanceUID",
            "VARCHAR",
            "Study of the catalog the key resolves to; NULL when it resolves to none",
        ),
        col("PatientID", "VARCHAR", "Patient of that study (an identifier)"),
        col(
            "text", "VARCHAR", "The report text (SR: TextValue items under their section headings)"
        ),
        col(
            "source",
            "VARCHAR",
            "File the report was read from, or 'dicom-sr' for the catalog's SRs",
        ),
        col(
            "source_row", "BIGINT", "Row of the file (1 = first data row; JSON lines: line number)"
        ),
        col("text_sha256", "VARCHAR", "SHA-256 of the text (UTF-8), to tell changed reports"),
        col("loaded_at", "TIMESTAMP", "When the report was loaded"),
    ),
)

REPORT_SKIPS = Table(
    "report_skips",
    "report row that could not be used",
    "Rows of a report file (or SRs of the catalog) skipped at ingestion, with a stable reason: "
    "no_key, empty_text, not_utf8, duplicate_key, bad_json.",
    (
        col("source", "VARCHAR", "File the row was read from, or 'dicom-sr'"),
        col("source_row", "BIGINT", "Row (JSON lines: line) of the file"),
        col(
            "reason",
            "VARCHAR",
            "Why it was skipped: no_key, empty_text, not_utf8, duplicate_key, bad_json",
        ),
        col("message", "VARCHAR", "The reason in words (never the key or the text)"),
        col("loaded_at", "TIMESTAMP", "When the file was loaded"),
    ),
)

LABELS_TABLES = (REPORTS, REPORT_SKIPS)
