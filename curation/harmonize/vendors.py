"""Manufacturer strings, as devices write them, mapped to one vendor name each.

Devices of one vendor write many spellings (``GE MEDICAL SYSTEMS``, ``GE Healthcare``;
``SIEMENS``, ``Siemens Healthineers``; ``TOSHIBA``, ``CANON_MEC``). The table below is the only place
that knows them; :func:`vendor_sql` turns it into one SQL ``CASE`` so DuckDB maps a whole column at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Vendor:
    """One vendor: its harmonized name and the Manufacturer patterns that mean it.

    ``pattern`` is a case-insensitive regular expression searched in Manufacturer (0008,0070).
    """

    name: str
    pattern: str
    note: str = ""


#: Order matters: the first matching pattern wins.
VENDORS: tuple[Vendor, ...] = (
    Vendor("GE", r"^\s*GE\b|GE MEDICAL|GE HEALTHCARE|GEMS|GENERAL ELECTRIC"),
    Vendor("Siemens", r"SIEMENS"),
    Vendor("Philips", r"PHILIPS|ELSCINT|MARCONI|PICKER"),
    Vendor(
        "Canon", r"CANON|TOSHIBA", "Toshiba Medical Systems became Canon Medical Systems in 2018"
    ),
    Vendor("UIH", r"\bUIH\b|UNITED IMAGING", "Shanghai United Imaging Healthcare"),
    Vendor("Hitachi", r"HITACHI|FUJIFILM", "Hitachi's imaging business became Fujifilm Healthcare"),
    Vendor("Neusoft", r"NEUSOFT"),
    Vendor("Samsung", r"SAMSUNG"),
    Vendor("Esaote", r"ESAOTE"),
    Vendor("Agfa", r"AGFA"),
)

#: Name given to a Manufacturer no pattern matches (NULL Manufacturer stays NULL).
OTHER = "other"


def normalize_vendor(manufacturer: str | None) -> str | None:
    """The vendor name of one Manufacturer string (the same mapping as :func:`vendor_sql`)."""
    if manufacturer is None:
        return None
    for v in VENDORS:
        if re.search(v.pattern, manufacturer, re.IGNORECASE):
            return v.name
    return OTHER


def vendor_sql(column: str) -> str:
    """A SQL expression mapping the Manufacturer column ``column`` to the vendor name."""
    whens = " ".join(
        f"WHEN regexp_matches({column}, '{v.pattern}', 'i') THEN '{v.name}'" for v in VENDORS
    )
    return f"CASE WHEN {column} IS NULL THEN NULL {whens} ELSE '{OTHER}' END"
