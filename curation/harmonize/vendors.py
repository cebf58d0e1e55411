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


#: Order matters: the first matching pattern wins. Beyond the MR and CT makers, the table names the
#: makers of radiography (CR/DR), mammography, PET/NM, radiotherapy, C-arm and dental devices that
#: public archives hold: a vendor left as ``other`` is invisible to the heterogeneity rules.
#: Companies that bought another keep one name where devices of both are one product line (Toshiba
#: and Canon); where the bought business makes other devices (Hitachi's MR, Fujifilm's CR) they stay
#: apart, so the name says which kind of device wrote the file.
VENDORS: tuple[Vendor, ...] = (
    Vendor(
        "GE",
        r"^\s*GE\b|GE MEDICAL|GE HEALTHCARE|GEMS|GENERAL ELECTRIC|IMATRON|\bLUNAR\b|\bOEC\b",
        "Imatron (electron-beam CT), Lunar (DXA) and OEC (C-arms) were bought by GE",
    ),
    Vendor("Siemens", r"SIEMENS|\bCTI\b|CPS INNOVATIONS", "CTI and CPS made Siemens' PET scanners"),
    Vendor(
        "Philips",
        r"PHILIPS|ELSCINT|MARCONI|PICKER|\bADAC\b",
        "Elscint (MR and CT), Marconi, Picker and ADAC (PET/NM) became Philips",
    ),
    Vendor(
        "Canon", r"CANON|TOSHIBA", "Toshiba Medical Systems became Canon Medical Systems in 2018"
    ),
    Vendor("UIH", r"\bUIH\b|UNITED IMAGING", "Shanghai United Imaging Healthcare"),
    Vendor(
        "Hitachi",
        r"HITACHI",
        "Hitachi's MR and CT business became Fujifilm Healthcare in 2021; its devices still "
        "write HITACHI",
    ),
    Vendor("Fujifilm", r"FUJI", "FUJIFILM radiography (FCR), mammography, and ex-Hitachi devices"),
    Vendor("Neusoft", r"NEUSOFT"),
    Vendor("Samsung", r"SAMSUNG|MEDISON"),
    Vendor("Esaote", r"ESAOTE"),
    Vendor("Agfa", r"AGFA"),
    Vendor("Carestream", r"CARESTREAM|KODAK", "Kodak's medical imaging became Carestream Health"),
    Vendor("Konica Minolta", r"KONICA"),
    Vendor("Hologic", r"HOLOGIC|LORAD", "Lorad (mammography) became Hologic"),
    Vendor("Shimadzu", r"SHIMADZU"),
    Vendor("Mindray", r"MINDRAY"),
    Vendor("Varian", r"VARIAN"),
    Vendor("Elekta", r"ELEKTA"),
    Vendor("Accuray", r"ACCURAY"),
    Vendor("Bruker", r"BRUKER"),
    Vendor("Mediso", r"MEDISO"),
    Vendor("Planmeca", r"PLANMECA"),
    Vendor("Dentsply Sirona", r"SIRONA"),
    Vendor("Ziehm", r"ZIEHM"),
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
