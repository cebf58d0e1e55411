"""Read the DICOM headers under PATHs into the catalog.

Finds DICOM files whatever their name (also gzip-wrapped), reads every header element (private and
nested ones too, never pixel data) and writes the catalog tables. A second crawl reads only new or
changed files and drops removed ones. Files that cannot be read land in crawl_errors with a reason
code; the crawl goes on. Exit code 0 when the crawl finished (problems are recorded), 1 with --strict
when any file could not be read, 3 when a PATH does not exist, 4 when the catalog cannot be opened.
"""

from __future__ import annotations

import argparse
import sys

from curation.crawler.run import crawl


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``curation crawl``."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="folders or files to crawl")
    parser.add_argument("--db", required=True, help="catalog DuckDB file (created if missing)")
    parser.add_argument(
        "--workers", type=int, default=None, help="reader processes (default: all cores)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when any file could not be read"
    )
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``curation crawl``."""
    summary = crawl(
        args.paths, args.db, workers=args.workers, progress=False if args.no_progress else None
    )
    print(summary, file=sys.stdout)
    return 1 if args.strict and summary.n_errors else 0
