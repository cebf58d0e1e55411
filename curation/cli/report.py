"""Write the self-contained HTML QC report of a catalog (and, optionally, of a cohort).

One HTML file that works offline (plotly.js embedded once, thumbnails embedded): catalog overview,
heterogeneity across sites and vendors, QC findings, pixel metrics, cohort attrition and split
balance, middle slices of flagged series, and a page for each of the worst flagged series (its
header, findings, a mosaic of slices, its pixel metrics against its group; report.html#series/S-...).
Each section appears when the step that feeds it has run. Patients and series appear only as
keyed-hash pseudonyms.

  curation report --db catalog.duckdb --out report.html
  curation report --db catalog.duckdb --cohort cohort/ --out report.html --png figures/

Exit code 0 when the report was written, 3 for a bad --cohort (a cohort folder is data: its files
are read as tables, never as SQL) or missing PNG exporter, 4 when the catalog cannot be opened or
read, holds no crawl, or holds no pseudonym key and cannot be written to store one (then set
CURATION_PSEUDONYM_KEY or pass --key-file), 5 when --out cannot be written.
"""

from __future__ import annotations

import argparse

from curation.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``curation report``."""
    parser.add_argument("--db", required=True, help="catalog DuckDB file")
    parser.add_argument("--out", default="report.html", help="HTML file to write (report.html)")
    parser.add_argument("--cohort", help="cohort folder written by curation cohort")
    parser.add_argument(
        "--thumbnails",
        type=int,
        default=12,
        help="flagged series shown as middle-slice thumbnails (default 12; 0: none)",
    )
    parser.add_argument(
        "--series-pages",
        type=int,
        default=40,
        metavar="N",
        help="flagged series (worst first) that get a page of their own: header, findings, a "
        "mosaic of slices, pixel metrics against their group (default 40; 0: none)",
    )
    parser.add_argument("--png", metavar="DIR", help="also write each figure as PNG (kaleido)")
    parser.add_argument("--title", default="Curation QC report", help="title of the report")
    parser.add_argument(
        "--date-precision",
        choices=("year", "month", "day"),
        default="year",
        help="the finest study dates the report shows (default: year; dates are identifying)",
    )
    parser.add_argument(
        "--key-file",
        help="file holding the pseudonym key (default: $CURATION_PSEUDONYM_KEY, the cohort's "
        "pseudonym.key, else the catalog's own key, stored on first use)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``curation report``."""
    if args.thumbnails < 0:
        raise InputError("--thumbnails must be 0 or more")
    if args.series_pages < 0:
        raise InputError("--series-pages must be 0 or more")
    from curation.report import build_report

    result = build_report(
        args.db,
        args.out,
        args.cohort,
        thumbnails=args.thumbnails,
        series_pages=args.series_pages,
        png_dir=args.png,
        title=args.title,
        key_file=args.key_file,
        date_precision=args.date_precision,
    )
    print(result)
    if result.pngs:
        print(f"{len(result.pngs)} PNG figure(s) in {result.pngs[0].parent}")
    return 0
