"""Run great-expectations suites over the catalog (and a cohort manifest): a CI gate.

The suites are the JSON files of expectations/ (column presence, ranges, allowed values, unique and
well-formed UIDs) over the catalog tables and a cohort's manifest.parquet. Every suite runs; failed
expectations are printed and recorded in qc_findings (one QC run per suite, named
expectations/<suite>), so that the report shows them beside the QC findings.

  curation validate --db catalog.duckdb                         every suite in expectations/
  curation validate --db catalog.duckdb --suite catalog_series --suite my_suite.json
  curation validate --db catalog.duckdb --cohort cohort/ --junit validate.xml

Exit code 0 when no expectation at or above --fail-on (default error; GX severity critical) failed,
1 when one did, 3 for a suite file that cannot be used, 4 when the catalog cannot be opened or a
suite named with --suite has nothing to run on (a table the catalog lacks; for the manifest suite,
no --cohort or no manifest.parquet in it: the step that writes it has not run).
"""

from __future__ import annotations

import argparse

from curation.errors import CatalogError, writing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``curation validate``."""
    parser.add_argument("--db", required=True, help="catalog DuckDB file")
    parser.add_argument(
        "--suite",
        action="append",
        metavar="SUITE",
        help="a suite name in expectations/ or a JSON file; repeatable (default: every suite)",
    )
    parser.add_argument("--cohort", help="cohort folder (or manifest.parquet) for manifest suites")
    parser.add_argument(
        "--fail-on",
        choices=("error", "warning", "info", "never"),
        default="error",
        help="exit 1 when an expectation of this severity or worse failed (default: error)",
    )
    parser.add_argument(
        "--junit", metavar="FILE", help="write JUnit XML (one test per expectation)"
    )
    parser.add_argument(
        "--no-record", action="store_true", help="do not write the results into qc_findings"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``curation validate``."""
    from curation import expectations

    result = expectations.validate(
        args.db, args.suite, manifest=args.cohort, record=not args.no_record
    )
    for s in result.suites:
        if s.status == "skipped":
            print(f"suite {s.suite.name}: skipped: {s.reason}")
            continue
        n_ok = len(s.outcomes) - len(s.failures)
        run = f" (qc run {s.run_id})" if s.run_id is not None else ""
        print(
            f"suite {s.suite.name} on {s.suite.source}: {n_ok}/{len(s.outcomes)} expectations "
            f"met, {s.n_rows} rows, {s.seconds:.2f} s{run}"
        )
        for o in s.failures:
            print(f"  FAILED {o.severity:8s} {o.rule_id}: {o.message}")
    print(
        "failed expectations by severity: "
        + ", ".join(f"{k} {v}" for k, v in result.counts.items())
    )
    if args.junit:
        with writing(args.junit):
            expectations.write_junit(result, args.junit, args.fail_on)
    if args.suite and result.skipped:
        raise CatalogError("; ".join(f"suite {s.suite.name}: {s.reason}" for s in result.skipped))
    return 1 if result.failed(args.fail_on) else 0
