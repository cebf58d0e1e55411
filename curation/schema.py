"""The catalog contract: every table and column of the DuckDB catalog, with a description.

This module is the single declaration of the catalog's shape. The DDL, the docs page
(``docs/catalog.md``, via :func:`render_markdown`) and the typed-column derivation are all generated
from it, and a test fails when a table or column lacks a description.

DICOM attributes keep their DICOM keyword as column name; computed columns are snake_case and carry
their unit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One column of a catalog table."""

    name: str
    sql_type: str
    description: str


@dataclass(frozen=True)
class Table:
    """One catalog table: what a row is, and its columns."""

    name: str
    row: str
    description: str
    columns: tuple[Column, ...]
    kind: str = "table"  # "table" or "view"

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def ddl(self) -> str:
        cols = ",\n    ".join(f'"{c.name}" {c.sql_type}' for c in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n    {cols}\n)"


@dataclass(frozen=True)
class InstanceAttribute:
    """A DICOM attribute lifted from ``elements`` into a typed ``instances`` column.

    ``kind`` says how the text value is typed in bulk by DuckDB: ``text``, ``int``, ``float``,
    ``float[N]`` (fixed-size DOUBLE array), ``text[]`` (VARCHAR list), ``date``, ``time``.
    ``functional_group`` names, for enhanced multi-frame objects, the shared functional group
    sequence (tag) that holds the attribute when it is absent at the top level.
    """

    keyword: str
    tag: int
    kind: str
    description: str
    functional_group: int | None = None

    @property
    def sql_type(self) -> str:
        return {
            "text": "VARCHAR",
            "int": "BIGINT",
            "float": "DOUBLE",
            "text[]": "VARCHAR[]",
            "date": "DATE",
            "time": "TIME",
        }.get(self.kind) or (
            f"DOUBLE[{self.kind[6:-1]}]" if self.kind.startswith("float[") else "VARCHAR"
        )


# Functional group macros of enhanced multi-frame objects (PS3.3 C.7.6.16).
PIXEL_MEASURES = 0x00289110
PLANE_POSITION = 0x00209113
PLANE_ORIENTATION = 0x00209116
FRAME_CONTENT = 0x00209111
PIXEL_VALUE_TRANSFORMATION = 0x00289145
MR_DIFFUSION = 0x00189117
CT_ACQUISITION_DETAILS = 0x00189304
SHARED_FUNCTIONAL_GROUPS = 0x52009229
PER_FRAME_FUNCTIONAL_GROUPS = 0x52009230

