"""The demo: the whole path on the shipped sample data, in one call.

``sample_data/`` holds a real multi-vendor subset (``real/``) and a synthetic multi-site cohort with
planted defects (``synthetic/``). The demo crawls both into a catalog under ``out``, measures
pixels, runs the default QC suite (its pixel rules read those measures), loads the synthetic report
labels, builds the example cohort (``sample_data/cohort_spec.yaml``), validates catalog and manifest
with the expectation suites, and writes the HTML report; then it prints where everything is. Each step is the library function a
user would call, so the demo is also the shortest tour of the API.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation import catalog
from curation.crawler.run import CrawlSummary, crawl
from curation.errors import InputError

log = logging.getLogger("curation.demo")


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its outputs, and what each step found."""

    out: Path
    db: Path
    crawl: CrawlSummary
    overview: str
    steps: dict[str, str] = field(default_factory=dict)  # step -> one-line outcome
    outputs: dict[str, Path] = field(default_factory=dict)  # what -> where


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
    """Run the whole path on ``sample_data/`` into ``out`` (created); returns where outputs are."""
    # Imported here: each step's package is only needed when the demo runs.
    from curation import expectations, pixels, qc
    from curation.cohort import build_cohort, load_labels, synthetic_report_labels
    from curation.report import build_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "catalog.duckdb"
    sample = find_sample_data()
    # The DICOM folders only: the synthetic cohort's truth tables and report texts sit beside them.
    roots = [p for p in (sample / "real", sample / "synthetic" / "dicom") if p.is_dir()] or [sample]
    summary = crawl(roots, db, workers=workers)
    steps: dict[str, str] = {}
    outputs: dict[str, Path] = {"catalog": db}
    con = catalog.connect(db)
    try:
        px = pixels.compute(con, workers=workers)
        steps["pixels"] = f"{px}"
        result: Any = qc.run(con)
        steps["qc"] = f"run {result.run_id}: " + ", ".join(
            f"{n} {sev}" for sev, n in sorted(result.counts.items())
        )
        # What `qc --json` and `qc --junit` write (pseudonyms, under the catalog's key)
        from curation import pseudonym
        from curation.qc import junit
        from curation.qc.runner import to_json

        # one key for every output (the env's if set, else the catalog's own)
        key = pseudonym.catalog_key(con)[0]
        (out / "qc.json").write_text(json.dumps(to_json(result, con, key), indent=1, default=str))
        junit.write(result, con, out / "qc.xml", "error", key)
        outputs["qc"] = out / "qc.json"
        truth = sample / "synthetic" / "reports.parquet"
        if truth.exists():
            n = load_labels(con, synthetic_report_labels(truth))
            steps["labels"] = f"{n} report labels loaded (synthetic truth)"
        cohort_dir = out / "cohort"
        # pseudonymous links: the sample archive's folder names carry patient, accession and date
        cohort = build_cohort(con, sample / "cohort_spec.yaml", cohort_dir, key=key, files="link")
        kept = cohort.manifest.height
        steps["cohort"] = f"{cohort.spec.name}: {kept} series in the manifest"
        outputs["cohort"] = cohort_dir
        validation = expectations.validate(con, manifest=cohort_dir)
        expectations.write_junit(validation, out / "validate.xml")
        n_expectations = sum(len(s.outcomes) for s in validation.suites)
        failed = ", ".join(f"{n} {sev}" for sev, n in validation.counts.items() if n) or "none"
        steps["validate"] = (
            f"{len(validation.suites)} expectation suites, {n_expectations} expectations; "
            f"failed: {failed}"
        )
        report = build_report(con, out / "report.html", cohort_dir)
        outputs["report"] = report.path
    finally:
        con.close()
    return DemoResult(
        out=out, db=db, crawl=summary, overview=overview(db), steps=steps, outputs=outputs
    )
