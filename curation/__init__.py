"""curation: turn a DICOM archive into clean, harmonized, documented training cohorts.

The catalog (one DuckDB file) is the single source of truth; every step is a function here and a
subcommand of the ``curation`` CLI.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# A library never configures logging; it only makes sure it is silent unless the app asks.
logging.getLogger("curation").addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from curation.crawler.run import CrawlSummary, crawl

__all__ = ["CrawlSummary", "__version__", "crawl"]

# The public functions are imported on first use, so that ``import curation`` (and the CLI's
# ``--help``) stays cheap and submodules can import ``curation`` without cycles.
_LAZY = {"crawl": "curation.crawler.run", "CrawlSummary": "curation.crawler.run"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'curation' has no attribute {name!r}")