_A = InstanceAttribute
#: The DICOM attributes every instance row carries, typed. Order is column order.
INSTANCE_ATTRIBUTES: tuple[InstanceAttribute, ...] = (
    _A("SOPInstanceUID", 0x00080018, "text", "SOP Instance UID (0008,0018)"),
    _A("SOPClassUID", 0x00080016, "text", "SOP Class UID (0008,0016): what kind of object"),
    _A("SeriesInstanceUID", 0x0020000E, "text", "Series Instance UID (0020,000E)"),
    _A("StudyInstanceUID", 0x0020000D, "text", "Study Instance UID (0020,000D)"),
    _A("FrameOfReferenceUID", 0x00200052, "text", "Frame of Reference UID (0020,0052)"),
    _A("PatientID", 0x00100020, "text", "Patient ID (0010,0020): an identifier, keep inside"),
    _A("PatientName", 0x00100010, "text", "Patient's Name (0010,0010): an identifier"),
    _A("PatientBirthDate", 0x00100030, "date", "Patient's Birth Date (0010,0030)"),
    _A("PatientSex", 0x00100040, "text", "Patient's Sex (0010,0040): M, F or O"),
    _A("PatientAge", 0x00101010, "text", "Patient's Age (0010,1010), DICOM AS text such as 045Y"),
    _A("Modality", 0x00080060, "text", "Modality (0008,0060): CT, MR, SR, ..."),
    _A("Manufacturer", 0x00080070, "text", "Manufacturer (0008,0070) as written by the device"),
    _A("ManufacturerModelName", 0x00081090, "text", "Manufacturer's Model Name (0008,1090)"),
    _A(
        "SoftwareVersions", 0x00181020, "text", "Software Versions (0018,1020), values joined by \\"
    ),
    _A("DeviceSerialNumber", 0x00181000, "text", "Device Serial Number (0018,1000)"),
    _A("InstitutionName", 0x00080080, "text", "Institution Name (0008,0080): the site"),
    _A("StationName", 0x00081010, "text", "Station Name (0008,1010): the scanner's name"),
    _A("BodyPartExamined", 0x00180015, "text", "Body Part Examined (0018,0015)"),
    _A("StudyDate", 0x00080020, "date", "Study Date (0008,0020)"),
    _A("StudyTime", 0x00080030, "time", "Study Time (0008,0030)"),
    _A("SeriesDate", 0x00080021, "date", "Series Date (0008,0021)"),
    _A("SeriesTime", 0x00080031, "time", "Series Time (0008,0031)"),
    _A("AcquisitionDate", 0x00080022, "date", "Acquisition Date (0008,0022)"),
    _A("AcquisitionTime", 0x00080032, "time", "Acquisition Time (0008,0032)"),
    _A("ContentDate", 0x00080023, "date", "Content Date (0008,0023)"),
    _A("ContentTime", 0x00080033, "time", "Content Time (0008,0033)"),
    _A("AccessionNumber", 0x00080050, "text", "Accession Number (0008,0050): an identifier"),
    _A("StudyID", 0x00200010, "text", "Study ID (0020,0010)"),
    _A("StudyDescription", 0x00081030, "text", "Study Description (0008,1030)"),
    _A("SeriesDescription", 0x0008103E, "text", "Series Description (0008,103E)"),
    _A("ProtocolName", 0x00181030, "text", "Protocol Name (0018,1030)"),
    _A("SeriesNumber", 0x00200011, "int", "Series Number (0020,0011)"),
    _A("AcquisitionNumber", 0x00200012, "int", "Acquisition Number (0020,0012)"),
    _A("InstanceNumber", 0x00200013, "int", "Instance Number (0020,0013)"),
    _A(
        "ImageType",
        0x00080008,
        "text[]",
        "Image Type (0008,0008) values, e.g. [ORIGINAL, PRIMARY, AXIAL]",
    ),
    _A(
        "ImagePositionPatient",
        0x00200032,
        "float[3]",
        "Image Position (Patient) (0020,0032) in mm; multi-frame: see frames",
        PLANE_POSITION,
    ),
    _A(
        "ImageOrientationPatient",
        0x00200037,
        "float[6]",
        "Image Orientation (Patient) (0020,0037) direction cosines; multi-frame: shared group",
        PLANE_ORIENTATION,
    ),
    _A(
        "PixelSpacing",
        0x00280030,
        "float[2]",
        "Pixel Spacing (0028,0030) in mm, [row spacing, column spacing]",
        PIXEL_MEASURES,
    ),
    _A("SliceThickness", 0x00180050, "float", "Slice Thickness (0018,0050) in mm", PIXEL_MEASURES),
    _A(
        "SpacingBetweenSlices",
        0x00180088,
        "float",
        "Spacing Between Slices (0018,0088) in mm",
        PIXEL_MEASURES,
    ),
    _A("SliceLocation", 0x00201041, "float", "Slice Location (0020,1041) in mm"),
    _A("Rows", 0x00280010, "int", "Rows (0028,0010)"),
    _A("Columns", 0x00280011, "int", "Columns (0028,0011)"),
    _A("NumberOfFrames", 0x00280008, "int", "Number of Frames (0028,0008); NULL for single-frame"),
    _A("SamplesPerPixel", 0x00280002, "int", "Samples per Pixel (0028,0002)"),
    _A("PhotometricInterpretation", 0x00280004, "text", "Photometric Interpretation (0028,0004)"),
    _A("BitsAllocated", 0x00280100, "int", "Bits Allocated (0028,0100)"),
    _A("BitsStored", 0x00280101, "int", "Bits Stored (0028,0101)"),
    _A(
        "PixelRepresentation",
        0x00280103,
        "int",
        "Pixel Representation (0028,0103): 0 unsigned, 1 signed",
    ),
    _A(
        "RescaleSlope",
        0x00281053,
        "float",
        "Rescale Slope (0028,1053)",
        PIXEL_VALUE_TRANSFORMATION,
    ),
    _A(
        "RescaleIntercept",
        0x00281052,
        "float",
        "Rescale Intercept (0028,1052)",
        PIXEL_VALUE_TRANSFORMATION,
    ),
    _A("RescaleType", 0x00281054, "text", "Rescale Type (0028,1054), e.g. HU"),
    _A("WindowCenter", 0x00281050, "text", "Window Center (0028,1050), values joined by \\"),
    _A("WindowWidth", 0x00281051, "text", "Window Width (0028,1051), values joined by \\"),
    _A("BurnedInAnnotation", 0x00280301, "text", "Burned In Annotation (0028,0301): YES or NO"),
    _A(
        "LossyImageCompression", 0x00282110, "text", "Lossy Image Compression (0028,2110): 00 or 01"
    ),
    _A("PatientPosition", 0x00185100, "text", "Patient Position (0018,5100), e.g. HFS"),
    _A(
        "KVP",
        0x00180060,
        "float",
        "KVP (0018,0060): peak kilovoltage of the X-ray tube",
        CT_ACQUISITION_DETAILS,
    ),
    _A("XRayTubeCurrent", 0x00181151, "float", "X-Ray Tube Current (0018,1151) in mA"),
    _A("Exposure", 0x00181152, "float", "Exposure (0018,1152) in mAs"),
    _A(
        "ConvolutionKernel",
        0x00181210,
        "text",
        "Convolution Kernel (0018,1210), values joined by \\",
    ),
    _A(
        "GantryDetectorTilt",
        0x00181120,
        "float",
        "Gantry/Detector Tilt (0018,1120) in degrees",
        CT_ACQUISITION_DETAILS,
    ),
    _A("ContrastBolusAgent", 0x00180010, "text", "Contrast/Bolus Agent (0018,0010)"),
    _A("MagneticFieldStrength", 0x00180087, "float", "Magnetic Field Strength (0018,0087) in T"),
    _A("RepetitionTime", 0x00180080, "float", "Repetition Time (0018,0080) in ms"),
    _A("EchoTime", 0x00180081, "float", "Echo Time (0018,0081) in ms"),
    _A("InversionTime", 0x00180082, "float", "Inversion Time (0018,0082) in ms"),
    _A("FlipAngle", 0x00181314, "float", "Flip Angle (0018,1314) in degrees"),
    _A("EchoTrainLength", 0x00180091, "int", "Echo Train Length (0018,0091)"),
    _A(
        "ScanningSequence", 0x00180020, "text", "Scanning Sequence (0018,0020), values joined by \\"
    ),
    _A("SequenceVariant", 0x00180021, "text", "Sequence Variant (0018,0021), values joined by \\"),
    _A("SequenceName", 0x00180024, "text", "Sequence Name (0018,0024)"),
    _A("MRAcquisitionType", 0x00180023, "text", "MR Acquisition Type (0018,0023): 2D or 3D"),
    _A("ImagingFrequency", 0x00180084, "float", "Imaging Frequency (0018,0084) in MHz"),
    _A("PixelBandwidth", 0x00180095, "float", "Pixel Bandwidth (0018,0095) in Hz/pixel"),
    _A(
        "InPlanePhaseEncodingDirection",
        0x00181312,
        "text",
        "In-plane Phase Encoding Direction (0018,1312): ROW or COL",
    ),
    _A("ReceiveCoilName", 0x00181250, "text", "Receive Coil Name (0018,1250)"),
    _A(
        "DiffusionBValue",
        0x00189087,
        "float",
        "Diffusion b-value (0018,9087) in s/mm2, where public",
        MR_DIFFUSION,
    ),
    _A("ImageComments", 0x00204000, "text", "Image Comments (0020,4000): free text"),
    _A("SpecificCharacterSet", 0x00080005, "text", "Specific Character Set (0008,0005)"),
)
del _A

