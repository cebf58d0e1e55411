"""Optional harmonized volumes: each cohort series as NIfTI, resampled, reoriented, normalized.

Each series is read with SimpleITK from its files in slice order (sorted by DuckDB along the slice
normal), its geometry checked against the DICOM headers (origin = first slice's position, direction
= ImageOrientationPatient and its normal, spacing = PixelSpacing and the slice step), then
reoriented to a canonical orientation, resampled to the target spacing, and normalized: CT by a
window mapped to [0, 1], MR by percentile scaling to [0, 1]. Files are named by the series pseudonym.
Series run in parallel worker processes, with a progress bar.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import polars as pl

from curation.cohort.manifest import write

if TYPE_CHECKING:
    from curation.cohort.build import CohortResult

log = logging.getLogger("curation.cohort")


@dataclass(frozen=True)
class VolumeOptions:
    """How volumes are written (recorded in the provenance sidecar)."""

    spacing_mm: tuple[float, ...] | None = None  # None keeps the native spacing
    orientation: str = "LPS"  # DICOM-style code given to SimpleITK's DICOMOrient
    ct_window: tuple[float, float] = (40.0, 400.0)  # level, width in HU
    mr_percentiles: tuple[float, float] = (1.0, 99.0)
    tolerance_mm: float = 0.01  # geometry check: largest allowed difference


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


def export_one(task: dict[str, Any]) -> dict[str, Any]:
    """Read, check, reorient, resample, normalize and write one series (runs in a worker)."""
    import SimpleITK as sitk  # noqa: N813 (the name every SimpleITK user knows)

    opts = VolumeOptions(**task["options"])
    out: dict[str, Any] = {
        "series_key": task["series_key"],
        "image": None,
        "geometry_error": None,
        "error": None,
    }
    try:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(task["files"])
        img = reader.Execute()
        if img.GetDimension() != 3 or img.GetSize()[2] < 2:
            raise ValueError("not a volume (fewer than 2 slices)")
        out["geometry_error"] = _geometry(
            img,
            np.asarray(task["positions"], dtype=float),
            np.asarray(task["iop"], dtype=float),
            np.asarray(task["pixel_spacing"], dtype=float),
        )
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
        arr = sitk.GetArrayFromImage(img)
        if task["modality"] == "CT":
            level, width = opts.ct_window
            lo, hi = level - width / 2, level + width / 2
        else:
            lo, hi = (float(x) for x in np.percentile(arr, opts.mr_percentiles))
        norm = sitk.GetImageFromArray(
            np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)
        )
        norm.CopyInformation(img)
        path = Path(task["out_dir"]) / f"{task['series_key']}.nii.gz"
        sitk.WriteImage(norm, str(path), useCompression=True)
        out["image"] = str(path)
    except (RuntimeError, ValueError, OSError) as exc:
        out["error"] = str(exc).strip().splitlines()[0][:200]
    return out


def _tasks(
    con: duckdb.DuckDBPyConnection, result: CohortResult, vol_dir: Path, opts: VolumeOptions
) -> list[dict[str, Any]]:
    con.register("_vol_keys", result.manifest.select("series_key"))
    frame = con.sql(
        """WITH s AS (
            SELECT m.series_key, m.SeriesInstanceUID, h.Modality
            FROM _cohort_members m JOIN _vol_keys k USING (series_key)
            JOIN harmonized_series h USING (SeriesInstanceUID)
        ), i AS (
            SELECT s.series_key, i.path, i.ImagePositionPatient AS pos, i.ImageOrientationPatient AS iop,
                i.PixelSpacing AS ps,
                list_dot_product(i.ImagePositionPatient::DOUBLE[],
                    [i.ImageOrientationPatient[2] * i.ImageOrientationPatient[6] - i.ImageOrientationPatient[3] * i.ImageOrientationPatient[5],
                     i.ImageOrientationPatient[3] * i.ImageOrientationPatient[4] - i.ImageOrientationPatient[1] * i.ImageOrientationPatient[6],
                     i.ImageOrientationPatient[1] * i.ImageOrientationPatient[5] - i.ImageOrientationPatient[2] * i.ImageOrientationPatient[4]]) AS z
            FROM s JOIN instances i USING (SeriesInstanceUID)
        )
        SELECT i.series_key, any_value(s.Modality) AS modality,
            list(i.path ORDER BY i.z) AS files, list(i.pos ORDER BY i.z) AS positions,
            any_value(i.iop) AS iop, any_value(i.ps) AS pixel_spacing
        FROM i JOIN s USING (series_key) GROUP BY i.series_key"""
    ).pl()
    con.unregister("_vol_keys")
    base = {"out_dir": str(vol_dir), "options": asdict(opts)}
    return [base | r for r in frame.to_dicts()]


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

    Adds an ``image`` column to the manifest (rewritten in ``out_dir``) and returns one row per
    series: ``series_key``, ``image``, ``geometry_error`` (largest difference from the DICOM
    geometry, mm or cosine), ``geometry_ok`` and ``error`` (why a series could not be written).
    """
    from tqdm import tqdm

    opts = options or VolumeOptions()
    vol_dir = out_dir / "volumes"
    vol_dir.mkdir(parents=True, exist_ok=True)
    tasks = _tasks(con, result, vol_dir, opts)
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
            "error": pl.String,
        },
    ).with_columns((pl.col("geometry_error") <= opts.tolerance_mm).alias("geometry_ok"))
    report.write_csv(out_dir / "volumes.csv")
    n_bad = report.filter(~pl.col("geometry_ok").fill_null(False)).height
    if n_bad:
        log.warning(
            "%d series could not be written or disagree with their DICOM geometry (see volumes.csv)",
            n_bad,
        )
    result.manifest = result.manifest.join(
        report.select("series_key", "image"), on="series_key", how="left"
    )
    result.provenance["volumes"] = asdict(opts)
    result.paths = write(out_dir, result.manifest, result.attrition, result.provenance)
    return report
