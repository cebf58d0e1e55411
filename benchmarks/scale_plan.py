"""How the rule suite's time grows with the catalog: Parquet-backed catalogs of 1, 2, 4 million instances.

    nice -n 19 python benchmarks/scale_plan.py --sizes 1,2,4 --work /tmp/scale_plan

Crawling millions of files is not what this measures (``benchmarks/dask_speed.py`` measures the
crawl's rate): the big catalogs are built by replicating the rows of a real crawl. The synthetic
sample cohort (``sample_data/synthetic``: CT and MR of several sites with planted defects) is
crawled with ``--engine dask``; its ``instances``, ``frames`` and ``elements`` parts are replicated
in DuckDB under new UIDs, patient IDs, paths and file ids (copy ``k`` appends ``.k`` to each UID),
one block of Parquet parts per million instances (``--per-block``), and ``files`` and ``crawl_errors`` likewise in
the .duckdb file. A catalog of N million instances is then the first N blocks: views over their
parts, aggregates rebuilt, the default QC suite run with DuckDB limited to 2 threads and 4 GB.
Printed per size: the parts' size on disk, the aggregate rebuild, the suite, and a plain scan of
``instances`` measured in the same run (the baseline of the ratios). Everything under ``--work`` is
deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_UIDS = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID")


def _replace(columns: list[str]) -> str:
    repl = []
    for c in columns:
        if c in _UIDS:
            repl.append(f'"{c}" || \'.\' || k AS "{c}"')
        elif c == "PatientID":
            repl.append(f'"{c}" || \'-\' || k AS "{c}"')
        elif c == "path":
            repl.append("path || '.' || k AS path")
        elif c == "file_id":
            repl.append("hash(file_id, k) AS file_id")
    return f" REPLACE ({', '.join(repl)})" if repl else ""


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,2,4", help="blocks of instances, comma-separated")
    parser.add_argument(
        "--per-block", type=int, default=1_000_000, help="instances per block (default: 1 million)"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/scale_plan"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))

    from distributed import LocalCluster

    from curation import catalog, qc
    from curation.crawler import dask_engine, parts

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    source = work / "source.duckdb"
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:  # fmt: skip
        s = dask_engine.crawl(ROOT / "sample_data" / "synthetic" / "dicom", source,
                              scheduler=cluster.scheduler_address, progress=False)  # fmt: skip
    src_root = parts.root_of(source)
    n_src = s.n_ok
    per_block = -(-args.per_block // n_src)  # copies per block
    con = catalog.connect(source, read_only=True)
    n_el_src = con.sql("SELECT count(*) FROM elements").fetchall()[0][0]
    con.close()
    print(f"source: {n_src:,} instances, {n_el_src:,} elements ({n_el_src / n_src:.0f} per "
          f"instance); {per_block} copies per block = {per_block * n_src:,} instances")  # fmt: skip

    blocks = work / "blocks"
    build = duckdb_connect()
    t0 = time.perf_counter()
    for b in range(max(sizes)):
        for table in parts.PART_TABLES:
            folder = blocks / table.name
            folder.mkdir(parents=True, exist_ok=True)
            cols = table.column_names
            src = catalog.quote_literal(str(src_root / table.name / "*.parquet"))
            build.execute(
                f"""COPY (SELECT * EXCLUDE (k){_replace(cols)} FROM read_parquet({src}),
                          (SELECT range AS k FROM range({b * per_block}, {(b + 1) * per_block})))
                    TO {catalog.quote_literal(str(folder / f"block-{b:03d}.parquet"))}
                    (FORMAT parquet, COMPRESSION {parts.COMPRESSION})"""
            )
    print(f"blocks written in {time.perf_counter() - t0:.0f} s")

    print("\n| instances | element rows | parts on disk | GiB per million instances | "
          "aggregates rebuilt, s | rule suite, s | instances scan, s | suite x scan |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for size in sizes:
        db = work / f"catalog_{size}.duckdb"
        shutil.copy(source, db)
        con = catalog.connect(db)
        try:
            con.execute("SET threads = 2")
            con.execute("SET memory_limit = '4GB'")
            con.execute(f"ATTACH {catalog.quote_literal(str(source))} AS src (READ_ONLY)")
            for name in ("files", "crawl_errors"):
                cols = [r[0] for r in con.sql(f"DESCRIBE src.{name}").fetchall()]
                con.execute(f"DELETE FROM {name}")
                con.execute(
                    f"""INSERT INTO {name} SELECT * EXCLUDE (k){_replace(cols)} FROM src.{name},
                        (SELECT range AS k FROM range({size * per_block}))"""
                )
            con.execute("DETACH src")
            n_bytes = 0
            for table in parts.PART_TABLES:
                files = [blocks / table.name / f"block-{b:03d}.parquet" for b in range(size)]
                n_bytes += sum(f.stat().st_size for f in files)
                listing = ", ".join(catalog.quote_literal(str(f)) for f in files)
                select = ", ".join(parts._cast(c) for c in table.columns)
                con.execute(
                    f"CREATE OR REPLACE VIEW {table.name} AS SELECT {select} "
                    f"FROM read_parquet([{listing}])"
                )
            t0 = time.perf_counter()
            catalog.rebuild_aggregates(con)
            aggregates = time.perf_counter() - t0
            n_inst, n_el = con.sql(
                "SELECT (SELECT count(*) FROM instances), (SELECT count(*) FROM elements)"
            ).fetchall()[0]
            t0 = time.perf_counter()
            con.sql("SELECT count(*), count(ImagePositionPatient), count(DISTINCT "
                    "SeriesInstanceUID) FROM instances").fetchall()  # fmt: skip
            scan = time.perf_counter() - t0
            result = qc.run(con)
            failed = [r.rule_id for r in result.rule_runs if r.status == "error"]
            merged = None
            if size == sizes[0]:
                # The other design, in the same run: the parts merged into the .duckdb file.
                t0 = time.perf_counter()
                for table in parts.PART_TABLES:
                    con.execute(f"CREATE TABLE {table.name}_m AS SELECT * FROM {table.name}")
                    con.execute(f"DROP VIEW {table.name}")
                    con.execute(f"ALTER TABLE {table.name}_m RENAME TO {table.name}")
                con.execute("CHECKPOINT")
                merge = time.perf_counter() - t0
                merged = (merge, qc.run(con).seconds)
        finally:
            con.close()
        gib = n_bytes / 2**30
        print(f"| {n_inst:,} | {n_el:,} | {gib:.2f} GiB | {gib / (n_inst / 1e6):.2f} | "
              f"{aggregates:.1f} | {result.seconds:.1f} | {scan:.2f} | {result.seconds / scan:.0f} |"
              + (f" rules failed: {failed}" if failed else ""))  # fmt: skip
        if merged is not None:
            print(f"|  merged into the .duckdb instead: merge {merged[0]:.1f} s, "
                  f"rule suite {merged[1]:.1f} s (x views {merged[1] / result.seconds:.2f}) |"
                  "||||||")  # fmt: skip
        sys.stdout.flush()
        db.unlink()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def duckdb_connect():  # type: ignore[no-untyped-def]
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET memory_limit = '4GB'")
    con.execute("SET preserve_insertion_order = false")
    return con


if __name__ == "__main__":
    sys.exit(main())
