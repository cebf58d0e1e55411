"""Completeness: files that could not be read, instances twice, instance numbers, slices missing.

Slice-level rules read the derived tables of :mod:`curation.qc.views` (``qc_positions``,
``qc_series_geometry``), so they work for classic series and enhanced multi-frame objects alike.
"""

from __future__ import annotations

from curation.qc.rule import Level, Param, Rule, Severity, register
from curation.qc.rules.geometry import GAPS_CTE

# Shared SELECT heads: every rule returns the columns of curation.qc.rule.FINDING_COLUMNS.
_NO_UIDS = "NULL::VARCHAR AS PatientID, NULL::VARCHAR AS StudyInstanceUID, "

# A file's problem is known from crawl_errors (files that failed or were read with a caveat) and
# from files.status (the crawler may record a skipped non-DICOM file there only).
_PROBLEM_FILES = """
    SELECT path, reason, any_value(cataloged) AS cataloged FROM (
        SELECT path, reason, cataloged FROM crawl_errors
        UNION ALL
        SELECT path, reason, status = 'ok' AS cataloged FROM files
        -- 'skipped' files (sidecars such as LICENSE, README, *.json; DICOMDIR) are what the crawl
        -- decided not to read: not problems, so no rule reports them
        WHERE status = 'error' AND reason IS NOT NULL
    ) GROUP BY path, reason
"""

_FILE_UIDS = """
    i.PatientID, i.StudyInstanceUID, i.SeriesInstanceUID, i.SOPInstanceUID, p.path
"""

ZERO_BYTE = register(
    Rule(
        id="instance.zero_byte",
        level=Level.INSTANCE,
        severity=Severity.ERROR,
        title="empty file",
        description="A file of the archive is empty (0 bytes): an interrupted copy or transfer. "
        "The slice or object it should hold is missing.",
        not_checked="Which series the file belonged to (an empty file has no header); the gap it "
        "leaves is reported by series.missing_slices when it was inside a stack.",
        query=f"""
            SELECT {_NO_UIDS} NULL::VARCHAR AS SeriesInstanceUID, NULL::VARCHAR AS SOPInstanceUID,
                p.path, p.reason AS value, 'the file is empty (0 bytes)' AS message
            FROM ({_PROBLEM_FILES}) p WHERE p.reason = 'zero_byte'
        """,
        requires=("crawl_errors", "files"),
        detects=("zero_byte",),
    )
)

TRUNCATED = register(
    Rule(
        id="instance.truncated",
        level=Level.INSTANCE,
        severity=Severity.ERROR,
        title="truncated file",
        description="A file ends early: inside its header (nothing cataloged) or inside its pixel "
        "data (header cataloged, pixels unusable).",
        not_checked="Encapsulated (compressed) pixel data cut short: its length is undefined, so "
        "only the crawler's reading of the file's end could tell (see docs/qc.md); whether the "
        "pixel data that is present decodes.",
        query=f"""
            SELECT {_FILE_UIDS}, p.reason AS value,
                CASE WHEN p.cataloged THEN 'the file ends inside its pixel data (header cataloged)'
                     ELSE 'the file ends inside its header: nothing of it was cataloged' END
            FROM ({_PROBLEM_FILES}) p LEFT JOIN instances i ON i.path = p.path
            WHERE p.reason IN ('truncated', 'bad_length')
            UNION ALL
            -- native pixel data declares its length: a file shorter than that was cut in it
            SELECT {_FILE_UIDS}, 'truncated',
                'the file (' || f.size || ' bytes) is shorter than its pixel data ('
                    || e.value_length || ' bytes)'
            FROM elements e JOIN files f USING (file_id) JOIN instances i USING (file_id)
                JOIN files p USING (file_id)
            WHERE e.tag = '7FE00010' AND e.seq_path = '' AND f.size < e.value_length
                AND NOT coalesce(f.gzip, false)  -- a .gz file's size is not its DICOM length
        """,
        requires=("crawl_errors", "files", "instances", "elements"),
        detects=("truncated",),
    )
)

