"""Compute pixel metrics for the series of a catalog, in parallel, into ``pixel_metrics``.

Reading pixels is the expensive step, so it runs on its own (``curation pixels``), never inside a QC
rule run; the ``pixel.*`` rules then only query the tables written here. The slices of every series
are listed by one catalog query; each series is then one task for a worker process, which reads its
slices (see :mod:`curation.pixels.sample` for which) and returns one ``pixel_metrics`` row and its
``pixel_slices`` rows. The main process writes them in batches; a re-run replaces the rows of the
series it measured.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from tqdm import tqdm

from curation import __version__, catalog
from curation.errors import InputError
from curation.pixels import metrics as m
from curation.pixels.read import SliceRef, read_slices, refs_from_table
from curation.pixels.sample import DEFAULT_SAMPLE, sample_indices, slice_table
from curation.pixels.tables import PIXEL_METRICS, PIXEL_SLICES, PIXEL_TABLES

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("curation.pixels")

#: Slices read per call of the reader within a task (bounds a task's memory to ~this many slices).
_CHUNK = 32


@dataclass(frozen=True)
class SeriesTask:
    """What a worker needs to measure one series."""

    series_uid: str
    modality: str
    protocol: str | None
    sequence: str | None
    refs: tuple[SliceRef, ...]
    sop_uids: tuple[str, ...]
    padding: tuple[float | None, ...]
    sample: int
    profile_step: int


@dataclass(frozen=True)
class ComputeSummary:
    """What :func:`compute` did."""

    n_series: int
    n_slices_read: int
    n_unreadable_series: int
    seconds: float

    @property
    def series_per_minute(self) -> float:
        return 60.0 * self.n_series / self.seconds if self.seconds > 0 else float("nan")

    def __str__(self) -> str:
        return (
            f"pixel metrics of {self.n_series} series ({self.n_slices_read} slices read, "
            f"{self.n_unreadable_series} with unreadable pixels) in {self.seconds:.1f} s, "
            f"{self.series_per_minute:.0f} series/min"
        )


def _median(values: Iterable[float]) -> float | None:
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    return float(np.median(arr)) if arr.size else None


def _finite(v: float) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def measure_series(task: SeriesTask) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Measure one series: read its profiled and sampled slices, return its rows.

    Returns
    -------
    (series_row, slice_rows)
        A ``pixel_metrics`` row and its ``pixel_slices`` rows, as dicts keyed by column name.
    """
    t0 = time.perf_counter()
    n = len(task.refs)
    ct = task.modality == "CT"
    profiled = set(range(0, n, max(task.profile_step, 1)))
    sampled = set(sample_indices(n, task.sample))
    wanted = sorted(profiled | sampled)
    slice_rows: list[dict[str, Any]] = []
    profiles: dict[int, m.SliceProfile] = {}
    metal_px: dict[int, int] = {}
    full: dict[int, dict[str, float]] = {}
    hu_pool: list[np.ndarray] = []
    decoders: set[str] = set()
    first_error: tuple[str, str] | None = None
    n_unreadable = 0
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        for i, res in zip(chunk, read_slices([task.refs[i] for i in chunk]), strict=True):
            decoders.add(res.decoder)
            row: dict[str, Any] = {
                "SeriesInstanceUID": task.series_uid,
                "SOPInstanceUID": task.sop_uids[i],
                "frame": res.ref.frame,
                "slice_index": i,
                "path": res.ref.path,
                "sampled": i in sampled,
                "reason": res.reason,
            }
            slice_rows.append(row)
            img = res.image
            if img is None:
                n_unreadable += 1
                if first_error is None:
                    first_error = (res.reason or "decode_error", res.message or "")
                continue
            pad = task.padding[i]
            padmask = m.fill_padding(img, pad)
            prof = m.slice_profile(img, metal_hu=m.METAL_HU if ct else None)
            metal = m.metal_pixels(img) if prof.n_metal else 0
            profiles[i] = prof
            metal_px[i] = metal
            row.update(
                mean=prof.mean,
                std=prof.std,
                min=prof.min,
                max=prof.max,
                blank=prof.blank,
                sharpness=_finite(prof.sharpness),
                directional_ratio=_finite(prof.directional_ratio),
                frac_at_max=prof.frac_at_max,
                metal_px=metal,
            )
            if i in sampled and not prof.blank:
                valid = img if padmask is None else img[~padmask]
                noise = m.noise_sd(img, exclude=float(img.min()))
                thr = m.foreground_threshold(valid)
                text = m.text_glyphs(img)
                clip = m.clipped_fraction(img, thr, text.mask)
                fg, bg = valid[valid > thr], valid[valid <= thr]
                fg_med = float(np.median(fg)) if fg.size else float("nan")
                bg_med = float(np.median(bg)) if bg.size else float("nan")
                kept = img[~text.mask] if text.mask.any() else img.ravel()
                full[i] = {
                    "noise": noise,
                    "fg": fg_med,
                    "bg": bg_med,
                    "clip": clip,
                    "text_aligned": float(text.n_aligned),
                    "text_glyphs": float(text.n_glyphs),
                    "range": float(kept.max() - kept.min()) if kept.size else 0.0,
                }
                row.update(
                    noise_sd=_finite(noise), clipped_fraction=clip, text_aligned=text.n_aligned
                )
                if ct:
                    keep = ~text.mask if padmask is None else ~(text.mask | padmask)
                    hu_pool.append(img[::2, ::2][keep[::2, ::2]])
    series = _aggregate(task, profiles, metal_px, full, hu_pool)
    n_read = len(profiles)
    status = "ok" if n_unreadable == 0 else ("unreadable" if n_read == 0 else "partial")
    series.update(
        SeriesInstanceUID=task.series_uid,
        Modality=task.modality,
        protocol=task.protocol,
        sequence=task.sequence,
        Rows=task.refs[0].rows if n else None,
        Columns=task.refs[0].columns if n else None,
        n_slices=n,
        n_profiled=len([i for i in profiled if i in profiles]),
        n_sampled=len(full),
        n_unreadable=n_unreadable,
        status=status,
        error_reason=first_error[0] if first_error else None,
        error_message=first_error[1][:500] if first_error else None,
        decoder="mixed" if len(decoders) > 1 else (decoders.pop() if decoders else None),
        sample=task.sample,
        profile_step=task.profile_step,
        seconds=time.perf_counter() - t0,
        computed_at=datetime.now(),
        curation_version=__version__,
    )
    return series, slice_rows


