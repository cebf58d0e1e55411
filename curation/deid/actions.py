"""The profile's actions applied to one pydicom dataset, nested sequences included.

Each element is looked up in PS3.15 Table E.1-1 (:mod:`curation.deid.standard`); the profile's
options and overrides choose the action (:func:`action_for`), and :func:`deidentify_dataset`
applies it, counting what it did. What the table does not list:

- private elements are removed, unless Retain Safe Private lists them (creator + group +
  creator-relative element); private creators no kept element uses are removed with them;
- a UID that is not one of the standard's own (``1.2.840.10008.``: SOP classes, transfer
  syntaxes, coding schemes) is remapped as ``U``: vendors put instance UIDs in elements of their
  own, and a UID can embed a date or a serial number;
- free text (LO, LT, SH, ST, UT, UC, PN) is cleaned of the identifiers the same file holds
  elsewhere (names, IDs, dates): Table E.1-1 lists the usual places, and this net catches the rest.

Values of the file's own identifiers are collected before anything changes (:class:`Vocabulary`),
so cleaning finds them wherever they were copied to, in any spelling (``^`` or space in names,
dates as ``YYYYMMDD``, ``YYYY-MM-DD``, ``DD.MM.YYYY``, ``MM/DD/YYYY``...).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from curation.deid import keys
from curation.deid.profile import Profile
from curation.deid.standard import Option, lookup, resolve
from curation.qc.rules.privacy import TECHNICAL_KEYWORDS

#: VRs of free text the cleaner scrubs.
TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UT", "UC", "PN"})
#: UID root of the DICOM standard's own UIDs (kept: they identify nothing).
STANDARD_UID_ROOT = "1.2.840.10008."
#: Sequences whose ``D`` keeps their structure (items de-identified one by one); every other
#: sequence a ``D`` applies to identifies a person or an institution and is emptied.
STRUCTURAL_SEQUENCES = frozenset({0x0040A730, 0x00700001, 0x00340001})
#: Text put where a dummy value is needed, by VR.
DUMMY: dict[str, Any] = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000D",
    "IS": "0",
    "DS": "0",
    "CS": "REMOVED",
    "AE": "REMOVED",
    "UR": "",
}
#: Replacement of identifying text inside a cleaned value.
REDACTED = "*"
#: Patient identity elements that take the patient's pseudonym (instead of a dummy or nothing).
PSEUDONYM_TAGS = frozenset({0x00100010, 0x00100020})
#: Elements whose values are the identifiers the cleaner looks for elsewhere in the file.
IDENTITY_TAGS = frozenset(
    {
        0x00100020,  # PatientID
        0x00101000,  # OtherPatientIDs
        0x00080050,  # AccessionNumber
        0x00200010,  # StudyID
        0x00080080,  # InstitutionName
        0x00080081,  # InstitutionAddress
        0x00101040,  # PatientAddress
        0x00102154,  # PatientTelephoneNumbers
        0x00101090,  # MedicalRecordLocator
        0x00081010,  # StationName
        0x00181000,  # DeviceSerialNumber
        0x00380010,  # AdmissionID
    }
)
#: Labelled identifiers cleaned whatever their value (MRN 12345, DOB: 1960-01-02, SSN ...).
LABELLED = re.compile(
    r"\b(MRN|DOB|D\.O\.B\.|SSN|PATIENT\s*ID|PAT\s*ID)\s*[:#=]?\s*[\w./-]+", re.IGNORECASE
)
#: Words of a name shorter than this are not cleaned from text (too many false hits: "LI", "DE").
MIN_NAME_WORD = 3
#: Identifier values shorter than this are not cleaned from text.
MIN_ID = 3


def _values(elem: DataElement) -> list[str]:
    v = elem.value
    if v is None:
        return []
    items = list(v) if isinstance(v, list | tuple) or type(v).__name__ == "MultiValue" else [v]
    return [str(x) for x in items if x is not None and str(x).strip()]


def date_spellings(da: str) -> list[str]:
    """``YYYYMMDD`` and the ways people write the same day."""
    d = da.strip()
    if len(d) != 8 or not d.isdigit():
        return [d] if d else []
    y, m, dd = d[:4], d[4:6], d[6:]
    return [d, f"{y}-{m}-{dd}", f"{dd}.{m}.{y}", f"{m}/{dd}/{y}", f"{dd}/{m}/{y}", f"{y}/{m}/{dd}", f"{y}.{m}.{dd}"]  # fmt: skip


@dataclass
class Vocabulary:
    """The identifiers a file holds, collected before de-identification, and a cleaner of text."""

    words: set[str] = field(default_factory=set)  # name words, whole-word matches
    phrases: set[str] = field(default_factory=set)  # IDs, dates, institution texts

    @classmethod
    def of(cls, ds: Dataset) -> Vocabulary:
        """The identifiers of ``ds``: person names, IDs, institution texts and dates, nested too."""
        vocab = cls()
        vocab._collect(ds)
        return vocab

    def _collect(self, ds: Dataset) -> None:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value or ():
                    self._collect(item)
                continue
            if elem.tag.is_private:
                continue
            if elem.VR == "PN":
                for v in _values(elem):
                    for w in re.split(r"[\^= ,]+", v):
                        if len(w) >= MIN_NAME_WORD and not w.isdigit():
                            self.words.add(w.upper())
            elif elem.tag in IDENTITY_TAGS:
                for v in _values(elem):
                    if len(v.strip()) >= MIN_ID:
                        self.phrases.add(v.strip().upper())
            elif elem.VR == "DA":
                for v in _values(elem):
                    self.phrases.update(s.upper() for s in date_spellings(v))
            elif elem.VR == "DT":
                for v in _values(elem):
                    self.phrases.update(s.upper() for s in date_spellings(v[:8]))

    def pattern(self) -> re.Pattern[str] | None:
        """One regular expression matching any identifier (longest first); None when none."""
        alts = [re.escape(p) for p in sorted(self.phrases, key=len, reverse=True)]
        alts += [rf"\b{re.escape(w)}\b" for w in sorted(self.words, key=len, reverse=True)]
        return re.compile("|".join(alts), re.IGNORECASE) if alts else None


@dataclass
class Context:
    """What de-identifying one file needs: the profile, the key, the patient's keyed values."""

    profile: Profile
    key: bytes
    patient_key: str
    shift_days: int | None  # None unless Retain Longitudinal ... Modified Dates
    vocabulary: re.Pattern[str] | None
    counts: Counter[str] = field(default_factory=Counter)


