"""Summarize one site's catalog as identifier-free, versioned JSON, for a federation of sites.

Counts of series by modality, vendor, model, series type, body part, year; distributions on fixed,
documented bins of slice thickness, pixel spacing, matrix, kVp, TR/TE/field strength, b-values and
pixel metrics; QC finding rates per rule; label prevalence by vendor; and, given --cohort, the
cohort's attrition at this site. Counts under --min-count are suppressed and marked, with
complementary suppression so that no total minus visible cells gives them away. No UID, name, ID,
date finer than the year, path or free text is written. See docs/federated.md.

  curation summary --db catalog.duckdb --out riverside.json --site riverside
  curation summary --db catalog.duckdb --out site.json --site b --cohort cohort.yaml --min-count 20

The catalog is only read, except that the harmonized tables are built if it lacks them.
Exit code 0 on success, 3 for a bad option or spec, 4 when the catalog cannot be read, 5 when
--out cannot be written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from curation.errors import CatalogError, InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``curation summary``."""
    parser.add_argument("--db", required=True, help="catalog DuckDB file")
    parser.add_argument("--out", required=True, metavar="SITE.json", help="summary file to write")
    parser.add_argument(
        "--site",
        default="site",
        metavar="NAME",
        help="the site's name in the federation (letters, digits, _ . -; default: site)",
    )
    parser.add_argument(
        "--min-count",
        type=int,
        default=10,
        metavar="K",
        help="suppress counts under K (default 10; 1 shows every count)",
    )
    parser.add_argument("--cohort", metavar="SPEC", help="cohort spec whose attrition to report")


def run(args: argparse.Namespace) -> int:
    """Run ``curation summary``."""
    from curation import catalog
    from curation.federate import build_summary, write_summary

    if not Path(args.db).exists():
        raise CatalogError(f"{args.db}: no catalog here (run `curation crawl` first)")
    if args.cohort is not None and not Path(args.cohort).is_file():
        raise InputError(f"{args.cohort}: no such spec file")
    with catalog.opened(args.db, read_only=True) as con:
        harmonized = catalog.has_table(con, "harmonized_series")
    # read-only unless the harmonized tables must be built first
    with catalog.opened(args.db, read_only=harmonized) as con:
        summary = build_summary(con, site=args.site, min_count=args.min_count, cohort=args.cohort)
    write_summary(summary, args.out)
    d = summary["distributions"]
    hidden = sum(1 for x in d for c in x["cells"] if c.get("suppressed")) + sum(
        1 for x in d if x.get("withheld")
    )
    print(
        f"site {summary['site']!r}: {len(d)} distributions, {hidden} cells suppressed or "
        f"withheld (k={summary['min_count']}), written to {args.out}"
    )
    return 0
