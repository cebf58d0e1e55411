"""Harmonization: vendor-neutral series attributes decoded from public and private tags.

- :mod:`curation.harmonize.vendors` — manufacturer strings to one vendor name each
- :mod:`curation.harmonize.fields` — the harmonized fields, declared with their unit and, per vendor,
  the tags they come from
- :mod:`curation.harmonize.csa` — the few Siemens CSA header items that are only in binary elements
- :mod:`curation.harmonize.classify` — series type (CT phase, kernel class, body part; MR weighting)
- :mod:`curation.harmonize.tables` — the ``harmonized_images`` and ``harmonized_series`` tables,
  each with the select that fills it
- :mod:`curation.harmonize.view` — :func:`build`: the named steps that stage what those selects read
  and rebuild the tables, set-based in DuckDB
- :mod:`curation.harmonize.agreement` — comparison with dcm2niix's BIDS sidecars
"""

from __future__ import annotations

from curation.harmonize.fields import FIELDS, Field, Source
from curation.harmonize.vendors import VENDORS, Vendor, normalize_vendor
from curation.harmonize.view import build

__all__ = ["FIELDS", "VENDORS", "Field", "Source", "Vendor", "build", "normalize_vendor"]
