"""Optional harmonized volumes: each cohort series as NIfTI, resampled, reoriented, normalized.

Each series is read in slice order (sorted by DuckDB along the slice normal): single-frame series
with SimpleITK (GDCM), whose own reading of the geometry is then checked against the DICOM headers
(origin = first slice's position, direction = ImageOrientationPatient and its normal, spacing =
PixelSpacing and the slice step); enhanced multi-frame series with
:func:`curation.pixels.read.slices_image`, frames placed by the per-frame functional groups of the
catalog (so their check is against the same numbers; dcm2niix is their independent check, see
``tests/test_volumes_dcm2niix.py``). A series with several volumes (fMRI, DWI, multi-echo: slices
repeating positions) is written as its first volume, the first slice at each position in
acquisition order; ``n_volumes`` says how many it had. The volume is then reoriented to a canonical
orientation and resampled to the target spacing (:meth:`VolumeOptions.native` skips both). Voxels
keep their modality units (HU for CT, rescaled stored values for MR): a chest cohort's lung and
bone survive. Normalization to [0, 1] happens only on request, per modality
(:attr:`VolumeOptions.normalize`: a window in modality units, or percentiles of the volume), and
is recorded in the provenance sidecar. Files are named by the series pseudonym. Series run in
parallel worker processes, with a progress bar.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import polars as pl

from curation.catalog import os_path
from curation.cohort.manifest import write
from curation.cohort.spec import check_normalize
from curation.errors import CurationError
from curation.pixels.sample import slice_table

if TYPE_CHECKING:
    from curation.cohort.build import CohortResult

log = logging.getLogger("curation.cohort")


@dataclass(frozen=True)
class VolumeOptions:
    """How volumes are written (recorded in the provenance sidecar).

    ``normalize`` maps a modality (``*``: any other) to ``{"window": (level, width)}`` (modality
    units mapped to [0, 1], clipped) or ``{"percentiles": (low, high)}`` (those percentiles of
    the volume mapped to [0, 1]); a modality it does not name keeps its units. Empty (the
    default): every volume keeps its modality units.
    """

    spacing_mm: tuple[float, ...] | None = None  # None keeps the native spacing
    orientation: str | None = "LPS"  # code for SimpleITK's DICOMOrient; None keeps the acquired
    normalize: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    tolerance_mm: float = 0.01  # geometry check: largest allowed difference

    def __post_init__(self) -> None:
        object.__setattr__(self, "normalize", check_normalize(self.normalize, "volumes"))

    @classmethod
    def native(cls, tolerance_mm: float = 0.01) -> VolumeOptions:
        """The acquired grid in modality units: no reorientation, resampling or normalization.

        What a comparison with another converter (dcm2niix) needs, voxel for voxel.
        """
        return cls(spacing_mm=None, orientation=None, tolerance_mm=tolerance_mm)

    def for_modality(self, modality: str | None) -> dict[str, tuple[float, float]] | None:
        """The normalization of a ``modality`` volume, None to keep its units."""
        return self.normalize.get(modality or "", self.normalize.get("*"))


def _geometry(img: Any, positions: np.ndarray, iop: np.ndarray, pixel_spacing: np.ndarray) -> float:
    """Largest disagreement (mm or direction cosine) between the image and the DICOM geometry."""
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    direction = np.asarray(img.GetDirection()).reshape(3, 3)
    expected_dir = np.column_stack([row, col, normal])
    steps = np.diff(positions @ normal) if len(positions) > 1 else np.array([img.GetSpacing()[2]])
    expected_spacing = np.array([pixel_spacing[1], pixel_spacing[0], float(np.median(steps))])
    errs = [
        np.abs(np.asarray(img.GetOrigin()) - positions[0]).max(),
        np.abs(direction - expected_dir).max(),
        np.abs(np.asarray(img.GetSpacing()) - expected_spacing).max(),
    ]
    return float(max(errs))


def _read(task: dict[str, Any]) -> Any:
    """The series of ``task`` as a SimpleITK image in modality units, slices in task order."""
    import SimpleITK as sitk  # noqa: N813 (the name every SimpleITK user knows)

    if task["multiframe"]:
        from curation.pixels.read import slices_image

        # GDCM's series reader takes files, not frames: one file is a whole (part of a) volume
        # here, so the frames are read and placed by curation's own reader
        return slices_image(pl.DataFrame(task["slices"]))
    reader = sitk.ImageSeriesReader()
    with _utf8_names(task["files"]) as files:
        reader.SetFileNames(files)
        return reader.Execute()


@contextlib.contextmanager
def _utf8_names(files: list[str]) -> Iterator[list[str]]:
    """``files``, each under a name SimpleITK can take: it passes names on as UTF-8 text, so a
    file whose name is not UTF-8 (see :func:`curation.catalog.os_path`) is read through a
    symbolic link with a plain name, in a folder removed afterwards."""
    odd = [i for i, f in enumerate(files) if not _utf8(f)]
    if not odd:
        yield files
        return
    with tempfile.TemporaryDirectory(prefix="curation-names-") as tmp:
        named = list(files)
        for i in odd:
            named[i] = os.path.join(tmp, f"{i}.dcm")
            os.symlink(files[i], named[i])
        yield named


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def export_one(task: dict[str, Any]) -> dict[str, Any]:
    """Read, check, reorient, resample, normalize and write one series (runs in a worker)."""
    import SimpleITK as sitk  # noqa: N813 (the name every SimpleITK user knows)

    opts = VolumeOptions(**task["options"])
    out: dict[str, Any] = {
        "series_key": task["series_key"],
        "image": None,
        "geometry_error": None,
        "n_volumes": task["n_volumes"],
        "reader": "curation" if task["multiframe"] else "gdcm",
        "error": None,
    }
    try:
        if task["problem"]:
            raise ValueError(task["problem"])
        img = _read(task)
        if img.GetDimension() != 3 or img.GetSize()[2] < 2:
            raise ValueError("not a volume (fewer than 2 slices)")
        out["geometry_error"] = _geometry(
            img,
            np.asarray(task["positions"], dtype=float),
            np.asarray(task["iop"], dtype=float),
            np.asarray(task["pixel_spacing"], dtype=float),
        )
        if out["geometry_error"] > opts.tolerance_mm:
            # A volume that disagrees with its own headers (irregular slice spacing, which GDCM
            # averages; a tilted gantry's shear) would train a model on a distorted image: it is
            # not written, and volumes.csv says why.
            raise ValueError(
                f"geometry differs from the DICOM headers by {out['geometry_error']:.3g} mm "
                "(irregular slice spacing or gantry tilt): not written"
            )
        if opts.orientation is not None:
            img = sitk.DICOMOrient(img, opts.orientation)
        if opts.spacing_mm is not None:
            spacing = np.asarray(opts.spacing_mm, dtype=float)
            size = np.ceil(
                np.asarray(img.GetSize()) * np.asarray(img.GetSpacing()) / spacing
            ).astype(int)
            img = sitk.Resample(
                img,
                [int(s) for s in size],
                sitk.Transform(),
                sitk.sitkLinear,
                img.GetOrigin(),
                tuple(float(s) for s in spacing),
                img.GetDirection(),
                float(np.min(sitk.GetArrayViewFromImage(img))),
                sitk.sitkFloat32,
            )
        img = sitk.Cast(img, sitk.sitkFloat32)
        how = opts.for_modality(task["modality"])
        if how is not None:
            arr = sitk.GetArrayFromImage(img)
            if "window" in how:
                level, width = how["window"]
                lo, hi = level - width / 2, level + width / 2
            else:
                lo, hi = (float(x) for x in np.percentile(arr, how["percentiles"]))
            norm = sitk.GetImageFromArray(
                np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)
            )
            norm.CopyInformation(img)
            img = norm
        path = Path(task["out_dir"]) / f"{task['series_key']}.nii.gz"
        sitk.WriteImage(img, str(path), useCompression=True)
        out["image"] = str(path)
    except (RuntimeError, ValueError, OSError, CurationError) as exc:
        out["error"] = str(exc).strip().splitlines()[0][:200]
    return out


# What a multi-frame task carries to its worker: the slice_table columns slices_image reads.
_SLICE_COLUMNS = [
    "path", "frame", "gzip", "TransferSyntaxUID", "Rows", "Columns", "BitsAllocated",
    "PixelRepresentation", "SamplesPerPixel", "n_frames", "slope", "intercept", "pixel_offset",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "path_bytes",
]  # fmt: skip


def first_volume(slices: pl.DataFrame) -> pl.DataFrame:
    """The first volume of each series of a :func:`slice_table` frame, ordered along the normal.

    A series whose slices repeat positions holds several volumes (time points, b-values, echoes);
    the first slice at each position in acquisition order (InstanceNumber, frame, path) is kept.
    Adds ``n_volumes`` (the most slices found at one position). Positions are compared to 1 um.
    """
    keyed = slices.with_columns(pl.col("z_mm").round(3).alias("_z"))
    counts = keyed.group_by("SeriesInstanceUID", "_z").len()
    n_vol = counts.group_by("SeriesInstanceUID").agg(pl.col("len").max().alias("n_volumes"))
    return (
        keyed.sort(["SeriesInstanceUID", "InstanceNumber", "frame", "path"], nulls_last=True)
        .unique(["SeriesInstanceUID", "_z"], keep="first", maintain_order=True)
        .sort(["SeriesInstanceUID", "z_mm"], nulls_last=True)
        .join(n_vol, on="SeriesInstanceUID")
        .drop("_z")
    )


def plan_volumes(
    con: duckdb.DuckDBPyConnection, series_keys: pl.DataFrame, vol_dir: Path, opts: VolumeOptions
) -> list[dict[str, Any]]:
    """One export task per series of ``series_keys`` (a ``series_key`` column) that is a member
    of the temp table ``_cohort_members``: its slice files and geometry in position order, and
    ``problem`` where it cannot be exported. :func:`export_one` runs a task; the de-identification
    step plans its volumes here too and swaps the files for their de-identified copies.
    """
    con.register("_vol_keys", series_keys.select("series_key"))
    members = con.sql(
        """SELECT m.series_key, m.SeriesInstanceUID, h.Modality
        FROM _cohort_members m JOIN _vol_keys k USING (series_key)
        JOIN harmonized_series h USING (SeriesInstanceUID)"""
    ).pl()
    con.unregister("_vol_keys")
    slices = first_volume(
        slice_table(con, members["SeriesInstanceUID"].to_list(), order="position")
    )
    base = {"out_dir": str(vol_dir), "options": asdict(opts)}
    by_series = slices.partition_by("SeriesInstanceUID", as_dict=True)
    empty = slices.clear()
    tasks = []
    for key, uid, modality in members.iter_rows():
        part = by_series.get((uid,), empty)
        multiframe = bool(part.height and part["n_frames"].max() > 1)  # type: ignore[operator]
        problem = None
        if part.height == 0:
            problem = "no image slices in the catalog"
        elif part["z_mm"].null_count() or part["PixelSpacing"].null_count():
            problem = "slices without ImagePositionPatient/ImageOrientationPatient/PixelSpacing"
        tasks.append(
            base
            | {
                "series_key": key,
                "modality": modality,
                "multiframe": multiframe,
                "n_volumes": int(part["n_volumes"][0]) if part.height else None,
                "problem": problem,
                # the names to open: a name that is not UTF-8 from its bytes
                "files": list(map(os_path, part["path"], part["path_bytes"])),
                "positions": part["ImagePositionPatient"].to_list(),
                "iop": part["ImageOrientationPatient"][0] if part.height else None,
                "pixel_spacing": part["PixelSpacing"][0] if part.height else None,
                # only a multi-frame worker needs the frames; single-frame ones read the files
                "slices": part.select(_SLICE_COLUMNS).to_dicts() if multiframe else None,
            }
        )
    return tasks


def export_volumes(
    con: duckdb.DuckDBPyConnection,
    result: CohortResult,
    out_dir: Path,
    options: VolumeOptions | None = None,
    *,
    workers: int = 1,
    progress: bool = True,
) -> pl.DataFrame:
    """Write every series of ``result`` as ``out_dir/volumes/<series_key>.nii.gz``.

    Sets the manifest's ``image`` to the volume (rewritten in ``out_dir``); a series whose volume
    was not written keeps its manifest row with ``excluded_reason`` and leaves the datalist, at an
    attrition step of its own (:func:`curation.cohort.build.datalist_step`). Returns one row per
    series: ``series_key``, ``image``, ``geometry_error`` (largest difference from the DICOM
    geometry, mm or cosine), ``n_volumes`` (volumes in the series; the first is written),
    ``reader`` (``gdcm`` for single-frame series, ``curation`` for enhanced multi-frame ones),
    ``geometry_ok`` and ``error`` (why a series could not be written).
    """
    from tqdm import tqdm

    from curation.cohort.build import datalist_step

    opts = options or VolumeOptions(normalize=result.spec.normalize)
    vol_dir = out_dir / "volumes"
    vol_dir.mkdir(parents=True, exist_ok=True)
    tasks = plan_volumes(con, result.manifest, vol_dir, opts)
    bar = tqdm(total=len(tasks), desc="volumes", unit="series", disable=not progress)
    rows = []
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for r in pool.map(export_one, tasks):
                rows.append(r)
                bar.update()
    else:
        for t in tasks:
            rows.append(export_one(t))
            bar.update()
    bar.close()
    report = pl.DataFrame(
        rows,
        schema={
            "series_key": pl.String,
            "image": pl.String,
            "geometry_error": pl.Float64,
            "n_volumes": pl.Int64,
            "reader": pl.String,
            "error": pl.String,
        },
    ).with_columns((pl.col("geometry_error") <= opts.tolerance_mm).alias("geometry_ok"))
    report.write_csv(out_dir / "volumes.csv")
    n_multi = report.filter(pl.col("n_volumes") > 1).height
    if n_multi:
        log.info("%d series hold several volumes; their first volume was written", n_multi)
    n_bad = report.filter(~pl.col("geometry_ok").fill_null(False)).height
    if n_bad:
        log.warning(
            "%d series could not be written or disagree with their DICOM geometry (see volumes.csv)",
            n_bad,
        )
    # A series whose volume was refused stays in the manifest with the reason; the datalist
    # points only at volumes that were written (an attrition step counts the others).
    result.manifest = result.manifest.drop("image", "excluded_reason", strict=False).join(
        report.select(
            "series_key",
            "image",
            pl.when(pl.col("image").is_null())
            .then(pl.lit("volume not written: ") + pl.col("error").fill_null("unknown reason"))
            .alias("excluded_reason"),
        ),
        on="series_key",
        how="left",
    )
    result.provenance["volumes"] = asdict(opts)
    result.attrition = datalist_step(
        con, result.cohort_id, result.spec, result.attrition, result.manifest, result.provenance
    )
    result.paths = write(out_dir, result.manifest, result.attrition, result.provenance)
    return report
