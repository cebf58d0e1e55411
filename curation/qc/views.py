"""Derived geometry tables that the completeness and geometry rules query.

A series' geometry is not in any one header: it is the relation between the slices. These tables
compute it once per QC run, set-based in DuckDB, for classic one-file-per-slice series and for
enhanced multi-frame objects alike (whose slices are the rows of ``frames``):

``qc_slices``
    one row per slice: a single-frame instance, or a frame of a multi-frame instance; with its
    position projected on the series' reference slice normal (``slice_position_mm``), its in-plane
    offsets, and its angle to the series' reference orientation.
``qc_positions``
    one row per distinct slice position of a series' main stack, with how often it occurs (a
    multi-volume series such as fMRI or DWI repeats each position once per volume) and the gap to
    the previous position.
``qc_series_geometry``
    one row per series with image slices: counts, modal slice spacing, modal multiplicity, tilt and
    in-plane drift.

They are TEMP tables of the connection that ran QC (derived state: kept in memory, never written to
the catalog file, which also keeps a run fast); a notebook that wants to drill from a finding to
its slices calls :func:`build` on its own connection. Their columns are declared here and listed
in :mod:`curation.tables` like every other table.
"""

from __future__ import annotations

import duckdb

from curation.catalog import has_table
from curation.schema import Table, col

#: Two slices whose positions along the normal differ by less than this are at the same position.
POSITION_RESOLUTION_MM = 0.01
#: A slice whose normal is within this angle of the series' reference normal belongs to its stack.
STACK_ANGLE_DEG = 1.0
#: A slice at least this far from the reference orientation counts as orthogonal (localizer-like).
ORTHOGONAL_ANGLE_DEG = 45.0
#: Orthogonal slices are an embedded localizer when there are at most this many and the stack holds
#: at least twice as many slices; otherwise they are a second stack (mixed orientation).
LOCALIZER_MAX_SLICES = 3


def _raw_slices_sql(with_frames: bool) -> str:
    common = """
        i.PatientID, i.StudyInstanceUID, i.SeriesInstanceUID, i.SOPInstanceUID, i.file_id, i.path,
        i.InstanceNumber, i.Modality, i.Rows, i.Columns,
        coalesce(list_contains(i.ImageType, 'LOCALIZER'), false) AS is_localizer_type,
        coalesce(list_contains(i.ImageType, 'MOSAIC'), false) AS is_mosaic"""
    classic = f"""
        SELECT {common}, NULL::INTEGER AS frame_index,
               i.ImagePositionPatient, i.ImageOrientationPatient, i.PixelSpacing,
               i.SliceThickness, i.RescaleSlope, i.RescaleIntercept
        FROM instances i"""
    if not with_frames:
        return classic
    # Frames replace their instance: one slice per frame, attributes from the functional groups
    # when present (per-frame, then shared, as the crawler resolved them), else the top level.
    return f"""
        {classic}
        WHERE i.file_id NOT IN (SELECT DISTINCT file_id FROM frames)
        UNION ALL
        SELECT {common}, f.frame_index,
               coalesce(f.ImagePositionPatient, i.ImagePositionPatient),
               coalesce(f.ImageOrientationPatient, i.ImageOrientationPatient),
               coalesce(f.PixelSpacing, i.PixelSpacing),
               coalesce(f.SliceThickness, i.SliceThickness),
               coalesce(f.RescaleSlope, i.RescaleSlope),
               coalesce(f.RescaleIntercept, i.RescaleIntercept)
        FROM frames f JOIN instances i ON f.file_id = i.file_id"""


def _slices_select(con: duckdb.DuckDBPyConnection) -> str:
    return _slices_sql(has_table(con, "frames"))