INSTANCE_TAGS: dict[int, InstanceAttribute] = {a.tag: a for a in INSTANCE_ATTRIBUTES}


def _c(name: str, sql_type: str, description: str) -> Column:
    return Column(name, sql_type, description)


CRAWLS = Table(
    "crawls",
    "crawl run",
    "One row per crawl: what was crawled, when, and what came of it.",
    (
        _c("crawl_id", "INTEGER", "Sequential id of the crawl, 1 for the first"),
        _c("started_at", "TIMESTAMP", "Local time the crawl started"),
        _c("finished_at", "TIMESTAMP", "Local time the crawl finished; NULL if it was interrupted"),
        _c("roots", "VARCHAR[]", "The paths given to the crawl, absolute"),
        _c("curation_version", "VARCHAR", "Version of curation that ran the crawl"),
        _c("workers", "INTEGER", "Worker processes used for reading"),
        _c("n_seen", "BIGINT", "Files found under the roots"),
        _c("n_read", "BIGINT", "Files read because they were new or changed"),
        _c("n_unchanged", "BIGINT", "Files skipped because size and mtime were unchanged"),
        _c("n_removed", "BIGINT", "Files dropped from the catalog because they disappeared"),
        _c("n_errors", "BIGINT", "Files read by this crawl that landed in crawl_errors"),
        _c("seconds", "DOUBLE", "Wall-clock duration in seconds"),
    ),
)

