"""Federate site summaries: compare the sites without moving their data.

Reads the JSON summaries `curation summary` wrote at each site and writes one offline HTML
report: the sites' distributions side by side, where they differ beyond the heterogeneity rules'
thresholds (certain, or possible given the suppressed counts), label prevalence by site and by
vendor, the cohort each site would contribute, and a harmonization suggestion. With --db, the
same as tables of a DuckDB file (federated_sites, federated_cells, federated_findings).

  curation federate riverside.json northbay.json lakeshore.json --out federated.html
  curation federate sites/*.json --out fed.html --db fed.duckdb

Exit code 0 on success; 3 when a summary cannot be used (not a summary, another schema version,
other bins, a site name given twice: the message names the file); 5 when an output cannot be
written. See docs/federated.md.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``curation federate``."""
    parser.add_argument("summaries", nargs="+", metavar="SITE.json", help="site summaries")
    parser.add_argument("--out", required=True, metavar="fed.html", help="report to write")
    parser.add_argument(
        "--db", metavar="FED.duckdb", help="also write the federation's tables here"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``curation federate``."""
    from curation.federate import federate_files

    result = federate_files(args.summaries, args.out, db=args.db)
    certain = sum(1 for f in result.findings if f.certainty == "certain")
    print(
        f"{len(result.federation.sites)} sites federated: {certain} certain and "
        f"{len(result.findings) - certain} possible cross-site findings; report: {args.out}"
        + (f"; tables: {args.db}" if args.db else "")
    )
    return 0
