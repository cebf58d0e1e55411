"""Precision and recall of the pixel.* rules per artifact kind, on a synthetic cohort.

    .venv/bin/python benchmarks/pixel_accuracy.py                       # sample_data/synthetic
    .venv/bin/python benchmarks/pixel_accuracy.py --out /tmp/px --patients 200 --seed 1
    .venv/bin/python benchmarks/pixel_accuracy.py --cohort /tmp/bench --db /tmp/bench.duckdb

Crawls the cohort (unless --db already holds it), computes pixel metrics with the default sampling,
runs the pixel.* rules through the QC engine, and scores them against ground_truth.parquet at the
series level (the rules are series-level; instance-level truth is reduced to its series). A
finding on a series that carries another planted defect counts as a false positive, reported
apart as collateral.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

from curation import catalog, crawl
from curation.pixels import compute
from curation.qc import run
from curation.qc.rules.pixel import PIXEL_RULES
from curation.qc.suite import from_mapping

PIXEL_KINDS = (
    "motion_blur", "series_blur", "high_noise", "metal_streaks", "clipping", "blank_slices", "wrong_rescale",
    "burned_in_text",
)  # fmt: skip


def score(con: object, truth: pl.DataFrame, run_id: int) -> pl.DataFrame:
    """One row per artifact kind: planted series, TP, FP (collateral), FN, precision, recall."""
    found = con.sql(  # type: ignore[attr-defined]
        f"SELECT rule_id, SeriesInstanceUID FROM qc_findings WHERE run_id = {run_id}"
    ).pl()
    per_series = truth.select("kind", "SeriesInstanceUID").unique()
    defective = set(per_series.get_column("SeriesInstanceUID").to_list())
    measured = set(
        con.sql("SELECT SeriesInstanceUID FROM pixel_metrics")
        .pl()
        .get_column(  # type: ignore[attr-defined]
            "SeriesInstanceUID"
        )
    )
    rows = []
    for kind in PIXEL_KINDS:
        rule_ids = [r.id for r in PIXEL_RULES if kind in r.detects]
        want = set(per_series.filter(pl.col("kind") == kind).get_column("SeriesInstanceUID"))
        want &= measured
        got = set(found.filter(pl.col("rule_id").is_in(rule_ids)).get_column("SeriesInstanceUID"))
        tp, fp, fn = len(got & want), got - want, len(want - got)
        prec = tp / (tp + len(fp)) if tp + len(fp) else 1.0
        rows.append(
            {
                "kind": kind,
                "rule": ", ".join(rule_ids),
                "planted": len(want),
                "TP": tp,
                "FP": len(fp),
                "collateral": len(fp & defective),
                "FN": fn,
                "precision": round(prec, 3),
                "recall": round(tp / len(want), 3) if want else 1.0,
            }
        )
    return pl.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cohort", type=Path, default=Path("sample_data/synthetic"))
    ap.add_argument("--db", type=Path, help="catalog (default: <out>/pixel_accuracy.duckdb)")
    ap.add_argument("--out", type=Path, help="generate a new cohort here (with --patients/--seed)")
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", default="small")
    ap.add_argument("--sample", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cohort = args.cohort
    if args.out is not None:
        from curation.synth import generate_cohort

        cohort = args.out / f"{args.profile}{args.patients}_s{args.seed}"
        if not (cohort / "ground_truth.parquet").exists():
            generate_cohort(cohort, patients=args.patients, seed=args.seed, profile=args.profile)
    db = args.db or (args.out or Path("/tmp")) / f"pixel_accuracy_{cohort.name}.duckdb"
    if not db.exists():
        crawl([cohort / "dicom"], db, workers=args.workers, progress=False)
    t0 = time.perf_counter()
    summary = compute(db, sample=args.sample, workers=args.workers, progress=False)
    print(summary, f"({time.perf_counter() - t0:.1f} s)")
    con = catalog.connect(db)
    result = run(con, from_mapping({"name": "pixels", "include": ["pixel.*"]}, "pixels"))
    truth = pl.read_parquet(cohort / "ground_truth.parquet")
    table = score(con, truth, result.run_id)
    with pl.Config(tbl_rows=20, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(
            f"cohort {cohort} ({con.sql('SELECT count(*) FROM pixel_metrics').fetchall()[0][0]} series measured)"
        )
        print(table)
    print("findings per rule:", {r.rule_id: r.n_findings for r in result.rule_runs})
    con.close()


if __name__ == "__main__":
    main()