FILES = Table(
    "files",
    "file seen by a crawl",
    "Every file found under the crawled roots, with the outcome of reading it.",
    (
        _c("file_id", "UBIGINT", "Stable id of the file: a 64-bit hash of its path"),
        _c("path", "VARCHAR", "Absolute path of the file"),
        _c("size", "BIGINT", "File size in bytes at crawl time"),
        _c("mtime_ns", "BIGINT", "Modification time in nanoseconds since the epoch at crawl time"),
        _c(
            "status",
            "VARCHAR",
            "ok (cataloged), error (see crawl_errors) or skipped (not an instance)",
        ),
        _c("reason", "VARCHAR", "For error/skipped: the stable reason code (as in crawl_errors)"),
        _c("SOPInstanceUID", "VARCHAR", "SOP Instance UID of the file's dataset, when read"),
        _c("reader", "VARCHAR", "Which reader produced the rows: fast (curation's) or pydicom"),
        _c("gzip", "BOOLEAN", "True when the file is gzip-wrapped DICOM"),
        _c("crawl_id", "INTEGER", "Crawl that last read this file"),
    ),
)

INSTANCES = Table(
    "instances",
    "SOP instance (one row per cataloged file)",
    "Typed DICOM attributes of every cataloged instance, derived in bulk from elements. "
    "A SOP Instance UID found in two files yields two rows (see the qc rule on duplicates).",
    (
        _c("file_id", "UBIGINT", "The file this instance was read from (files.file_id)"),
        *(Column(a.keyword, a.sql_type, a.description) for a in INSTANCE_ATTRIBUTES),
        _c("TransferSyntaxUID", "VARCHAR", "Transfer Syntax UID (0002,0010) from the file meta"),
        _c("n_elements", "BIGINT", "Number of element rows this instance has in elements"),
        _c("path", "VARCHAR", "Absolute path of the file"),
        _c("crawl_id", "INTEGER", "Crawl that read this instance"),
    ),
)

