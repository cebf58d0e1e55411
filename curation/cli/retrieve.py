"""Fetch a cohort's series from a PACS into a folder, then crawl them into the catalog.

The series are those of the cohort folder's manifest.parquet (named by pseudonym: --db is the
catalog the cohort was built from, whose cohort_members maps them back); each is fetched from the
PACS a crawl of the catalog found it on (or --source): by WADO-RS from a DICOMweb PACS, by C-GET from a
DIMSE one (C-MOVE with --method move --move-port PORT, where the PACS requires it). Instances are
written as OUT/<study>/<series>/<SOP>.dcm, whole or not at all: an interrupted retrieve resumes
with what is missing. Each instance's outcome is a row of retrievals. Exit code 0 when every
instance is stored, 1 when some failed (see retrievals), 3 when the PACS refused us or an option
cannot be used, 4 when the catalog cannot be opened, 5 when OUT cannot be written.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``curation retrieve``."""
    parser.add_argument("--db", required=True, help="the catalog (crawled from the PACS)")
    parser.add_argument("--cohort", required=True, metavar="DIR", help="a cohort folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="where instances are written")
    parser.add_argument(
        "--source",
        help="the PACS (dicomweb+http(s)://... or dimse://AET@HOST:PORT); default: where a crawl "
        "of the catalog found each series",
    )
    parser.add_argument(
        "--method", choices=("auto", "get", "move", "wado"), default="auto",
        help="C-GET, C-MOVE, WADO-RS, or auto (WADO-RS for DICOMweb, C-GET else C-MOVE for DIMSE)",
    )  # fmt: skip
    parser.add_argument("--calling-aet", default="CURATION", help="our AE title (DIMSE)")
    parser.add_argument(
        "--move-port", type=int, help="port of our storage SCP, the C-MOVE destination"
    )
    parser.add_argument("--auth-env", metavar="VAR", help="credentials variable (DICOMweb)")
    parser.add_argument("--auth-file", metavar="FILE", help="credentials file (DICOMweb)")
    parser.add_argument(
        "--workers", type=int, default=4, help="instances fetched at once (WADO-RS)"
    )
    parser.add_argument("--no-crawl", action="store_true", help="do not crawl OUT afterwards")


def run(args: argparse.Namespace) -> int:
    """Run ``curation retrieve``."""
    import logging

    from curation.pacs.retrieve import retrieve
    from curation.pacs.source import credentials

    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    summary = retrieve(
        args.db,
        args.cohort,
        args.out,
        source=args.source,
        method=args.method,
        auth=credentials(args.auth_env, args.auth_file),
        calling_aet=args.calling_aet,
        move_port=args.move_port,
        workers=args.workers,
        crawl=not args.no_crawl,
    )
    print(summary, file=sys.stdout)
    return 1 if summary.n_failed else 0