def _slices_sql(with_frames: bool) -> str:
    return f"""
WITH raw AS ({_raw_slices_sql(with_frames)}),
vec AS (
    SELECT *,
        ImagePositionPatient IS NOT NULL AND ImageOrientationPatient IS NOT NULL AS has_geometry,
        ImageOrientationPatient[1] AS r1, ImageOrientationPatient[2] AS r2,
        ImageOrientationPatient[3] AS r3, ImageOrientationPatient[4] AS c1,
        ImageOrientationPatient[5] AS c2, ImageOrientationPatient[6] AS c3,
        ImagePositionPatient[1] AS px, ImagePositionPatient[2] AS py, ImagePositionPatient[3] AS pz
    FROM raw
),
norm AS (
    SELECT *,
        r2 * c3 - r3 * c2 AS n1, r3 * c1 - r1 * c3 AS n2, r1 * c2 - r2 * c1 AS n3,
        greatest(abs(r1 * c1 + r2 * c2 + r3 * c3),
                 abs(sqrt(r1 * r1 + r2 * r2 + r3 * r3) - 1),
                 abs(sqrt(c1 * c1 + c2 * c2 + c3 * c3) - 1)) AS orthogonality_error
    FROM vec
),
-- The reference orientation of a series is its most common one (rounded so that float noise in the
-- last digits does not split it), among slices that do not call themselves localizers.
ref AS (
    SELECT SeriesInstanceUID,
        mode(list_transform(ImageOrientationPatient, lambda x: round(x, 3))
             ORDER BY list_transform(ImageOrientationPatient, lambda x: round(x, 3)))
            FILTER (WHERE has_geometry AND NOT is_localizer_type) AS ref_iop
    FROM norm GROUP BY SeriesInstanceUID
),
refv AS (
    SELECT SeriesInstanceUID,
        ref_iop[1] AS q1, ref_iop[2] AS q2, ref_iop[3] AS q3,
        ref_iop[4] AS k1, ref_iop[5] AS k2, ref_iop[6] AS k3
    FROM ref
),
refn AS (
    SELECT *, q2 * k3 - q3 * k2 AS m1, q3 * k1 - q1 * k3 AS m2, q1 * k2 - q2 * k1 AS m3,
        sqrt((q2 * k3 - q3 * k2) ** 2 + (q3 * k1 - q1 * k3) ** 2 + (q1 * k2 - q2 * k1) ** 2) AS mlen
    FROM refv
),
angled AS (
    SELECT n.*, r.*,
        -- the larger of the normals' angle and the row directions' angle: an in-plane rotation
        -- keeps the normal but is a different orientation all the same
        degrees(acos(least(1.0, greatest(
            abs(n1 * m1 + n2 * m2 + n3 * m3)
                / nullif(sqrt(n1 * n1 + n2 * n2 + n3 * n3) * mlen, 0),
            0.0)))) AS normal_angle,
        degrees(acos(least(1.0, greatest(
            (r1 * q1 + r2 * q2 + r3 * q3)
                / nullif(sqrt(r1 * r1 + r2 * r2 + r3 * r3) * sqrt(q1 * q1 + q2 * q2 + q3 * q3), 0),
            -1.0)))) AS row_angle
    FROM norm n LEFT JOIN refn r USING (SeriesInstanceUID)
),
flagged AS (
    SELECT *,
        greatest(normal_angle, row_angle) AS orientation_angle_deg,
        count(*) FILTER (WHERE has_geometry AND NOT is_localizer_type
                         AND normal_angle >= {ORTHOGONAL_ANGLE_DEG})
            OVER (PARTITION BY SeriesInstanceUID) AS n_orthogonal,
        count(*) FILTER (WHERE has_geometry AND NOT is_localizer_type
                         AND normal_angle < {ORTHOGONAL_ANGLE_DEG})
            OVER (PARTITION BY SeriesInstanceUID) AS n_aligned
    FROM angled
)
SELECT PatientID, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, file_id, path, frame_index,
    InstanceNumber, Modality, ImagePositionPatient, ImageOrientationPatient, PixelSpacing,
    SliceThickness, Rows, Columns, RescaleSlope, RescaleIntercept, is_localizer_type, is_mosaic,
    has_geometry, orthogonality_error, orientation_angle_deg,
    is_localizer_type OR (has_geometry AND normal_angle >= {ORTHOGONAL_ANGLE_DEG}
        AND n_orthogonal <= {LOCALIZER_MAX_SLICES} AND n_aligned >= 2 * n_orthogonal)
        AS is_localizer,
    has_geometry AND NOT is_localizer_type AND normal_angle <= {STACK_ANGLE_DEG} AS in_stack,
    (px * m1 + py * m2 + pz * m3) / nullif(mlen, 0) AS slice_position_mm,
    (px * q1 + py * q2 + pz * q3) AS row_offset_mm,
    (px * k1 + py * k2 + pz * k3) AS col_offset_mm
FROM flagged
"""


