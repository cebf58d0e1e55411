"""Defect kinds, declared once, and how each is planted.

A :class:`DefectKind` is a small frozen declaration: a stable snake_case code (the ``kind`` column of
``ground_truth.parquet``; never renamed), the level its truth rows are recorded at, the modalities and
series types it may be planted in, and what it looks like in the files. Planting is done by the
function registered for the code in :data:`PLANTERS`: it edits the :class:`SeriesDraft` (geometry,
per-slice header values, pixel defects to apply after rendering, file actions) and returns the
parameters recorded in the truth table.

Truth levels:

- ``series``: one row per defective series (the defect is a property of the stack or its header).
- ``instance``: one row per affected instance (its SOPInstanceUID), e.g. each blurred slice.
- ``file``: one row per affected file (its ``path``); the UIDs are those the file would carry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from curation.synth.burnin import draw_text
from curation.synth.geometry import CORONAL, SeriesDraft, SliceDraft, rotated_about_x, slice_normal

ALL_MODALITIES = ("CT", "MR")
#: series types that can carry a stack-geometry defect (a DWI series repeats positions per b-value)
STACKS = ("ct_axial", "mr_t1", "mr_t2", "mr_flair")
IMAGES = (*STACKS, "mr_dwi")


@dataclass(frozen=True)
class DefectKind:
    """Declaration of one defect kind."""

    code: str
    level: str
    description: str
    modalities: tuple[str, ...] = ALL_MODALITIES
    series_types: tuple[str, ...] = STACKS
    #: fewest slices a series needs for the defect to be plantable
    min_slices: int = 8


DEFECTS: dict[str, DefectKind] = {
    d.code: d
    for d in (
        DefectKind(
            "missing_slices",
            "series",
            "1-3 consecutive interior slices are absent (no file); the remaining positions and "
            "instance numbers keep their regular values, so both show a gap.",
        ),
        DefectKind(
            "duplicate_slices",
            "series",
            "1-2 slices are present twice: same position and pixels, a new SOPInstanceUID; instance "
            "numbers stay consecutive.",
        ),
        DefectKind(
            "nonuniform_spacing",
            "series",
            "from one slice on, the spacing between positions changes (e.g. 2.5 mm then 5 mm).",
        ),
        DefectKind(
            "mixed_orientation",
            "series",
            "the last slices have an ImageOrientationPatient rotated 10-30 degrees about the "
            "left-right axis (an oblique restack appended to the series).",
        ),
        DefectKind(
            "embedded_localizer",
            "instance",
            "a coronal slice with ImageType ORIGINAL\\PRIMARY\\LOCALIZER is the first instance of an "
            "axial series (the truth row names it).",
            series_types=("ct_axial", "mr_t1", "mr_t2", "mr_flair"),
        ),
        DefectKind(
            "mixed_pixel_spacing",
            "series",
            "from one slice on, PixelSpacing differs (another field of view), matrix unchanged.",
        ),
        DefectKind(
            "mixed_matrix",
            "series",
            "from one slice on, Rows/Columns are halved (same field of view, double pixel spacing).",
        ),
        DefectKind(
            "gantry_tilt",
            "series",
            "CT acquired with a tilted gantry: ImageOrientationPatient tilted about the left-right "
            "axis, GantryDetectorTilt set, positions stepped along the table (z), not the normal.",
            modalities=("CT",),
            series_types=("ct_axial",),
        ),
        DefectKind(
            "too_few_slices",
            "series",
            "the series holds only 1-3 of its slices (an interrupted transfer).",
        ),
        DefectKind(
            "instance_number_gap",
            "series",
            "InstanceNumber jumps by 2-5 once while positions stay regular.",
        ),
        DefectKind(
            "instance_number_duplicate",
            "series",
            "two slices at different positions share an InstanceNumber (numbers continue from it).",
        ),
        DefectKind(
            "truncated",
            "file",
            "one file of the series is cut short (inside the pixel data, or in the header).",
            series_types=IMAGES,
            min_slices=3,
        ),
        DefectKind(
            "zero_byte",
            "file",
            "one file of the series is empty (0 bytes).",
            series_types=IMAGES,
            min_slices=3,
        ),
        DefectKind(
            "not_dicom",
            "file",
            "a junk file (Thumbs.db, a log, a JPEG thumbnail, .DS_Store) beside DICOM files; not "
            "planted in a series: the generator scatters these on its own.",
            series_types=(),
        ),
        DefectKind(
            "motion_blur",
            "instance",
            "patient motion in a run of slices: directional blur plus ghost copies shifted along "
            "the phase-encoding (column) direction.",
            series_types=IMAGES,
        ),
        DefectKind(
            "series_blur",
            "series",
            "every slice of the series is blurred alike: a Gaussian of sigma 2.5-3.5 px (a too "
            "smooth reconstruction), or a low-resolution image (3-4x fewer pixels per side, block "
            "averages) upsampled back to the matrix (bilinear). No slice is sharp, so within-series "
            "comparisons see nothing; the series' protocol peers do.",
            series_types=IMAGES,
            min_slices=3,
        ),
        DefectKind(
            "high_noise",
            "instance",
            "every slice carries strong Gaussian noise (low-dose CT, low-SNR MR).",
            series_types=IMAGES,
            min_slices=3,
        ),
        DefectKind(
            "metal_streaks",
            "instance",
            "a metal object (dental filling, prosthesis) saturating the scale with dark/bright "
            "streaks radiating from it, in a run of slices.",
            modalities=("CT",),
            series_types=("ct_axial",),
        ),
        DefectKind(
            "clipping",
            "instance",
            "every slice saturated: values clipped to a narrow window (a windowed export).",
            series_types=IMAGES,
            min_slices=3,
        ),
        DefectKind(
            "blank_slices",
            "instance",
            "1-3 slices hold a constant value (air / zero) and no anatomy.",
            series_types=IMAGES,
        ),
        DefectKind(
            "wrong_rescale",
            "series",
            "RescaleIntercept/RescaleSlope do not match the stored values, so HU are implausible "
            "(air far from -1000).",
            modalities=("CT",),
            series_types=("ct_axial",),
            min_slices=3,
        ),
        DefectKind(
            "burned_in_text",
            "instance",
            "patient name, ID and date drawn into the pixels of every slice; BurnedInAnnotation "
            "is not YES.",
            series_types=IMAGES,
            min_slices=3,
        ),
        DefectKind(
            "phi_in_header",
            "series",
            "a patient identifier (name, ID or birth date) written into a free-text element "
            "(ImageComments, ProtocolName, SeriesDescription or DerivationDescription).",
            series_types=IMAGES,
            min_slices=3,
        ),
        DefectKind(
            "burned_in_annotation_flag",
            "series",
            "BurnedInAnnotation is YES on every instance (the pixels themselves are clean).",
            series_types=IMAGES,
            min_slices=3,
        ),
    )
}


@dataclass
class DefectContext:
    """What a planter may use besides the draft."""

    rng: np.random.Generator
    modality: str
    body_part: str
    new_uid: Callable[[], str]
    identity: dict[str, str]
    study_date: str


Planter = Callable[[SeriesDraft, DefectContext], dict[str, Any]]
PLANTERS: dict[str, Planter] = {}


def planter(code: str) -> Callable[[Planter], Planter]:
    """Register the planting function of defect ``code``."""

    def register(fn: Planter) -> Planter:
        PLANTERS[code] = fn
        return fn

    return register


def _interior(draft: SeriesDraft, rng: np.random.Generator, width: int = 1) -> int:
    n = len(draft.slices)
    return int(rng.integers(2, max(3, n - 2 - width)))


def _renumber(slices: list[SliceDraft]) -> None:
    for i, s in enumerate(slices):
        s.instance_number = i + 1


@planter("missing_slices")
def _missing(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    n = len(draft.slices)
    k = int(ctx.rng.integers(1, 4 if n >= 15 else 2))
    start = _interior(draft, ctx.rng, k)
    gone = draft.slices[start : start + k]
    del draft.slices[start : start + k]
    return {
        "missing_indices": [s.index for s in gone],
        "missing_instance_numbers": [s.instance_number for s in gone],
        "n_planned": n,
        "gap_mm": round(draft.spacing_mm * (k + 1), 4),
    }


@planter("duplicate_slices")
def _duplicate(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    k = int(ctx.rng.integers(1, 3))
    picks = sorted({_interior(draft, ctx.rng) for _ in range(k)}, reverse=True)
    uids = []
    for i in picks:
        src = draft.slices[i]
        dup = SliceDraft(**{**src.__dict__, "sop_instance_uid": ctx.new_uid(), "header": {}})
        draft.slices.insert(i + 1, dup)
        uids.append([src.sop_instance_uid, dup.sop_instance_uid])
    _renumber(draft.slices)
    return {"duplicated_indices": sorted(picks), "SOPInstanceUID_pairs": uids[::-1]}


@planter("nonuniform_spacing")
def _nonuniform(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    start = _interior(draft, ctx.rng)
    factor = float(ctx.rng.choice([0.5, 1.5, 2.0])) if draft.spacing_mm > 1 else 2.0
    normal = -slice_normal(draft.slices[0].orientation)
    base = np.asarray(draft.slices[start - 1].position)
    for j, s in enumerate(draft.slices[start:], start=1):
        p = base + normal * draft.spacing_mm * factor * j
        s.position = (round(float(p[0]), 4), round(float(p[1]), 4), round(float(p[2]), 4))
    return {
        "from_index": start,
        "spacings_mm": [draft.spacing_mm, round(draft.spacing_mm * factor, 4)],
    }


@planter("mixed_orientation")
def _mixed_orientation(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    n = len(draft.slices)
    m = max(3, n // 4)
    angle = float(ctx.rng.choice([-1, 1]) * ctx.rng.integers(10, 31))
    tilted = rotated_about_x(draft.slices[0].orientation, angle)
    for s in draft.slices[n - m :]:
        s.orientation = tilted
    return {"angle_deg": angle, "from_index": n - m, "n_slices": m}


@planter("embedded_localizer")
def _embedded_localizer(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    first, last = draft.slices[0], draft.slices[-1]
    rows = first.rows // 2 if ctx.modality == "CT" else first.rows
    spacing = first.pixel_spacing[1] * first.columns / first.columns
    z_top = max(first.position[2], last.position[2]) + 40.0
    loc = SliceDraft(
        index=-1,
        position=(first.position[0], 0.0, z_top),
        orientation=CORONAL,
        pixel_spacing=(round(spacing * 2, 4), spacing),
        rows=rows,
        columns=first.columns,
        instance_number=1,
        sop_instance_uid=ctx.new_uid(),
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        localizer=True,
        header={"SliceThickness": 1.0 if ctx.modality == "CT" else 10.0},
    )
    draft.slices.insert(0, loc)
    _renumber(draft.slices)
    draft.affected = [0]
    return {"orientation": list(CORONAL), "ImageType": "ORIGINAL\\PRIMARY\\LOCALIZER"}


@planter("mixed_pixel_spacing")
def _mixed_pixel_spacing(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    start = _interior(draft, ctx.rng)
    factor = float(ctx.rng.choice([0.8, 1.2, 1.25]))
    old = draft.slices[0].pixel_spacing
    new = (round(old[0] * factor, 6), round(old[1] * factor, 6))
    for s in draft.slices[start:]:
        s.pixel_spacing = new
    return {"from_index": start, "PixelSpacing": [list(old), list(new)]}


@planter("mixed_matrix")
def _mixed_matrix(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    start = _interior(draft, ctx.rng)
    s0 = draft.slices[0]
    for s in draft.slices[start:]:
        s.rows, s.columns = s0.rows // 2, s0.columns // 2
        s.pixel_spacing = (s0.pixel_spacing[0] * 2, s0.pixel_spacing[1] * 2)
    return {"from_index": start, "matrix": [[s0.rows, s0.columns], [s0.rows // 2, s0.columns // 2]]}


@planter("gantry_tilt")
def _gantry_tilt(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    tilt = float(ctx.rng.choice([-1, 1]) * ctx.rng.integers(8, 26))
    orientation = rotated_about_x(draft.slices[0].orientation, tilt)
    for s in draft.slices:
        # the table moves along z; the tilted image plane is not perpendicular to that motion
        s.orientation = orientation
        s.header["GantryDetectorTilt"] = tilt
    return {"tilt_deg": tilt}


@planter("too_few_slices")
def _too_few(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    n = len(draft.slices)
    k = int(ctx.rng.integers(1, 4))
    start = int(ctx.rng.integers(0, n - k))
    del draft.slices[start + k :]
    del draft.slices[:start]
    return {"n_slices": k, "n_planned": n}


@planter("instance_number_gap")
def _instance_gap(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    start = _interior(draft, ctx.rng)
    gap = int(ctx.rng.integers(2, 6))
    for s in draft.slices[start:]:
        s.instance_number += gap - 1
    return {"after_instance": draft.slices[start - 1].instance_number, "gap": gap}


@planter("instance_number_duplicate")
def _instance_dup(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    start = _interior(draft, ctx.rng)
    for s in draft.slices[start:]:
        s.instance_number -= 1
    return {
        "InstanceNumber": draft.slices[start].instance_number,
        "SOPInstanceUIDs": [
            draft.slices[start - 1].sop_instance_uid,
            draft.slices[start].sop_instance_uid,
        ],
    }


def _one_file(draft: SeriesDraft, ctx: DefectContext, action: str) -> dict[str, Any]:
    i = int(ctx.rng.integers(0, len(draft.slices)))
    draft.slices[i].file_action = action
    draft.affected = [i]
    return {"index": i}


@planter("truncated")
def _truncated(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    params = _one_file(draft, ctx, "truncate")
    params["cut_in"] = "header" if ctx.rng.random() < 0.25 else "pixel_data"
    draft.slices[params["index"]].header["_cut_in"] = params["cut_in"]
    draft.slices[params["index"]].header["_cut_fraction"] = float(ctx.rng.uniform(0.2, 0.8))
    return params


@planter("zero_byte")
def _zero_byte(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    return _one_file(draft, ctx, "zero_byte")


def _pixel_run(
    draft: SeriesDraft, ctx: DefectContext, kind: str, params: dict[str, Any], run: int
) -> None:
    n = len(draft.slices)
    run = min(run, n)
    start = int(ctx.rng.integers(0, n - run + 1))
    draft.affected = list(range(start, start + run))
    for i in draft.affected:
        draft.slices[i].pixel_defect = (kind, params)


@planter("motion_blur")
def _motion_blur(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    params = {
        "kernel_px": int(ctx.rng.integers(5, 12)),
        "ghost_shift_px": int(ctx.rng.integers(8, 24)),
        "ghost_weight": round(float(ctx.rng.uniform(0.15, 0.3)), 3),
    }
    _pixel_run(draft, ctx, "motion_blur", params, int(ctx.rng.integers(3, 9)))
    return params


@planter("series_blur")
def _series_blur(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    if ctx.rng.random() < 0.5:
        params: dict[str, Any] = {
            "variant": "gaussian",
            "sigma_px": round(float(ctx.rng.uniform(2.5, 3.5)), 2),
        }
    else:
        params = {"variant": "upsampled", "factor": int(ctx.rng.integers(3, 5))}
    _pixel_run(draft, ctx, "series_blur", params, len(draft.slices))
    return params


@planter("high_noise")
def _high_noise(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    sigma = (
        float(ctx.rng.uniform(70, 140)) if ctx.modality == "CT" else float(ctx.rng.uniform(60, 110))
    )
    params = {"sigma": round(sigma, 1), "unit": "HU" if ctx.modality == "CT" else "signal"}
    _pixel_run(draft, ctx, "high_noise", params, len(draft.slices))
    return params


@planter("metal_streaks")
def _metal(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    if ctx.body_part == "head":
        center = (float(ctx.rng.uniform(-25, 25)), -75.0)
    else:
        center = (float(ctx.rng.uniform(-60, 60)), float(ctx.rng.uniform(-60, 40)))
    params = {
        "center_xy_mm": [round(center[0], 2), round(center[1], 2)],
        "radius_mm": round(float(ctx.rng.uniform(3, 7)), 2),
        "n_streaks": int(ctx.rng.integers(6, 14)),
        "amplitude_hu": round(float(ctx.rng.uniform(300, 700)), 1),
    }
    _pixel_run(draft, ctx, "metal_streaks", params, int(ctx.rng.integers(3, 8)))
    return params


@planter("clipping")
def _clipping(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    if ctx.modality == "CT":
        params: dict[str, Any] = {"low": -160.0, "high": float(ctx.rng.choice([150.0, 240.0]))}
    else:
        params = {"low": 0.0, "high": float(ctx.rng.choice([300.0, 400.0]))}
    _pixel_run(draft, ctx, "clipping", params, len(draft.slices))
    return params


@planter("blank_slices")
def _blank(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    value = -1000.0 if ctx.modality == "CT" else 0.0
    params = {"value": value}
    _pixel_run(draft, ctx, "blank_slices", params, int(ctx.rng.integers(1, 4)))
    return params


@planter("wrong_rescale")
def _wrong_rescale(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    variant = str(ctx.rng.choice(["intercept_zero", "intercept_sign", "slope"]))
    if variant == "intercept_zero":
        header: dict[str, Any] = {"RescaleIntercept": 0.0}
    elif variant == "intercept_sign":
        header = {"RescaleIntercept": 1024.0}
    else:
        header = {"RescaleSlope": 10.0}
    draft.header.update(header)
    return {"variant": variant, **header}


@planter("burned_in_text")
def _burned_in_text(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    ident = ctx.identity
    lines = [ident["PatientName"], f"ID {ident['PatientID']}", ctx.study_date]
    params = {"lines": lines, "row_fraction": 0.03, "col_fraction": 0.03}
    _pixel_run(draft, ctx, "burned_in_text", params, len(draft.slices))
    return params


@planter("phi_in_header")
def _phi_in_header(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    keyword = str(
        ctx.rng.choice(
            ["ImageComments", "ProtocolName", "SeriesDescription", "DerivationDescription"]
        )
    )
    identifier = str(ctx.rng.choice(["PatientName", "PatientID", "PatientBirthDate"]))
    raw = ctx.identity[identifier]
    text = {
        "PatientName": f"pt {raw.replace('^', ' ')}",
        "PatientID": f"MRN {raw}",
        "PatientBirthDate": f"DOB {raw}",
    }[identifier]
    draft.header[keyword] = text  # the writer appends it to the value the element would have
    draft.header["_phi_keyword"] = keyword
    return {"keyword": keyword, "identifier": identifier, "text": text}


@planter("burned_in_annotation_flag")
def _bia_flag(draft: SeriesDraft, ctx: DefectContext) -> dict[str, Any]:
    draft.header["BurnedInAnnotation"] = "YES"
    return {"BurnedInAnnotation": "YES"}


# --- pixel defects: applied to the rendered values (HU or MR signal) before storage -------------


def apply_pixel_defect(
    kind: str,
    params: dict[str, Any],
    image: NDArray[np.float64],
    *,
    rng: np.random.Generator,
    position: tuple[float, float, float],
    pixel_spacing: tuple[float, float],
    modality: str,
) -> NDArray[np.float64]:
    """Return ``image`` with the pixel defect ``kind`` applied (may modify it in place)."""
    if kind == "motion_blur":
        k = int(params["kernel_px"])
        blurred = sum(np.roll(image, s, axis=1) for s in range(-(k // 2), k - k // 2)) / k
        shift, w = int(params["ghost_shift_px"]), float(params["ghost_weight"])
        ghost = 0.5 * (np.roll(blurred, shift, axis=0) + np.roll(blurred, -shift, axis=0))
        return np.asarray((1 - w) * blurred + w * ghost)
    if kind == "series_blur":
        return _series_blur_image(image, params)
    if kind == "high_noise":
        return image + rng.normal(0.0, float(params["sigma"]), image.shape)
    if kind == "metal_streaks":
        rows, cols = image.shape
        yy = position[1] + np.arange(rows)[:, None] * pixel_spacing[0]
        xx = position[0] + np.arange(cols)[None, :] * pixel_spacing[1]
        cx, cy = params["center_xy_mm"]
        dx, dy = xx - cx, yy - cy
        dist = np.hypot(dx, dy)
        angle = np.arctan2(dy, dx)
        streaks = np.zeros_like(image)
        angles = np.linspace(0, np.pi, int(params["n_streaks"]), endpoint=False)
        for j, a in enumerate(angles):
            sign = 1.0 if j % 2 else -1.0
            delta = np.angle(np.exp(2j * (angle - a))) / 2
            streaks += sign * np.exp(-((delta / 0.02) ** 2))
        falloff = np.clip(40.0 / np.maximum(dist, 1.0), 0, 1)
        out = image + float(params["amplitude_hu"]) * streaks * falloff
        out[dist <= float(params["radius_mm"])] = 3000.0
        return np.asarray(out)
    if kind == "clipping":
        return np.clip(image, float(params["low"]), float(params["high"]))
    if kind == "blank_slices":
        return np.full_like(image, float(params["value"]))
    if kind == "burned_in_text":
        rows, cols = image.shape
        scale = max(1, rows // 128)
        bright = 3000.0 if modality == "CT" else float(np.max(image)) * 1.2 + 1.0
        draw_text(
            image,
            list(params["lines"]),
            int(rows * float(params["row_fraction"])),
            int(cols * float(params["col_fraction"])),
            bright,
            scale,
        )
        return image
    raise ValueError(f"unknown pixel defect kind {kind!r}")


def _series_blur_image(image: NDArray[np.float64], params: dict[str, Any]) -> NDArray[np.float64]:
    """A Gaussian-blurred copy, or a block-averaged low-resolution copy upsampled bilinearly."""
    from scipy import ndimage

    if params["variant"] == "gaussian":
        return np.asarray(ndimage.gaussian_filter(image, float(params["sigma_px"])))
    f = int(params["factor"])
    rows, cols = (image.shape[0] // f) * f, (image.shape[1] // f) * f
    small = image[:rows, :cols].reshape(rows // f, f, cols // f, f).mean(axis=(1, 3))
    up = ndimage.zoom(small, f, order=1, grid_mode=True, mode="nearest")
    out = image.copy()  # a remainder of fewer than f rows/columns keeps its values
    out[:rows, :cols] = up
    return out