def action_for(tag: int, profile: Profile) -> str | None:
    """The action the profile takes on the public element ``tag``; None when the table does not
    list it (the element is then handled as the module docstring says)."""
    if tag in profile.actions:
        return profile.actions[tag]
    attr = lookup(tag)
    if attr is None:
        return None
    # Option actions override the Basic Profile's; where several options apply, the one that
    # keeps more wins (K over C), as each option is a permission to retain.
    chosen = None
    for opt in profile.options:
        code = attr.options.get(opt.value)
        if code == "K":
            return "K"
        if code == "C":
            chosen = "C"
    return chosen or resolve(attr.basic)


def clean_text(value: str, ctx: Context) -> str:
    """``value`` with the file's identifiers and labelled identifiers replaced by ``*``."""
    out = LABELLED.sub(REDACTED, value)
    if ctx.vocabulary is not None:
        out = ctx.vocabulary.sub(REDACTED, out)
    return out


def _clean_element(elem: DataElement, ctx: Context) -> bool:
    """Clean a text element in place; True when its value changed."""
    if elem.VR not in TEXT_VRS or elem.value is None:
        return False
    old = elem.value
    if isinstance(old, list | tuple) or type(old).__name__ == "MultiValue":
        new: Any = [clean_text(str(v), ctx) for v in old]
        changed = [str(v) for v in old] != new
    else:
        new = clean_text(str(old), ctx)
        changed = new != str(old)
    if changed:
        elem.value = new
    return changed


def _shift(elem: DataElement, ctx: Context) -> bool:
    """Shift a DA/DT element in place; False when it holds something that is not a date."""
    assert ctx.shift_days is not None
    fn = keys.shift_date if elem.VR == "DA" else keys.shift_datetime
    vals = _values(elem)
    shifted = [fn(v, ctx.shift_days) for v in vals]
    if any(s is None for s in shifted):
        return False
    elem.value = shifted if len(shifted) > 1 else (shifted[0] if shifted else "")
    return True


def _empty(elem: DataElement) -> None:
    if elem.VR == "SQ":
        elem.value = Sequence()
    elif elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        elem.value = b""
    else:
        elem.value = None


def _dummy(elem: DataElement, ctx: Context) -> None:
    if elem.tag in PSEUDONYM_TAGS:
        elem.value = ctx.patient_key
    elif elem.VR in DUMMY:
        elem.value = DUMMY[elem.VR]
    elif elem.VR in TEXT_VRS:
        elem.value = "REMOVED"
    elif elem.VR in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"):
        elem.value = 0
    else:
        _empty(elem)


def _remap_uid(elem: DataElement, ctx: Context) -> None:
    vals = _values(elem)
    new = [v if v.startswith(STANDARD_UID_ROOT) else keys.new_uid(v, ctx.key) for v in vals]
    elem.value = new if len(new) > 1 else (new[0] if new else "")


