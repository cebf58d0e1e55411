"""Weak labels from radiology report text into the catalog's ``labels`` table.

Loads report texts (CSV/TSV, JSON lines or Parquet with a key column, AccessionNumber or
StudyInstanceUID, and a text column; or the catalog's DICOM Structured Reports with --from-sr)
into ``reports``, then labels every report: one row per study and finding mentioned, positive,
negative or uncertain, with the evidence sentence. Cohort specs then filter on them
(``{label: pleural_effusion, value: positive}``).

  curation labels --db catalog.duckdb --reports reports.csv
  curation labels --db catalog.duckdb --from-sr
  curation labels --db catalog.duckdb --evaluate gold.jsonl

--evaluate scores the labeler against a gold file (JSON lines: text and labels {finding: value})
and prints per-finding and overall precision/recall/F1, with uncertain counted as positive and as
negative. Output names files, findings and counts only: keys and texts stay in the catalog.

Exit code 0 when done, 3 for bad input (a report file without key or text column, a gold file
with no label of a known finding or a bad value, a bad lexicon; labels of unknown findings
in a gold file are skipped and counted), 4 when the catalog cannot be opened or written.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``curation labels``."""
    parser.add_argument("--db", required=True, help="catalog DuckDB file")
    parser.add_argument(
        "--reports",
        action="append",
        default=[],
        metavar="FILE",
        help="report file to load (.csv, .tsv, .jsonl, .parquet); repeatable",
    )
    parser.add_argument(
        "--from-sr", action="store_true", help="load the text of the catalog's DICOM SRs"
    )
    parser.add_argument("--key-column", help="column holding the key (default: found by name)")
    parser.add_argument("--text-column", help="column holding the text (default: found by name)")
    parser.add_argument(
        "--lexicon",
        action="append",
        default=[],
        metavar="YAML",
        help="extra lexicon file: findings, synonyms, triggers added to the shipped one",
    )
    parser.add_argument(
        "--keep-history",
        action="store_true",
        help="also label the indication/history/comparison sections (ignored by default)",
    )
    parser.add_argument(
        "--implied-negatives",
        action="store_true",
        help='read normal statements as negatives ("lungs are clear" -> no consolidation, ...)',
    )
    parser.add_argument(
        "--evaluate",
        metavar="GOLD",
        help="score the labeler against a gold JSON lines file (no catalog change)",
    )
    parser.add_argument(
        "--show-errors",
        action="store_true",
        help="with --evaluate: list each disagreement (gold id, finding, gold, predicted)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``curation labels``."""
    from curation.catalog import opened
    from curation.labels import label_catalog, load_lexicon, load_reports, load_sr_reports

    lexicon = load_lexicon(*args.lexicon)
    if args.evaluate:
        from curation.labels.evaluate import evaluate_file, format_scores

        scores = evaluate_file(
            args.evaluate,
            lexicon,
            keep_ignored_sections=args.keep_history,
            implied_negatives=args.implied_negatives,
        )
        print(format_scores(scores))
        if args.show_errors:
            for gid, finding, gold, pred in scores.errors:
                print(f"{gid}\t{finding}\tgold={gold or '-'}\tpredicted={pred or '-'}")
        if not (args.reports or args.from_sr):
            return 0
    with opened(args.db) as con:
        for path in args.reports:
            print(load_reports(con, path, key_column=args.key_column, text_column=args.text_column))
        if args.from_sr:
            print(load_sr_reports(con))
        result = label_catalog(
            con,
            lexicon,
            keep_ignored_sections=args.keep_history,
            implied_negatives=args.implied_negatives,
        )
    print(result)
    findings = sorted({f for f, _ in result.counts})
    if findings:
        width = max(len(f) for f in findings)
        print(f"{'finding':<{width}}  positive  negative  uncertain")
        for f in findings:
            c = [result.counts.get((f, v), 0) for v in ("positive", "negative", "uncertain")]
            print(f"{f:<{width}}  {c[0]:>8}  {c[1]:>8}  {c[2]:>9}")
    return 0
