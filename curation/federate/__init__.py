"""Multi-site curation without moving data: identifier-free site summaries and their federation.

``curation summary`` turns one site's catalog into a small versioned JSON file of suppressed counts
(:mod:`curation.federate.summary`); ``curation federate`` reads several and compares the sites
(:mod:`curation.federate.merge`, :mod:`curation.federate.findings`,
:mod:`curation.federate.report`). See docs/federated.md.
"""

from __future__ import annotations

from curation.federate.format import SiteSummary, load_summary
from curation.federate.summary import build_summary, write_summary

__all__ = ["SiteSummary", "build_summary", "load_summary", "write_summary"]
