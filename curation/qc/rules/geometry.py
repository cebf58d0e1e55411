"""Geometry: does a series form one regular volume?

Every rule reads the per-slice and per-series tables of :mod:`curation.qc.views`: positions are
projected on the series' reference slice normal (its most common orientation), so spacing, tilt and
drift are measured the same way for classic and enhanced multi-frame series. Slices flagged as
localizers, and slices at another orientation, are left out of the stack (and reported by
``instance.embedded_localizer`` and ``series.mixed_orientation``), so that one defect is reported once.
"""

from __future__ import annotations

from curation.qc.rule import Level, Param, Rule, Severity, register

#: Each stack gap with its neighbours and the tolerance of the rule's parameters; shared by the
#: spacing rules (series.nonuniform_spacing here, series.missing_slices in completeness.py).
GAPS_CTE = """
            WITH g AS (
                SELECT q.SeriesInstanceUID, q.gap_mm, s.modal_spacing_mm AS m,
                    lag(q.gap_mm) OVER w AS prev_gap, lead(q.gap_mm) OVER w AS next_gap,
                    greatest($spacing_tolerance_mm, $spacing_tolerance_fraction * s.modal_spacing_mm)
                        AS tol
                FROM qc_positions q JOIN qc_series_geometry s USING (SeriesInstanceUID)
                WINDOW w AS (PARTITION BY q.SeriesInstanceUID ORDER BY q.position_index)
            ),"""

_G = "g.PatientID, g.StudyInstanceUID, g.SeriesInstanceUID, NULL::VARCHAR, NULL::VARCHAR"
_VOLUME_MODALITIES = Param(
    "modalities",
    ["CT", "MR", "PT", "NM"],
    "",
    "modalities whose series are expected to form volumes",
)

_TOLERANCES = (
    Param(
        "spacing_tolerance_fraction",
        0.01,
        "fraction",
        "a gap within this fraction of the modal spacing (or spacing_tolerance_mm) is regular",
    ),
    Param("spacing_tolerance_mm", 0.01, "mm", "a gap within this many mm of the mode is regular"),
)

NONUNIFORM_SPACING = register(
    Rule(
        id="series.nonuniform_spacing",
        level=Level.SERIES,
        severity=Severity.ERROR,
        title="non-uniform slice spacing",
        description="Gaps between adjacent slice positions differ from the series' modal spacing "
        "by more than the tolerance (max of spacing_tolerance_fraction x mode and "
        "spacing_tolerance_mm), other than the isolated whole-multiple gaps of missing slices. A "
        "volume built from it by index is distorted along the normal.",
        not_checked="Isolated gaps of 2, 3, ... x the mode (series.missing_slices); the spacing "
        "declared in SpacingBetweenSlices (only positions are used).",
        query=GAPS_CTE
        + """ bad AS (
                SELECT SeriesInstanceUID, count(*) AS n_bad, min(gap_mm) AS lo, max(gap_mm) AS hi,
                    any_value(m) AS m
                FROM g
                WHERE gap_mm IS NOT NULL AND m > 0 AND abs(gap_mm - m) > tol
                    AND NOT (gap_mm / m >= 1.5
                        AND abs(gap_mm - round(gap_mm / m) * m) <= tol * round(gap_mm / m)
                        AND coalesce(abs(prev_gap - m) <= tol, true)
                        AND coalesce(abs(next_gap - m) <= tol, true))
                GROUP BY SeriesInstanceUID
            )
            SELECT g.PatientID, g.StudyInstanceUID, g.SeriesInstanceUID, NULL::VARCHAR, NULL,
                round(b.hi - b.lo, 4)::VARCHAR AS value,
                b.n_bad || ' gap(s) off the modal spacing of ' || round(b.m, 3)
                    || ' mm; gaps range ' || round(b.lo, 3) || '-' || round(b.hi, 3) || ' mm'
            FROM bad b JOIN qc_series_geometry g USING (SeriesInstanceUID)
        """,
        params=_TOLERANCES,
        requires=("qc_positions", "qc_series_geometry"),
        detects=("nonuniform_spacing",),
    )
)