NOT_DICOM = register(
    Rule(
        id="instance.not_dicom",
        level=Level.INSTANCE,
        severity=Severity.WARNING,
        title="non-DICOM file",
        description="A file among the DICOM files is not DICOM (a thumbnail, a log, Thumbs.db). "
        "Harmless for training, but a sign that the export was not a clean DICOM export.",
        not_checked="What the file is; files a crawl is told to skip by name are never seen.",
        query=f"""
            SELECT {_NO_UIDS} NULL::VARCHAR AS SeriesInstanceUID, NULL::VARCHAR AS SOPInstanceUID,
                p.path, p.reason AS value, 'not a DICOM file' AS message
            FROM ({_PROBLEM_FILES}) p WHERE p.reason = 'not_dicom'
        """,
        requires=("crawl_errors", "files"),
        detects=("not_dicom",),
    )
)

UNREADABLE = register(
    Rule(
        id="instance.unreadable",
        level=Level.INSTANCE,
        severity=Severity.ERROR,
        title="unreadable file",
        description="A DICOM file could not be read for another reason (impossible lengths, "
        "invalid VRs, undecodable values, permissions): its instance is missing from the catalog, "
        "or cataloged with a caveat (then at warning strength, in the message).",
        not_checked="Empty, truncated and non-DICOM files (their own rules); DICOMDIR files.",
        query=f"""
            SELECT {_FILE_UIDS}, p.reason AS value,
                CASE WHEN p.cataloged THEN 'read with a caveat: ' || p.reason
                     ELSE 'could not be read: ' || p.reason END
            FROM ({_PROBLEM_FILES}) p LEFT JOIN instances i ON i.path = p.path
            WHERE p.reason NOT IN ('zero_byte', 'truncated', 'bad_length', 'not_dicom', 'dicomdir')
        """,
        requires=("crawl_errors", "files", "instances"),
    )
)

DUPLICATE_SOP = register(
    Rule(
        id="instance.duplicate_sop",
        level=Level.INSTANCE,
        severity=Severity.WARNING,
        title="instance in several files",
        description="The same SOPInstanceUID is stored in more than one file: a copy of the "
        "series, or two different images that reuse a UID (then one silently hides the other).",
        not_checked="Whether the copies are byte-identical; different UIDs at the same position "
        "are series.duplicate_positions.",
        query="""
            SELECT PatientID, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, path,
                n_files::VARCHAR AS value,
                'the SOP instance is stored in ' || n_files || ' files' AS message
            FROM (SELECT *, count(*) OVER (PARTITION BY SOPInstanceUID) AS n_files FROM instances)
            WHERE n_files > 1
        """,
    )
)

SERIES_UID_REUSED = register(
    Rule(
        id="series.uid_reused",
        level=Level.SERIES,
        severity=Severity.WARNING,
        title="one series UID, two acquisitions",
        description="Different instances at the same slice position of one series sit in "
        "different folders: two acquisitions (two sessions, two exports of a rescan) were given "
        "the same SeriesInstanceUID, and a converter that groups by UID mixes them.",
        not_checked="Copies of the same instances in two folders (instance.duplicate_sop); repeated "
        "positions within one folder (volumes of fMRI/DWI, series.duplicate_positions); series "
        "without ImagePositionPatient (mosaics). A multi-volume series exported one folder per "
        "volume is flagged too.",
        query="""
            WITH f AS (
                SELECT PatientID, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID,
                    ImagePositionPatient AS ipp, regexp_extract(path, '^(.*)/[^/]*$', 1) AS folder
                FROM instances
                WHERE SeriesInstanceUID IS NOT NULL AND ImagePositionPatient IS NOT NULL
            ), per_folder AS (
                SELECT SeriesInstanceUID, ipp, folder, count(DISTINCT SOPInstanceUID) AS n
                FROM f GROUP BY ALL
            ), shared AS (
                -- More instances at a position than any one folder holds there: some folder has
                -- instances the others lack. Copies (one folder a subset of another) do not count.
                SELECT p.SeriesInstanceUID, p.ipp
                FROM per_folder p
                JOIN (SELECT SeriesInstanceUID, ipp, count(DISTINCT SOPInstanceUID) AS n_all
                      FROM f GROUP BY ALL) t USING (SeriesInstanceUID, ipp)
                GROUP BY p.SeriesInstanceUID, p.ipp
                HAVING count(*) > 1 AND max(p.n) < any_value(t.n_all)
            )
            SELECT any_value(f.PatientID), any_value(f.StudyInstanceUID), f.SeriesInstanceUID,
                NULL::VARCHAR, NULL::VARCHAR AS path, count(DISTINCT f.folder)::VARCHAR AS value,
                count(DISTINCT s.ipp) || ' slice position(s) imaged again, by other instances, in '
                    || 'another of ' || count(DISTINCT f.folder) || ' folders' AS message
            FROM f JOIN shared s USING (SeriesInstanceUID)
            GROUP BY f.SeriesInstanceUID
        """,
    )
)

