"""The cohort builder: a spec in, a harmonized, inclusion-filtered, leakage-free, traceable manifest out.

- :mod:`curation.cohort.spec` — the YAML spec and its Python form, validated
- :mod:`curation.cohort.attrition` — criteria as parameterized SQL, the CONSORT-style attrition
- :mod:`curation.cohort.split` — deterministic patient-level splits, stratified; the leakage check
- :mod:`curation.cohort.manifest` — manifest.parquet/.csv, datalist.json, provenance.json
- :mod:`curation.cohort.volumes` — optional NIfTI export, resampled and normalized
- :mod:`curation.cohort.labels` — loading labels to filter and stratify on
- :mod:`curation.cohort.tables` — the catalog tables a build writes
- :mod:`curation.cohort.build` — :func:`build_cohort`, tying them together
"""

from __future__ import annotations

from curation.cohort.build import CohortResult, build_cohort
from curation.cohort.labels import load_labels, synthetic_report_labels
from curation.cohort.spec import CohortSpec, Criterion, SplitSpec, load_spec, parse

__all__ = [
    "CohortResult",
    "CohortSpec",
    "Criterion",
    "SplitSpec",
    "build_cohort",
    "load_labels",
    "load_spec",
    "parse",
    "synthetic_report_labels",
]