FRAMES = Table(
    "frames",
    "frame of an enhanced multi-frame instance",
    "Per-frame geometry of enhanced multi-frame objects, from the per-frame functional groups "
    "(5200,9230), falling back to the shared functional groups (5200,9229).",
    (
        _c("file_id", "UBIGINT", "The file of the instance (files.file_id)"),
        _c("SOPInstanceUID", "VARCHAR", "The multi-frame instance"),
        _c("frame_index", "INTEGER", "0-based index of the frame in the pixel data"),
        _c(
            "ImagePositionPatient",
            "DOUBLE[3]",
            "Plane Position (0020,9113) > Image Position (Patient), mm",
        ),
        _c(
            "ImageOrientationPatient",
            "DOUBLE[6]",
            "Plane Orientation (0020,9116) > Image Orientation (Patient)",
        ),
        _c("PixelSpacing", "DOUBLE[2]", "Pixel Measures (0028,9110) > Pixel Spacing, mm"),
        _c("SliceThickness", "DOUBLE", "Pixel Measures (0028,9110) > Slice Thickness, mm"),
        _c(
            "SpacingBetweenSlices",
            "DOUBLE",
            "Pixel Measures (0028,9110) > Spacing Between Slices, mm",
        ),
        _c("StackID", "VARCHAR", "Frame Content (0020,9111) > Stack ID"),
        _c(
            "InStackPositionNumber",
            "BIGINT",
            "Frame Content (0020,9111) > In-Stack Position Number",
        ),
        _c(
            "TemporalPositionIndex", "BIGINT", "Frame Content (0020,9111) > Temporal Position Index"
        ),
        _c(
            "DimensionIndexValues",
            "VARCHAR",
            "Frame Content (0020,9111) > Dimension Index Values, joined by \\",
        ),
        _c("RescaleSlope", "DOUBLE", "Pixel Value Transformation (0028,9145) > Rescale Slope"),
        _c(
            "RescaleIntercept",
            "DOUBLE",
            "Pixel Value Transformation (0028,9145) > Rescale Intercept",
        ),
        _c("DiffusionBValue", "DOUBLE", "MR Diffusion (0018,9117) > Diffusion b-value, s/mm2"),
    ),
)

ELEMENTS = Table(
    "elements",
    "data element of an instance (public, private, nested)",
    "Every data element of every cataloged instance, including private and nested ones, as text. "
    "Pixel data is never read: its row has a NULL value and its length.",
    (
        _c("file_id", "UBIGINT", "The file of the instance (files.file_id)"),
        _c("SOPInstanceUID", "VARCHAR", "The instance the element belongs to"),
        _c("tag", "VARCHAR", "Tag as 8 upper-case hex digits 'GGGGEEEE', as in the file"),
        _c(
            "seq_path",
            "VARCHAR",
            "Where in nested sequences: 'GGGGEEEE[i]/...' of the enclosing items; '' at top level",
        ),
        _c(
            "private_creator",
            "VARCHAR",
            "Private creator of a private element (e.g. GEMS_PARM_01); NULL for public",
        ),
        _c(
            "private_element",
            "VARCHAR",
            "A private element's creator-relative tag 'GGGGxxEE' (e.g. 0043xx39), stable across files",
        ),
        _c(
            "vr",
            "VARCHAR",
            "Value representation (explicit, or from the dictionaries for implicit VR)",
        ),
        _c(
            "keyword",
            "VARCHAR",
            "DICOM keyword, or the private dictionary's name; NULL when unknown",
        ),
        _c(
            "value",
            "VARCHAR",
            "Value as text, multiple values joined by \\; NULL for binary VRs and sequences",
        ),
        _c(
            "value_length",
            "BIGINT",
            "Length of the value in bytes as encoded; NULL for undefined length",
        ),
        _c("n_items", "INTEGER", "For sequences (SQ): number of items; NULL otherwise"),
    ),
)

CRAWL_ERRORS = Table(
    "crawl_errors",
    "problem met while reading a file",
    "Files that could not be read, or were read with a caveat (cataloged = true).",
    (
        _c("file_id", "UBIGINT", "The file (files.file_id)"),
        _c("path", "VARCHAR", "Absolute path of the file"),
        _c(
            "reason",
            "VARCHAR",
            "Stable reason code: zero_byte, not_dicom, truncated, permission_denied, ...",
        ),
        _c("message", "VARCHAR", "What exactly was wrong, naming the offset or tag where known"),
        _c("cataloged", "BOOLEAN", "True when the file's header still made it into the catalog"),
        _c("crawl_id", "INTEGER", "Crawl that met the problem"),
    ),
)