DUPLICATE_POSITIONS = register(
    Rule(
        id="series.duplicate_positions",
        level=Level.SERIES,
        severity=Severity.ERROR,
        title="slices at the same position",
        description="More slices sit at one position than the series' modal multiplicity (1 for "
        "a single volume, the number of volumes for fMRI/DWI): a slice is duplicated, under a new "
        "SOPInstanceUID or as a second file.",
        not_checked="A series whose positions all repeat equally (read as a multi-volume series; "
        "a single position repeated is series.too_few_slices); whether duplicates hold the same "
        "pixels.",
        query=f"""
            SELECT {_G}, sum(q.multiplicity - g.modal_multiplicity)::VARCHAR AS value,
                sum(q.multiplicity - g.modal_multiplicity) || ' extra slice(s) at '
                    || count(*) || ' position(s), first at ' || round(min(q.slice_position_mm), 2)
                    || ' mm along the normal'
            FROM qc_positions q JOIN qc_series_geometry g USING (SeriesInstanceUID)
            WHERE q.multiplicity > g.modal_multiplicity
            GROUP BY ALL
        """,
        requires=("qc_positions", "qc_series_geometry"),
        detects=("duplicate_slices",),
    )
)

MIXED_ORIENTATION = register(
    Rule(
        id="series.mixed_orientation",
        level=Level.SERIES,
        severity=Severity.ERROR,
        title="mixed orientation",
        description="Slices of a series are at an orientation more than max_angle_deg away from "
        "the series' reference (most common) orientation, normal or in-plane rotation: a second "
        "stack or a restack appended to the series.",
        not_checked="Localizers (LOCALIZER in ImageType, or at most 3 orthogonal slices beside a "
        "stack of twice as many): instance.embedded_localizer.",
        query=f"""
            SELECT {_G}, round(max(s.orientation_angle_deg), 2)::VARCHAR AS value,
                count(*) || ' slice(s) up to ' || round(max(s.orientation_angle_deg), 1)
                    || ' deg away from the series orientation'
            FROM qc_slices s JOIN qc_series_geometry g USING (SeriesInstanceUID)
            WHERE s.has_geometry AND NOT s.is_localizer AND s.orientation_angle_deg > $max_angle_deg
            GROUP BY ALL
        """,
        params=(Param("max_angle_deg", 0.5, "deg", "largest tolerated angle to the reference"),),
        requires=("qc_slices", "qc_series_geometry"),
        detects=("mixed_orientation",),
    )
)

NONORTHOGONAL = register(
    Rule(
        id="series.nonorthogonal_cosines",
        level=Level.SERIES,
        severity=Severity.ERROR,
        title="invalid direction cosines",
        description="ImageOrientationPatient is not a pair of orthogonal unit vectors "
        "(|row·col| or | |v| - 1 | above max_error): the image plane is undefined.",
        not_checked="Slices without ImageOrientationPatient (not image stacks).",
        query=f"""
            SELECT {_G}, round(max(s.orthogonality_error), 6)::VARCHAR,
                count(*) || ' slice(s) with non-orthonormal direction cosines (error up to '
                    || round(max(s.orthogonality_error), 6) || ')'
            FROM qc_slices s JOIN qc_series_geometry g USING (SeriesInstanceUID)
            WHERE s.orthogonality_error > $max_error
            GROUP BY ALL
        """,
        params=(Param("max_error", 1e-3, "", "largest tolerated dot product / norm error"),),
        requires=("qc_slices", "qc_series_geometry"),
    )
)