def apply(elem: DataElement, action: str, ctx: Context, ds: Dataset) -> None:
    """Apply the single action code ``action`` to ``elem`` of ``ds`` (counted in ``ctx``)."""
    c = ctx.counts
    if action == "X":
        del ds[elem.tag]
        c["removed"] += 1
    elif action == "Z":
        if elem.tag in PSEUDONYM_TAGS:
            elem.value = ctx.patient_key
            c["dummied"] += 1
        else:
            _empty(elem)
            c["emptied"] += 1
    elif action == "D":
        if elem.VR == "SQ":
            if elem.tag in STRUCTURAL_SEQUENCES:
                walk(elem.value or (), ctx, clean_all=True)
            else:
                elem.value = Sequence()
        elif elem.VR == "UI":
            _remap_uid(elem, ctx)
        else:
            _dummy(elem, ctx)
        c["dummied"] += 1
    elif action == "U":
        if elem.VR == "SQ":
            walk(elem.value or (), ctx)
        elif elem.VR == "UI":
            _remap_uid(elem, ctx)
        else:  # a U on another VR (never in the table): its value is replaced, not kept
            _dummy(elem, ctx)
        c["uid_replaced"] += 1
    elif action == "C":
        if elem.VR in ("DA", "DT") and ctx.shift_days is not None:
            if _shift(elem, ctx):
                c["date_shifted"] += 1
            else:
                _empty(elem)
                c["emptied"] += 1
        elif elem.VR == "TM" and ctx.shift_days is not None:
            c["kept"] += 1  # times move with their dates' whole days: unchanged
        elif elem.VR == "SQ":
            walk(elem.value or (), ctx, clean_all=True)
            c["cleaned"] += 1
        elif elem.VR in TEXT_VRS:
            _clean_element(elem, ctx)
            c["cleaned"] += 1
        elif elem.VR in ("DA", "DT", "TM"):
            _empty(elem)
            c["emptied"] += 1
        else:
            c["kept"] += 1
    elif action == "K":
        if elem.VR == "SQ":
            walk(elem.value or (), ctx)
        c["kept"] += 1
    else:  # pragma: no cover - profiles are validated on load
        raise ValueError(f"unknown action {action!r}")


def _private_creator(ds: Dataset, tag: int) -> str | None:
    group, elem = tag >> 16, tag & 0xFFFF
    creator_tag = (group << 16) | (elem >> 8)
    if elem < 0x1000 or creator_tag not in ds:
        return None
    return str(ds[creator_tag].value).strip()


def _walk_private(ds: Dataset, ctx: Context) -> None:
    safe = ctx.profile.safe_private_keys() if ctx.profile.has(Option.RETAIN_SAFE_PRIVATE) else ()
    used_creators: set[int] = set()
    creators = []
    for elem in list(ds):
        tag = int(elem.tag)
        if not elem.tag.is_private:
            continue
        group, el = tag >> 16, tag & 0xFFFF
        if 0x0010 <= el <= 0x00FF:
            creators.append(tag)
            continue
        creator = _private_creator(ds, tag)
        if creator is not None and (creator, group, el & 0xFF) in safe:
            used_creators.add((group << 16) | (el >> 8))
            ctx.counts["private_kept"] += 1
            if elem.VR == "SQ":
                walk(elem.value or (), ctx)
        else:
            del ds[tag]
            ctx.counts["private_removed"] += 1
    for tag in creators:
        if tag not in used_creators:
            del ds[tag]


def walk(items: Any, ctx: Context, *, clean_all: bool = False) -> None:
    """De-identify every dataset of ``items`` (a sequence's items) in place."""
    for item in items:
        _walk_dataset(item, ctx, clean_all)


def _walk_dataset(ds: Dataset, ctx: Context, clean_all: bool) -> None:
    _walk_private(ds, ctx)
    for elem in list(ds):
        if elem.tag.is_private:
            continue
        if elem.tag.group in (0x0002, 0xFFFE) or elem.tag == 0x7FE00010:
            continue
        action = action_for(int(elem.tag), ctx.profile)
        if action is not None:
            apply(elem, action, ctx, ds)
            continue
        # Not in Table E.1-1: the net of the module docstring.
        if elem.VR == "SQ":
            walk(elem.value or (), ctx, clean_all=clean_all)
        elif elem.VR == "UI":
            if any(not v.startswith(STANDARD_UID_ROOT) for v in _values(elem)):
                _remap_uid(elem, ctx)
                ctx.counts["uid_replaced"] += 1
        elif (
            elem.VR in TEXT_VRS
            and elem.keyword not in TECHNICAL_KEYWORDS
            and _clean_element(elem, ctx)
        ):
            # vendor and software names are not cleaned: a demo site named after its vendor
            # ("UIH") would otherwise take the vendor's name out of every file
            ctx.counts["cleaned"] += 1
        elif clean_all and elem.VR in ("DA", "DT"):
            _empty(elem)
            ctx.counts["emptied"] += 1


def deidentify_dataset(ds: Dataset, ctx: Context) -> Counter[str]:
    """Apply the profile of ``ctx`` to ``ds`` in place (file meta excluded); returns the counts
    per action (``removed``, ``emptied``, ``dummied``, ``kept``, ``cleaned``, ``uid_replaced``,
    ``date_shifted``, ``private_removed``, ``private_kept``)."""
    _walk_dataset(ds, ctx, clean_all=False)
    return ctx.counts
