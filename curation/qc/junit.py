"""JUnit XML of QC and expectation runs, so that any CI shows findings as failed tests.

The one JUnit writer of curation: a rule-suite run (:func:`write`) and the expectation suites of
``curation validate`` (:func:`curation.expectations.write_junit`) both become :class:`JUnitSuite`\\ s
and go through :func:`write_suites`.

One ``testsuite`` per run, one ``testcase`` per rule (``name`` = its id). A rule with findings at or
above ``fail_on`` is a failure listing its findings; findings below it go to ``system-out``; a rule
that could not run is an ``error``; a rule (or a whole suite) whose table is absent is ``skipped``.
How a finding is named in the text is decided by :func:`finding_line` alone: CI logs leave the
catalog, so a finding names its instance or series by pseudonym (``I-…``, ``S-…``: the one policy of
:mod:`curation.pseudonym`, the same keyed hash as the manifest's and the report's), never by UID,
and patient IDs and paths are left out.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation.qc.record import RuleRun
from curation.qc.rule import Severity

if TYPE_CHECKING:
    import duckdb

    from curation.qc.runner import RunResult

#: Findings listed per test case; the rest are counted.
MAX_LISTED = 50


@dataclass(frozen=True)
class JUnitSuite:
    """One run as a JUnit ``testsuite``.

    Parameters
    ----------
    name
        The ``testsuite`` name.
    rule_runs
        One test case each.
    findings
        Rule id -> its findings (mappings with the columns of ``qc_findings``), at most
        :data:`MAX_LISTED` each; ``RuleRun.n_findings`` gives the total.
    seconds
        Wall-clock time of the run.
    classname
        ``classname`` of every test case; default ``qc.<level>`` of each rule.
    properties
        ``property`` elements (run id, suite hash, ...).
    skipped
        Why the whole suite did not run, or None: one skipped test case, named after the
        ``suite`` property.
    """

    name: str
    rule_runs: Sequence[RuleRun]
    findings: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    seconds: float = 0.0
    classname: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    skipped: str | None = None


def finding_line(finding: Mapping[str, Any]) -> str:
    """How a finding reads in a JUnit file: where (instance, series or neither), what, the value.

    ``finding`` carries pseudonyms (``instance_key``, ``series_key``, see :func:`run_findings`).
    """
    sop, series = finding.get("instance_key"), finding.get("series_key")
    where = f"instance I-{sop}" if sop else (f"series S-{series}" if series else "file/cohort")
    return f"{where}: {finding.get('message')} [value {finding.get('value')}]"


def _failing(rule_run: RuleRun, fail_on: str) -> bool:
    return bool(rule_run.n_findings) and Severity(rule_run.severity).fails(fail_on)


def _case(parent: ET.Element, suite: JUnitSuite, r: RuleRun, fail_on: str) -> None:
    case = ET.SubElement(
        parent, "testcase", classname=suite.classname or f"qc.{r.level}", name=r.rule_id
    )
    if r.seconds is not None:
        case.set("time", f"{r.seconds:.3f}")
    if r.status == "skipped":
        ET.SubElement(case, "skipped", message=r.error or "not applicable")
        return
    if r.status != "ok":
        ET.SubElement(case, "error", message=r.error or "rule failed").text = r.error
        return
    if not r.n_findings:
        return
    listed = suite.findings.get(r.rule_id, ())
    text = "\n".join(finding_line(f) for f in listed)
    if r.n_findings > len(listed):
        text += f"\n... and {r.n_findings - len(listed)} more (qc_findings)"
    # One finding: its message says more than a count.
    if r.n_findings == 1 and len(listed) == 1:
        summary = str(listed[0].get("message"))
    else:
        summary = f"{r.n_findings} {r.severity} finding(s)"
    if _failing(r, fail_on):
        ET.SubElement(case, "failure", message=summary, type=r.severity).text = text
    else:
        ET.SubElement(case, "system-out").text = f"{r.severity}: {summary}\n{text}"


def write_suites(
    suites: Sequence[JUnitSuite], path: str | Path, fail_on: str = "error", name: str = "curation"
) -> Path:
    """Write ``suites`` as one JUnit XML file (``testsuites`` root) at ``path``; returns it."""
    root = ET.Element("testsuites", name=name)
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for s in suites:
        counts = {
            "tests": max(len(s.rule_runs), 1) if s.skipped else len(s.rule_runs),
            "failures": sum(_failing(r, fail_on) and r.status == "ok" for r in s.rule_runs),
            "errors": sum(r.status == "error" for r in s.rule_runs),
            "skipped": 1 if s.skipped else sum(r.status == "skipped" for r in s.rule_runs),
        }
        attrib = {k: str(v) for k, v in counts.items()} | {"time": f"{s.seconds:.3f}"}
        ts = ET.SubElement(root, "testsuite", {"name": s.name, **attrib})
        for k, v in counts.items():
            totals[k] += v
        if s.properties:
            props = ET.SubElement(ts, "properties")
            for key, value in s.properties.items():
                ET.SubElement(props, "property", name=key, value=value)
        if s.skipped:
            label = s.properties.get("suite", s.name)
            case = ET.SubElement(ts, "testcase", classname=s.classname or s.name, name=label)
            ET.SubElement(case, "skipped", message=s.skipped)
            continue
        for r in s.rule_runs:
            _case(ts, s, r, fail_on)
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{sum(s.seconds for s in suites):.3f}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return out


def run_findings(
    con: duckdb.DuckDBPyConnection, run_id: int, limit: int = MAX_LISTED
) -> dict[str, list[dict[str, Any]]]:
    """The first ``limit`` findings of each rule of run ``run_id``, by rule id, identifiers as
    pseudonyms (``patient_key``, ``series_key``, ...); ``con`` carries the ``pseudonym`` macro
    (:func:`curation.pseudonym.install`)."""
    from curation.pseudonym import keyed_select, label_sites
    from curation.qc.tables import QC_FINDINGS

    cols = [c for c in QC_FINDINGS.column_names if c != "run_id"]
    rows = con.sql(
        f"""SELECT {keyed_select(cols)} FROM (
               SELECT *, row_number() OVER (
                   PARTITION BY rule_id ORDER BY SeriesInstanceUID, SOPInstanceUID) AS n
               FROM qc_findings WHERE run_id = $r)
           WHERE n <= $limit ORDER BY rule_id, n""",
        params={"r": run_id, "limit": limit},
    ).pl()
    rows = label_sites(con, rows)
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows.to_dicts():
        out.setdefault(row["rule_id"], []).append(row)
    return out


def write(
    result: RunResult,
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    fail_on: str = "error",
    key: bytes | None = None,
) -> Path:
    """Write the JUnit XML of the rule-suite run ``result`` to ``path``; returns the path.

    ``key`` is the pseudonym key (default: :func:`curation.pseudonym.catalog_key`).
    """
    from curation import pseudonym

    pseudonym.install(con, key if key is not None else pseudonym.catalog_key(con)[0])
    suite = JUnitSuite(
        name=f"curation.qc:{result.suite.name}",
        rule_runs=result.rule_runs,
        findings=run_findings(con, result.run_id),
        seconds=result.seconds,
        properties={
            "run_id": str(result.run_id),
            "suite": result.suite.name,
            "suite_sha256": str(result.suite.sha256),
            "fail_on": fail_on,
        },
    )
    return write_suites([suite], path, fail_on, name="curation.qc")