def _agg_columns(level: str) -> tuple[Column, ...]:
    return (_c("n_instances", "BIGINT", f"Number of instances in the {level}"),)


SERIES = Table(
    "series",
    "series",
    "One row per SeriesInstanceUID: counts, and each instance attribute that is constant across the "
    "series (NULL where members differ; see n_distinct_* columns for the ones that matter).",
    (
        _c("SeriesInstanceUID", "VARCHAR", "Series Instance UID"),
        _c(
            "StudyInstanceUID",
            "VARCHAR",
            "Study of the series (the most common, if members differ)",
        ),
        _c("PatientID", "VARCHAR", "Patient of the series (the most common, if members differ)"),
        _c("Modality", "VARCHAR", "Modality, if constant"),
        _c("Manufacturer", "VARCHAR", "Manufacturer, if constant"),
        _c("ManufacturerModelName", "VARCHAR", "Model name, if constant"),
        _c("SoftwareVersions", "VARCHAR", "Software versions, if constant"),
        _c("InstitutionName", "VARCHAR", "Institution (site), if constant"),
        _c("StationName", "VARCHAR", "Station name, if constant"),
        _c("BodyPartExamined", "VARCHAR", "Body part, if constant"),
        _c("SeriesDescription", "VARCHAR", "Series description, if constant"),
        _c("ProtocolName", "VARCHAR", "Protocol name, if constant"),
        _c("SeriesNumber", "BIGINT", "Series number, if constant"),
        _c("SeriesDate", "DATE", "Series date, if constant"),
        _c("SOPClassUID", "VARCHAR", "SOP class, if constant"),
        _c("FrameOfReferenceUID", "VARCHAR", "Frame of reference, if constant"),
        _c("ImageOrientationPatient", "DOUBLE[6]", "Orientation, if constant"),
        _c("PixelSpacing", "DOUBLE[2]", "Pixel spacing, if constant"),
        _c("SliceThickness", "DOUBLE", "Slice thickness in mm, if constant"),
        _c("Rows", "BIGINT", "Rows, if constant"),
        _c("Columns", "BIGINT", "Columns, if constant"),
        _c("ConvolutionKernel", "VARCHAR", "Kernel, if constant"),
        _c("KVP", "DOUBLE", "kVp, if constant"),
        _c("MagneticFieldStrength", "DOUBLE", "Field strength in T, if constant"),
        _c("RepetitionTime", "DOUBLE", "TR in ms, if constant"),
        _c("EchoTime", "DOUBLE", "TE in ms, if constant"),
        _c("ContrastBolusAgent", "VARCHAR", "Contrast agent, if constant"),
        _c("TransferSyntaxUID", "VARCHAR", "Transfer syntax, if constant"),
        _c("n_instances", "BIGINT", "Number of instance rows (files) in the series"),
        _c(
            "n_frames", "BIGINT", "Total frames: NumberOfFrames summed, 1 per single-frame instance"
        ),
        _c(
            "n_distinct_sop",
            "BIGINT",
            "Distinct SOP Instance UIDs (less than n_instances when files repeat an instance)",
        ),
        _c("n_distinct_orientation", "BIGINT", "Distinct ImageOrientationPatient values"),
        _c("n_distinct_pixel_spacing", "BIGINT", "Distinct PixelSpacing values"),
        _c("n_distinct_matrix", "BIGINT", "Distinct Rows x Columns"),
        _c("min_instance_number", "BIGINT", "Smallest InstanceNumber"),
        _c("max_instance_number", "BIGINT", "Largest InstanceNumber"),
        _c("total_bytes", "BIGINT", "Sum of file sizes in bytes"),
    ),
)