INSTANCE_NUMBER_DUPLICATES = register(
    Rule(
        id="series.instance_number_duplicates",
        level=Level.SERIES,
        severity=Severity.WARNING,
        title="instance numbers repeat",
        description="Two different instances of a series carry the same InstanceNumber, so an "
        "ordering by instance number is ambiguous.",
        not_checked="Series whose numbering restarts per acquisition (AcquisitionNumber differs) "
        "are checked per acquisition; non-image objects (SR, reports); a SOP instance stored twice "
        "is instance.duplicate_sop.",
        query="""
            SELECT PatientID, StudyInstanceUID, SeriesInstanceUID, NULL::VARCHAR,
                NULL::VARCHAR AS path, count(*)::VARCHAR AS value,
                count(*) || ' instance number(s) used by more than one instance, first '
                    || min(InstanceNumber) AS message
            FROM (
                SELECT any_value(PatientID) AS PatientID,
                    any_value(StudyInstanceUID) AS StudyInstanceUID, SeriesInstanceUID,
                    InstanceNumber
                FROM instances WHERE InstanceNumber IS NOT NULL AND Rows IS NOT NULL
                GROUP BY SeriesInstanceUID, AcquisitionNumber, InstanceNumber
                HAVING count(DISTINCT SOPInstanceUID) > 1
            ) GROUP BY PatientID, StudyInstanceUID, SeriesInstanceUID
        """,
        detects=("instance_number_duplicate",),
    )
)

INSTANCE_NUMBER_GAPS = register(
    Rule(
        id="series.instance_number_gaps",
        level=Level.SERIES,
        severity=Severity.WARNING,
        title="instance numbers skip",
        description="The sorted instance numbers of a series skip values: an instance was lost, "
        "or the numbering was changed. Gaps before the first number are not gaps.",
        not_checked="Whether a slice is missing geometrically (series.missing_slices; a missing "
        "slice usually shows here too); non-image objects (SR, reports); series with fewer than "
        "min_instances instances or more than max_gaps gaps (a vendor's numbering scheme).",
        query="""
            WITH n AS (
                SELECT DISTINCT SeriesInstanceUID, InstanceNumber FROM instances
                WHERE InstanceNumber IS NOT NULL AND Rows IS NOT NULL
            ), d AS (
                SELECT SeriesInstanceUID, InstanceNumber,
                    InstanceNumber - lag(InstanceNumber) OVER (
                        PARTITION BY SeriesInstanceUID ORDER BY InstanceNumber) AS step
                FROM n
            ), s AS (
                SELECT SeriesInstanceUID, any_value(PatientID) AS PatientID,
                    any_value(StudyInstanceUID) AS StudyInstanceUID, count(*) AS n
                FROM instances GROUP BY SeriesInstanceUID
            )
            SELECT s.PatientID, s.StudyInstanceUID, d.SeriesInstanceUID, NULL::VARCHAR,
                NULL::VARCHAR, sum(d.step - 1)::VARCHAR AS value,
                sum(d.step - 1) || ' instance number(s) skipped in ' || count(*) || ' gap(s), '
                    || 'first after ' || min(d.InstanceNumber - d.step) AS message
            FROM d JOIN s USING (SeriesInstanceUID)
            WHERE d.step > 1 AND s.n >= $min_instances
            GROUP BY ALL HAVING count(*) <= $max_gaps
        """,
        params=(
            Param("min_instances", 3, "count", "series with fewer instances are not checked"),
            Param(
                "max_gaps",
                3,
                "count",
                "more gaps than this are a numbering scheme (e.g. Philips steps), not lost instances",
            ),
        ),
        detects=("instance_number_gap",),
    )
)

