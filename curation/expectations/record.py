"""Expectation results through QC's writers: recorded as QC runs, written as JUnit.

Each suite is recorded by :class:`curation.qc.record.RunRecorder`, like a rule-suite run: one
``qc_runs`` row named ``expectations/<suite>`` (the file's SHA-256, each expectation's type, severity
and kwargs), one ``qc_rule_runs`` row per expectation (level ``cohort``; status ``error`` when GX could
not evaluate it) and one ``qc_findings`` row per failed expectation. JUnit goes through
:func:`curation.qc.junit.write_suites`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from curation.expectations.outcome import ExpectationOutcome, SuiteOutcome, ValidationResult
from curation.expectations.suites import MANIFEST
from curation.qc import junit
from curation.qc.findings import EXPECTATION_RUN_PREFIX
from curation.qc.record import RuleRun, RunRecorder
from curation.qc.rule import FINDING_COLUMNS

if TYPE_CHECKING:
    import duckdb
    import polars as pl

#: Prefix of the ``qc_runs.suite_name`` of an expectation suite run (rule-suite queries skip these).
RUN_PREFIX = EXPECTATION_RUN_PREFIX
#: The level of every expectation finding: a check over a whole table.
LEVEL = "cohort"


def _rule_run(o: ExpectationOutcome) -> RuleRun:
    # GX validates a suite at once: an expectation has no time of its own (seconds None).
    status = "error" if o.error else "ok"
    return RuleRun(o.rule_id, LEVEL, o.severity, 0 if o.success else 1, None, status, o.error)


def _finding(o: ExpectationOutcome, where: str | None) -> pl.DataFrame:
    import polars as pl

    row = dict.fromkeys(FINDING_COLUMNS) | {"path": where, "value": o.value, "message": o.message}
    return pl.DataFrame([row], schema=dict.fromkeys(FINDING_COLUMNS, pl.String))


def record_findings(
    con: duckdb.DuckDBPyConnection, outcome: SuiteOutcome, manifest: Path | None = None
) -> int:
    """Record one suite's outcome as a QC run, all or nothing; returns its ``run_id``."""
    suite = outcome.suite
    where = str(manifest) if suite.source == MANIFEST and manifest is not None else None
    con.execute("BEGIN TRANSACTION")
    try:
        recorder = RunRecorder(
            con,
            name=RUN_PREFIX + suite.name,
            path=str(suite.path),
            sha256=suite.sha256,
            parameters={
                o.rule_id: {"severity": o.severity, "type": o.expectation_type, "kwargs": o.kwargs}
                for o in outcome.outcomes
            },
            n_rules=len(outcome.outcomes),
        )
        for o in outcome.outcomes:
            if not o.success:
                recorder.add_findings(o.rule_id, o.severity, LEVEL, _finding(o, where))
            recorder.add_rule_run(_rule_run(o), o.kwargs)
        recorder.finish()
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return recorder.run_id


def write_junit(result: ValidationResult, path: str | Path, fail_on: str = "error") -> Path:
    """JUnit XML: one ``testsuite`` per expectation suite, one ``testcase`` per expectation.

    A failed expectation at or above ``fail_on`` is a failure; below it, its message goes to
    ``system-out``; one GX could not evaluate is an error; a suite whose source is absent is one
    skipped test case.
    """
    suites = []
    for s in result.suites:
        name = f"expectations.{s.suite.name}"
        suites.append(
            junit.JUnitSuite(
                name=name,
                rule_runs=[_rule_run(o) for o in s.outcomes],
                findings={
                    o.rule_id: [{"value": o.value, "message": o.message}] for o in s.failures
                },
                seconds=s.seconds,
                classname=name,
                properties={"suite": s.suite.name, "suite_sha256": s.suite.sha256},
                skipped=(s.reason or "skipped") if s.status == "skipped" else None,
            )
        )
    return junit.write_suites(suites, path, fail_on, name="curation.expectations")
