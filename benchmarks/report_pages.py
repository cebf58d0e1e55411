"""What the report's series pages cost: file size and build time, with and without them.

    python benchmarks/report_pages.py [--db DEMO_OUT/catalog.duckdb --cohort DEMO_OUT/cohort]
                                      [--pages 40] [--repeat 3]

Without ``--db`` it runs ``curation demo`` into a temporary folder first (~35 s). It then builds the
report ``--repeat`` times with ``--series-pages 0`` (the baseline) and with ``--pages`` pages,
interleaved so that a change in the machine's load hits both alike, and prints the best wall and
CPU time (this process's; the build is mostly single-threaded) and the file size of each, and their
ratios. On a shared machine, compare CPU times: wall times move with the neighbours' load.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from curation.report import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="catalog (default: run the demo first)")
    parser.add_argument("--cohort", type=Path, help="cohort folder of that catalog")
    parser.add_argument("--pages", type=int, default=40, help="series pages (default 40)")
    parser.add_argument("--repeat", type=int, default=3, help="builds of each kind (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="report_pages_") as tmp:
        work = Path(tmp)
        db, cohort = args.db, args.cohort
        if db is None:
            from curation.demo import run_demo

            demo = run_demo(work / "demo")
            db, cohort = demo.db, demo.outputs.get("cohort")
        best: dict[int, float] = {}
        cpu: dict[int, float] = {}
        size: dict[int, int] = {}
        pages: dict[int, int] = {}
        for _ in range(args.repeat):
            for n in (0, args.pages):
                start, start_cpu = time.perf_counter(), time.process_time()
                result = build_report(db, work / f"r{n}.html", cohort, series_pages=n)
                best[n] = min(best.get(n, float("inf")), time.perf_counter() - start)
                cpu[n] = min(cpu.get(n, float("inf")), time.process_time() - start_cpu)
                size[n], pages[n] = result.path.stat().st_size, result.n_series_pages
        base, with_pages = 0, args.pages
        print(f"{'series pages':>14} {'best wall s':>12} {'best CPU s':>11} {'bytes':>12}")
        for n in (base, with_pages):
            print(f"{pages[n]:>14} {best[n]:>12.2f} {cpu[n]:>11.2f} {size[n]:>12,}")
        extra = size[with_pages] - size[base]
        print(
            f"ratio: size x {size[with_pages] / size[base]:.3f} "
            f"({extra / max(pages[with_pages], 1) / 1000:.1f} kB per page), "
            f"wall time x {best[with_pages] / best[base]:.2f}, CPU time x {cpu[with_pages] / cpu[base]:.2f}"
        )


if __name__ == "__main__":
    main()
