"""Plant defects into copies of real DICOM series, to measure the rules on real pixels and headers.

The synthetic cohort (:mod:`curation.synth.generate`) plants every defect kind into phantoms the
rules were tuned on; this module plants the same kinds (:data:`curation.synth.defects.DEFECTS`
codes, same pixel functions) into copies of real series, which nobody tuned anything on. A copy is
a new series (new Series and SOP Instance UIDs, the rest of every header as the scanner wrote it)
written under a folder the caller names; the source files are only read.

:func:`plant_series` copies one series with at most one defect; :data:`REAL_KINDS` lists the kinds
it can plant and the modalities each applies to. The returned :class:`Planted` is one truth row.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from curation.synth.defects import apply_pixel_defect

#: Kinds :func:`plant_series` can plant, and the modalities each applies to.
REAL_KINDS: dict[str, tuple[str, ...]] = {
    "missing_slices": ("CT", "MR"),
    "duplicate_slices": ("CT", "MR"),
    "nonuniform_spacing": ("CT", "MR"),
    "mixed_orientation": ("CT", "MR"),
    "gantry_tilt": ("CT",),
    "embedded_localizer": ("CT", "MR"),
    "motion_blur": ("CT", "MR"),
    "series_blur": ("CT", "MR"),
    "high_noise": ("CT", "MR"),
    "metal_streaks": ("CT",),
    "clipping": ("CT", "MR"),
    "blank_slices": ("CT", "MR"),
    "wrong_rescale": ("CT",),
    "burned_in_text": ("CT", "MR"),
}


@dataclass(frozen=True)
class Planted:
    """One planted copy: its series, the kind (None: a clean copy) and the parameters used."""

    SeriesInstanceUID: str
    kind: str | None
    modality: str
    source: str
    folder: Path
    params: dict[str, Any] = field(default_factory=dict)


def _uid(rng: np.random.Generator) -> str:
    # 2.25 + a 128-bit integer: the UUID-derived root PS3.5 B.2 allows without registration
    return "2.25." + str(int.from_bytes(rng.bytes(16), "big"))


def _read_stack(files: Sequence[Path]) -> list[Any]:
    """The series' datasets, pixel data decompressed, in slice order (position along the normal)."""
    import pydicom

    stack = []
    for p in files:
        ds = pydicom.dcmread(p)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        stack.append(ds)
    iop = np.asarray(stack[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    stack.sort(key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, float))))
    return stack


def _normal(ds: Any) -> NDArray[np.float64]:
    iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
    return np.asarray(np.cross(iop[:3], iop[3:]))


def _renumber(stack: list[Any]) -> None:
    for i, ds in enumerate(stack):
        ds.InstanceNumber = i + 1


