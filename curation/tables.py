"""Every table of the catalog, step by step: the one list of them.

Each step declares its tables in its own ``tables`` module (the crawl's in :mod:`curation.schema`);
this list names them all, in the order of the steps, for the docs page (``docs/catalog.md``) and
the test that every table and column is described. A new table is declared in its step's module
and added here.
"""

from __future__ import annotations

from curation import schema
from curation.cohort.tables import COHORT_TABLES, LABELS
from curation.deid.tables import DEID_TABLES
from curation.federate.tables import FEDERATE_TABLES
from curation.harmonize.tables import HARMONIZE_TABLES
from curation.labels.tables import LABELS_TABLES
from curation.pacs.tables import PACS_TABLES
from curation.pixels.tables import PIXEL_TABLES
from curation.qc.tables import QC_TABLES
from curation.qc.views import GEOMETRY_TABLES
from curation.schema import Table

ALL_TABLES: tuple[Table, ...] = (
    *schema.CATALOG_TABLES,
    schema.CRAWL_TASKS,
    *PACS_TABLES,
    *HARMONIZE_TABLES,
    *QC_TABLES,
    *GEOMETRY_TABLES,
    *PIXEL_TABLES,
    *LABELS_TABLES,
    LABELS,
    *COHORT_TABLES,
    *DEID_TABLES,
    schema.SETTINGS,
    *FEDERATE_TABLES,
)
