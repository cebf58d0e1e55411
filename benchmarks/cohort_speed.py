"""Speed of building a cohort of >= 100,000 series from the catalog (no volumes).

    python benchmarks/cohort_speed.py [--series 100000] [--work DIR]

Crawls the shipped synthetic cohort (sample_data/synthetic), harmonizes it, runs the default QC suite
and loads its report labels; then replicates the tables the builder reads (harmonized_series, series,
instances, files, qc_findings, labels) under new UIDs until there are ``--series`` series. Builds the
shipped spec with every series included (plus QC and label criteria), then the shipped spec itself,
with DuckDB limited to 2 threads, and prints the times next to a plain scan of the series table into
polars measured in the same run (the baseline), as ratios.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from curation import catalog, crawl, harmonize, qc
from curation.cohort import build_cohort, load_labels, parse, synthetic_report_labels

ROOT = Path(__file__).resolve().parents[1]
SYNTH = ROOT / "sample_data" / "synthetic"
KEY = b"benchmark-key-0123456789"


def _replicate(con, table: str, copies: int) -> None:  # type: ignore[no-untyped-def]
    cols = [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $t", {"t": table}
        ).fetchall()
    ]
    repl = [
        f"{c} || '.' || k AS {c}"
        for c in cols
        if c in ("SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID")
    ]
    repl += [f"{c} || '-' || k AS {c}" for c in cols if c == "PatientID"]
    repl += ["hash(file_id, k) AS file_id" for c in cols if c == "file_id"]
    rep = f" REPLACE ({', '.join(repl)})" if repl else ""
    con.execute(
        f"CREATE OR REPLACE TABLE _big AS SELECT * EXCLUDE (k){rep} FROM {table}, (SELECT range AS k FROM range({copies})) r"
    )
    con.execute(f"DROP TABLE {table}")
    con.execute(f"ALTER TABLE _big RENAME TO {table}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="cohort_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "catalog.duckdb"
    db.unlink(missing_ok=True)
    t = time.perf_counter()
    crawl(SYNTH / "dicom", db, workers=2, progress=False)
    con = catalog.connect(db)
    harmonize.build(con)
    qc.run(con)
    load_labels(con, synthetic_report_labels(SYNTH / "reports.parquet"))
    n0 = con.sql("SELECT count(*) FROM harmonized_series").fetchall()[0][0]
    copies = math.ceil(args.series / n0)
    for table in ("harmonized_series", "series", "instances", "files", "qc_findings", "labels"):
        _replicate(con, table, copies)
    con.execute("DROP TABLE IF EXISTS elements")  # the builder never reads it
    con.execute("CHECKPOINT")
    n = con.sql("SELECT count(*) FROM harmonized_series").fetchall()[0][0]
    n_inst = con.sql("SELECT count(*) FROM instances").fetchall()[0][0]
    print(
        f"catalog: {n:,} series, {n_inst:,} instances (prepared in {time.perf_counter() - t:.1f} s)"
    )
    con.execute("SET threads = 2")

    t = time.perf_counter()
    con.sql("SELECT * FROM series").pl()
    baseline = time.perf_counter() - t
    print(f"baseline: plain scan of series into polars: {baseline:.3f} s")

    everything = parse(
        {
            "name": "all",
            "exclude": [
                {"qc_rule": "series.too_few_slices"},
                {"label": "acute_infarct", "value": "uncertain"},
            ],
            "split": {
                "ratios": {"train": 0.7, "val": 0.15, "test": 0.15},
                "stratify": ["vendor", "label:acute_infarct"],
            },
            "labels": ["acute_infarct"],
        }
    )
    for name, spec in (
        ("all series (2 criteria, stratified)", everything),
        ("shipped spec", ROOT / "sample_data" / "cohort_spec.yaml"),
    ):
        t = time.perf_counter()
        res = build_cohort(con, spec, work / "out", key=KEY)
        s = time.perf_counter() - t
        steps = ", ".join(f"{k} {v:.2f}" for k, v in res.seconds.items())
        print(
            f"{name}: {res.manifest.height:,} series in the manifest, {s:.2f} s "
            f"= {s / baseline:.1f} x the baseline ({steps}; rest: harmonized check, key)"
        )
    con.close()


if __name__ == "__main__":
    main()
