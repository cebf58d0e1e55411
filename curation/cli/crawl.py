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
from collections.abc import Callable

from curation.crawler.reader import MAX_DEPTH, MAX_ELEMENTS, MAX_HEADER_BYTES, Limits


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its message
    return parse


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
    limits = parser.add_argument_group(
        "limits per file", "a file over a limit is reported and not read again until it changes"
    )
    limits.add_argument(
        "--max-header-mb",
        type=_positive(float),
        default=MAX_HEADER_BYTES / 2**20,
        help="MiB of header read or decompressed (default: %(default)g)",
    )
    limits.add_argument(
        "--max-elements",
        type=_positive(int),
        default=MAX_ELEMENTS,
        help="data elements of one header (default: %(default)d)",
    )
    limits.add_argument(
        "--max-depth",
        type=_positive(int),
        default=MAX_DEPTH,
        help="levels of nested sequences (default: %(default)d)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``curation crawl``."""
    from curation.crawler.run import crawl

    limits = Limits(
        max_header_bytes=int(args.max_header_mb * 2**20),
        max_elements=args.max_elements,
        max_depth=args.max_depth,
    )
    summary = crawl(
        args.paths,
        args.db,
        workers=args.workers,
        progress=False if args.no_progress else None,
        limits=limits,
    )
    print(summary, file=sys.stdout)
    return 1 if args.strict and summary.n_errors else 0
