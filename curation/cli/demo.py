"""Run the whole path on the shipped sample data (sample_data/) and print where the outputs are.

Crawl (real multi-vendor subset + synthetic multi-site cohort), pixel metrics, QC, report labels,
the example cohort (sample_data/cohort_spec.yaml), expectation suites, HTML report. This is the first
command of the README: on a fresh machine it shows what curation does, end to end. Re-running it is
fast: the crawl is incremental.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``curation demo``."""
    parser.add_argument(
        "--out", default="demo_out", help="folder for the outputs (default: demo_out)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: all cores)"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``curation demo``."""
    from curation.demo import run_demo

    result = run_demo(args.out, workers=args.workers)
    print(result.crawl)
    print()
    print(result.overview)
    print()
    for step, outcome in result.steps.items():
        print(f"{step + ':':<10} {outcome}")
    print()
    for what, where in result.outputs.items():
        print(f"{what + ':':<10} {where}")
    print(f"{'explore:':<10} notebooks/01_catalog.ipynb ... 04_pixels.ipynb, or duckdb {result.db}")
    return 0
