"""Read the DICOM headers under PATHs into the catalog.

Finds DICOM files whatever their name (also gzip-wrapped), reads every header element (private and
nested ones too, never pixel data) and writes the catalog tables. A second crawl reads only new or
changed files and drops removed ones. Files that cannot be read land in crawl_errors with a reason
code; the crawl goes on. Exit code 0 when the crawl finished (problems are recorded), 1 with --strict
when any file under PATHs cannot be read (read by this crawl, or unchanged since an earlier one
could not read it), 3 when a PATH does not exist, 4 when the catalog cannot be opened.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from curation.crawler.reader import MAX_DEPTH, MAX_ELEMENTS, MAX_HEADER_BYTES, Limits
from curation.pacs import cli as pacs_cli
from curation.pacs.source import is_pacs


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
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="folders or files to crawl, or PACS sources"
    )
    parser.add_argument(
        "--db", required=True, help="catalog DuckDB file (created if missing, with its folder)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="reader processes (default: all cores)"
    )
    parser.add_argument(
        "--writers",
        type=_positive(int),
        default=None,
        help="threads appending to the catalog, each with a DuckDB connection of its own "
        "(default: 2 where there are more cores than --workers, else 1)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when any file under PATHs cannot be read (this crawl's, or an unchanged "
        "file an earlier crawl could not read)",
    )
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    scale = parser.add_argument_group(
        "on a Dask cluster", "docs/scale.md: the Parquet part layout, faults, capacity"
    )
    scale.add_argument(
        "--engine",
        choices=("local", "dask"),
        default="local",
        help="local: reader processes here; dask: tasks on a Dask cluster writing Parquet parts "
        "beside the catalog (default: %(default)s)",
    )
    scale.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --engine dask: a running scheduler (tcp://host:8786); default: a LocalCluster "
        "of --workers processes",
    )
    scale.add_argument(
        "--task-files",
        type=_positive(int),
        default=None,
        help="with --engine dask: files per task and Parquet part (default: 1024)",
    )
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
    pacs_cli.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``curation crawl``."""
    from curation.crawler.run import crawl

    sources = [p for p in args.paths if is_pacs(p)]
    paths = [p for p in args.paths if not is_pacs(p)]
    n_pacs_errors = pacs_cli.run(args, sources) if sources else 0
    if not paths:
        return 1 if args.strict and n_pacs_errors else 0
    limits = Limits(
        max_header_bytes=int(args.max_header_mb * 2**20),
        max_elements=args.max_elements,
        max_depth=args.max_depth,
    )
    progress = False if args.no_progress else None
    if args.engine == "dask":
        from curation.crawler import dask_engine

        summary = dask_engine.crawl(
            paths, args.db, scheduler=args.scheduler, workers=args.workers,
            task_files=args.task_files or dask_engine.TASK_FILES, progress=progress, limits=limits,
        )  # fmt: skip
    elif args.scheduler or args.task_files:
        print("curation crawl: --scheduler and --task-files need --engine dask", file=sys.stderr)
        return 2
    else:
        summary = crawl(paths, args.db, workers=args.workers, progress=progress, limits=limits,
                        writers=args.writers)  # fmt: skip
    print(summary, file=sys.stdout)
    if not args.strict:
        return 0
    return 1 if summary.n_errors or n_pacs_errors or _unreadable(args.db, paths) else 0


def _unreadable(db: str, paths: list[str]) -> int:
    """Files under ``paths`` that the catalog holds as unreadable, whichever crawl read them.

    A re-crawl does not read an unchanged file that failed before, so its own count misses it;
    ``--strict`` is a gate, and a gate that passes when the job is merely run again is none.
    """
    from curation import catalog
    from curation.crawler.run import files_under, resolve_roots

    with catalog.opened(db, read_only=True) as con:
        return files_under(con, resolve_roots(paths), "error")