INPLANE_DRIFT = register(
    Rule(
        id="series.inplane_drift",
        level=Level.SERIES,
        severity=Severity.WARNING,
        title="in-plane drift",
        description="Slice positions wander in-plane: a position lies more than max_drift_mm from "
        "the straight axis fitted through the stack (a table shift between slices, a restack of "
        "two acquisitions).",
        not_checked="A constant in-plane shift per slice (that is a straight, tilted axis: "
        "series.gantry_tilt); stacks of fewer than 3 positions.",
        query=f"""
            SELECT {_G}, round(g.inplane_drift_mm, 3)::VARCHAR,
                'a slice lies ' || round(g.inplane_drift_mm, 2) || ' mm off the stack axis'
            FROM qc_series_geometry g WHERE g.inplane_drift_mm > $max_drift_mm
        """,
        params=(Param("max_drift_mm", 0.5, "mm", "largest tolerated distance from the axis"),),
        requires=("qc_series_geometry",),
    )
)

EMBEDDED_LOCALIZER = register(
    Rule(
        id="instance.embedded_localizer",
        level=Level.INSTANCE,
        severity=Severity.ERROR,
        title="localizer inside a series",
        description="A localizer (LOCALIZER in ImageType, or one of at most 3 slices orthogonal to "
        "a stack at least twice its size) is stored in the same series as the volume's slices; "
        "a converter that takes every file of the series builds a broken volume.",
        not_checked="Series made only of localizers (they are no volume, and fine as such).",
        query="""
            SELECT s.PatientID, s.StudyInstanceUID, s.SeriesInstanceUID, s.SOPInstanceUID, s.path,
                round(s.orientation_angle_deg, 1)::VARCHAR,
                'localizer among ' || g.n_stack_slices || ' stack slices, at '
                    || round(s.orientation_angle_deg, 1) || ' deg to them'
            FROM qc_slices s JOIN qc_series_geometry g USING (SeriesInstanceUID)
            WHERE s.is_localizer AND g.n_stack_slices > 0
        """,
        requires=("qc_slices", "qc_series_geometry"),
        detects=("embedded_localizer",),
    )
)

MIXED_PIXEL_SPACING = register(
    Rule(
        id="series.mixed_pixel_spacing",
        level=Level.SERIES,
        severity=Severity.ERROR,
        title="mixed pixel spacing",
        description="Stack slices with the same matrix have different PixelSpacing (beyond "
        "tolerance_mm): the field of view changes within the series.",
        not_checked="Spacing that changes together with the matrix (series.mixed_matrix); "
        "localizers; the spacing's agreement with any calibration.",
        query=f"""
            WITH per_matrix AS (
                SELECT SeriesInstanceUID, Rows, Columns,
                    max(PixelSpacing[1]) - min(PixelSpacing[1]) AS d_row,
                    max(PixelSpacing[2]) - min(PixelSpacing[2]) AS d_col,
                    min(PixelSpacing[2]) AS lo, max(PixelSpacing[2]) AS hi
                FROM qc_slices WHERE in_stack AND PixelSpacing IS NOT NULL
                GROUP BY SeriesInstanceUID, Rows, Columns
            )
            SELECT {_G}, round(max(greatest(d_row, d_col)), 6)::VARCHAR,
                'pixel spacing varies from ' || round(min(lo), 4) || ' to ' || round(max(hi), 4)
                    || ' mm at the same matrix'
            FROM per_matrix p JOIN qc_series_geometry g USING (SeriesInstanceUID)
            WHERE greatest(d_row, d_col) > $tolerance_mm
            GROUP BY ALL
        """,
        params=(Param("tolerance_mm", 1e-4, "mm", "spacing differences up to this are equal"),),
        requires=("qc_slices", "qc_series_geometry"),
        detects=("mixed_pixel_spacing",),
    )
)

