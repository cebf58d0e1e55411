"""Speed of the default QC suite on a catalog of >= 1,000,000 instance rows.

    python benchmarks/qc_speed.py [--copies 80] [--work DIR]

Builds the big catalog by replicating a crawled synthetic cohort (instances, elements, files, crawl
errors, series) ``--copies`` times under new UIDs and file ids, so every rule sees realistic values,
defects included. Then runs the default suite with DuckDB limited to 2 threads and prints seconds per
rule next to a plain column scan of ``instances`` measured in the same run (the baseline), as ratios.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb

from curation import crawl
from curation.qc import run
from curation.synth.generate import generate_cohort

ROOT = Path(__file__).resolve().parents[1]

_UIDS = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID")


def _copy_sql(table: str, columns: list[str], copies: int) -> str:
    repl = []
    for c in columns:
        if c in _UIDS:
            repl.append(f"{c} || '.' || k AS {c}")
        elif c == "PatientID":
            repl.append(f"{c} || '-' || k AS {c}")
        elif c == "path":
            repl.append("path || '.' || k AS path")
        elif c == "file_id":
            repl.append("hash(file_id, k) AS file_id")
    rep = f" REPLACE ({', '.join(repl)})" if repl else ""
    return (
        f"INSERT INTO {table} SELECT * EXCLUDE (k){rep} "
        f"FROM src.{table}, (SELECT range AS k FROM range({copies})) AS r"
    )


def build(work: Path, copies: int) -> Path:
    src = work / "speed_source.duckdb"
    if not src.exists():
        out = work / "speed_source"
        if not (out / "ground_truth.parquet").exists():
            generate_cohort(out, patients=200, seed=11, workers=2, progress=False)
        crawl(out / "dicom", src, workers=2, progress=False)
    big = work / f"speed_{copies}.duckdb"
    if big.exists():
        return big
    con = duckdb.connect(str(big))
    con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
    for table in ("files", "instances", "elements", "frames", "crawl_errors", "series"):
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM src.{table} LIMIT 0")
        cols = [r[0] for r in con.sql(f"DESCRIBE {table}").fetchall()]
        con.execute(_copy_sql(table, cols, copies))
    con.execute("DETACH src")
    con.close()
    return big


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--copies", type=int, default=80)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "_work")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    db = build(args.work, args.copies)
    print(f"catalog built in {time.perf_counter() - t0:.0f} s: {db}")
    con = duckdb.connect(str(db))
    con.execute("SET threads = 2")
    n_inst, n_el = con.sql(
        "SELECT (SELECT count(*) FROM instances), (SELECT count(*) FROM elements)"
    ).fetchall()[0]
    t0 = time.perf_counter()
    con.sql(
        "SELECT count(*), count(ImagePositionPatient), count(DISTINCT SeriesInstanceUID) "
        "FROM instances"
    ).fetchall()
    base = time.perf_counter() - t0
    t0 = time.perf_counter()
    con.sql("SELECT count(*), count(value) FROM elements").fetchall()
    base_el = time.perf_counter() - t0
    result = run(con)
    print(f"{n_inst:,} instance rows, {n_el:,} element rows; DuckDB threads = 2")
    print(
        f"baseline: scan of instances (count, count IPP, count distinct series) = {base:.3f} s; "
        f"scan of elements = {base_el:.3f} s"
    )
    print("| step | seconds | x instances scan |")
    print("|---|---|---|")
    print(
        f"| derived geometry tables (qc_slices, ...) | {result.views_seconds:.2f} | "
        f"{result.views_seconds / base:.1f} |"
    )
    for r in sorted(result.rule_runs, key=lambda r: -r.seconds):
        print(
            f"| `{r.rule_id}` ({r.n_findings} findings) | {r.seconds:.2f} | {r.seconds / base:.1f} |"
        )
    print(f"| **whole suite** | {result.seconds:.2f} | {result.seconds / base:.1f} |")
    return 0 if not result.errors else 1


if __name__ == "__main__":
    sys.exit(main())
