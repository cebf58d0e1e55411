"""Measure the pixels of the catalog's image series into pixel_metrics (for the pixel.* QC rules).

Reads every slice of each series for cheap per-slice statistics (blank slices, sharpness and
motion, metal, drift) and a sample of slices for full-resolution metrics (noise, contrast, HU
landmarks, clipping, burned-in text); unreadable pixels are recorded, not fatal. Then run
`curation qc` with a suite that includes pixel.* to turn the metrics into findings.

  curation pixels --db catalog.duckdb
  curation pixels --db catalog.duckdb --sample 24 --workers 2

Exit code 0 when the metrics were written (unreadable pixels are recorded as data), 3 for a bad
option value, 4 when the catalog cannot be opened or lacks the crawl's tables.
"""

from __future__ import annotations

import argparse
import sys

from curation.pixels.compute import compute
from curation.pixels.sample import DEFAULT_SAMPLE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``curation pixels``."""
    parser.add_argument(
        "--db", required=True, help="catalog DuckDB file (written by curation crawl)"
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=DEFAULT_SAMPLE,
        help=f"slices per series with full-resolution metrics (default {DEFAULT_SAMPLE})",
    )
    parser.add_argument(
        "--profile-step",
        type=int,
        default=1,
        help="profile every Nth slice (default 1: every slice, so one blank slice is found)",
    )
    parser.add_argument("--series", nargs="*", help="only these SeriesInstanceUIDs")
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: all cores)"
    )
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``curation pixels``."""
    summary = compute(
        args.db,
        series=args.series or None,
        sample=args.sample,
        profile_step=args.profile_step,
        workers=args.workers,
        progress=False if args.no_progress else None,
    )
    print(summary, file=sys.stdout)
    return 0
