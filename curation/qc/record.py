"""Recording a run: the one writer of ``qc_runs``, ``qc_rule_runs`` and ``qc_findings``.

Rule-suite runs (:mod:`curation.qc.runner`) and expectation-suite runs (:mod:`curation.expectations`)
both record through :class:`RunRecorder`, so both land with the same columns and meanings: a run row
opened when the run starts (``finished_at`` NULL until :meth:`RunRecorder.finish`, so an interrupted
run shows as such), one row per rule run, and the findings. Every insert names its columns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from curation import __version__
from curation.qc.rule import FINDING_COLUMNS
from curation.qc.tables import QC_FINDINGS, QC_RULE_RUNS, QC_RUNS, QC_TABLES

if TYPE_CHECKING:
    import duckdb
    import polars as pl


@dataclass(frozen=True)
class RuleRun:
    """How one rule (or expectation) went in a run: one ``qc_rule_runs`` row.

    ``status`` is ``ok``, ``skipped`` (a table it reads is absent) or ``error`` (it could not be
    evaluated; ``error`` says why). ``seconds`` is None when the rule was not timed on its own
    (great-expectations validates a whole suite at once).
    """

    rule_id: str
    level: str
    severity: str
    n_findings: int
    seconds: float | None
    status: str = "ok"
    error: str | None = None


def _insert(table_name: str, columns: tuple[str, ...], body: str) -> str:
    return f"INSERT INTO {table_name} ({', '.join(columns)}) {body}"


_FINDING_TARGET = ("run_id", "rule_id", "severity", "level", *FINDING_COLUMNS)
# Casts keep a rule's query free to return a UID as a number or a NULL of any type.
_FINDINGS_SELECT = """
SELECT $__run_id, $__rule_id, $__severity, $__level,
    q.PatientID::VARCHAR, q.StudyInstanceUID::VARCHAR, q.SeriesInstanceUID::VARCHAR,
    q.SOPInstanceUID::VARCHAR, q.path::VARCHAR, q.value::VARCHAR, q.message::VARCHAR
FROM ({query}) AS q({columns})
"""


class RunRecorder:
    """Writes one run into the QC tables (created if absent).

    Parameters
    ----------
    con
        Writable catalog connection.
    name, path, sha256
        The suite: its name (``qc_runs.suite_name``), file path (None for a shipped default) and
        the SHA-256 of the file's bytes.
    parameters
        Every selected rule with its effective settings (``qc_runs.parameters``, as JSON).
    n_rules
        Rules the run selects.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        name: str,
        path: str | None,
        sha256: str | None,
        parameters: Mapping[str, Any],
        n_rules: int,
    ) -> None:
        self.con = con
        for table in QC_TABLES:
            table.ensure(con)
        self.run_id = int(
            con.sql("SELECT coalesce(max(run_id), 0) + 1 FROM qc_runs").fetchall()[0][0]
        )
        self.n_findings = 0
        self.n_rule_errors = 0
        values = {
            "run_id": self.run_id,
            "suite_name": name,
            "suite_path": path,
            "suite_sha256": sha256,
            "parameters": json.dumps(parameters, default=str),
            "curation_version": __version__,
            "started_at": datetime.now(),
            "n_rules": n_rules,
            "n_findings": 0,
            "n_rule_errors": 0,
        }
        self._insert_row(QC_RUNS.name, values)

    def _insert_row(self, table_name: str, values: Mapping[str, Any]) -> None:
        cols = tuple(values)
        body = "VALUES (" + ", ".join(f"${c}" for c in cols) + ")"
        self.con.execute(_insert(table_name, cols, body), dict(values))

    def add_findings(
        self,
        rule_id: str,
        severity: str,
        level: str,
        rows: str | pl.DataFrame,
        params: Mapping[str, Any] | None = None,
    ) -> int:
        """Insert the findings of one rule; returns how many.

        ``rows`` is a query (DuckDB SQL with named parameters ``params``) or a polars frame; either
        way its columns are :data:`~curation.qc.rule.FINDING_COLUMNS`, in that order.
        """
        meta = {
            "__run_id": self.run_id,
            "__rule_id": rule_id,
            "__severity": severity,
            "__level": level,
        }
        columns = ", ".join(FINDING_COLUMNS)
        if isinstance(rows, str):
            sql = _insert(
                QC_FINDINGS.name,
                _FINDING_TARGET,
                _FINDINGS_SELECT.format(query=rows, columns=columns),
            )
            return int(self.con.execute(sql, {**meta, **(params or {})}).fetchall()[0][0])
        if list(rows.columns) != list(FINDING_COLUMNS):
            raise ValueError(f"returned columns {rows.columns}, expected {list(FINDING_COLUMNS)}")
        if rows.height == 0:
            return 0
        self.con.register("__qc_frame", rows.to_arrow())
        try:
            select = _FINDINGS_SELECT.format(query="SELECT * FROM __qc_frame", columns=columns)
            sql = _insert(QC_FINDINGS.name, _FINDING_TARGET, select)
            n = int(self.con.execute(sql, meta).fetchall()[0][0])
        finally:
            self.con.unregister("__qc_frame")
        return n

    def add_rule_run(self, rule_run: RuleRun, parameters: Mapping[str, Any]) -> None:
        """Record how one rule went (its findings are inserted by :meth:`add_findings`)."""
        self.n_findings += rule_run.n_findings
        self.n_rule_errors += rule_run.status == "error"
        self._insert_row(
            QC_RULE_RUNS.name,
            {
                "run_id": self.run_id,
                "rule_id": rule_run.rule_id,
                "level": rule_run.level,
                "severity": rule_run.severity,
                "parameters": json.dumps(parameters, default=str),
                "status": rule_run.status,
                "error": rule_run.error,
                "n_findings": rule_run.n_findings,
                "seconds": rule_run.seconds,
            },
        )

    def finish(self) -> None:
        """Mark the run finished, with its totals."""
        self.con.execute(
            "UPDATE qc_runs SET finished_at = $t, n_findings = $n, n_rule_errors = $e "
            "WHERE run_id = $r",
            {"t": datetime.now(), "n": self.n_findings, "e": self.n_rule_errors, "r": self.run_id},
        )
