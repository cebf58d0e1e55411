"""Pixel content: analytic anatomy-like phantoms sampled at each pixel's patient position.

A phantom is a list of axis-aligned ellipsoids in patient coordinates (LPS, mm), each made of a tissue;
later ellipsoids paint over earlier ones. A slice is rendered by evaluating the phantom at the patient
position of every pixel, so any orientation (axial, tilted, sagittal, a localizer projection) shows the
same anatomy consistently. For axial slices the coordinates are separable (x per column, y per row, one
z), so numpy broadcasting renders a 512x512 slice in a few milliseconds.

Tissue values are Hounsfield units for CT and arbitrary-but-plausible signal for each MR weighting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

#: tissue -> value per contrast. CT contrast phases change only enhancing tissues (see ENHANCEMENT_HU).
TISSUES: dict[str, dict[str, float]] = {
    "air": {"ct": -1000, "t1": 0, "t2": 0, "flair": 0, "dwi_b0": 0, "dwi_b1000": 0},
    "fat": {"ct": -100, "t1": 900, "t2": 700, "flair": 600, "dwi_b0": 300, "dwi_b1000": 20},
    "muscle": {"ct": 45, "t1": 450, "t2": 300, "flair": 350, "dwi_b0": 250, "dwi_b1000": 60},
    "lung": {"ct": -860, "t1": 20, "t2": 20, "flair": 20, "dwi_b0": 10, "dwi_b1000": 5},
    "blood": {"ct": 42, "t1": 400, "t2": 500, "flair": 300, "dwi_b0": 300, "dwi_b1000": 40},
    "myocardium": {"ct": 50, "t1": 500, "t2": 350, "flair": 350, "dwi_b0": 250, "dwi_b1000": 60},
    "liver": {"ct": 58, "t1": 600, "t2": 300, "flair": 350, "dwi_b0": 250, "dwi_b1000": 90},
    "bone": {"ct": 700, "t1": 300, "t2": 200, "flair": 150, "dwi_b0": 60, "dwi_b1000": 10},
    "cortical_bone": {"ct": 1300, "t1": 40, "t2": 30, "flair": 30, "dwi_b0": 10, "dwi_b1000": 5},
    "scalp": {"ct": 30, "t1": 850, "t2": 650, "flair": 550, "dwi_b0": 280, "dwi_b1000": 25},
    "gray_matter": {"ct": 38, "t1": 550, "t2": 620, "flair": 660, "dwi_b0": 600, "dwi_b1000": 330},
    "white_matter": {"ct": 27, "t1": 800, "t2": 420, "flair": 500, "dwi_b0": 420, "dwi_b1000": 300},
    "csf": {"ct": 6, "t1": 180, "t2": 1500, "flair": 70, "dwi_b0": 1400, "dwi_b1000": 35},
    "vessel": {"ct": 45, "t1": 350, "t2": 300, "flair": 200, "dwi_b0": 150, "dwi_b1000": 20},
}

#: extra HU of enhancing tissues per CT contrast phase
ENHANCEMENT_HU: dict[str, dict[str, float]] = {
    "non_contrast": {},
    "arterial": {"blood": 260, "vessel": 200, "myocardium": 60, "liver": 20},
    "portal_venous": {"blood": 120, "vessel": 110, "myocardium": 40, "liver": 60},
    "delayed": {"blood": 50, "vessel": 45, "myocardium": 20, "liver": 30},
}


@dataclass(frozen=True)
class Ellipsoid:
    """An axis-aligned ellipsoid of one tissue: center and semi-axes in mm (LPS)."""

    center: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    tissue: str


def _chest() -> tuple[Ellipsoid, ...]:
    e = Ellipsoid
    parts = [
        e((0, 0, 0), (175, 125, 400), "fat"),
        e((0, 0, 0), (160, 110, 400), "muscle"),
        e((80, 0, 50), (62, 82, 140), "lung"),
        e((-80, 0, 50), (66, 84, 140), "lung"),
        e((-60, -5, -175), (95, 85, 75), "liver"),
        e((20, -35, -20), (58, 52, 60), "myocardium"),
        e((22, -38, -18), (38, 34, 42), "blood"),
        e((15, 25, 0), (14, 14, 260), "blood"),
        e((-12, -40, 90), (12, 12, 60), "blood"),
        e((0, 72, 0), (22, 20, 400), "cortical_bone"),
        e((0, 72, 0), (18, 16, 400), "bone"),
        e((0, -105, 20), (14, 6, 110), "bone"),
    ]
    # pulmonary vessels: a deterministic sprinkle inside both lungs
    rng = np.random.default_rng(20240501)
    for side in (1, -1):
        for _ in range(28):
            x = side * float(rng.uniform(40, 120))
            y = float(rng.uniform(-60, 60))
            z = float(rng.uniform(-70, 170))
            r = float(rng.uniform(2.5, 6))
            parts.append(e((x, y, z), (r, r, float(rng.uniform(10, 35))), "vessel"))
    # ribs: thin bone shells every ~25 mm
    for z in range(-160, 200, 26):
        parts.insert(1, e((0, 0, float(z)), (168, 118, 5), "bone"))
        parts.insert(2, e((0, 0, float(z)), (161, 111, 6), "muscle"))
    return tuple(parts)


def _head() -> tuple[Ellipsoid, ...]:
    e = Ellipsoid
    return (
        e((0, 0, 0), (78, 98, 92), "scalp"),
        e((0, 0, 0), (73, 93, 87), "cortical_bone"),
        e((0, 0, 0), (68, 88, 82), "csf"),
        e((0, 0, 0), (66, 86, 80), "gray_matter"),
        e((0, 3, 8), (54, 72, 60), "white_matter"),
        e((12, -4, 14), (6, 26, 16), "csf"),
        e((-12, -4, 14), (6, 26, 16), "csf"),
        e((0, 30, -10), (4, 6, 8), "csf"),
        e((25, 0, 0), (10, 14, 10), "gray_matter"),
        e((-25, 0, 0), (10, 14, 10), "gray_matter"),
        e((0, 55, -55), (42, 26, 24), "gray_matter"),
        e((0, 45, -60), (14, 14, 30), "white_matter"),
        e((30, -60, -70), (14, 14, 10), "air"),
        e((-30, -60, -70), (14, 14, 10), "air"),
        e((0, -90, -40), (12, 10, 40), "cortical_bone"),
    )


PHANTOMS: dict[str, tuple[Ellipsoid, ...]] = {"chest": _chest(), "head": _head()}

#: z extent (mm, LPS) of each phantom's region of interest: where a scan of that body part goes
Z_EXTENT: dict[str, tuple[float, float]] = {"chest": (-150.0, 170.0), "head": (-80.0, 85.0)}


def tissue_value(tissue: str, contrast: str, phase: str | None = None) -> float:
    """The value of ``tissue`` under ``contrast`` (``ct`` or an MR weighting)."""
    value = TISSUES[tissue][contrast]
    if contrast == "ct" and phase:
        value += ENHANCEMENT_HU.get(phase, {}).get(tissue, 0.0)
    return float(value)


def render(
    body_part: str,
    contrast: str,
    x: FloatArray,
    y: FloatArray,
    z: FloatArray | float,
    *,
    scale: float = 1.0,
    phase: str | None = None,
) -> FloatArray:
    """Evaluate a phantom at patient coordinates (any broadcast-compatible shapes).

    Parameters
    ----------
    body_part
        ``chest`` or ``head``.
    contrast
        ``ct`` (HU) or an MR weighting: ``t1``, ``t2``, ``flair``, ``dwi_b0``, ``dwi_b1000``.
    x, y, z
        Patient coordinates in mm; for an axial slice ``x`` is (1, C), ``y`` (R, 1) and ``z`` a scalar.
    scale
        Body size factor of this patient (1.0 = the reference anatomy).
    phase
        CT contrast phase (see :data:`ENHANCEMENT_HU`).

    Returns
    -------
    numpy.ndarray
        The values, shape of the broadcast of ``x``, ``y``, ``z``.
    """
    shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
    out = np.full(shape, tissue_value("air", contrast), dtype=np.float64)
    xs, ys, zs = np.asarray(x) / scale, np.asarray(y) / scale, np.asarray(z) / scale
    separable = (
        len(shape) == 2
        and np.ndim(zs) == 0
        and xs.shape == (1, shape[1])
        and ys.shape == (shape[0], 1)
    )
    coarse = None
    if not separable and len(shape) == 2 and min(shape) >= 32:
        step = 8
        full = tuple(np.broadcast_to(a, shape) for a in (xs, ys, zs))
        pts = np.stack([a[::step, ::step] for a in full])
        # the farthest a pixel can be from its nearest coarse sample, with some slack
        margin = float(
            np.linalg.norm(pts[:, 1, 0] - pts[:, 0, 0])
            + np.linalg.norm(pts[:, 0, 1] - pts[:, 0, 0])
        )
        coarse = (pts[0], pts[1], pts[2], margin, step)
    for ell in PHANTOMS[body_part]:
        cx, cy, cz = ell.center
        ax, ay, az = ell.semi_axes
        value = tissue_value(ell.tissue, contrast, phase)
        if separable:
            # axial slice: only the bounding box of the ellipse cut needs evaluating
            dz = float(((zs - cz) / az) ** 2)
            if dz > 1.0:
                continue
            k = np.sqrt(1.0 - dz)
            cols = np.flatnonzero(np.abs(xs[0] - cx) <= ax * k)
            rows = np.flatnonzero(np.abs(ys[:, 0] - cy) <= ay * k)
            if cols.size == 0 or rows.size == 0:
                continue
            c0, c1, r0, r1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
            # per row, the half-width of the ellipse cut: one broadcast compare per ellipse
            v = (ys[r0:r1] - cy) / ay
            half = ax * np.sqrt(np.clip(1.0 - dz - v * v, 0.0, None))
            inside = np.abs(xs[:, c0:c1] - cx) <= half
            np.putmask(out[r0:r1, c0:c1], inside, value)
            continue
        if coarse is not None:
            # oblique plane: find the ellipse cut's bounding box on a coarse grid first
            xc, yc, zc, margin, step = coarse
            near = ((xc - cx) / (ax + margin)) ** 2 + ((yc - cy) / (ay + margin)) ** 2 + (
                (zc - cz) / (az + margin)
            ) ** 2 <= 1.0
            rows_c = np.flatnonzero(near.any(axis=1))
            if rows_c.size == 0:
                continue
            cols_c = np.flatnonzero(near.any(axis=0))
            r0, r1 = max(0, (rows_c[0] - 1) * step), (rows_c[-1] + 2) * step
            c0, c1 = max(0, (cols_c[0] - 1) * step), (cols_c[-1] + 2) * step
            sub = (slice(r0, r1), slice(c0, c1))
            inside = ((full[0][sub] - cx) / ax) ** 2 + ((full[1][sub] - cy) / ay) ** 2 + (
                (full[2][sub] - cz) / az
            ) ** 2 <= 1.0
            np.putmask(out[sub], inside, value)
            continue
        dzs = ((zs - cz) / az) ** 2
        if np.ndim(dzs) == 0 and dzs > 1.0:
            continue
        inside = ((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2 + dzs <= 1.0
        out[np.broadcast_to(inside, shape)] = value
    return out


def shading(x: FloatArray, y: FloatArray, amplitude: float) -> FloatArray:
    """A smooth low-frequency intensity variation (MR coil sensitivity, CT beam hardening)."""
    r2 = (np.asarray(x) / 220.0) ** 2 + (np.asarray(y) / 220.0) ** 2
    return 1.0 + amplitude * (0.5 - r2)


def slice_coordinates(
    position: tuple[float, float, float],
    orientation: tuple[float, ...],
    pixel_spacing: tuple[float, float],
    rows: int,
    columns: int,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Patient coordinates of every pixel of a slice (DICOM PS3.3 C.7.6.2.1.1).

    ``pixel_spacing`` is (row spacing, column spacing) as in PixelSpacing. Axial slices return
    separable arrays; others full (rows, columns) arrays.
    """
    row_dir = np.asarray(orientation[:3], dtype=np.float64)
    col_dir = np.asarray(orientation[3:6], dtype=np.float64)
    p = np.asarray(position, dtype=np.float64)
    c = np.arange(columns, dtype=np.float64) * pixel_spacing[1]
    r = np.arange(rows, dtype=np.float64) * pixel_spacing[0]
    if np.allclose(row_dir, (1, 0, 0)) and np.allclose(col_dir, (0, 1, 0)):
        return (p[0] + c)[None, :], (p[1] + r)[:, None], np.asarray(p[2])
    pts = p[None, None, :] + c[None, :, None] * row_dir + r[:, None, None] * col_dir
    return pts[..., 0], pts[..., 1], pts[..., 2]