_POSITIONS_SQL = f"""
WITH keyed AS (
    SELECT SeriesInstanceUID, SOPInstanceUID, slice_position_mm, row_offset_mm, col_offset_mm,
        round(slice_position_mm / {POSITION_RESOLUTION_MM}) AS pos_key
    FROM qc_slices WHERE in_stack
),
grouped AS (
    SELECT SeriesInstanceUID, pos_key, avg(slice_position_mm) AS slice_position_mm,
        count(*) AS multiplicity, avg(row_offset_mm) AS row_offset_mm,
        avg(col_offset_mm) AS col_offset_mm, min(SOPInstanceUID) AS SOPInstanceUID
    FROM keyed GROUP BY SeriesInstanceUID, pos_key
)
SELECT SeriesInstanceUID,
    row_number() OVER w AS position_index,
    slice_position_mm, multiplicity,
    slice_position_mm - lag(slice_position_mm) OVER w AS gap_mm,
    row_offset_mm, col_offset_mm, SOPInstanceUID
FROM grouped
WINDOW w AS (PARTITION BY SeriesInstanceUID ORDER BY slice_position_mm)
"""

# Every mode() that a finding depends on is ordered: DuckDB breaks a tie by the first value it
# meets, so an unordered mode follows the scan order, and a series with two equally common
# spacings or thicknesses would gain or lose a finding between two catalogs of the same files
# (a local and a Dask crawl, say). Ordered, a tie goes to the smallest value.
_SERIES_GEOMETRY_SQL = """
WITH s AS (
    SELECT SeriesInstanceUID,
        mode(PatientID) AS PatientID, mode(StudyInstanceUID) AS StudyInstanceUID,
        mode(Modality) AS Modality,
        count(*) AS n_slices,
        count(*) FILTER (WHERE in_stack) AS n_stack_slices,
        count(*) FILTER (WHERE is_localizer) AS n_localizer_slices,
        bool_or(is_mosaic) AS is_mosaic,
        mode(SliceThickness ORDER BY SliceThickness) FILTER (WHERE in_stack) AS SliceThickness,
        arg_min(ImagePositionPatient, slice_position_mm) FILTER (WHERE in_stack) AS first_ipp,
        arg_max(ImagePositionPatient, slice_position_mm) FILTER (WHERE in_stack) AS last_ipp,
        mode(ImageOrientationPatient ORDER BY ImageOrientationPatient) FILTER (WHERE in_stack)
            AS ref_iop
    FROM qc_slices WHERE has_geometry GROUP BY SeriesInstanceUID
),
p0 AS (
    -- the mode of the gaps rounded to 0.01 mm (so float noise does not split it) picks the bin;
    -- the modal spacing is then the median of the gaps in that bin, at full precision
    SELECT SeriesInstanceUID, mode(round(gap_mm, 2) ORDER BY round(gap_mm, 2)) AS modal_bin
    FROM qc_positions WHERE gap_mm IS NOT NULL GROUP BY SeriesInstanceUID
),
p AS (
    SELECT q.SeriesInstanceUID, count(*) AS n_positions,
        mode(q.multiplicity ORDER BY q.multiplicity) AS modal_multiplicity,
        median(q.gap_mm) FILTER (WHERE round(q.gap_mm, 2) = p0.modal_bin) AS modal_spacing_mm,
        min(q.gap_mm) AS min_gap_mm, max(q.gap_mm) AS max_gap_mm,
        regr_slope(q.row_offset_mm, q.slice_position_mm) AS a_row,
        regr_intercept(q.row_offset_mm, q.slice_position_mm) AS b_row,
        regr_slope(q.col_offset_mm, q.slice_position_mm) AS a_col,
        regr_intercept(q.col_offset_mm, q.slice_position_mm) AS b_col
    FROM qc_positions q LEFT JOIN p0 USING (SeriesInstanceUID) GROUP BY q.SeriesInstanceUID
),
drift AS (
    SELECT q.SeriesInstanceUID,
        max(greatest(abs(q.row_offset_mm - (p.a_row * q.slice_position_mm + p.b_row)),
                     abs(q.col_offset_mm - (p.a_col * q.slice_position_mm + p.b_col))))
            AS inplane_drift_mm
    FROM qc_positions q JOIN p USING (SeriesInstanceUID)
    WHERE p.n_positions >= 3
    GROUP BY q.SeriesInstanceUID
),
vec AS (
    SELECT s.*,
        last_ipp[1] - first_ipp[1] AS d1, last_ipp[2] - first_ipp[2] AS d2,
        last_ipp[3] - first_ipp[3] AS d3,
        ref_iop[2] * ref_iop[6] - ref_iop[3] * ref_iop[5] AS m1,
        ref_iop[3] * ref_iop[4] - ref_iop[1] * ref_iop[6] AS m2,
        ref_iop[1] * ref_iop[5] - ref_iop[2] * ref_iop[4] AS m3
    FROM s
)
SELECT v.PatientID, v.StudyInstanceUID, v.SeriesInstanceUID, v.Modality, v.n_slices,
    v.n_stack_slices, v.n_localizer_slices,
    coalesce(p.n_positions, 0) AS n_positions, p.modal_multiplicity,
    p.modal_spacing_mm, p.min_gap_mm, p.max_gap_mm, v.is_mosaic,
    CASE WHEN sqrt(d1 * d1 + d2 * d2 + d3 * d3) > 0 THEN degrees(acos(least(1.0,
        abs(d1 * m1 + d2 * m2 + d3 * m3)
            / (sqrt(d1 * d1 + d2 * d2 + d3 * d3) * sqrt(m1 * m1 + m2 * m2 + m3 * m3)))))
    END AS tilt_deg,
    degrees(acos(least(1.0, greatest(abs(m1), abs(m2), abs(m3))
        / nullif(sqrt(m1 * m1 + m2 * m2 + m3 * m3), 0)))) AS obliquity_deg,
    dr.inplane_drift_mm,
    v.SliceThickness,
    p.modal_spacing_mm - v.SliceThickness AS slice_gap_mm
FROM vec v LEFT JOIN p USING (SeriesInstanceUID) LEFT JOIN drift dr USING (SeriesInstanceUID)
"""

