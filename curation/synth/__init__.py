"""Synthetic multi-site DICOM cohorts with planted defects and their ground truth.

``generate_cohort(out, patients=..., seed=..., profile=...)`` writes a cohort whose every defect was
planted on purpose and recorded in ``ground_truth.parquet``, so QC rules, the cohort builder and the
report can be measured for precision and recall. See ``docs/synthetic.md``.
"""

from __future__ import annotations

from curation.synth.defects import DEFECTS, DefectKind
from curation.synth.generate import CohortSummary, generate_cohort
from curation.synth.plan import PROFILES, Profile

__all__ = ["DEFECTS", "PROFILES", "CohortSummary", "DefectKind", "Profile", "generate_cohort"]