STUDIES = Table(
    "studies",
    "study",
    "One row per StudyInstanceUID: counts and the attributes constant across the study.",
    (
        _c("StudyInstanceUID", "VARCHAR", "Study Instance UID"),
        _c("PatientID", "VARCHAR", "Patient of the study (the most common, if members differ)"),
        _c("StudyDate", "DATE", "Study date, if constant"),
        _c("StudyDescription", "VARCHAR", "Study description, if constant"),
        _c("AccessionNumber", "VARCHAR", "Accession number, if constant"),
        _c("InstitutionName", "VARCHAR", "Institution (site), if constant"),
        _c("modalities", "VARCHAR[]", "Distinct modalities in the study, sorted"),
        _c("n_series", "BIGINT", "Number of series"),
        _c("n_instances", "BIGINT", "Number of instance rows"),
    ),
)

PATIENTS = Table(
    "patients",
    "patient",
    "One row per PatientID: counts and demographics constant across the patient's instances.",
    (
        _c("PatientID", "VARCHAR", "Patient ID (an identifier: stays inside the catalog)"),
        _c("PatientSex", "VARCHAR", "Sex, if constant"),
        _c("PatientBirthDate", "DATE", "Birth date, if constant"),
        _c("n_studies", "BIGINT", "Number of studies"),
        _c("n_series", "BIGINT", "Number of series"),
        _c("n_instances", "BIGINT", "Number of instance rows"),
    ),
)

DICOM_DICTIONARY = Table(
    "dicom_dictionary",
    "public or private dictionary entry",
    "pydicom's public and private data dictionaries, used to name elements (keyword, VR).",
    (
        _c("tag", "VARCHAR", "'GGGGEEEE' for public entries; 'GGGGxxEE' for private ones"),
        _c("private_creator", "VARCHAR", "Private creator for private entries; NULL for public"),
        _c("keyword", "VARCHAR", "Keyword (public) or name (private)"),
        _c("vr", "VARCHAR", "VR from the dictionary"),
        _c("vm", "VARCHAR", "Value multiplicity from the dictionary"),
        _c("retired", "BOOLEAN", "True when the standard retired the attribute"),
    ),
)

CATALOG_TABLES: tuple[Table, ...] = (
    CRAWLS,
    FILES,
    INSTANCES,
    FRAMES,
    ELEMENTS,
    CRAWL_ERRORS,
    SERIES,
    STUDIES,
    PATIENTS,
    DICOM_DICTIONARY,
)

#: Every table known to curation, by name; later steps (qc, cohort, ...) register theirs here.
TABLES: dict[str, Table] = {t.name: t for t in CATALOG_TABLES}


def register(table: Table) -> Table:
    """Add a table of another step to :data:`TABLES` (rejects a second table of the same name)."""
    if table.name in TABLES and TABLES[table.name] != table:
        raise ValueError(f"table {table.name!r} is declared twice")
    TABLES[table.name] = table
    return table


def all_tables() -> dict[str, Table]:
    """Every table of every step: imports curation's modules so that each registers its tables."""
    import importlib
    import pkgutil

    import curation

    for info in pkgutil.walk_packages(curation.__path__, "curation."):
        if ".cli." not in info.name and not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    return TABLES


def render_markdown(tables: list[Table] | None = None) -> str:
    """The catalog contract as a Markdown page (``docs/catalog.md``)."""
    out = [
        "# Catalog tables",
        "",
        "Generated from `curation/schema.py` by `python -m curation.schema > docs/catalog.md`; "
        "a test keeps it in sync.",
        "",
    ]
    if tables is None:
        # The crawl's tables first, in their order; then the other steps' tables by name, so the
        # page does not depend on import order.
        registered = all_tables()
        own = [t.name for t in CATALOG_TABLES]
        tables = [registered[n] for n in own] + [
            registered[n] for n in sorted(set(registered) - set(own))
        ]
    for t in tables:
        out += [f"## `{t.name}`", "", f"One row per {t.row}. {t.description}", ""]
        out += ["| column | type | description |", "|---|---|---|"]
        out += [f"| `{c.name}` | {c.sql_type} | {c.description} |" for c in t.columns]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    # Run as a script this module is a second copy of itself (__main__); the other steps register
    # their tables in curation.schema, so render from that one.
    from curation.schema import render_markdown as _render

    print(_render(), end="")
