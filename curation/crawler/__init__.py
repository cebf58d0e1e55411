"""The crawl: folder trees into the catalog, the hot path of the package in one room.

``discover`` lists files (stat only) and names them (``file_id``); ``reader`` walks header bytes
into element columns (the fast path, ``compiled`` its C walker), ``pydicom_reader`` reads what it
leaves alone and is the oracle it is tested against; ``batches`` reads a batch of files into Arrow
tables (``elements`` builds the element rows); ``pool`` runs reader processes; ``writer`` appends
batches to DuckDB in a thread of its own; ``run`` plans the crawl against the catalog and is what
:func:`crawl` is. ``run`` imports none of the reading modules until there is a file to read, so a
crawl that finds nothing new starts fast. ``dask_engine`` and ``parts`` crawl on a cluster.

The package is named ``crawler`` rather than ``crawl`` because ``curation.crawl`` is the public
function: a subpackage of the same name would replace it as an attribute of ``curation`` as soon
as it was imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from curation.crawler.run import CrawlSummary, crawl

__all__ = ["CrawlSummary", "crawl"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the reader processes import ``curation.crawler.reader`` without
    # paying for DuckDB and the writer.
    if name in __all__:
        from curation.crawler import run

        return getattr(run, name)
    raise AttributeError(f"module 'curation.crawler' has no attribute {name!r}")