def _aggregate(
    task: SeriesTask,
    profiles: dict[int, m.SliceProfile],
    metal_px: dict[int, int],
    full: dict[int, dict[str, float]],
    hu_pool: list[np.ndarray],
) -> dict[str, Any]:
    """Series metrics from the per-slice ones (see the ``pixel_metrics`` column descriptions)."""
    order = sorted(profiles)
    live = [i for i in order if not profiles[i].blank]
    n_blank = len(order) - len(live)
    ratios = np.array([profiles[i].directional_ratio for i in live], dtype=float)
    ratios = ratios[np.isfinite(ratios)]
    ratio_med = float(np.median(ratios)) if ratios.size else None
    ratio_min = float(ratios.min()) if ratios.size else None
    sharp = np.array([profiles[i].sharpness for i in live], dtype=float)
    sharp = sharp[np.isfinite(sharp)]
    sharp_ref = float(np.percentile(sharp, 90)) if sharp.size >= 3 else 0.0
    out: dict[str, Any] = {
        "sharpness_median": _median(profiles[i].sharpness for i in live),
        # against the 90th percentile, not the median: a blurred run may be most of a short series
        "sharpness_min_rel": float(sharp.min()) / sharp_ref if sharp_ref > 0 else None,
        "directional_ratio_median": ratio_med,
        "directional_ratio_min": ratio_min,
        "directional_ratio_min_rel": (
            ratio_min / ratio_med if ratio_min is not None and ratio_med else None
        ),
        "n_blank_slices": n_blank,
        "blank_fraction": n_blank / len(order) if order else None,
        "intensity_drift": _drift([profiles[i] for i in live]),
    }
    noise = _median(f["noise"] for f in full.values())
    fg = _median(f["fg"] for f in full.values())
    bg = _median(f["bg"] for f in full.values())
    ct = task.modality == "CT"
    contrast = fg - bg if fg is not None and bg is not None else None
    signal = (fg + 1000.0 if ct else fg) if fg is not None else None
    out.update(
        noise_sd=noise,
        snr=signal / noise if noise and signal is not None else None,
        cnr=contrast / noise if noise and contrast is not None else None,
        noise_rel=noise / contrast if noise is not None and contrast else None,
        clipped_fraction=_median(f["clip"] for f in full.values()),
        dynamic_range=_median(f["range"] for f in full.values()),
        text_aligned=_median(f["text_aligned"] for f in full.values()),
        text_glyphs=_median(f["text_glyphs"] for f in full.values()),
    )
    if ct:
        pooled = np.concatenate(hu_pool) if hu_pool else np.zeros(0, np.float32)
        hu = m.hu_landmarks(pooled)
        size = task.refs[0].rows * task.refs[0].columns if task.refs else 0
        metal = [metal_px.get(i, 0) for i in order]
        out.update(
            air_hu=_finite(hu.air_hu),
            soft_tissue_hu=_finite(hu.soft_tissue_hu),
            bone_hu=_finite(hu.bone_hu),
            metal_fraction=max(metal) / size if metal and size else 0.0,
            n_metal_slices=sum(1 for v in metal if v),
        )
    return out


