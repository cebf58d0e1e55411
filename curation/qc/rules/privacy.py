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

from curation.qc.rule import PRIVACY, Level, Param, Rule, Severity, register

#: Values that stand where a name or ID would and identify nobody (upper case): this rule's default
#: ignore_words, and words the de-identification's leak scanner never reports (curation.deid.scan).
PLACEHOLDER_WORDS = (
    "ANONYMOUS", "ANON", "PHANTOM", "TEST", "REMOVED", "DICOM", "PATIENT", "NONE", "UNKNOWN",
    "HEAD", "BRAIN", "CHEST", "QA", "MRI", "CT",
)  # fmt: skip

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

PHI_IN_HEADER = register(
    Rule(
        id="series.phi_in_header",
        level=Level.SERIES,
        severity=Severity.ERROR,
        title="identifier in a free-text element",
        description="A free-text element (description, comment, protocol name, any LO/LT/SH/ST/"
        "UT/UC) or a private element of the series holds its patient's ID, a word of its "
        "patient's name, the birth date (YYYYMMDD, YYYY-MM-DD, DD.MM.YYYY, MM/DD/YYYY), a labelled "
        "identifier (MRN, DOB, SSN) or a street address. One finding per series and element.",
        not_checked="Identifiers of other people (staff names are in PN elements, handled by "
        "de-identification); name words shorter than min_name_length or listed in "
        "ignore_words; IDs shorter than min_id_length; text in the pixels (see "
        "series.burned_in_annotation, series.secondary_capture).",
        query="""
            -- Archives repeat the same few texts on millions of slices: match each distinct text
            -- once against the cohort's identifiers, then go back to the elements that hold it.
            WITH distinct_text AS MATERIALIZED (
                SELECT value, upper(value) AS v
                FROM (SELECT DISTINCT value FROM elements
                      WHERE vr IN ('LO', 'LT', 'SH', 'ST', 'UT', 'UC') OR private_creator IS NOT NULL)
                WHERE length(value) >= 3
            ),
            text_tokens AS (
                SELECT value, v, unnest(string_split_regex(v, '[^A-Z0-9]+')) AS token
                FROM distinct_text
            ),
            people AS (
                SELECT DISTINCT upper(PatientID) AS pid, upper(PatientName) AS pname,
                    PatientBirthDate AS dob
                FROM instances
            ),
            vocabulary AS (
                -- an ID is looked up by its longest token, then confirmed as a whole substring
                SELECT DISTINCT 'the patient ID' AS what, pid AS needle,
                    list_reduce(string_split_regex(pid, '[^A-Z0-9]+'),
                                lambda a, b: CASE WHEN length(b) > length(a) THEN b ELSE a END)
                        AS token
                FROM people
                WHERE length(pid) >= $min_id_length AND NOT list_contains($ignore_words, pid)
                UNION ALL
                SELECT DISTINCT 'a word of the patient name', w, w
                FROM (SELECT unnest(string_split_regex(coalesce(pname, ''), '[^A-Z0-9]+')) AS w
                      FROM people)
                WHERE length(w) >= $min_name_length AND NOT list_contains($ignore_words, w)
                UNION ALL
                SELECT DISTINCT 'the birth date', d,
                    -- YYYYMMDD is a token of its own; the separated forms are found by their year
                    CASE WHEN contains(d, '-') OR contains(d, '.') OR contains(d, '/')
                         THEN strftime(dob, '%Y') ELSE d END
                FROM (SELECT dob, unnest([strftime(dob, '%Y%m%d'), strftime(dob, '%Y-%m-%d'),
                                          strftime(dob, '%d.%m.%Y'), strftime(dob, '%m/%d/%Y')]) AS d
                      FROM people WHERE dob IS NOT NULL)
            ),
            leaks AS (
                SELECT DISTINCT t.value, x.what, x.needle
                FROM text_tokens t JOIN vocabulary x ON t.token = x.token
                WHERE contains(t.v, x.needle)
                UNION ALL
                SELECT value,
                    CASE WHEN regexp_matches(v, '(^|[^A-Z])(MRN|DOB|SSN|D\\.O\\.B\\.)($|[^A-Z])')
                         THEN 'a labelled identifier (MRN/DOB/SSN)'
                         ELSE 'a street address' END,
                    NULL
                FROM distinct_text
                WHERE regexp_matches(v, '(^|[^A-Z])(MRN|DOB|SSN|D\\.O\\.B\\.)($|[^A-Z])')
                    OR regexp_matches(v, '\\d+\\s+[A-Z]+\\s+(STREET|ST\\.|ROAD|RD\\.|AVENUE|AVE\\.|STRASSE|STRAßE|LANE|DRIVE)')
            ),
            hits AS (
                SELECT i.PatientID, i.StudyInstanceUID, i.SeriesInstanceUID, l.what,
                    CASE WHEN e.private_creator IS NOT NULL
                         THEN e.private_creator || ' ' || e.private_element
                         ELSE coalesce(e.keyword, e.tag) END AS element
                FROM elements e
                JOIN leaks l ON e.value = l.value
                JOIN instances i ON i.file_id = e.file_id
                WHERE (e.vr IN ('LO', 'LT', 'SH', 'ST', 'UT', 'UC')
                       OR (e.private_creator IS NOT NULL AND e.vr NOT IN ('OB', 'OW', 'UN', 'SQ')))
                    AND NOT list_contains($skip_keywords, coalesce(e.keyword, ''))
                    -- the identifier found must be this instance's patient's own
                    AND CASE l.what
                        WHEN 'the patient ID' THEN l.needle = upper(i.PatientID)
                        WHEN 'a word of the patient name' THEN list_contains(
                            string_split_regex(upper(coalesce(i.PatientName, '')), '[^A-Z0-9]+'),
                            l.needle)
                        WHEN 'the birth date' THEN list_contains(
                            [strftime(i.PatientBirthDate, '%Y%m%d'),
                             strftime(i.PatientBirthDate, '%Y-%m-%d'),
                             strftime(i.PatientBirthDate, '%d.%m.%Y'),
                             strftime(i.PatientBirthDate, '%m/%d/%Y')], l.needle)
                        ELSE true END
            )
            SELECT any_value(PatientID), any_value(StudyInstanceUID), SeriesInstanceUID,
                NULL::VARCHAR, NULL::VARCHAR, element AS value,
                element || ' holds ' || min(what) || ' in ' || count(*) || ' instance(s)'
            FROM hits GROUP BY SeriesInstanceUID, element
        """,
        params=(
            Param("min_name_length", 3, "characters", "shorter name words are not searched"),
            Param("min_id_length", 4, "characters", "shorter patient IDs are not searched"),
            Param(
                "ignore_words",
                list(PLACEHOLDER_WORDS),
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
        tags=(PRIVACY,),
    )
)

BURNED_IN_ANNOTATION = register(
    Rule(
        id="series.burned_in_annotation",
        level=Level.SERIES,
        severity=Severity.ERROR,
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
        tags=(PRIVACY,),
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
        level=Level.SERIES,
        severity=Severity.WARNING,
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
        tags=(PRIVACY,),
    )
)
