"""QC: rules declared once, run set-based over the catalog, findings kept with their provenance.

- :mod:`curation.qc.rule` — the :class:`Rule` declaration and the registry :data:`RULES`
- :mod:`curation.qc.rules` — the shipped rules (completeness, geometry, heterogeneity, privacy,
  pixel); :func:`~curation.qc.rule.tagged` selects them by tag (``privacy``)
- :mod:`curation.qc.views` — derived per-slice / per-series geometry the rules query
- :mod:`curation.qc.robust` — the robust (median/MAD of logs) outlier fence, as SQL rules embed
- :mod:`curation.qc.suite` — suite files (YAML/TOML) that select rules and override settings
- :mod:`curation.qc.runner` — :func:`run`: every rule runs, findings go to ``qc_findings``
- :mod:`curation.qc.tables` — the ``qc_runs``, ``qc_rule_runs``, ``qc_findings`` tables
- :mod:`curation.qc.record` — :class:`RunRecorder`, the one writer of those tables (rules and
  expectation suites alike)
- :mod:`curation.qc.findings` — reading a run's findings back
- :mod:`curation.qc.junit` — JUnit XML for CI (rule runs and expectation suites alike)
"""

from __future__ import annotations

from curation.qc.findings import findings, latest_run_id
from curation.qc.rule import RULES, Level, Param, Rule, Severity, all_rules, register
from curation.qc.runner import RunResult, run
from curation.qc.suite import Suite, load_suite

__all__ = [
    "RULES",
    "Level",
    "Param",
    "Rule",
    "RunResult",
    "Severity",
    "Suite",
    "all_rules",
    "findings",
    "latest_run_id",
    "load_suite",
    "register",
    "run",
]
