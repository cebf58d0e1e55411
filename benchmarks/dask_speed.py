"""The crawl on Dask against the local crawl, and the rule suite on the Parquet-backed catalog.

    nice -n 19 python benchmarks/dask_speed.py --corpus dense --files 4000 --work /tmp/dask_speed

Same files, same run, each crawl into a fresh catalog:

- the local multiprocess crawl (``curation.crawl``, 2 reader processes): the baseline;
- ``--engine dask`` on a LocalCluster of 1 and of 2 worker processes (one thread each), the
  cluster started beforehand (its start-up is printed apart: a real cluster is already running);
- peak RSS of a Dask worker (each worker reports its own ``ru_maxrss``);
- catalog size on disk: the .duckdb file of the local crawl, and the .duckdb file plus the
  Parquet parts of the Dask crawl, per instance;
- the default QC suite on the local .duckdb catalog and on the Parquet-backed one (views), and the
  alternative design measured: merging the parts into the .duckdb file after the crawl (the time
  the merge takes, and the suite on the merged catalog).

Corpora as in ``benchmarks/crawl_speed.py``: ``dense`` replicates the Philips and Siemens MR series
of ../shared/dicom as sparse files (real dense headers, ~650 elements per file); ``synthetic`` is
the bench-profile synthetic cohort (``curation sample --profile bench``). Machines here are shared
and noisy: read the ratios, measured in one run on the same files.
"""

from __future__ import annotations

import argparse
import logging
import resource
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _suite(db: Path) -> tuple[float, int]:
    from curation import catalog, qc

    con = catalog.connect(db)
    try:
        con.execute("SET threads = 2")
        t0 = time.perf_counter()
        result = qc.run(con)
        return time.perf_counter() - t0, sum(r.n_findings for r in result.rule_runs)
    finally:
        con.close()


def _merge(dask_db: Path, merged: Path) -> float:
    """Copy the Parquet-backed catalog into one .duckdb file (the merge design): seconds."""
    from curation import catalog
    from curation.crawler import parts

    shutil.copy(dask_db, merged)
    con = catalog.connect(merged)
    try:
        t0 = time.perf_counter()
        for table in parts.PART_TABLES:
            con.execute(f"CREATE TABLE {table.name}_merged AS SELECT * FROM {table.name}")
            con.execute(f"DROP VIEW {table.name}")
            con.execute(f"ALTER TABLE {table.name}_merged RENAME TO {table.name}")
        con.execute("CHECKPOINT")
        return time.perf_counter() - t0
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", choices=("dense", "synthetic"), default="dense")
    parser.add_argument("--files", type=int, default=4000, help="files of the corpus (at least)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dask_speed"))
    parser.add_argument("--task-files", type=int, default=1024)
    parser.add_argument("--keep", action="store_true", help="keep the corpus and catalogs")
    args = parser.parse_args(argv)

    import crawl_speed
    from distributed import Client, LocalCluster

    from curation import crawl
    from curation.crawler import dask_engine, parts

    args.work.mkdir(parents=True, exist_ok=True)
    crawl_speed.WORK = args.work / "corpus"
    corpus = (
        crawl_speed.dense(args.files) if args.corpus == "dense" else crawl_speed.cohort(args.files)
    )
    out = args.work / "catalogs"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()

    rows: list[tuple[str, float, str]] = []
    local_db = out / "local.duckdb"
    s = crawl(corpus, local_db, workers=2, progress=False)
    base = s.n_seen / s.seconds
    n_files, n_ok = s.n_seen, s.n_ok
    rows.append(("local crawl, 2 reader processes (baseline)", base, "1.00"))

    dask_dbs = {}
    rss: dict[int, float] = {}
    starts: dict[int, float] = {}
    for n_workers in (1, 2):
        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)  # fmt: skip
        starts[n_workers] = time.perf_counter() - t0
        try:
            db = out / f"dask{n_workers}.duckdb"
            s = dask_engine.crawl(corpus, db, scheduler=cluster.scheduler_address,
                                  task_files=args.task_files, progress=False)  # fmt: skip
            assert s.n_seen == n_files and s.n_ok == n_ok, s
            rate = s.n_seen / s.seconds
            rows.append((f"--engine dask, {n_workers} worker(s)", rate, f"{rate / base:.2f}"))
            with Client(cluster) as client:
                rss[n_workers] = max(client.run(_peak_rss_mb).values())
            dask_dbs[n_workers] = db
        finally:
            cluster.close()

    print(f"\ncorpus: {args.corpus}, {n_files:,} files ({n_ok:,} instances); 2 cores; "
          f"tasks of {args.task_files} files\n")  # fmt: skip
    print("| crawl | files/s | x local |")
    print("|---|---|---|")
    for name, rate, ratio in rows:
        print(f"| {name} | {rate:,.0f} | {ratio} |")
    print(f"\nLocalCluster start-up (not in the rates): 1 worker {starts[1]:.1f} s, "
          f"2 workers {starts[2]:.1f} s")  # fmt: skip
    print(f"peak RSS of a Dask worker: 1 worker {rss[1]:.0f} MB, 2 workers {rss[2]:.0f} MB")

    dask_db = dask_dbs[2]
    local_size = _size(local_db)
    dask_file, dask_parts = _size(dask_db), _size(parts.root_of(dask_db))
    per_m = 1e6 / n_ok / 2**30
    print("\n| catalog on disk | bytes | GiB per million instances |")
    print("|---|---|---|")
    print(f"| local .duckdb | {local_size:,} | {local_size * per_m:.2f} |")
    print(f"| dask: .duckdb file | {dask_file:,} | {dask_file * per_m:.2f} |")
    print(f"| dask: Parquet parts | {dask_parts:,} | {dask_parts * per_m:.2f} |")
    for table in ("instances", "frames", "elements"):
        n = _size(parts.root_of(dask_db) / table)
        print(f"| dask: parts of {table} | {n:,} | {n * per_m:.3f} |")

    merged = out / "merged.duckdb"
    merge_s = _merge(dask_db, merged)
    suite_local, n_local = _suite(local_db)
    suite_parquet, n_parquet = _suite(dask_db)
    suite_merged, n_merged = _suite(merged)
    assert n_local == n_parquet == n_merged, (n_local, n_parquet, n_merged)
    print(f"\nrule suite (default, DuckDB 2 threads; {n_local:,} findings on each)\n")
    print("| catalog | seconds | x local .duckdb |")
    print("|---|---|---|")
    print(f"| local .duckdb (baseline) | {suite_local:.2f} | 1.00 |")
    print(f"| Parquet parts (views) | {suite_parquet:.2f} | {suite_parquet / suite_local:.2f} |")
    print(
        f"| parts merged into the .duckdb | {suite_merged:.2f} | {suite_merged / suite_local:.2f} |"
    )
    print(f"| the merge itself (one process) | {merge_s:.2f} | {merge_s / suite_local:.2f} |")
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
