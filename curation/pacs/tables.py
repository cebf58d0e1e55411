"""The tables a PACS source writes beside the crawl's: what the PACS said it holds, and retrievals.

Instances and their elements go to the crawl's own tables (``files``, ``instances``,
``elements``, ...); these tables keep the PACS's study- and series-level answers (QIDO-RS or
C-FIND), which make a second crawl incremental and say, for a DIMSE source, what is known only at
series level.
"""

from __future__ import annotations

from curation.schema import Table, col

_SOURCE = col(
    "source",
    "VARCHAR",
    "The PACS as given to the crawl, without credentials: dicomweb+http(s)://HOST/ROOT or dimse://AET@HOST:PORT",
)

PACS_STUDIES = Table(
    "pacs_studies",
    "study found on a PACS",
    "Studies a PACS returned for a crawl's query (QIDO-RS or C-FIND at study level), with their "
    "instance counts: a later crawl fetches only studies that are new or whose count changed.",
    (
        _SOURCE,
        col("StudyInstanceUID", "VARCHAR", "Study Instance UID (0020,000D)"),
        col("PatientID", "VARCHAR", "Patient ID (an identifier: stays inside the catalog)"),
        col("StudyDate", "DATE", "Study Date (0008,0020)"),
        col("StudyDescription", "VARCHAR", "Study Description (0008,1030)"),
        col("AccessionNumber", "VARCHAR", "Accession Number (0008,0050)"),
        col("ModalitiesInStudy", "VARCHAR[]", "Modalities in Study (0008,0061)"),
        col(
            "NumberOfStudyRelatedInstances",
            "BIGINT",
            "Instances the PACS counts in the study (0020,1208); NULL when it does not say, or "
            "when a series of the study could not be fetched (so the next crawl asks again)",
        ),
        col(
            "series_filter",
            "VARCHAR",
            "The series-level filter of the crawl that fetched the study ('Modality=CT'); '' for all",
        ),
        col(
            "n_series_cataloged",
            "BIGINT",
            "Series of the study whose instances are in the catalog (0 for a DIMSE crawl)",
        ),
        col("protocol", "VARCHAR", "dicomweb or dimse"),
        col("crawl_id", "INTEGER", "Crawl that last queried the study (crawls.crawl_id)"),
    ),
)

PACS_SERIES = Table(
    "pacs_series",
    "series found on a PACS",
    "Series a PACS returned (QIDO-RS or C-FIND at series level). For DICOMweb the series' "
    "instances and elements are in the catalog (level 'instance'); for DIMSE only these "
    "series-level attributes are known (level 'series') until the series is retrieved.",
    (
        _SOURCE,
        col("StudyInstanceUID", "VARCHAR", "Study Instance UID (0020,000D)"),
        col("SeriesInstanceUID", "VARCHAR", "Series Instance UID (0020,000E)"),
        col("PatientID", "VARCHAR", "Patient ID (an identifier: stays inside the catalog)"),
        col("StudyDate", "DATE", "Study Date (0008,0020) of the series' study"),
        col("Modality", "VARCHAR", "Modality (0008,0060)"),
        col("SeriesNumber", "BIGINT", "Series Number (0020,0011)"),
        col("SeriesDescription", "VARCHAR", "Series Description (0008,103E)"),
        col(
            "BodyPartExamined",
            "VARCHAR",
            "Body Part Examined (0018,0015), where the PACS returns it",
        ),
        col(
            "NumberOfSeriesRelatedInstances",
            "BIGINT",
            "Instances the PACS counts in the series (0020,1209); NULL when it does not say",
        ),
        col(
            "level",
            "VARCHAR",
            "instance: the series' instances and elements are cataloged; series: only these "
            "series-level attributes are known",
        ),
        col("n_cataloged", "BIGINT", "Instances of the series written to instances by this source"),
        col("protocol", "VARCHAR", "dicomweb or dimse"),
        col("crawl_id", "INTEGER", "Crawl that last queried the series (crawls.crawl_id)"),
    ),
)

RETRIEVALS = Table(
    "retrievals",
    "instance a retrieve asked a PACS for",
    "The outcome of `curation retrieve` per instance: stored in the output folder, or why not. "
    "A retrieve that was interrupted resumes with the instances not stored yet.",
    (
        col("retrieve_id", "INTEGER", "Sequential id of the retrieve run, 1 for the first"),
        _SOURCE,
        col("method", "VARCHAR", "C-GET, C-MOVE or WADO-RS"),
        col("StudyInstanceUID", "VARCHAR", "Study Instance UID"),
        col("SeriesInstanceUID", "VARCHAR", "Series Instance UID"),
        col("SOPInstanceUID", "VARCHAR", "SOP Instance UID; NULL where a whole series failed"),
        col("status", "VARCHAR", "stored, already_stored (an earlier run), or failed"),
        col("reason", "VARCHAR", "For failed: what the PACS or the connection said"),
        col("path", "VARCHAR", "Where the instance was written (absolute)"),
        col("retrieved_at", "TIMESTAMP", "Local time of the outcome"),
    ),
)

PACS_TABLES: tuple[Table, ...] = (PACS_STUDIES, PACS_SERIES, RETRIEVALS)
