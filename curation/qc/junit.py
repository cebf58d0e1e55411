"""JUnit XML of a QC run, so that any CI shows findings as failed tests.

One ``testcase`` per rule (``classname`` = the rule's level, ``name`` = its id). A rule with findings at
or above ``fail_on`` is a failure listing its findings; findings below it go to ``system-out``; a rule
whose query failed is an ``error``. Patient IDs and paths are left out: CI logs leave the catalog.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from curation.qc.rule import Severity

if TYPE_CHECKING:
    import duckdb

    from curation.qc.runner import RunResult

#: Findings listed per test case; the rest are counted.
MAX_LISTED = 50


def _line(row: tuple[str | None, ...]) -> str:
    series, sop, value, message = row
    where = f"instance {sop}" if sop else (f"series {series}" if series else "file/cohort")
    return f"{where}: {message} [value {value}]"


def write(
    result: RunResult, con: duckdb.DuckDBPyConnection, path: str | Path, fail_on: str = "error"
) -> Path:
    """Write the JUnit XML of ``result`` to ``path``; returns the path."""
    threshold = None if fail_on == "never" else Severity(fail_on).rank
    failing = [
        r
        for r in result.rule_runs
        if r.n_findings and threshold is not None and Severity(r.severity).rank >= threshold
    ]
    suite = ET.Element(
        "testsuite",
        name=f"curation.qc:{result.suite.name}",
        tests=str(len(result.rule_runs)),
        failures=str(len(failing)),
        errors=str(len(result.errors)),
        skipped=str(len(result.skipped)),
        time=f"{result.seconds:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    for k, v in (
        ("run_id", result.run_id),
        ("suite", result.suite.name),
        ("suite_sha256", result.suite.sha256),
        ("fail_on", fail_on),
    ):
        ET.SubElement(props, "property", name=k, value=str(v))
    for r in result.rule_runs:
        case = ET.SubElement(
            suite, "testcase", classname=f"qc.{r.level}", name=r.rule_id, time=f"{r.seconds:.3f}"
        )
        if r.status == "skipped":
            ET.SubElement(case, "skipped", message=r.error or "not applicable")
            continue
        if r.status != "ok":
            ET.SubElement(case, "error", message=r.error or "rule failed").text = r.error
            continue
        if not r.n_findings:
            continue
        rows = con.execute(
            "SELECT SeriesInstanceUID, SOPInstanceUID, value, message FROM qc_findings "
            "WHERE run_id = $r AND rule_id = $id ORDER BY SeriesInstanceUID, SOPInstanceUID "
            "LIMIT $n",
            {"r": result.run_id, "id": r.rule_id, "n": MAX_LISTED},
        ).fetchall()
        text = "\n".join(_line(row) for row in rows)
        if r.n_findings > MAX_LISTED:
            text += f"\n... and {r.n_findings - MAX_LISTED} more (qc_findings, run {result.run_id})"
        summary = f"{r.n_findings} {r.severity} finding(s)"
        if r in failing:
            ET.SubElement(case, "failure", message=summary, type=r.severity).text = text
        else:
            ET.SubElement(case, "system-out").text = f"{summary}\n{text}"
    out = Path(path)
    ET.ElementTree(suite).write(out, encoding="utf-8", xml_declaration=True)
    return out
