"""Weak labels from radiology report text.

- :mod:`curation.labels.tables` — the ``reports`` and ``report_skips`` tables
- :mod:`curation.labels.ingest` — report files (CSV, JSON lines, Parquet) and the catalog's SRs
  into ``reports``
- :mod:`curation.labels.text` — sections and sentences
- :mod:`curation.labels.lexicon` — the finding lexicon and ConText modifiers (``lexicon.yaml``)
- :mod:`curation.labels.context` — the labeler: mentions, scope, resolution, report level
- :mod:`curation.labels.store` — every report of the catalog into the ``labels`` table
- :mod:`curation.labels.evaluate` — precision/recall/F1 against a gold file
"""

from __future__ import annotations

from curation.labels.context import Mention, label_report, mentions
from curation.labels.ingest import load_reports, load_sr_reports
from curation.labels.lexicon import Lexicon, default_lexicon, load_lexicon
from curation.labels.store import SOURCE, label_catalog

__all__ = [
    "SOURCE",
    "Lexicon",
    "Mention",
    "default_lexicon",
    "label_catalog",
    "label_report",
    "load_lexicon",
    "load_reports",
    "load_sr_reports",
    "mentions",
]