def _rotated(
    iop: Sequence[float], deg: float, axis: Sequence[float] = (1.0, 0.0, 0.0)
) -> list[float]:
    """Direction cosines rotated by ``deg`` about ``axis`` (default: the patient's left-right)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(deg)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot = np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * (kx @ kx)  # Rodrigues
    r, c = rot @ np.asarray(iop[:3], float), rot @ np.asarray(iop[3:], float)
    return [round(float(v), 6) for v in (*r, *c)]


def _values(ds: Any) -> NDArray[np.float64]:
    """Pixel values in modality units (rescale applied)."""
    arr = ds.pixel_array.astype(np.float64)
    return arr * float(getattr(ds, "RescaleSlope", 1) or 1) + float(
        getattr(ds, "RescaleIntercept", 0) or 0
    )


def _padding_mask(ds: Any) -> NDArray[np.bool_] | None:
    """Pixels holding PixelPaddingValue, or None."""
    padding = getattr(ds, "PixelPaddingValue", None)
    if padding is None:
        return None
    mask = np.asarray(ds.pixel_array == padding)
    return mask if mask.any() else None


def _store(ds: Any, values: NDArray[np.float64]) -> None:
    """Write modality values back as stored values, clipped to what the pixel format holds."""
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    stored = np.rint((values - intercept) / slope)
    bits = int(ds.BitsStored)
    lo, hi = (
        (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if ds.PixelRepresentation else (0, 2**bits - 1)
    )
    dtype = ds.pixel_array.dtype
    ds.PixelData = np.clip(stored, lo, hi).astype(dtype).tobytes()


def _contrast(stack: list[Any]) -> tuple[float, float]:
    """(background, foreground) medians of the middle slice, split by Otsu's threshold."""
    from skimage.filters import threshold_otsu

    v = _values(stack[len(stack) // 2])
    t = float(threshold_otsu(v))
    return float(np.median(v[v <= t])), float(np.median(v[v > t]))


def _pixel_params(
    kind: str, stack: list[Any], modality: str, rng: np.random.Generator
) -> dict[str, Any]:
    """Parameters of a pixel defect, scaled to this series' intensities where the unit is not HU."""
    bg, fg = _contrast(stack)
    if kind == "motion_blur":
        return {
            "kernel_px": int(rng.integers(5, 12)),
            "ghost_shift_px": max(2, int(stack[0].Rows) // int(rng.integers(8, 16))),
            "ghost_weight": round(float(rng.uniform(0.15, 0.3)), 3),
        }
    if kind == "series_blur":
        if rng.random() < 0.5:
            return {"variant": "gaussian", "sigma_px": round(float(rng.uniform(2.5, 3.5)), 2)}
        return {"variant": "upsampled", "factor": int(rng.integers(3, 5))}
    if kind == "high_noise":
        sigma = float(rng.uniform(70, 140)) if modality == "CT" else 0.3 * (fg - bg)
        return {"sigma": round(sigma, 1)}
    if kind == "clipping":
        if modality == "CT":
            return {"low": -160.0, "high": float(rng.choice([150.0, 240.0]))}
        return {"low": bg, "high": round(bg + 0.5 * (fg - bg), 1)}
    if kind == "blank_slices":
        return {"value": -1000.0 if modality == "CT" else bg}
    if kind == "burned_in_text":
        return {
            "lines": ["DOE^JANE", "ID 4711-0815", "20240229"],
            "row_fraction": 0.03,
            "col_fraction": 0.03,
        }
    if kind == "metal_streaks":
        ds = stack[0]
        rows, cols = int(ds.Rows), int(ds.Columns)
        dy, dx = (float(v) for v in ds.PixelSpacing)
        x0, y0 = (float(v) for v in ds.ImagePositionPatient[:2])
        cx, cy = x0 + dx * cols / 2, y0 + dy * rows / 2
        return {
            "center_xy_mm": [round(cx + float(rng.uniform(-20, 20)), 2), round(cy + 30.0, 2)],
            "radius_mm": round(float(rng.uniform(3, 7)), 2),
            "n_streaks": int(rng.integers(6, 14)),
            "amplitude_hu": round(float(rng.uniform(300, 700)), 1),
        }
    raise ValueError(f"not a pixel defect: {kind!r}")


#: How many slices each pixel defect touches: all, or a run of a few.
_RUN = {"motion_blur": (3, 6), "metal_streaks": (3, 6), "blank_slices": (1, 3)}


def _plant_pixels(
    kind: str, stack: list[Any], modality: str, rng: np.random.Generator
) -> dict[str, Any]:
    params = _pixel_params(kind, stack, modality, rng)
    n = len(stack)
    if kind in _RUN:
        run = min(int(rng.integers(*_RUN[kind])), n - 2)
        start = int(rng.integers(1, n - run))
        chosen = range(start, start + run)
        params["slices"] = [start, start + run - 1]
    else:
        chosen = range(n)
    for i in chosen:
        ds = stack[i]
        pos = tuple(float(v) for v in ds.ImagePositionPatient)
        spacing = tuple(float(v) for v in ds.PixelSpacing)
        values = _values(ds)
        # Padding (outside a CT's reconstruction circle) is not anatomy: the scanner would not
        # blur, noise or clip it. Filled with the lowest real value for the defect, then restored.
        pad = _padding_mask(ds)
        if pad is not None:
            pad_value = values[pad][0]
            values[pad] = values[~pad].min() if (~pad).any() else pad_value
        img = apply_pixel_defect(
            kind,
            params,
            values,
            rng=rng,
            position=(pos[0], pos[1], pos[2]),
            pixel_spacing=(spacing[0], spacing[1]),
            modality=modality,
        )
        if pad is not None:
            img[pad] = pad_value
        _store(ds, img)
    return params


def _plant_header(kind: str, stack: list[Any], rng: np.random.Generator) -> dict[str, Any]:
    """Edit the stack (list and headers) for a geometry or header defect; return its parameters."""
    n = len(stack)
    normal = _normal(stack[0])
    spacing = float(
        np.dot(
            normal,
            np.asarray(stack[1].ImagePositionPatient, float)
            - np.asarray(stack[0].ImagePositionPatient, float),
        )
    )
    if kind == "missing_slices":
        width = int(rng.integers(1, 3))
        start = int(rng.integers(2, n - 2 - width))
        del stack[start : start + width]
        return {"removed": [start, start + width - 1]}
    if kind == "duplicate_slices":
        i = int(rng.integers(1, n - 1))
        stack.insert(i + 1, copy.deepcopy(stack[i]))
        _renumber(stack)
        return {"duplicated": i}
    if kind == "nonuniform_spacing":
        k = int(rng.integers(n // 3, 2 * n // 3))
        extra = 0.5 * spacing
        for j, ds in enumerate(stack[k:], start=1):
            ds.ImagePositionPatient = [
                round(float(v), 4)
                for v in np.asarray(ds.ImagePositionPatient, float) + j * extra * normal
            ]
        return {"from_slice": k, "extra_mm": round(extra, 3)}
    if kind == "mixed_orientation":
        deg = float(rng.choice([-1, 1]) * rng.uniform(10, 30))
        m = max(3, n // 4)
        row_axis = [float(v) for v in stack[0].ImageOrientationPatient[:3]]
        for ds in stack[-m:]:  # tilted about the image rows: the slice normal turns
            ds.ImageOrientationPatient = _rotated(ds.ImageOrientationPatient, deg, row_axis)
        return {"last_slices": m, "deg": round(deg, 1)}
    if kind == "gantry_tilt":
        deg = float(rng.uniform(12, 25))
        for ds in stack:
            ds.ImageOrientationPatient = _rotated(ds.ImageOrientationPatient, deg)
            ds.GantryDetectorTilt = round(deg, 2)
        return {"deg": round(deg, 1)}
    if kind == "embedded_localizer":
        loc = copy.deepcopy(stack[n // 2])
        loc.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        loc.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]  # coronal
        stack.insert(0, loc)
        _renumber(stack)
        return {"first_instance": True}
    if kind == "wrong_rescale":
        variant = str(rng.choice(["intercept", "slope"]))
        # a wrong intercept is one that differs from the scanner's: 0 where it wrote -1024, 1024
        # where it wrote 0 (GE writes HU directly, intercept 0)
        was = float(getattr(stack[0], "RescaleIntercept", 0) or 0)
        for ds in stack:
            if variant == "intercept":
                ds.RescaleIntercept = 0 if was != 0 else 1024
            else:
                ds.RescaleSlope = 10
        return {"variant": variant, "true_RescaleIntercept": was}
    raise ValueError(f"not a header defect: {kind!r}")


_PIXEL_KINDS = frozenset(
    {
        "motion_blur",
        "series_blur",
        "high_noise",
        "metal_streaks",
        "clipping",
        "blank_slices",
        "burned_in_text",
    }
)


def plant_series(
    files: Sequence[Path],
    out: Path,
    kind: str | None,
    *,
    seed: int,
    source: str = "",
) -> Planted:
    """Copy the single-frame series ``files`` into the new folder ``out``, planting ``kind``.

    Parameters
    ----------
    files
        The files of one single-frame series (a stack of at least 8 slices).
    out
        Folder to create for the copy; must not exist.
    kind
        A key of :data:`REAL_KINDS`, or None for a clean copy.
    seed
        Seeds the new UIDs and the defect's parameters: the same seed gives the same copy.
    source
        Where the series came from, recorded in the truth row.

    Raises
    ------
    ValueError
        ``kind`` is unknown, or does not apply to the series' modality.
    """
    return _plant(_read_stack(files), out, kind, seed=seed, source=source)


def _plant(stack: list[Any], out: Path, kind: str | None, *, seed: int, source: str) -> Planted:
    rng = np.random.default_rng(seed)
    modality = str(stack[0].Modality)
    if kind is not None and modality not in REAL_KINDS.get(kind, ()):
        raise ValueError(f"cannot plant {kind!r} into a {modality} series")
    series_uid = _uid(rng)
    params: dict[str, Any] = {}
    if kind in _PIXEL_KINDS:
        params = _plant_pixels(kind, stack, modality, rng)
    elif kind is not None:
        params = _plant_header(kind, stack, rng)
    out.mkdir(parents=True)
    for i, ds in enumerate(stack):
        sop = _uid(rng)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.save_as(out / f"{i + 1:04d}.dcm", enforce_file_format=True)
    return Planted(series_uid, kind, modality, source, out, params)


@dataclass(frozen=True)
class Source:
    """A real single-frame series to plant into: a name and its files (one volume)."""

    name: str
    files: tuple[Path, ...]

    @classmethod
    def from_folder(cls, name: str, folder: Path, max_slices: int | None = None) -> Source:
        """The single-frame images under ``folder`` as one volume: one file per position (the
        lowest InstanceNumber: the first volume of a 4D series), in position order, the central
        ``max_slices`` of them when given."""
        import pydicom

        heads = []
        for p in sorted(q for q in folder.rglob("*") if q.is_file()):
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=True)
            except pydicom.errors.InvalidDicomError:
                continue  # DICOMDIR-like leftovers, sidecars
            if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds:
                heads.append((p, ds))
        normal = _normal(heads[0][1])
        first: dict[float, tuple[int, Path]] = {}
        for p, ds in heads:
            z = round(float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))), 3)
            n = int(getattr(ds, "InstanceNumber", 0) or 0)
            if z not in first or n < first[z][0]:
                first[z] = (n, p)
        files = [first[z][1] for z in sorted(first)]
        if max_slices is not None and len(files) > max_slices:
            start = (len(files) - max_slices) // 2
            files = files[start : start + max_slices]
        return cls(name, tuple(files))


def plant_cohort(
    sources: Sequence[Source],
    out: Path,
    *,
    kinds: Sequence[str] | None = None,
    copies: int = 1,
    clean: int = 1,
    seed: int = 0,
) -> list[Planted]:
    """Plant every applicable kind ``copies`` times into each source, plus ``clean`` clean copies.

    Copies go to ``out/<source>/<kind or clean>_<n>/``. Returns the truth, one row per copy.
    """
    planted = []
    for s_idx, src in enumerate(sources):
        stack = _read_stack(src.files)  # read once; every copy starts from a deep copy
        modality = str(stack[0].Modality)
        chosen = [k for k in (kinds or REAL_KINDS) if modality in REAL_KINDS[k]]
        todo: list[str | None] = [*([None] * clean), *[k for k in chosen for _ in range(copies)]]
        for j, kind in enumerate(todo):
            folder = out / src.name / f"{kind or 'clean'}_{j}"
            planted.append(
                _plant(
                    copy.deepcopy(stack),
                    folder,
                    kind,
                    seed=seed * 1_000_003 + s_idx * 1000 + j,
                    source=src.name,
                )
            )
    return planted


def truth_frame(planted: Sequence[Planted]) -> Any:
    """The truth as a polars frame: SeriesInstanceUID, kind, modality, source."""
    import polars as pl

    return pl.DataFrame(
        {
            "SeriesInstanceUID": [p.SeriesInstanceUID for p in planted],
            "kind": [p.kind for p in planted],
            "modality": [p.modality for p in planted],
            "source": [p.source for p in planted],
        },
        schema={
            "SeriesInstanceUID": pl.String,
            "kind": pl.String,
            "modality": pl.String,
            "source": pl.String,
        },
    )


def already_present(con: Any, planted: Sequence[Planted], run_id: int) -> dict[str, set[str]]:
    """Kind -> the copies of every source whose clean copy a rule of that kind flags.

    A real series can carry a defect before anything is planted (a CT acquired with a tilted
    gantry): its copies are then neither hits nor false alarms for that kind.
    """
    from curation.qc.rule import all_rules

    flagged = {
        (r[0], r[1])
        for r in con.execute(
            "SELECT DISTINCT rule_id, SeriesInstanceUID FROM qc_findings WHERE run_id = $r",
            {"r": run_id},
        ).fetchall()
    }
    out: dict[str, set[str]] = {}
    for rule in all_rules().values():
        for kind in rule.detects:
            sources = {
                p.source
                for p in planted
                if p.kind is None and (rule.id, p.SeriesInstanceUID) in flagged
            }
            if sources:
                out.setdefault(kind, set()).update(
                    p.SeriesInstanceUID for p in planted if p.source in sources
                )
    return out