def _drift(profiles: Sequence[m.SliceProfile]) -> float | None:
    """Intensity drift along the series (see the ``intensity_drift`` column)."""
    if len(profiles) < 5:
        return None
    from scipy.ndimage import median_filter

    means = np.array([p.mean for p in profiles])
    scale = float(np.median([p.std for p in profiles]))
    if scale <= 0:
        return None
    rolled = median_filter(means, size=5, mode="nearest")
    return float(np.max(np.abs(rolled - np.median(means))) / scale)


def _tasks(
    con: duckdb.DuckDBPyConnection,
    series: Sequence[str] | None,
    sample: int,
    profile_step: int,
) -> list[SeriesTask]:
    table = slice_table(con, series)
    if table.height == 0:
        return []
    meta = con.sql(
        """SELECT SeriesInstanceUID, mode(Modality) AS Modality,
                  coalesce(mode(ProtocolName), mode(SeriesDescription)) AS protocol,
                  CASE WHEN mode(ScanningSequence) IS NOT NULL THEN mode(ScanningSequence) || '/'
                       || coalesce(mode(MRAcquisitionType), '') END AS sequence
           FROM instances WHERE SeriesInstanceUID IN (SELECT unnest($s)) GROUP BY ALL""",
        params={"s": table.get_column("SeriesInstanceUID").unique().to_list()},
    ).pl()
    info = {r[0]: (r[1] or "", r[2], r[3]) for r in meta.iter_rows()}
    tasks = []
    for (uid,), part in table.group_by("SeriesInstanceUID", maintain_order=True):
        modality, protocol, sequence = info.get(str(uid), ("", None, None))
        tasks.append(
            SeriesTask(
                series_uid=str(uid),
                modality=modality,
                protocol=protocol,
                sequence=sequence,
                refs=tuple(refs_from_table(part)),
                sop_uids=tuple(part.get_column("SOPInstanceUID").to_list()),
                padding=tuple(part.get_column("padding").to_list()),
                sample=sample,
                profile_step=profile_step,
            )
        )
    # biggest first: the pool then ends with small tasks and both cores stay busy
    tasks.sort(key=lambda t: -len(t.refs))
    return tasks


def _write(
    con: duckdb.DuckDBPyConnection,
    series_rows: list[dict[str, Any]],
    slice_rows: list[dict[str, Any]],
) -> None:
    if not series_rows:
        return
    uids = [r["SeriesInstanceUID"] for r in series_rows]
    s_frame = pl.DataFrame(series_rows, schema=_schema(PIXEL_METRICS.columns), strict=False)
    l_frame = pl.DataFrame(slice_rows, schema=_schema(PIXEL_SLICES.columns), strict=False)
    con.execute("BEGIN TRANSACTION")
    try:
        for table in ("pixel_metrics", "pixel_slices"):
            con.execute(
                f"DELETE FROM {table} WHERE SeriesInstanceUID IN (SELECT unnest($u))", {"u": uids}
            )
        con.register("_pm", s_frame.to_arrow())
        con.register("_ps", l_frame.to_arrow())
        con.execute("INSERT INTO pixel_metrics BY NAME SELECT * FROM _pm")
        con.execute("INSERT INTO pixel_slices BY NAME SELECT * FROM _ps")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("_pm")
        con.unregister("_ps")


