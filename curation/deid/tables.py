"""The audit tables de-identification writes into the catalog: one row per run, one per file.

Neither holds an original value: files are named by their pseudonyms and output paths, which are
pseudonymous themselves; the source path is found again, with the key, as
``pseudonym(path) = file_key`` (see :mod:`curation.pseudonym`).
"""

from __future__ import annotations

from curation.schema import Table, col

DEID_RUNS = Table(
    "deid_runs",
    "de-identification run",
    "Provenance of every `curation deid` run: profile, options, key fingerprint, counts.",
    (
        col("deid_id", "INTEGER", "Sequential id of the run, 1 for the first"),
        col("cohort_id", "INTEGER", "The cohort build whose files were de-identified"),
        col("profile", "VARCHAR", "Name of the profile (basic, research, or the file's name)"),
        col("profile_sha256", "VARCHAR", "SHA-256 of the profile file's text"),
        col(
            "options",
            "VARCHAR[]",
            "PS3.15 options applied (retain_safe_private, clean_descriptors, ...)",
        ),
        col("profile_json", "JSON", "The validated profile: options, overrides, allow-list, OCR"),
        col("curation_version", "VARCHAR", "Version of curation that ran"),
        col("pydicom_version", "VARCHAR", "Version of pydicom that wrote the files"),
        col("ocr_engine", "VARCHAR", "Tesseract version used for burned-in text; NULL if absent"),
        col(
            "key_fingerprint",
            "VARCHAR",
            "First 12 hex digits of SHA-256 of the pseudonym key (not the key)",
        ),
        col("created_at", "TIMESTAMP", "Local time the run started"),
        col("out_dir", "VARCHAR", "Folder the de-identified files were written to"),
        col("n_files", "BIGINT", "Files of the cohort considered"),
        col("n_written", "BIGINT", "Files written de-identified"),
        col("n_quarantined", "BIGINT", "Files not written: see deid_files.reason"),
        col("seconds", "DOUBLE", "Wall time of the run, s"),
    ),
)

DEID_FILES = Table(
    "deid_files",
    "file of a de-identification run",
    "What was done to each file: counts per PS3.15 action, pixel masking, or why it was "
    "quarantined (not written).",
    (
        col("deid_id", "INTEGER", "The run (deid_runs.deid_id)"),
        col("file_key", "VARCHAR", "Pseudonym of the source file's path (HMAC-SHA256, 24 hex)"),
        col("instance_key", "VARCHAR", "Pseudonym of the source SOPInstanceUID"),
        col("series_key", "VARCHAR", "Pseudonym of the source SeriesInstanceUID"),
        col("patient_key", "VARCHAR", "Pseudonym of the source PatientID"),
        col("status", "VARCHAR", "written or quarantined"),
        col(
            "reason",
            "VARCHAR",
            "Stable code of why a file was quarantined (unreadable, pixel_decode, "
            "pixel_encoding, ocr_unavailable, ocr_text_remains, write_failed); NULL if written",
        ),
        col("message", "VARCHAR", "The quarantine reason in words (no original value)"),
        col("out_path", "VARCHAR", "The written file, relative to the run's out_dir"),
        col("n_removed", "INTEGER", "Elements removed (X)"),
        col("n_emptied", "INTEGER", "Elements given a zero-length value (Z)"),
        col("n_dummied", "INTEGER", "Elements given a dummy value or the patient pseudonym (D)"),
        col("n_kept", "INTEGER", "Listed elements kept as they were (K)"),
        col("n_cleaned", "INTEGER", "Text elements cleaned of identifiers (C)"),
        col("n_uid_replaced", "INTEGER", "UIDs replaced by their keyed 2.25 UID (U)"),
        col("n_date_shifted", "INTEGER", "Dates moved by the patient's keyed shift (C)"),
        col("n_private_removed", "INTEGER", "Private elements removed"),
        col("n_private_kept", "INTEGER", "Private elements kept by Retain Safe Private"),
        col(
            "inspected", "VARCHAR", "Why the pixels were inspected for burned-in text; NULL if not"
        ),
        col("ocr_ran", "BOOLEAN", "OCR read the pixels"),
        col("n_masked", "INTEGER", "Boxes masked in the pixels (OCR words and fixed regions)"),
        col("TransferSyntaxUID", "VARCHAR", "Transfer syntax of the written file"),
    ),
)

DEID_TABLES = (DEID_RUNS, DEID_FILES)

#: deid_files count columns, by the action name :mod:`curation.deid.actions` counts under.
COUNT_COLUMNS: dict[str, str] = {
    "removed": "n_removed",
    "emptied": "n_emptied",
    "dummied": "n_dummied",
    "kept": "n_kept",
    "cleaned": "n_cleaned",
    "uid_replaced": "n_uid_replaced",
    "date_shifted": "n_date_shifted",
    "private_removed": "n_private_removed",
    "private_kept": "n_private_kept",
}
