"""Pixel metrics speed on 512x512 CT series: series/minute against the decode floor, same run.

    .venv/bin/python benchmarks/pixel_speed.py --db /tmp/bench.duckdb [--workers 2] [--sample 12]

The catalog must hold a crawled bench cohort (`curation sample --profile bench`, then `curation
crawl`). Measures, over the CT series with 512x512 slices and at least --min-slices slices:

1. floor (sampled): decoding only the sampled slices with pydicom, no metrics (what the issue calls
   the floor);
2. floor (read): reading every slice the metrics read (profile + sample), no metrics;
3. compute: `curation.pixels.compute` with the default sampling, writing pixel_metrics.

Each with the same worker count; prints series/minute and the ratio to the floors. Run it twice:
the first run also warms the page cache.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import polars as pl

from curation import catalog
from curation.pixels import compute
from curation.pixels.read import SliceRef, read_slices, refs_from_table
from curation.pixels.sample import sample_indices, slice_table


def _decode_pydicom(paths: list[str]) -> int:
    from pydicom.pixels import pixel_array

    for p in paths:
        pixel_array(p)
    return len(paths)


def _read_all(refs: list[SliceRef]) -> int:
    return sum(r.image is not None for r in read_slices(refs))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--db", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sample", type=int, default=12)
    ap.add_argument("--min-slices", type=int, default=20)
    args = ap.parse_args()
    con = catalog.connect(args.db)
    table = slice_table(con)
    sizes = table.group_by("SeriesInstanceUID").agg(
        n=pl.len(), ct=pl.col("Modality").first() == "CT", r=pl.col("Rows").first()
    )
    chosen = sizes.filter(pl.col("ct") & (pl.col("r") == 512) & (pl.col("n") >= args.min_slices))
    uids = chosen.get_column("SeriesInstanceUID").to_list()
    n_slices = int(chosen.get_column("n").sum())
    print(
        f"{len(uids)} CT series of 512x512, {n_slices} slices (mean {n_slices / max(len(uids), 1):.0f})"
    )
    parts = table.filter(pl.col("SeriesInstanceUID").is_in(uids)).partition_by("SeriesInstanceUID")
    sampled = [
        [p.get_column("path")[i] for i in sample_indices(p.height, args.sample)] for p in parts
    ]
    every = [refs_from_table(p) for p in parts]
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
        list(pool.map(_decode_pydicom, sampled[:2]))  # start the workers
        t0 = time.perf_counter()
        list(pool.map(_decode_pydicom, sampled))
        t_floor = time.perf_counter() - t0
        t0 = time.perf_counter()
        list(pool.map(_read_all, every))
        t_read = time.perf_counter() - t0
    con.close()
    t0 = time.perf_counter()
    summary = compute(
        args.db, series=uids, sample=args.sample, workers=args.workers, progress=False
    )
    t_compute = time.perf_counter() - t0
    per_min = lambda t: 60 * len(uids) / t  # noqa: E731
    print(f"workers {args.workers}, sample {args.sample}")
    print(
        f"floor, decode the sampled slices (pydicom): {t_floor:6.1f} s  {per_min(t_floor):8.0f} series/min"
    )
    print(
        f"floor, read every profiled slice (raw):     {t_read:6.1f} s  {per_min(t_read):8.0f} series/min"
    )
    print(
        f"compute (metrics + write):                  {t_compute:6.1f} s  {per_min(t_compute):8.0f} series/min"
    )
    print(
        f"compute / sampled-decode floor: {t_compute / t_floor:.1f}x; compute / read floor: {t_compute / t_read:.1f}x"
    )
    print(summary)


if __name__ == "__main__":
    main()
