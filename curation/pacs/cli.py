"""The PACS side of ``curation crawl``: its options, and the crawl of each PACS source given.

Kept apart from :mod:`curation.cli.crawl` so that the folder crawl's command stays as it was; it
imports nothing heavy (``curation --help`` stays fast).
"""

from __future__ import annotations

import argparse
import logging
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``curation crawl`` that apply to PACS sources."""
    pacs = parser.add_argument_group(
        "PACS sources",
        "a PATH may be dicomweb+http(s)://HOST/ROOT (QIDO-RS + WADO-RS metadata) or "
        "dimse://AET@HOST:PORT (C-FIND, series-level attributes only); see docs/pacs.md",
    )
    pacs.add_argument("--modality", help="only studies with this modality, and their series of it")
    pacs.add_argument(
        "--study-date", metavar="RANGE", help="YYYYMMDD or YYYYMMDD-YYYYMMDD (an end may be open)"
    )
    pacs.add_argument(
        "--description", metavar="TEXT", help="study description (DICOM wildcards * and ?)"
    )
    pacs.add_argument(
        "--auth-env",
        metavar="VAR",
        help="environment variable holding 'user:password' or 'Bearer TOKEN' "
        "(default: CURATION_PACS_AUTH when set)",
    )
    pacs.add_argument("--auth-file", metavar="FILE", help="file holding the same")
    pacs.add_argument(
        "--no-bulk-lengths",
        action="store_true",
        help="do not fetch bulk data values to record their lengths (DICOMweb)",
    )
    pacs.add_argument("--calling-aet", default="CURATION", help="our AE title (DIMSE)")


def run(args: argparse.Namespace, sources: list[str]) -> int:
    """Crawl each PACS source into ``args.db``; print a summary line per source."""
    from curation.pacs.crawl import Query
    from curation.pacs.source import DICOMWEB_SCHEMES, credentials

    # urllib3 warns of each retry (a keep-alive connection the server closed, a 503): retrying is
    # the client's job, and what still fails after the retries is reported with its URL.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)

    query = Query(modality=args.modality, study_date=args.study_date, description=args.description)
    workers = args.workers or 4
    n_errors = 0
    summary: object
    for source in sources:
        if source.startswith(DICOMWEB_SCHEMES):
            from curation.pacs.crawl import crawl_dicomweb

            summary = crawl_dicomweb(
                source,
                args.db,
                query=query,
                auth=credentials(args.auth_env, args.auth_file),
                workers=workers,
                bulk_lengths=not args.no_bulk_lengths,
                progress=False if args.no_progress else None,
            )
        else:
            from curation.pacs.dimse import crawl_dimse

            summary = crawl_dimse(source, args.db, query=query, calling_aet=args.calling_aet)
        print(summary, file=sys.stdout)
        n_errors += int(getattr(summary, "n_errors", 0))
    return n_errors
