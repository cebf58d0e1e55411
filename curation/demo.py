"""The demo: the whole path on the shipped sample data, in one call.

Crawls ``sample_data/`` (the real multi-vendor subset and the synthetic cohort) into a catalog under
``out`` and prints what is in it and where everything was written. Later steps of the path join here
as they exist, so that ``curation demo`` always shows the product end to end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from curation import catalog
from curation.crawler import CrawlSummary, crawl
from curation.errors import InputError

log = logging.getLogger("curation.demo")


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its outputs, and what the crawl found."""

    out: Path
    db: Path
    crawl: CrawlSummary
    overview: str


def find_sample_data() -> Path:
    """The ``sample_data`` folder of a source checkout, or of the current directory."""
    for candidate in (
        Path(__file__).resolve().parents[1] / "sample_data",
        Path.cwd() / "sample_data",
    ):
        if candidate.is_dir():
            return candidate
    raise InputError("no sample_data/ folder found next to the package or in the current directory")


def overview(db: Path) -> str:
    """A short text overview of a catalog: instances by modality and manufacturer, problems."""
    con = catalog.connect(db, read_only=True)
    try:
        by_vendor = con.sql(
            """SELECT coalesce(Modality, '?') AS modality, coalesce(Manufacturer, '?') AS manufacturer,
                      count(DISTINCT SeriesInstanceUID) AS series, count(*) AS instances
               FROM instances GROUP BY ALL ORDER BY modality, instances DESC"""
        ).fetchall()
        problems = con.sql(
            "SELECT reason, count(*) FROM crawl_errors GROUP BY reason ORDER BY 2 DESC"
        ).fetchall()
        totals = con.sql(
            """SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM studies),
                      (SELECT count(*) FROM series), (SELECT count(*) FROM instances),
                      (SELECT count(*) FROM elements)"""
        ).fetchall()[0]
    finally:
        con.close()
    lines = [
        f"{totals[0]} patients, {totals[1]} studies, {totals[2]} series, {totals[3]} instances, "
        f"{totals[4]:,} header elements",
        "",
        f"{'modality':<9}{'manufacturer':<28}{'series':>7}{'instances':>11}",
    ]
    lines += [f"{m:<9}{v[:27]:<28}{s:>7}{n:>11}" for m, v, s, n in by_vendor]
    if problems:
        lines += [
            "",
            "files with problems (crawl_errors): " + ", ".join(f"{r} {n}" for r, n in problems),
        ]
    return "\n".join(lines)


def run_demo(out: str | Path = "demo_out", *, workers: int | None = None) -> DemoResult:
    """Run the demo into ``out`` (created); returns where the outputs are."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "catalog.duckdb"
    sample = find_sample_data()
    # The DICOM folders only: the synthetic cohort's truth tables and report texts sit beside them.
    roots = [p for p in (sample / "real", sample / "synthetic" / "dicom") if p.is_dir()] or [sample]
    summary = crawl(roots, db, workers=workers)
    return DemoResult(out=out, db=db, crawl=summary, overview=overview(db))
