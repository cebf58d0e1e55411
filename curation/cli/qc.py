"""Run a QC rule suite over the catalog and record the findings.

Every rule of the suite runs (a rule that cannot run is reported, the others still run); findings
land in the catalog's qc_findings table with the run's provenance in qc_runs. Prints a summary per
rule; --json and --junit write the run for other tools and CI, identifiers as pseudonyms (the keyed
hash of the manifest and the report: see --key-file).

  curation qc --db catalog.duckdb                       the shipped default suite
  curation qc --db catalog.duckdb --suite ct.yaml --fail-on warning --junit qc.xml
  curation qc --list                                    every rule, its level and severity
  curation qc --explain series.missing_slices           what a rule checks, and what not

Exit code 0 when no finding is at or above --fail-on (default error), 1 when one is, 3 for a bad
suite file or rule id, 4 when the catalog cannot be opened or read, lacks the crawl's tables, or a
rule's query failed on it, 5 when --json or --junit cannot be written.

A suite file is code by design: it decides which checks run and how strictly (review it as you would
a script). Its parameter values are bound as query parameters, never pasted into SQL.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from curation import pseudonym
from curation.errors import CatalogError, InputError, writing
from curation.qc import junit
from curation.qc.rule import Rule, all_rules
from curation.qc.runner import FAIL_ON, to_json
from curation.qc.runner import run as run_suite


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``curation qc``."""
    parser.add_argument("--db", help="catalog DuckDB file (written by curation crawl)")
    parser.add_argument("--suite", help="suite file, YAML or TOML (default: the shipped suite)")
    parser.add_argument(
        "--fail-on",
        choices=FAIL_ON,
        default="error",
        help="exit 1 when a finding has this severity or worse (default: error)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the run and its findings as JSON")
    parser.add_argument("--junit", metavar="FILE", help="write JUnit XML (one test per rule)")
    parser.add_argument(
        "--key-file",
        help="file holding the pseudonym key of --json/--junit (default: $CURATION_PSEUDONYM_KEY, "
        "else the catalog's own key, stored on first use)",
    )
    parser.add_argument("--list", action="store_true", help="list every rule and exit")
    parser.add_argument("--explain", metavar="RULE_ID", help="describe one rule and exit")


def explain(rule: Rule) -> str:
    """A rule's declaration as readable text."""
    wrap = lambda s: textwrap.fill(s, 96, initial_indent="  ", subsequent_indent="  ")  # noqa: E731
    lines = [
        f"{rule.id}  ({rule.level.value}, default severity {rule.severity.value})",
        f"  {rule.title}",
        "",
        "checks:",
        wrap(rule.description),
        "does not check:",
        wrap(rule.not_checked),
    ]
    if rule.params:
        lines += ["parameters:"]
        lines += [
            f"  {p.name} = {p.default!r}{' ' + p.unit if p.unit else ''}: {p.description}"
            for p in rule.params
        ]
    if rule.detects:
        lines += [f"synthetic defect kinds: {', '.join(rule.detects)}"]
    lines += [f"reads: {', '.join(rule.requires)}"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``curation qc``."""
    rules = all_rules()
    if args.list:
        for rid, r in sorted(rules.items()):
            print(f"{rid:36s} {r.level.value:9s} {r.severity.value:8s} {r.title}")
        return 0
    if args.explain:
        if args.explain not in rules:
            raise InputError(f"no rule {args.explain!r} (see curation qc --list)")
        print(explain(rules[args.explain]))
        return 0
    if not args.db:
        # argparse cannot require it (--list and --explain need no catalog): a usage error all the same
        print("curation qc: error: --db is required to run a suite", file=sys.stderr)
        return 2
    if not Path(args.db).exists():
        raise CatalogError(f"{args.db}: no catalog here (run `curation crawl` first)")
    from curation import catalog

    con = catalog.connect(args.db)
    try:
        result = run_suite(con, args.suite)
        print(
            f"qc run {result.run_id} of suite {result.suite.name} on {args.db}: "
            f"{result.n_findings} finding(s) in {result.seconds:.2f} s"
        )
        for rr in result.rule_runs:
            status = rr.error if rr.status != "ok" else f"{rr.n_findings}"
            print(f"  {rr.rule_id:36s} {rr.severity:8s} {status}")
        print("  by severity: " + ", ".join(f"{k} {v}" for k, v in result.counts.items()))
        key = (
            pseudonym.catalog_key(con, key_file=args.key_file)[0]
            if args.json or args.junit
            else None
        )
        if args.json:
            text = json.dumps(to_json(result, con, key), indent=1, default=str)
            with writing(args.json):
                Path(args.json).write_text(text)
        if args.junit:
            with writing(args.junit):
                junit.write(result, con, args.junit, args.fail_on, key)
    finally:
        con.close()
    if result.errors:
        print(
            f"curation qc: {len(result.errors)} rule(s) could not run on this catalog",
            file=sys.stderr,
        )
        return 4
    return 1 if result.failed(args.fail_on) else 0