def projection(
    body_part: str,
    u: FloatArray,
    z: FloatArray,
    *,
    axis: str,
    extent: tuple[float, float],
    scale: float = 1.0,
    samples: int = 48,
) -> FloatArray:
    """A localizer (scout/topogram) image: mean attenuation along ``axis``, as HU-like values.

    ``u`` is the in-plane horizontal coordinate (x for a frontal ``axis="y"`` projection, y for a
    lateral ``axis="x"`` one) and ``z`` the vertical one, both broadcastable; ``extent`` is the range
    of ``axis`` integrated over with ``samples`` planes.
    """
    shape = np.broadcast_shapes(np.shape(u), np.shape(z))
    if len(shape) == 2 and min(shape) >= 64:
        # a scout is blurry: integrate on a 4x coarser grid, then repeat back to full size
        u_full = np.broadcast_to(u, shape)
        z_full = np.broadcast_to(z, shape)
        coarse = projection(
            body_part, u_full[::4, ::4], z_full[::4, ::4], axis=axis, extent=extent,
            scale=scale, samples=samples,
        )  # fmt: skip
        return np.asarray(
            np.repeat(np.repeat(coarse, 4, axis=0), 4, axis=1)[: shape[0], : shape[1]]
        )
    total = np.zeros(shape)
    for t in np.linspace(extent[0], extent[1], samples):
        t_arr = np.asarray(t)
        if axis == "y":
            hu = render(body_part, "ct", u, t_arr, z, scale=scale)
        else:
            hu = render(body_part, "ct", t_arr, u, z, scale=scale)
        total += (hu + 1000.0) / 1000.0
    return np.asarray(total / samples * 2400.0 - 1000.0)


class NoiseBank:
    """Pre-drawn Gaussian noise from which each slice takes a randomly offset window.

    Drawing 512x512 normals per slice costs more than rendering it; windows of one bank differ
    enough for artifact metrics and make generation several times faster.
    """

    def __init__(self, rng: np.random.Generator, rows: int, columns: int, margin: int = 61) -> None:
        self.rows, self.columns, self.margin = rows, columns, margin
        self.field = rng.standard_normal((rows + margin, columns + margin)).astype(np.float32)

    def window(self, rng: np.random.Generator) -> NDArray[np.float32]:
        """A (rows, columns) view of unit-variance noise."""
        oy, ox = (int(v) for v in rng.integers(0, self.margin, size=2))
        return self.field[oy : oy + self.rows, ox : ox + self.columns]
