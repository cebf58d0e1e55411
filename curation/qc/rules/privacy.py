"""Privacy: identifiers where de-identification does not look for them, and burned-in text.

A raw archive always holds PatientName and PatientID in their own elements; that is not a finding
(the de-identification step replaces them). These rules look for the same identifiers, and for
labelled identifiers (``MRN``, ``DOB``) and addresses, in free-text elements and private elements,
where a de-identification profile that only blanks the identity attributes leaves them behind; and
for images that may show text in their pixels.

Findings never repeat the identifier: ``value`` names the element, ``message`` names the kind of
identifier.
"""

from __future__ import annotations

from curation.qc.rule import Param, Rule, register

#: Elements whose job is to hold identifiers: de-identification handles them by name, so an
#: identifier found there is expected, not a leak.
IDENTITY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
    "AccessionNumber",
    "StudyID",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "DeviceSerialNumber",
)
#: Technical elements: vendor and sequence names, where a word that happens to be part of a name
#: (a test subject called after its protocol) is not an identifier.
TECHNICAL_KEYWORDS = (
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "SequenceName",
    "Pulse Sequence Name",
    "ImplementationVersionName",
    "CodeMeaning",
    "TextValue",
)

_TEXT_VRS = ("LO", "LT", "SH", "ST", "UT", "UC")

PHI_IN_HEADER = register(
    Rule(
        id="series.phi_in_header",
        level="series",
        severity="error",
        title="identifier in a free-text element",
        description="A free-text element (description, comment, protocol name, any LO/LT/SH/ST/"
        "UT/UC) or a private element of the series holds the patient's ID, a word of the patient's "
        "name, the birth date (YYYYMMDD, YYYY-MM-DD, DD.MM.YYYY, MM/DD/YYYY), a labelled "
        "identifier (MRN, DOB, SSN) or a street address. One finding per series and element.",
        not_checked="Identifiers of other people (staff names are in PN elements, handled by "
        "de-identification); name words shorter than min_name_length or listed in "
        "ignore_words; IDs shorter than min_id_length; text in the pixels (see "
        "series.burned_in_annotation, series.secondary_capture).",
        query="""
            WITH ident AS (
                SELECT file_id, PatientID, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID,
                    upper(PatientID) AS pid,
                    list_filter(
                        string_split_regex(upper(coalesce(PatientName, '')), '[^A-Z0-9]+'),
                        lambda t: length(t) >= $min_name_length AND NOT list_contains($ignore_words, t)
                    ) AS name_words,
                    [strftime(PatientBirthDate, '%Y%m%d'), strftime(PatientBirthDate, '%Y-%m-%d'),
                     strftime(PatientBirthDate, '%d.%m.%Y'), strftime(PatientBirthDate, '%m/%d/%Y')]
                        AS dob
                FROM instances
            ), text AS (
                SELECT e.file_id, coalesce(e.keyword, e.private_creator || ' ' || e.private_element,
                                           e.tag) AS element,
                    upper(e.value) AS v
                FROM elements e
                WHERE e.value IS NOT NULL AND length(e.value) >= 3
                    AND (e.vr IN ('LO', 'LT', 'SH', 'ST', 'UT', 'UC')
                         OR (e.private_creator IS NOT NULL AND e.vr NOT IN ('OB', 'OW', 'UN', 'SQ')))
                    AND coalesce(e.keyword, '') NOT IN (SELECT unnest($skip_keywords))
            ), hits AS (
                SELECT i.PatientID, i.StudyInstanceUID, i.SeriesInstanceUID, t.element,
                    CASE
                        WHEN length(i.pid) >= $min_id_length AND NOT list_contains($ignore_words, i.pid)
                            AND contains(t.v, i.pid) THEN 'the patient ID'
                        -- whole words only: split the text, intersect with the name's words
                        WHEN list_has_any(string_split_regex(t.v, '[^A-Z0-9]+'), i.name_words)
                            THEN 'a word of the patient name'
                        WHEN len(list_filter(i.dob, lambda d: contains(t.v, d))) > 0
                            THEN 'the birth date'
                        WHEN regexp_matches(t.v, '(^|[^A-Z])(MRN|DOB|SSN|D\\.O\\.B\\.)($|[^A-Z])')
                            THEN 'a labelled identifier (MRN/DOB/SSN)'
                        WHEN regexp_matches(t.v, '\\d+\\s+[A-Z]+\\s+(STREET|ST\\.|ROAD|RD\\.|AVENUE|AVE\\.|STRASSE|STRAßE|LANE|DRIVE)')
                            THEN 'a street address'
                    END AS what
                FROM text t JOIN ident i USING (file_id)
            )
            SELECT PatientID, StudyInstanceUID, SeriesInstanceUID, NULL::VARCHAR, NULL::VARCHAR,
                element AS value,
                element || ' holds ' || what || ' in ' || count(*) || ' instance(s)' AS message
            FROM hits WHERE what IS NOT NULL
            GROUP BY PatientID, StudyInstanceUID, SeriesInstanceUID, element, what
        """,
        params=(
            Param("min_name_length", 3, "characters", "shorter name words are not searched"),
            Param("min_id_length", 4, "characters", "shorter patient IDs are not searched"),
            Param(
                "ignore_words",
                ["ANONYMOUS", "ANON", "PHANTOM", "TEST", "REMOVED", "DICOM", "PATIENT", "NONE",
                 "UNKNOWN", "HEAD", "BRAIN", "CHEST", "QA", "MRI", "CT"],
                "",
                "name words and IDs that are placeholders, not identifiers (upper case)",
            ),
            Param(
                "skip_keywords",
                [*IDENTITY_KEYWORDS, *TECHNICAL_KEYWORDS],
                "",
                "elements not searched: identity elements (de-identification handles them by name) "
                "and technical names",
            ),
        ),
        requires=("instances", "elements"),
        detects=("phi_in_header",),
    )
)