_UIDS = (
    col("PatientID", "VARCHAR", "Patient of the instance"),
    col("StudyInstanceUID", "VARCHAR", "Study of the instance"),
    col("SeriesInstanceUID", "VARCHAR", "Series of the instance"),
)

QC_SLICES = Table(
    "qc_slices",
    "image slice: a single-frame instance or one frame of a multi-frame instance",
    "Per-slice geometry; a TEMP table built by curation.qc.views.build(con) (and by every QC run).",
    (
        *_UIDS,
        col("SOPInstanceUID", "VARCHAR", "The instance"),
        col("file_id", "UBIGINT", "The file (files.file_id)"),
        col("path", "VARCHAR", "Absolute path of the file"),
        col("frame_index", "INTEGER", "0-based frame of a multi-frame instance; NULL otherwise"),
        col("InstanceNumber", "BIGINT", "Instance Number of the instance"),
        col("Modality", "VARCHAR", "Modality of the instance"),
        col("ImagePositionPatient", "DOUBLE[3]", "Position of the slice in mm (frame's if any)"),
        col("ImageOrientationPatient", "DOUBLE[6]", "Direction cosines of the slice"),
        col("PixelSpacing", "DOUBLE[2]", "Pixel spacing of the slice in mm"),
        col("SliceThickness", "DOUBLE", "Slice thickness in mm"),
        col("Rows", "BIGINT", "Rows of the slice's image"),
        col("Columns", "BIGINT", "Columns of the slice's image"),
        col("RescaleSlope", "DOUBLE", "Rescale slope of the slice"),
        col("RescaleIntercept", "DOUBLE", "Rescale intercept of the slice"),
        col("is_localizer_type", "BOOLEAN", "ImageType contains LOCALIZER"),
        col(
            "is_mosaic",
            "BOOLEAN",
            "ImageType contains MOSAIC (Siemens: one file holds a volume)",
        ),
        col("has_geometry", "BOOLEAN", "Position and orientation are both present"),
        col(
            "orthogonality_error",
            "DOUBLE",
            "max(|row·col|, |‖row‖-1|, |‖col‖-1|) of the direction cosines (0 when valid)",
        ),
        col(
            "orientation_angle_deg",
            "DOUBLE",
            "Angle between the slice's normal (or row direction) and the series reference, degrees",
        ),
        col(
            "is_localizer",
            "BOOLEAN",
            "LOCALIZER in ImageType, or one of at most 3 slices orthogonal to a larger stack",
        ),
        col(
            "in_stack",
            "BOOLEAN",
            "Has geometry, is no localizer and lies in the reference stack",
        ),
        col(
            "slice_position_mm",
            "DOUBLE",
            "Position projected on the reference slice normal, mm",
        ),
        col("row_offset_mm", "DOUBLE", "Position projected on the reference row direction, mm"),
        col(
            "col_offset_mm",
            "DOUBLE",
            "Position projected on the reference column direction, mm",
        ),
    ),
    select=_slices_select,
    temporary=True,
)