MIXED_MATRIX = register(
    Rule(
        id="series.mixed_matrix",
        level=Level.SERIES,
        severity=Severity.ERROR,
        title="mixed matrix",
        description="Stack slices have different Rows x Columns: they cannot be stacked into one "
        "array.",
        not_checked="Localizers (usually another matrix, reported as instance.embedded_localizer).",
        query=f"""
            SELECT {_G}, count(DISTINCT (s.Rows, s.Columns))::VARCHAR,
                count(DISTINCT (s.Rows, s.Columns)) || ' different matrices: '
                    || string_agg(DISTINCT s.Rows || 'x' || s.Columns, ', ')
            FROM qc_slices s JOIN qc_series_geometry g USING (SeriesInstanceUID)
            WHERE s.in_stack
            GROUP BY ALL HAVING count(DISTINCT (s.Rows, s.Columns)) > 1
        """,
        requires=("qc_slices", "qc_series_geometry"),
        detects=("mixed_matrix",),
    )
)

GANTRY_TILT = register(
    Rule(
        id="series.gantry_tilt",
        level=Level.SERIES,
        severity=Severity.WARNING,
        title="gantry tilt",
        description="The stack's axis (first to last position) is more than max_tilt_deg off the "
        "slice normal: the volume is sheared (CT with a tilted gantry). A converter must resample "
        "it, or treat it as a sheared grid.",
        not_checked="GantryDetectorTilt as written (positions are what count); obliquity of the "
        "plane itself (series.obliquity).",
        query=f"""
            SELECT {_G}, round(g.tilt_deg, 2)::VARCHAR,
                'stack axis ' || round(g.tilt_deg, 1) || ' deg off the slice normal'
            FROM qc_series_geometry g WHERE g.tilt_deg > $max_tilt_deg AND g.n_positions >= 2
        """,
        params=(Param("max_tilt_deg", 0.5, "deg", "largest tolerated shear angle"),),
        requires=("qc_series_geometry",),
        detects=("gantry_tilt",),
    )
)

OBLIQUITY = register(
    Rule(
        id="series.obliquity",
        level=Level.SERIES,
        severity=Severity.INFO,
        title="oblique slices",
        description="The slice normal is more than max_obliquity_deg away from every patient "
        "axis (an oblique, e.g. AC-PC aligned, acquisition). Fine for most models, but worth "
        "knowing when a pipeline assumes axis-aligned volumes.",
        not_checked="Shear (series.gantry_tilt).",
        query=f"""
            SELECT {_G}, round(g.obliquity_deg, 2)::VARCHAR,
                'slice normal ' || round(g.obliquity_deg, 1) || ' deg from the nearest patient axis'
            FROM qc_series_geometry g WHERE g.obliquity_deg > $max_obliquity_deg
        """,
        params=(Param("max_obliquity_deg", 20.0, "deg", "largest angle that is not reported"),),
        requires=("qc_series_geometry",),
    )
)

TOO_FEW_SLICES = register(
    Rule(
        id="series.too_few_slices",
        level=Level.SERIES,
        severity=Severity.WARNING,
        title="too few slices",
        description="A series of a volume modality has fewer than min_slices distinct slice "
        "positions: an interrupted transfer, or not a volume at all (the same position repeated).",
        not_checked="Siemens mosaics (one file holds a volume); series without geometry "
        "(screen saves, reports); series made only of localizers.",
        query=f"""
            SELECT {_G}, g.n_positions::VARCHAR,
                'only ' || g.n_positions || ' distinct slice position(s) in ' || g.n_stack_slices
                    || ' slice(s)'
            FROM qc_series_geometry g
            WHERE g.n_positions < $min_slices AND g.n_stack_slices > 0 AND NOT g.is_mosaic
                AND list_contains($modalities, g.Modality)
        """,
        params=(
            Param("min_slices", 4, "count", "fewest distinct positions that make a volume"),
            _VOLUME_MODALITIES,
        ),
        requires=("qc_series_geometry",),
        detects=("too_few_slices",),
    )
)