BURNED_IN_ANNOTATION = register(
    Rule(
        id="series.burned_in_annotation",
        level="series",
        severity="error",
        title="BurnedInAnnotation YES",
        description="Instances declare BurnedInAnnotation (0028,0301) = YES: their pixels show "
        "text that identifies the patient, by the device's own account.",
        not_checked="Text in pixels of instances that do not declare it (a pixel-level check is "
        "the artifact step's job); instances with BurnedInAnnotation absent.",
        query="""
            SELECT any_value(PatientID), any_value(StudyInstanceUID), SeriesInstanceUID,
                NULL::VARCHAR, NULL::VARCHAR, count(*)::VARCHAR,
                count(*) || ' instance(s) declare burned-in annotation'
            FROM instances WHERE upper(trim(BurnedInAnnotation)) = 'YES'
            GROUP BY SeriesInstanceUID
        """,
        detects=("burned_in_annotation_flag",),
    )
)

#: SOP classes of secondary captures (PS3.4 B.5): screenshots, scanned documents, exports.
SECONDARY_CAPTURE_CLASSES = [
    "1.2.840.10008.5.1.4.1.1.7",
    "1.2.840.10008.5.1.4.1.1.7.1",
    "1.2.840.10008.5.1.4.1.1.7.2",
    "1.2.840.10008.5.1.4.1.1.7.3",
    "1.2.840.10008.5.1.4.1.1.7.4",
]

SECONDARY_CAPTURE = register(
    Rule(
        id="series.secondary_capture",
        level="series",
        severity="warning",
        title="secondary capture or screen save",
        description="A series of secondary captures (SOP class 1.2.840.10008.5.1.4.1.1.7.x) or "
        "screen saves (SCREEN SAVE in ImageType), not declared free of burned-in text "
        "(BurnedInAnnotation is not NO): dose reports, annotated key images and scanned "
        "documents usually show identifiers in their pixels.",
        not_checked="The pixels themselves; derived images stored under their modality's SOP "
        "class.",
        query="""
            SELECT any_value(PatientID), any_value(StudyInstanceUID), SeriesInstanceUID,
                NULL::VARCHAR, NULL::VARCHAR, any_value(SOPClassUID),
                count(*) || ' secondary capture / screen save instance(s) without '
                    || 'BurnedInAnnotation NO'
            FROM instances
            WHERE (list_contains($sop_classes, SOPClassUID)
                   OR coalesce(list_contains(ImageType, 'SCREEN SAVE'), false))
                AND coalesce(upper(trim(BurnedInAnnotation)), '') <> 'NO'
            GROUP BY SeriesInstanceUID
        """,
        params=(
            Param("sop_classes", SECONDARY_CAPTURE_CLASSES, "", "SOP classes treated as captures"),
        ),
    )
)
