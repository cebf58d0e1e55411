"""Multi-site curation without moving data: identifier-free site summaries and their federation.

``curation summary`` turns one site's catalog into a small versioned JSON file of suppressed counts
(:mod:`curation.federate.summary`); ``curation federate`` reads several and compares the sites
(:mod:`curation.federate.merge`, :mod:`curation.federate.findings`,
:mod:`curation.federate.report`). See docs/federated.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from curation.federate.findings import FederatedFinding, all_findings
from curation.federate.format import SiteSummary, load_summary
from curation.federate.merge import Federation, federate, merge
from curation.federate.summary import build_summary, write_summary


@dataclass(frozen=True)
class FederationResult:
    """What :func:`federate_files` made."""

    federation: Federation
    findings: list[FederatedFinding]
    report: Path
    db: Path | None


def federate_files(
    summaries: Sequence[str | Path], out: str | Path, *, db: str | Path | None = None
) -> FederationResult:
    """Read the summary files, compare the sites, write the report to ``out`` (and ``db``).

    Every file is read and checked before anything is written.

    Raises
    ------
    InputError
        A file is not a usable summary, or two name the same site (the message names the file).
    OutputError
        The report or the DuckDB file cannot be written.
    """
    from curation.federate.report import write_report
    from curation.federate.store import write_db

    fed = federate([load_summary(p) for p in summaries])
    found = all_findings(fed)
    report = write_report(fed, found, out)
    written = write_db(fed, found, db) if db is not None else None
    return FederationResult(fed, found, report, written)


__all__ = [
    "FederatedFinding",
    "Federation",
    "FederationResult",
    "SiteSummary",
    "all_findings",
    "build_summary",
    "federate",
    "federate_files",
    "load_summary",
    "merge",
    "write_summary",
]
