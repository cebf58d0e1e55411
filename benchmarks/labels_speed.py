"""Speed of the report labeler on one core, against a plain regex keyword scan of the same texts.

    python benchmarks/labels_speed.py [--reports 20000] [--catalog]

The texts are the shipped gold reports and the synthetic cohort's reports (sample_data/synthetic),
repeated with a running number appended so no two are equal, to ``--reports`` reports. Both
contenders run in this process (one core), after a warm-up, timed in CPU seconds
(``time.process_time``: other processes on a shared machine do not count against either):

- baseline: one compiled alternation of every finding term of the lexicon, ``findall`` per report
  (what a keyword labeler without negation or scope would do);
- labeler: :func:`curation.labels.label_report` (sections, sentences, mentions, ConText scope,
  report-level aggregation).

``--catalog`` also times the whole ``label_catalog`` step (read reports from DuckDB, label, write
the labels table) on a temporary catalog, in CPU and wall-clock seconds (wall is what a shared
machine gives it). Prints reports/s and the ratio to
the baseline; the target is >= 2,000 reports/s per core.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import polars as pl

from curation.labels import default_lexicon, label_report
from curation.labels.matcher import pattern

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "curation" / "labels" / "gold" / "reports.jsonl"
SYNTH = ROOT / "sample_data" / "synthetic" / "reports.parquet"


def corpus(n: int) -> list[str]:
    base = [json.loads(line)["text"] for line in GOLD.read_text().splitlines() if line.strip()]
    base += pl.read_parquet(SYNTH)["report_text"].to_list()
    return [f"{base[i % len(base)]}\nReport {i}." for i in range(n)]


def cpu_rate(fn, texts: list[str]) -> float:  # type: ignore[no-untyped-def]
    fn(texts[: min(500, len(texts))])  # warm-up: lazy pattern compilation, caches
    t0 = time.process_time()
    fn(texts)
    return len(texts) / (time.process_time() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=20000)
    parser.add_argument("--catalog", action="store_true", help="also time label_catalog")
    args = parser.parse_args()
    texts = corpus(args.reports)
    lex = default_lexicon()
    terms = sorted({t for f in lex.findings.values() for t in f.terms}, key=len, reverse=True)
    keyword = re.compile(r"\b(?:" + "|".join(pattern(t) for t in terms) + r")\b")

    def scan(batch: list[str]) -> None:
        for t in batch:
            keyword.findall(t.lower())

    def label(batch: list[str]) -> None:
        for t in batch:
            label_report(t, lex)

    n_chars = sum(map(len, texts)) / len(texts)
    base = cpu_rate(scan, texts)
    ours = cpu_rate(label, texts)
    print(f"{len(texts)} reports, {n_chars:.0f} characters on average, one core (CPU time)")
    print(f"regex keyword scan (baseline): {base:10,.0f} reports/s")
    print(
        f"labeler:                       {ours:10,.0f} reports/s  ({ours / base:.2f}x the baseline)"
    )
    print(f"target >= 2,000 reports/s per core: {'met' if ours >= 2000 else 'NOT met'}")
    if args.catalog:
        from curation import catalog
        from curation.labels import label_catalog
        from curation.labels.tables import REPORTS

        with tempfile.TemporaryDirectory() as tmp:
            con = catalog.connect(Path(tmp) / "c.duckdb", create=True)
            con.execute("SET threads = 1")
            REPORTS.ensure(con)
            frame = pl.DataFrame(
                {
                    "report_key": [f"A{i}" for i in range(len(texts))],
                    "key_kind": "AccessionNumber",
                    "text": texts,
                    "source": "bench",
                    "source_row": list(range(1, len(texts) + 1)),
                }
            )
            con.register("f", frame)
            con.execute(
                "INSERT INTO reports (report_key, key_kind, text, source, source_row) "
                "SELECT * FROM f"
            )
            t0, c0 = time.perf_counter(), time.process_time()
            result = label_catalog(con, lex)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            con.close()
        print(
            f"label_catalog (read, label, write {result.n_rows} rows; DuckDB on 1 thread): "
            f"{len(texts) / dc:,.0f} reports/s CPU, {len(texts) / dt:,.0f} wall"
        )


if __name__ == "__main__":
    main()