_POLARS = {
    "VARCHAR": pl.String,
    "BIGINT": pl.Int64,
    "INTEGER": pl.Int32,
    "DOUBLE": pl.Float64,
    "BOOLEAN": pl.Boolean,
    "TIMESTAMP": pl.Datetime("us"),
}


def _schema(columns: Sequence[Any]) -> dict[str, Any]:
    return {c.name: _POLARS[c.sql_type] for c in columns}


def compute(
    db: str | Path | duckdb.DuckDBPyConnection,
    *,
    series: Sequence[str] | None = None,
    sample: int = DEFAULT_SAMPLE,
    profile_step: int = 1,
    workers: int | None = None,
    progress: bool | None = None,
) -> ComputeSummary:
    """Measure the pixels of the catalog's image series into ``pixel_metrics`` / ``pixel_slices``.

    Parameters
    ----------
    db
        The catalog (a path, or an open read-write connection, left open).
    series
        SeriesInstanceUIDs to measure; None for every series with pixel data.
    sample
        Slices per series that get the full-resolution metrics (noise, contrast, HU landmarks,
        clipping, burned-in text), evenly spaced, ends included.
    profile_step
        Every how many slices the cheap profile reads (blank slices, sharpness/motion, metal,
        drift); 1, the default, reads every slice so that a defect in one slice is not missed.
    workers
        Worker processes (default: the CPU count); 0 or 1 measures in this process.
    progress
        Show a progress bar: True, False, or None to show it only on a terminal.

    Returns
    -------
    ComputeSummary
        Counts and timing.

    Raises
    ------
    CatalogError
        The catalog cannot be opened or has no ``instances``/``elements`` tables.
    InputError
        ``sample`` or ``profile_step`` is not a positive integer.
    """
    if sample < 1 or profile_step < 1:
        raise InputError(f"sample ({sample}) and profile_step ({profile_step}) must be >= 1")
    with catalog.opened(db) as con:
        return _compute(con, series, sample, profile_step, workers, progress)


def _compute(
    con: duckdb.DuckDBPyConnection,
    series: Sequence[str] | None,
    sample: int,
    profile_step: int,
    workers: int | None,
    progress: bool | None,
) -> ComputeSummary:
    catalog.require(con, "instances", "files", "elements")
    # Derived data `compute` can always rebuild: a table of another version is dropped, not migrated.
    for table in PIXEL_TABLES:
        table.ensure(con, drop_stale=True)
    t0 = time.perf_counter()
    tasks = _tasks(con, series, sample, profile_step)
    n_workers = os.cpu_count() or 1 if workers is None else workers
    bar = tqdm(
        total=len(tasks),
        unit="series",
        desc="pixels",
        disable=None if progress is None else not progress,
    )
    series_rows: list[dict[str, Any]] = []
    slice_rows: list[dict[str, Any]] = []
    n_slices = n_bad = 0

    def collect(result: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
        nonlocal n_slices, n_bad
        s, sl = result
        series_rows.append(s)
        slice_rows.extend(sl)
        n_slices += len(sl)
        n_bad += s["status"] != "ok"
        bar.update(1)
        if len(series_rows) >= 200:
            _write(con, series_rows, slice_rows)
            series_rows.clear()
            slice_rows.clear()

    try:
        if n_workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                collect(measure_series(task))
        else:
            ctx = multiprocessing.get_context("forkserver")
            with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
                pending: set[Future[Any]] = set()
                queue = iter(tasks)
                for task in queue:  # keep a bounded number of tasks in flight
                    pending.add(pool.submit(measure_series, task))
                    if len(pending) >= 2 * n_workers:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in done:
                            collect(f.result())
                for f in pending:
                    collect(f.result())
        _write(con, series_rows, slice_rows)
    finally:
        bar.close()
    summary = ComputeSummary(len(tasks), n_slices, n_bad, time.perf_counter() - t0)
    log.debug("%s", summary)  # the caller prints it (the CLI on stdout)
    return summary