MISSING_SLICES = register(
    Rule(
        id="series.missing_slices",
        level=Level.SERIES,
        severity=Severity.ERROR,
        title="slices missing",
        description="Along the slice normal, a gap between adjacent positions is a whole multiple "
        "(>= 2) of the series' own modal spacing while its neighbouring gaps are regular: the "
        "slices that filled it are missing. In a multi-volume series (fMRI, DWI), a position that "
        "occurs in fewer volumes than the others also counts.",
        not_checked="Slices missing at either end of the stack (indistinguishable from a shorter "
        "scan); runs of irregular gaps (series.nonuniform_spacing); localizers and off-stack "
        "slices (series.mixed_orientation).",
        query=GAPS_CTE
        + """ gaps AS (
                SELECT SeriesInstanceUID, round(gap_mm / m) - 1 AS n_missing, gap_mm, m
                FROM g
                WHERE gap_mm IS NOT NULL AND m > 0
                    AND gap_mm / m >= 1.5
                    AND abs(gap_mm - round(gap_mm / m) * m) <= tol * round(gap_mm / m)
                    AND coalesce(abs(prev_gap - m) <= tol, true)
                    AND coalesce(abs(next_gap - m) <= tol, true)
            ), short AS (
                SELECT q.SeriesInstanceUID, s.modal_multiplicity - q.multiplicity AS n_missing
                FROM qc_positions q JOIN qc_series_geometry s USING (SeriesInstanceUID)
                WHERE s.modal_multiplicity > 1 AND q.multiplicity < s.modal_multiplicity
            ), per_series AS (
                SELECT SeriesInstanceUID, sum(n_missing) AS n_missing,
                    max(gap_mm) AS worst_gap, any_value(m) AS m, count(*) AS n_gaps
                FROM (SELECT SeriesInstanceUID, n_missing, gap_mm, m FROM gaps
                      UNION ALL
                      SELECT SeriesInstanceUID, n_missing, NULL, NULL FROM short)
                GROUP BY SeriesInstanceUID
            )
            SELECT g.PatientID, g.StudyInstanceUID, g.SeriesInstanceUID, NULL::VARCHAR, NULL,
                p.n_missing::BIGINT::VARCHAR AS value,
                p.n_missing::BIGINT || ' slice(s) missing'
                    || coalesce(': largest gap ' || round(p.worst_gap, 3) || ' mm at a modal spacing of '
                        || round(p.m, 3) || ' mm', ' from some volumes') AS message
            FROM per_series p JOIN qc_series_geometry g USING (SeriesInstanceUID)
        """,
        params=(
            Param(
                "spacing_tolerance_fraction",
                0.01,
                "fraction",
                "a gap within this fraction of the modal spacing (or spacing_tolerance_mm) is regular",
            ),
            Param(
                "spacing_tolerance_mm",
                0.01,
                "mm",
                "a gap within this many mm of the mode is regular",
            ),
        ),
        requires=("qc_positions", "qc_series_geometry"),
        detects=("missing_slices",),
    )
)