QC_POSITIONS = Table(
    "qc_positions",
    "distinct slice position of a series' stack",
    "Slice positions of each series' main stack, sorted along the normal; TEMP table (views.build).",
    (
        col("SeriesInstanceUID", "VARCHAR", "The series"),
        col("position_index", "BIGINT", "1-based rank of the position along the normal"),
        col("slice_position_mm", "DOUBLE", "Position along the reference normal, mm"),
        col(
            "multiplicity",
            "BIGINT",
            "Slices at this position (volumes of a multi-volume series)",
        ),
        col("gap_mm", "DOUBLE", "Distance to the previous position, mm; NULL for the first"),
        col("row_offset_mm", "DOUBLE", "Mean in-plane offset along the row direction, mm"),
        col("col_offset_mm", "DOUBLE", "Mean in-plane offset along the column direction, mm"),
        col("SOPInstanceUID", "VARCHAR", "One instance at this position (the smallest UID)"),
    ),
    select=_POSITIONS_SQL,
    temporary=True,
)

QC_SERIES_GEOMETRY = Table(
    "qc_series_geometry",
    "series with image slices",
    "Stack geometry of each series; a TEMP table built by curation.qc.views.build(con).",
    (
        *_UIDS,
        col("Modality", "VARCHAR", "Modality (most common)"),
        col("n_slices", "BIGINT", "Slices (frames or single-frame instances) with geometry"),
        col("n_stack_slices", "BIGINT", "Slices in the reference stack (no localizers)"),
        col("n_localizer_slices", "BIGINT", "Slices flagged as localizer"),
        col("n_positions", "BIGINT", "Distinct positions of the stack"),
        col(
            "modal_multiplicity",
            "BIGINT",
            "Most common number of slices per position (volumes)",
        ),
        col("modal_spacing_mm", "DOUBLE", "Most common gap between adjacent positions, mm"),
        col("min_gap_mm", "DOUBLE", "Smallest gap between adjacent positions, mm"),
        col("max_gap_mm", "DOUBLE", "Largest gap between adjacent positions, mm"),
        col("is_mosaic", "BOOLEAN", "Any slice is a Siemens mosaic"),
        col(
            "tilt_deg",
            "DOUBLE",
            "Angle between the first-to-last position vector and the slice normal, degrees",
        ),
        col(
            "obliquity_deg",
            "DOUBLE",
            "Angle between the reference slice normal and the nearest patient axis, degrees",
        ),
        col(
            "inplane_drift_mm",
            "DOUBLE",
            "Largest in-plane deviation of a position from the straight stack axis, mm",
        ),
        col("SliceThickness", "DOUBLE", "Most common slice thickness of the stack, mm"),
        col(
            "slice_gap_mm",
            "DOUBLE",
            "modal_spacing_mm - SliceThickness: > 0 gaps between slices, < 0 overlap",
        ),
    ),
    select=_SERIES_GEOMETRY_SQL,
    temporary=True,
)


#: The derived tables, in build order.
GEOMETRY_TABLES = (QC_SLICES, QC_POSITIONS, QC_SERIES_GEOMETRY)
VIEW_NAMES: tuple[str, ...] = tuple(t.name for t in GEOMETRY_TABLES)


def build(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)build the derived geometry tables from ``instances`` (and ``frames`` when present)."""
    for table in GEOMETRY_TABLES:
        table.rebuild(con)
