"""Expectation suites (great-expectations) over the catalog tables and the cohort manifest.

- :mod:`curation.expectations.suites` — suite files (GX JSON plus the source they run on), rule ids
- :mod:`curation.expectations.gx` — running one suite with great-expectations (the only GX import)
- :mod:`curation.expectations.outcome` — what a run returns, per expectation and per suite
- :mod:`curation.expectations.record` — results through QC's writers: ``qc_*`` tables and JUnit
- :mod:`curation.expectations.run` — :func:`validate`

``from curation import expectations`` does not import great-expectations: it is imported only
when a suite runs (the import alone takes seconds). Severities map ``critical`` → ``error``,
``warning`` → ``warning``, ``info`` → ``info`` and are compared in QC's one severity order.
"""

from __future__ import annotations

from curation.expectations.gx import IDENTIFYING_COLUMNS, expectation_types
from curation.expectations.outcome import ExpectationOutcome, SuiteOutcome, ValidationResult
from curation.expectations.record import RUN_PREFIX, record_findings, write_junit
from curation.expectations.run import validate
from curation.expectations.suites import (
    MANIFEST,
    SEVERITIES,
    SuiteFile,
    find_suites,
    load_suite,
    suites_dir,
)

__all__ = [
    "IDENTIFYING_COLUMNS",
    "MANIFEST",
    "RUN_PREFIX",
    "SEVERITIES",
    "ExpectationOutcome",
    "SuiteFile",
    "SuiteOutcome",
    "ValidationResult",
    "expectation_types",
    "find_suites",
    "load_suite",
    "record_findings",
    "suites_dir",
    "validate",
    "write_junit",
]
