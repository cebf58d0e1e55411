"""Run the whole path on the shipped sample data (sample_data/) and print where the outputs are.

This is the first command of the README: on a fresh machine it shows what curation does, end to end.
Re-running it is fast: the crawl is incremental.
"""

from __future__ import annotations

import argparse

from curation.demo import run_demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``curation demo``."""
    parser.add_argument(
        "--out", default="demo_out", help="folder for the outputs (default: demo_out)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="reader processes (default: all cores)"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``curation demo``."""
    result = run_demo(args.out, workers=args.workers)
    print(result.crawl)
    print()
    print(result.overview)
    print()
    print(f"catalog:   {result.db}")
    print(f"explore:   duckdb {result.db}   or   notebooks/01_catalog.ipynb")
    return 0