THICKNESS_VS_SPACING = register(
    Rule(
        id="series.thickness_vs_spacing",
        level=Level.SERIES,
        severity=Severity.INFO,
        title="slice gap or overlap",
        description="The modal spacing between positions differs from SliceThickness by more than "
        "tolerance_fraction of the thickness: gaps between slices (MR with a slice gap) or "
        "overlapping reconstruction (CT). Both can be intended; both change what a voxel means.",
        not_checked="Whether the gap or overlap was intended (SpacingBetweenSlices is not "
        "compared); series without SliceThickness.",
        query=f"""
            SELECT {_G}, round(g.slice_gap_mm, 3)::VARCHAR,
                CASE WHEN g.slice_gap_mm > 0 THEN 'gap' ELSE 'overlap' END || ' of '
                    || round(abs(g.slice_gap_mm), 2) || ' mm between ' || g.SliceThickness
                    || ' mm slices spaced ' || round(g.modal_spacing_mm, 3) || ' mm'
            FROM qc_series_geometry g
            WHERE abs(g.slice_gap_mm) > $tolerance_fraction * g.SliceThickness
        """,
        params=(Param("tolerance_fraction", 0.1, "fraction", "of SliceThickness"),),
        requires=("qc_series_geometry",),
    )
)

RESCALE_VARIES = register(
    Rule(
        id="series.rescale_varies",
        level=Level.SERIES,
        severity=Severity.WARNING,
        title="rescale varies within series",
        description="RescaleSlope or RescaleIntercept differ between slices of a series, so stored "
        "values mean different things slice to slice; a loader that reads the first header only "
        "gets the others wrong.",
        not_checked="Modalities where a per-slice scale is normal (exempt_modalities, e.g. PET); "
        "whether the values are plausible.",
        query=f"""
            SELECT {_G},
                count(DISTINCT (coalesce(s.RescaleSlope, 1), coalesce(s.RescaleIntercept, 0)))::VARCHAR,
                count(DISTINCT (coalesce(s.RescaleSlope, 1), coalesce(s.RescaleIntercept, 0)))
                    || ' different slope/intercept pairs (slope ' || min(s.RescaleSlope) || '-'
                    || max(s.RescaleSlope) || ', intercept ' || min(s.RescaleIntercept) || '-'
                    || max(s.RescaleIntercept) || ')'
            FROM qc_slices s JOIN qc_series_geometry g USING (SeriesInstanceUID)
            WHERE NOT list_contains($exempt_modalities, coalesce(s.Modality, ''))
            GROUP BY ALL
            HAVING count(DISTINCT (coalesce(s.RescaleSlope, 1), coalesce(s.RescaleIntercept, 0))) > 1
        """,
        params=(Param("exempt_modalities", ["PT", "NM"], "", "modalities not checked"),),
        requires=("qc_slices", "qc_series_geometry"),
    )
)

FRAME_COUNT = register(
    Rule(
        id="instance.frame_count_mismatch",
        level=Level.INSTANCE,
        severity=Severity.ERROR,
        title="frame count vs functional groups",
        description="An enhanced multi-frame object whose NumberOfFrames differs from the number "
        "of items of its Per-frame Functional Groups Sequence (5200,9230): per-frame geometry "
        "cannot be matched to the frames.",
        not_checked="Classic multi-frame objects without functional groups; the pixel data length.",
        query="""
            SELECT i.PatientID, i.StudyInstanceUID, i.SeriesInstanceUID, i.SOPInstanceUID, i.path,
                e.n_items || '/' || i.NumberOfFrames,
                e.n_items || ' per-frame functional group item(s) for NumberOfFrames '
                    || i.NumberOfFrames
            FROM elements e JOIN instances i ON i.file_id = e.file_id
            WHERE e.tag = '52009230' AND e.seq_path = ''
                AND e.n_items IS DISTINCT FROM coalesce(i.NumberOfFrames, 1)
        """,
        requires=("elements", "instances"),
    )
)
