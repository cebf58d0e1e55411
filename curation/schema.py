"""The catalog contract: every table and column of the DuckDB catalog, with a description.

This module is the single declaration of the catalog's shape. The DDL, the docs page
(``docs/catalog.md``, via :func:`render_markdown`) and the typed-column derivation are all generated
from it, and a test fails when a table or column lacks a description.

DICOM attributes keep their DICOM keyword as column name; computed columns are snake_case and carry
their unit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("curation.schema")


@dataclass(frozen=True)
class Column:
    """One column of a catalog table."""

    name: str
    sql_type: str
    description: str


def col(name: str, sql_type: str, description: str) -> Column:
    """Declare a column: the short form every table declaration uses."""
    return Column(name, sql_type, description)


@dataclass(frozen=True)
class Table:
    """One catalog table: what a row is, its columns, and (for a derived table) its ``select``.

    The table owns its SQL: :meth:`ensure` creates it, :meth:`rebuild` replaces its rows with those
    of ``select``: a query whose output columns carry the table's column names, or a function of the
    connection returning one (built when needed: from other declarations, or from which tables the
    catalog has). A ``temporary`` table is derived state of one connection (``CREATE TEMP``): never
    written to the catalog file, and buildable on a read-only connection. A table with a ``view``
    is a SQL view over other tables (its columns declare what the view's query returns): it holds
    no rows of its own and is never written to.
    """

    name: str
    row: str
    description: str
    columns: tuple[Column, ...]
    select: str | Callable[[duckdb.DuckDBPyConnection], str] | None = field(
        default=None, repr=False, compare=False
    )
    temporary: bool = False
    view: str | None = field(default=None, repr=False, compare=False)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def ddl(self, *, replace: bool = False) -> str:
        """``CREATE TABLE IF NOT EXISTS`` (``replace``: ``CREATE OR REPLACE``) with the columns.

        For a view, ``CREATE VIEW`` (``IF NOT EXISTS`` or ``OR REPLACE``) of its query.
        """
        if self.view is not None:
            head = "CREATE OR REPLACE VIEW" if replace else "CREATE VIEW IF NOT EXISTS"
            return f"{head} {self.name} AS {self.view}"
        cols = ",\n    ".join(f'"{c.name}" {c.sql_type}' for c in self.columns)
        head = "CREATE OR REPLACE" if replace else "CREATE"
        temp = " TEMP" if self.temporary else ""
        tail = "" if replace else " IF NOT EXISTS"
        return f"{head}{temp} TABLE{tail} {self.name} (\n    {cols}\n)"

    def ensure(self, con: duckdb.DuckDBPyConnection, *, drop_stale: bool = False) -> None:
        """Create the table if it does not exist.

        ``drop_stale``: for derived data a step can always recompute, a table whose columns are
        not the declared ones (written by another curation version) is dropped and created anew
        rather than migrated.
        """
        if drop_stale:
            have = [
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = $t "
                    "ORDER BY ordinal_position",
                    {"t": self.name},
                ).fetchall()
            ]
            if have and have != self.column_names:
                log.warning(
                    "%s has other columns than this version writes: recreating it", self.name
                )
                con.execute(f"DROP TABLE {self.name}")
        con.execute(self.ddl())

    def rebuild(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create the table anew and fill it from its declared ``select`` (columns taken by name).

        Runs in the caller's transaction, if any.
        """
        if self.select is None:
            raise ValueError(f"table {self.name!r} declares no select to rebuild it from")
        sql = self.select(con) if callable(self.select) else self.select
        cols = ", ".join(f'"{c}"' for c in self.column_names)
        con.execute(self.ddl(replace=True))
        con.execute(f"INSERT INTO {self.name} ({cols}) SELECT {cols} FROM ({sql})")


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


CRAWLS = Table(
    "crawls",
    "crawl run",
    "One row per crawl: what was crawled, when, and what came of it.",
    (
        col("crawl_id", "INTEGER", "Sequential id of the crawl, 1 for the first"),
        col("started_at", "TIMESTAMP", "Local time the crawl started"),
        col(
            "finished_at", "TIMESTAMP", "Local time the crawl finished; NULL if it was interrupted"
        ),
        col("roots", "VARCHAR[]", "The paths given to the crawl, absolute"),
        col("curation_version", "VARCHAR", "Version of curation that ran the crawl"),
        col("workers", "INTEGER", "Worker processes used for reading"),
        col("n_seen", "BIGINT", "Files found under the roots"),
        col("n_read", "BIGINT", "Files read because they were new or changed"),
        col("n_unchanged", "BIGINT", "Files skipped because size and mtime were unchanged"),
        col("n_removed", "BIGINT", "Files dropped from the catalog because they disappeared"),
        col("n_errors", "BIGINT", "Files read by this crawl that landed in crawl_errors"),
        col("seconds", "DOUBLE", "Wall-clock duration in seconds"),
    ),
)

FILES = Table(
    "files",
    "file seen by a crawl",
    "Every file found under the crawled roots, with the outcome of reading it.",
    (
        col("file_id", "UBIGINT", "Stable id of the file: a 64-bit hash of its path's bytes"),
        col(
            "path",
            "VARCHAR",
            "Absolute path of the file: its crawl root with symlinks resolved (as Path.resolve() gives it), then the names walked below it; bytes that are not UTF-8 shown as \\xNN",
        ),
        col(
            "path_bytes",
            "BLOB",
            "The path's bytes when they are not valid UTF-8 (its exact name), else NULL",
        ),
        col("size", "BIGINT", "File size in bytes at crawl time"),
        col("mtime_ns", "BIGINT", "Modification time in nanoseconds since the epoch at crawl time"),
        col(
            "status",
            "VARCHAR",
            "ok (cataloged), error (see crawl_errors) or skipped (not an instance)",
        ),
        col("reason", "VARCHAR", "For error/skipped: the stable reason code (as in crawl_errors)"),
        col("SOPInstanceUID", "VARCHAR", "SOP Instance UID of the file's dataset, when read"),
        col("reader", "VARCHAR", "Which reader produced the rows: fast (curation's) or pydicom"),
        col("gzip", "BOOLEAN", "True when the file is gzip-wrapped DICOM"),
        col("crawl_id", "INTEGER", "Crawl that last read this file"),
    ),
)

INSTANCES = Table(
    "instances",
    "SOP instance (one row per cataloged file)",
    "Typed DICOM attributes of every cataloged instance, derived in bulk from elements. "
    "A SOP Instance UID found in two files yields two rows (see the qc rule on duplicates).",
    (
        col("file_id", "UBIGINT", "The file this instance was read from (files.file_id)"),
        *(Column(a.keyword, a.sql_type, a.description) for a in INSTANCE_ATTRIBUTES),
        col("TransferSyntaxUID", "VARCHAR", "Transfer Syntax UID (0002,0010) from the file meta"),
        col("n_elements", "BIGINT", "Number of element rows this instance has in elements"),
        col("path", "VARCHAR", "Absolute path of the file (as files.path)"),
        col(
            "path_bytes",
            "BLOB",
            "The path's bytes when they are not valid UTF-8 (as files.path_bytes: open the file "
            "by these), else NULL",
        ),
        col("crawl_id", "INTEGER", "Crawl that read this instance"),
    ),
)

FRAMES = Table(
    "frames",
    "frame of an enhanced multi-frame instance",
    "Per-frame geometry of enhanced multi-frame objects, from the per-frame functional groups "
    "(5200,9230), falling back to the shared functional groups (5200,9229).",
    (
        col("file_id", "UBIGINT", "The file of the instance (files.file_id)"),
        col("SOPInstanceUID", "VARCHAR", "The multi-frame instance"),
        col("frame_index", "INTEGER", "0-based index of the frame in the pixel data"),
        col(
            "ImagePositionPatient",
            "DOUBLE[3]",
            "Plane Position (0020,9113) > Image Position (Patient), mm",
        ),
        col(
            "ImageOrientationPatient",
            "DOUBLE[6]",
            "Plane Orientation (0020,9116) > Image Orientation (Patient)",
        ),
        col("PixelSpacing", "DOUBLE[2]", "Pixel Measures (0028,9110) > Pixel Spacing, mm"),
        col("SliceThickness", "DOUBLE", "Pixel Measures (0028,9110) > Slice Thickness, mm"),
        col(
            "SpacingBetweenSlices",
            "DOUBLE",
            "Pixel Measures (0028,9110) > Spacing Between Slices, mm",
        ),
        col("StackID", "VARCHAR", "Frame Content (0020,9111) > Stack ID"),
        col(
            "InStackPositionNumber",
            "BIGINT",
            "Frame Content (0020,9111) > In-Stack Position Number",
        ),
        col(
            "TemporalPositionIndex", "BIGINT", "Frame Content (0020,9111) > Temporal Position Index"
        ),
        col(
            "DimensionIndexValues",
            "VARCHAR",
            "Frame Content (0020,9111) > Dimension Index Values, joined by \\",
        ),
        col("RescaleSlope", "DOUBLE", "Pixel Value Transformation (0028,9145) > Rescale Slope"),
        col(
            "RescaleIntercept",
            "DOUBLE",
            "Pixel Value Transformation (0028,9145) > Rescale Intercept",
        ),
        col("DiffusionBValue", "DOUBLE", "MR Diffusion (0018,9117) > Diffusion b-value, s/mm2"),
    ),
)

_TAG = col("tag", "VARCHAR", "Tag as 8 upper-case hex digits 'GGGGEEEE', as in the file")
_SEQ_PATH = col(
    "seq_path",
    "VARCHAR",
    "Where in nested sequences: 'GGGGEEEE[i]/...' of the enclosing items; '' at top level",
)
_PRIVATE_CREATOR = col(
    "private_creator",
    "VARCHAR",
    "Private creator of a private element (e.g. GEMS_PARM_01); NULL for public",
)
_PRIVATE_ELEMENT = col(
    "private_element",
    "VARCHAR",
    "A private element's creator-relative tag 'GGGGxxEE' (e.g. 0043xx39), stable across files",
)
_VR = col(
    "vr", "VARCHAR", "Value representation (explicit, or from the dictionaries for implicit VR)"
)
_KEYWORD = col(
    "keyword", "VARCHAR", "DICOM keyword, or the private dictionary's name; NULL when unknown"
)
_VALUES = (
    col(
        "value",
        "VARCHAR",
        "Value as text, multiple values joined by \\; NULL for binary VRs and sequences",
    ),
    col(
        "value_length",
        "BIGINT",
        "Length of the value in bytes as encoded; NULL for undefined length",
    ),
    col("n_items", "INTEGER", "For sequences (SQ): number of items; NULL otherwise"),
)
_NAME_ID = col("name_id", "UINTEGER", "The element's tag, creator and VR (element_names.name_id)")
_FILE_ID = col("file_id", "UBIGINT", "The file of the instance (files.file_id)")


def elements_select(values: str, names: str, name_key: tuple[str, str], instances: str) -> str:
    """The ``elements`` columns from stored rows, their names and their instances.

    ``name_key`` pairs the rows' column naming their name with the names' column it matches. The
    catalog's view reads ``element_values``; a cluster crawl's task reads its staged batch the
    same way to write ``elements`` parts whole.
    """
    row_key, names_key = name_key
    return f"""SELECT v.file_id, i.SOPInstanceUID, n.tag, v.seq_path, n.private_creator,
        n.private_element, n.vr, n.keyword, v.value, v.value_length, v.n_items
    FROM {values} v
    JOIN {names} n ON n.{names_key} = v.{row_key}
    JOIN {instances} i ON i.file_id = v.file_id"""


# Why elements is a view over two tables: DuckDB's append costs about the same per row for each
# column, and six of the eleven columns are functions of the file (SOPInstanceUID) or of the tag,
# private creator and VR (tag text, private_element, keyword, and those two). Storing them once
# per file and once per distinct (tag, creator, VR) left six columns per element, and cut DuckDB's
# append of dense MR headers to ~0.4x (benchmarks/crawl_speed.py, docs/reader.md "The writer");
# queries that filter (by tag, keyword, private element, instance) take about the time they took
# on a table, scans of every row several times it.
ELEMENT_VALUES = Table(
    "element_values",
    "data element of an instance, as stored (read it through the view elements)",
    "The per-element columns of elements: one row per data element of a cataloged instance. "
    "Query elements, which adds the instance's UID and the element's tag, creator, VR and names.",
    (
        _FILE_ID,
        _NAME_ID,
        _SEQ_PATH,
        *_VALUES,
    ),
)

ELEMENT_NAMES = Table(
    "element_names",
    "distinct (tag, private creator, VR) of element_values",
    "Each distinct tag, private creator and VR of the cataloged elements once, with the names "
    "elements shows; written by the crawl before the element rows that use it.",
    (
        col("name_id", "UINTEGER", "Number of this (tag, private creator, VR), 1, 2, ..."),
        col("tag_int", "UINTEGER", "Tag as a number (group << 16 | element)"),
        _PRIVATE_CREATOR,
        _VR,
        _TAG,
        _PRIVATE_ELEMENT,
        _KEYWORD,
    ),
)

ELEMENTS = Table(
    "elements",
    "data element of an instance (public, private, nested)",
    "Every data element of every cataloged instance, including private and nested ones, as text. "
    "Pixel data is never read: its row has a NULL value and its length. A view: element_values "
    "joined with its instance (SOPInstanceUID) and its names (element_names).",
    (
        _FILE_ID,
        col("SOPInstanceUID", "VARCHAR", "The instance the element belongs to"),
        _TAG,
        _SEQ_PATH,
        _PRIVATE_CREATOR,
        _PRIVATE_ELEMENT,
        _VR,
        _KEYWORD,
        *_VALUES,
    ),
    view=elements_select("element_values", "element_names", ("name_id", "name_id"), "instances"),
)

CRAWL_ERRORS = Table(
    "crawl_errors",
    "problem met while reading a file",
    "Files that could not be read, or were read with a caveat (cataloged = true).",
    (
        col("file_id", "UBIGINT", "The file (files.file_id)"),
        col("path", "VARCHAR", "Absolute path of the file (as files.path)"),
        col(
            "reason",
            "VARCHAR",
            "Stable reason code: zero_byte, not_dicom, truncated, permission_denied, ...",
        ),
        col("message", "VARCHAR", "What exactly was wrong, naming the offset or tag where known"),
        col("cataloged", "BOOLEAN", "True when the file's header still made it into the catalog"),
        col("crawl_id", "INTEGER", "Crawl that met the problem"),
    ),
)


CRAWL_TASKS = Table(
    "crawl_tasks",
    "task of a crawl on a Dask cluster, committed",
    "One row per task of a `crawl --engine dask` whose rows are in the catalog: the files it read "
    "and the Parquet parts it wrote (docs/scale.md describes the layout). Only in catalogs "
    "crawled on a cluster.",
    (
        col("crawl_id", "INTEGER", "The crawl (crawls.crawl_id)"),
        col("task", "INTEGER", "Number of the task within its crawl, from 0"),
        col("n_files", "BIGINT", "Files the task read"),
        col("n_instances", "BIGINT", "Rows it wrote to instances (its instances part)"),
        col("n_elements", "BIGINT", "Rows it wrote to elements"),
        col("n_frames", "BIGINT", "Rows it wrote to frames"),
        col("seconds", "DOUBLE", "Time the task took on its worker, reading and writing"),
        col("worker", "VARCHAR", "Address of the Dask worker whose result was committed"),
        col("committed_at", "TIMESTAMP", "Local time the crawl committed the task"),
    ),
)

# -- the aggregates: each derived from ``instances`` by its own select (catalog.rebuild_aggregates) --


def _constant(name: str) -> str:
    """The value of column ``name`` when it is the same for every row of the group, else NULL."""
    return f'CASE WHEN count(DISTINCT "{name}") <= 1 THEN any_value("{name}") END AS "{name}"'


def _series_select(con: duckdb.DuckDBPyConnection) -> str:
    # Every declared column that is neither a key nor a count is "the value, if constant".
    constant_cols = [
        c.name
        for c in SERIES.columns
        if c.name not in {"SeriesInstanceUID", "StudyInstanceUID", "PatientID"}
        and not c.name.startswith(("n_", "min_", "max_", "total_"))
    ]
    return f"""
        SELECT i.SeriesInstanceUID,
            mode(i.StudyInstanceUID) AS StudyInstanceUID,
            mode(i.PatientID) AS PatientID,
            {", ".join(_constant(c) for c in constant_cols)},
            count(*) AS n_instances,
            sum(coalesce(i.NumberOfFrames, 1)) AS n_frames,
            count(DISTINCT i.SOPInstanceUID) AS n_distinct_sop,
            count(DISTINCT i.ImageOrientationPatient) AS n_distinct_orientation,
            count(DISTINCT i.PixelSpacing) AS n_distinct_pixel_spacing,
            count(DISTINCT [i.Rows, i.Columns]) AS n_distinct_matrix,
            min(i.InstanceNumber) AS min_instance_number,
            max(i.InstanceNumber) AS max_instance_number,
            sum(f.size) AS total_bytes
        FROM instances i JOIN files f USING (file_id)
        WHERE i.SeriesInstanceUID IS NOT NULL
        GROUP BY i.SeriesInstanceUID
    """


_STUDIES_SELECT = f"""
    SELECT StudyInstanceUID, mode(PatientID) AS PatientID,
        {_constant("StudyDate")}, {_constant("StudyDescription")},
        {_constant("AccessionNumber")}, {_constant("InstitutionName")},
        list_sort(list_distinct(list(Modality))) AS modalities,
        count(DISTINCT SeriesInstanceUID) AS n_series,
        count(*) AS n_instances
    FROM instances WHERE StudyInstanceUID IS NOT NULL
    GROUP BY StudyInstanceUID
"""

_PATIENTS_SELECT = f"""
    SELECT PatientID, {_constant("PatientSex")}, {_constant("PatientBirthDate")},
        count(DISTINCT StudyInstanceUID) AS n_studies,
        count(DISTINCT SeriesInstanceUID) AS n_series,
        count(*) AS n_instances
    FROM instances WHERE PatientID IS NOT NULL
    GROUP BY PatientID
"""

SERIES = Table(
    "series",
    "series",
    "One row per SeriesInstanceUID: counts, and each instance attribute that is constant across the "
    "series (NULL where members differ; see n_distinct_* columns for the ones that matter).",
    (
        col("SeriesInstanceUID", "VARCHAR", "Series Instance UID"),
        col(
            "StudyInstanceUID",
            "VARCHAR",
            "Study of the series (the most common, if members differ)",
        ),
        col("PatientID", "VARCHAR", "Patient of the series (the most common, if members differ)"),
        col("Modality", "VARCHAR", "Modality, if constant"),
        col("Manufacturer", "VARCHAR", "Manufacturer, if constant"),
        col("ManufacturerModelName", "VARCHAR", "Model name, if constant"),
        col("SoftwareVersions", "VARCHAR", "Software versions, if constant"),
        col("InstitutionName", "VARCHAR", "Institution (site), if constant"),
        col("StationName", "VARCHAR", "Station name, if constant"),
        col("BodyPartExamined", "VARCHAR", "Body part, if constant"),
        col("SeriesDescription", "VARCHAR", "Series description, if constant"),
        col("ProtocolName", "VARCHAR", "Protocol name, if constant"),
        col("SeriesNumber", "BIGINT", "Series number, if constant"),
        col("SeriesDate", "DATE", "Series date, if constant"),
        col("SOPClassUID", "VARCHAR", "SOP class, if constant"),
        col("FrameOfReferenceUID", "VARCHAR", "Frame of reference, if constant"),
        col("ImageOrientationPatient", "DOUBLE[6]", "Orientation, if constant"),
        col("PixelSpacing", "DOUBLE[2]", "Pixel spacing, if constant"),
        col("SliceThickness", "DOUBLE", "Slice thickness in mm, if constant"),
        col("Rows", "BIGINT", "Rows, if constant"),
        col("Columns", "BIGINT", "Columns, if constant"),
        col("ConvolutionKernel", "VARCHAR", "Kernel, if constant"),
        col("KVP", "DOUBLE", "kVp, if constant"),
        col("MagneticFieldStrength", "DOUBLE", "Field strength in T, if constant"),
        col("RepetitionTime", "DOUBLE", "TR in ms, if constant"),
        col("EchoTime", "DOUBLE", "TE in ms, if constant"),
        col("ContrastBolusAgent", "VARCHAR", "Contrast agent, if constant"),
        col("TransferSyntaxUID", "VARCHAR", "Transfer syntax, if constant"),
        col("n_instances", "BIGINT", "Number of instance rows (files) in the series"),
        col(
            "n_frames", "BIGINT", "Total frames: NumberOfFrames summed, 1 per single-frame instance"
        ),
        col(
            "n_distinct_sop",
            "BIGINT",
            "Distinct SOP Instance UIDs (less than n_instances when files repeat an instance)",
        ),
        col("n_distinct_orientation", "BIGINT", "Distinct ImageOrientationPatient values"),
        col("n_distinct_pixel_spacing", "BIGINT", "Distinct PixelSpacing values"),
        col("n_distinct_matrix", "BIGINT", "Distinct Rows x Columns"),
        col("min_instance_number", "BIGINT", "Smallest InstanceNumber"),
        col("max_instance_number", "BIGINT", "Largest InstanceNumber"),
        col("total_bytes", "BIGINT", "Sum of file sizes in bytes"),
    ),
    select=_series_select,
)

STUDIES = Table(
    "studies",
    "study",
    "One row per StudyInstanceUID: counts and the attributes constant across the study.",
    (
        col("StudyInstanceUID", "VARCHAR", "Study Instance UID"),
        col("PatientID", "VARCHAR", "Patient of the study (the most common, if members differ)"),
        col("StudyDate", "DATE", "Study date, if constant"),
        col("StudyDescription", "VARCHAR", "Study description, if constant"),
        col("AccessionNumber", "VARCHAR", "Accession number, if constant"),
        col("InstitutionName", "VARCHAR", "Institution (site), if constant"),
        col("modalities", "VARCHAR[]", "Distinct modalities in the study, sorted"),
        col("n_series", "BIGINT", "Number of series"),
        col("n_instances", "BIGINT", "Number of instance rows"),
    ),
    select=_STUDIES_SELECT,
)

PATIENTS = Table(
    "patients",
    "patient",
    "One row per PatientID: counts and demographics constant across the patient's instances.",
    (
        col("PatientID", "VARCHAR", "Patient ID (an identifier: stays inside the catalog)"),
        col("PatientSex", "VARCHAR", "Sex, if constant"),
        col("PatientBirthDate", "DATE", "Birth date, if constant"),
        col("n_studies", "BIGINT", "Number of studies"),
        col("n_series", "BIGINT", "Number of series"),
        col("n_instances", "BIGINT", "Number of instance rows"),
    ),
    select=_PATIENTS_SELECT,
)

DICOM_DICTIONARY = Table(
    "dicom_dictionary",
    "public or private dictionary entry",
    "pydicom's public and private data dictionaries, used to name elements (keyword, VR).",
    (
        col("tag", "VARCHAR", "'GGGGEEEE' for public entries; 'GGGGxxEE' for private ones"),
        col("private_creator", "VARCHAR", "Private creator for private entries; NULL for public"),
        col("keyword", "VARCHAR", "Keyword (public) or name (private)"),
        col("vr", "VARCHAR", "VR from the dictionary"),
        col("vm", "VARCHAR", "Value multiplicity from the dictionary"),
        col("retired", "BOOLEAN", "True when the standard retired the attribute"),
    ),
)

CATALOG_TABLES: tuple[Table, ...] = (
    CRAWLS,
    FILES,
    INSTANCES,
    FRAMES,
    ELEMENT_VALUES,
    ELEMENT_NAMES,
    ELEMENTS,
    CRAWL_ERRORS,
    SERIES,
    STUDIES,
    PATIENTS,
    DICOM_DICTIONARY,
)


#: Catalog-level settings; the one written so far is the per-catalog pseudonym key
#: (:mod:`curation.pseudonym`), created on first use by the step that needs it.
SETTINGS = Table(
    "settings",
    "catalog setting",
    "Small named settings of the catalog itself, such as the random per-catalog pseudonym key.",
    (
        col("name", "VARCHAR", "Setting name, e.g. pseudonym_key"),
        col("value", "VARCHAR", "Setting value as text (the pseudonym key: 64 hex digits)"),
        col("created_at", "TIMESTAMP", "Local time the setting was written"),
    ),
)


def render_markdown(tables: Sequence[Table]) -> str:
    """The catalog contract as a Markdown page (``docs/catalog.md``): ``tables`` in their order."""
    out = [
        "# Catalog tables",
        "",
        "Generated from the table declarations (listed in `curation/tables.py`) by "
        "`python -m curation.schema > docs/catalog.md`; a test keeps it in sync.",
        "",
    ]
    for t in tables:
        out += [f"## `{t.name}`", "", f"One row per {t.row}. {t.description}", ""]
        out += ["| column | type | description |", "|---|---|---|"]
        out += [f"| `{c.name}` | {c.sql_type} | {c.description} |" for c in t.columns]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    # The page covers every step's tables; the list of them lives above this floor (imported by
    # name: only the script reaches up, never the module).
    import importlib

    print(render_markdown(importlib.import_module("curation.tables").ALL_TABLES), end="")
