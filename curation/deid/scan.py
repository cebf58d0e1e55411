"""The leak scanner: every original identifier of the source files, searched in every output byte.

The identifiers come from the source catalog (``elements``, nested ones too): names of patients
and staff, patient and other IDs, accession numbers, birth and study dates, institution and
station names, device serial numbers, and the instance UIDs. Each is searched in the ways people
write it (:func:`spellings`): a name with ``^`` or spaces between its parts, in either order, and
each of its words alone; a date as ``YYYYMMDD``, ``YYYY-MM-DD``, ``DD.MM.YYYY``, ``MM/DD/YYYY``...
Output files are read as bytes (gzip-compressed ones, such as ``.nii.gz``, decompressed; Parquet
also as the CSV of its rows, since its pages may be compressed), upper-cased, and matched whole
words at a time: a word of a name is found as a word, not inside a longer one.

The tests and ``benchmarks/deid_peers.py`` share this scanner, so curation and its peers are
counted the same way, and every test that checks an output for identifiers (the demo's outputs, a
cohort's paths, a federated summary, a report built from hostile input) searches the same way:
:func:`identifier_values` collects a catalog's values, :func:`needles_for` spells any values,
:func:`scan_bytes` finds them. A finding names the file, the kind of identifier and the spelling, never the
value.
"""

from __future__ import annotations

import contextlib
import gzip
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import polars as pl

from curation.deid.profile import Profile
from curation.qc.rules.privacy import PLACEHOLDER_WORDS

#: Keywords whose values are identifiers, and the kind each is reported as.
IDENTIFIER_KEYWORDS: dict[str, str] = {
    "PatientName": "name",
    "OtherPatientNames": "name",
    "PatientBirthName": "name",
    "PatientMotherBirthName": "name",
    "ReferringPhysicianName": "name",
    "PerformingPhysicianName": "name",
    "NameOfPhysiciansReadingStudy": "name",
    "OperatorsName": "name",
    "RequestingPhysician": "name",
    "PhysiciansOfRecord": "name",
    "PatientID": "id",
    "OtherPatientIDs": "id",
    "AccessionNumber": "id",
    "MedicalRecordLocator": "id",
    "DeviceSerialNumber": "id",
    "PatientBirthDate": "date",
    "StudyDate": "date",
    "InstitutionName": "institution",
    "InstitutionAddress": "institution",
    "StationName": "institution",
    "PatientAddress": "address",
    "PatientTelephoneNumbers": "id",
    "StudyInstanceUID": "uid",
    "SeriesInstanceUID": "uid",
    "SOPInstanceUID": "uid",
    "FrameOfReferenceUID": "uid",
}
#: Shortest needle searched, in characters: shorter ones match anything.
MIN_LENGTH = 4
#: Values that are placeholders, not identifiers (upper case): the privacy rule's, and words of an
#: output's own vocabulary (body parts, vendor names) that a name word may coincide with.
PLACEHOLDERS = frozenset(PLACEHOLDER_WORDS) | {
    "ANONYMIZED", "BODY", "KNEE", "SPINE", "NULL",
    "SIEMENS", "PHILIPS", "GENERAL", "ELECTRIC", "MEDICAL", "SYSTEMS", "HEALTHCARE",
}  # fmt: skip

#: A word: letters, digits and underscores (``SLICE_THICKNESS_MM`` is one word: a name word found
#: inside it is not that name).
_TOKEN = re.compile(rb"[A-Z0-9_]+")
_BEFORE, _AFTER = rb"(?<![A-Z0-9_])", rb"(?![A-Z0-9_])"


@dataclass(frozen=True)
class Needle:
    """One spelling of one identifier: ``text`` (upper case), what it is, how it is spelled."""

    text: bytes
    kind: str
    spelling: str
    token: bytes  # its longest word: found among the haystack's words before a full match


@dataclass(frozen=True)
class Leak:
    """An identifier found in an output file (the value itself is not kept)."""

    path: str
    kind: str
    keyword: str
    spelling: str


def spellings(value: str, kind: str) -> list[tuple[str, str]]:
    """(text, spelling) of each way ``value`` of ``kind`` may be written."""
    v = value.strip().upper()
    if not v:
        return []
    if kind == "name":
        parts = [p.strip() for p in re.split(r"[\^=]", v) if p.strip()]
        out = [(v, "as stored"), (" ".join(parts), "^ as space")]
        if len(parts) >= 2:
            out.append((f"{parts[1]} {parts[0]}", "given family"))
            out.append((f"{parts[0]}, {parts[1]}", "family, given"))
            out.append(("_".join(parts), "^ as _"))
        out += [(w, "a word") for p in parts for w in re.split(r"[ ,._-]+", p) if w]
        return out
    if kind == "date":
        d = v[:8]
        if len(d) != 8 or not d.isdigit():
            return [(v, "as stored")]
        y, m, dd = d[:4], d[4:6], d[6:]
        return [
            (d, "YYYYMMDD"),
            (f"{y}-{m}-{dd}", "YYYY-MM-DD"),
            (f"{dd}.{m}.{y}", "DD.MM.YYYY"),
            (f"{m}/{dd}/{y}", "MM/DD/YYYY"),
            (f"{dd}/{m}/{y}", "DD/MM/YYYY"),
            (f"{y}/{m}/{dd}", "YYYY/MM/DD"),
        ]
    out = [(v, "as stored")]
    if kind in ("institution", "address") and "^" in v:
        out.append((v.replace("^", " "), "^ as space"))
    return out


@cache
def dicom_words() -> frozenset[str]:
    """Words of the DICOM data dictionary's attribute names (SLICE, GREEN, TIMING...), upper case.

    A word of a name that is also a word of DICOM's own vocabulary is not searched alone (the
    whole name, in each spelling, still is): a test subject named "Slice Timing" is otherwise
    found in every "slice" the outputs mention.
    """
    from pydicom.datadict import DicomDictionary

    return frozenset(
        w.upper() for entry in DicomDictionary.values() for w in re.findall(r"[A-Za-z]+", entry[2])
    )


def _needle(text: str, kind: str, spelling: str, min_length: int = MIN_LENGTH) -> Needle | None:
    raw = text.encode("utf-8", "replace")
    tokens = _TOKEN.findall(raw)
    if len(text) < min_length or not tokens or text in PLACEHOLDERS:
        return None
    if spelling == "a word" and text in dicom_words():
        return None
    if all(t.decode() in PLACEHOLDERS for t in tokens):
        return None
    return Needle(raw, kind, spelling, max(tokens, key=len))


def identifier_values(
    con: duckdb.DuckDBPyConnection,
    paths: Iterable[str] | None = None,
    *,
    keywords: Iterable[str] | None = None,
    retained: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """(keyword, value) of every distinct identifier value of the cataloged files ``paths`` (all
    when None), nested elements included.

    ``keywords``: the keywords searched (default: every key of :data:`IDENTIFIER_KEYWORDS`; each
    must be one); ``retained``: keywords a profile keeps on purpose (Retain Device Identity keeps
    DeviceSerialNumber), left out. A value that is also a vendor, model or software string of the
    catalog is left out too (see below).
    """
    chosen = list(IDENTIFIER_KEYWORDS) if keywords is None else list(keywords)
    unknown = [k for k in chosen if k not in IDENTIFIER_KEYWORDS]
    if unknown:
        raise ValueError(f"not identifier keywords: {', '.join(unknown)} (see IDENTIFIER_KEYWORDS)")
    skip = set(retained)
    kws = [k for k in chosen if k not in skip]
    if paths is None:
        rows = con.execute(
            "SELECT DISTINCT keyword, value FROM elements WHERE list_contains($k, keyword) "
            "AND value IS NOT NULL",
            {"k": kws},
        ).fetchall()
    else:
        con.register("_scan_paths", pl.DataFrame({"path": list(paths)}, schema={"path": pl.String}))
        try:
            rows = con.execute(
                """SELECT DISTINCT e.keyword, e.value FROM elements e
                JOIN files f USING (file_id) JOIN _scan_paths p USING (path)
                WHERE list_contains($k, e.keyword) AND e.value IS NOT NULL""",
                {"k": kws},
            ).fetchall()
        finally:
            con.unregister("_scan_paths")
    # A vendor writes its model name where a station name goes ("Galan 3T"): a value that is
    # also a technical value of the same files (kept on purpose) is not an identifier.
    technical = {
        str(r[0]).strip().upper()
        for r in con.execute(
            "SELECT DISTINCT value FROM elements WHERE list_contains($k, keyword) "
            "AND value IS NOT NULL",
            {"k": ["Manufacturer", "ManufacturerModelName", "SoftwareVersions"]},
        ).fetchall()
    }
    return [(k, str(v)) for k, v in rows if str(v).strip().upper() not in technical]


def needles_for(
    values: Iterable[tuple[str, str]], *, min_length: int = MIN_LENGTH
) -> dict[Needle, str]:
    """Every spelling (:func:`spellings`) of each ``(keyword, value)``, as needles for
    :func:`scan_bytes`, each with its keyword. A keyword of :data:`IDENTIFIER_KEYWORDS` gives
    its kind's spellings (a name word by word, a date in each order); any other label (a free-text
    element, a path) is searched as stored. Multi-valued values (``A\\B``) are split; spellings
    shorter than ``min_length`` characters, placeholders and lone DICOM words are not searched.
    """
    out: dict[Needle, str] = {}
    for keyword, value in values:
        kind = IDENTIFIER_KEYWORDS.get(keyword, "id")
        for part in str(value).split("\\"):
            for text, spelling in spellings(part, kind):
                n = _needle(text, kind, spelling, min_length)
                if n is not None:
                    out.setdefault(n, keyword)
    return out


def identifiers(
    con: duckdb.DuckDBPyConnection,
    paths: Iterable[str] | None = None,
    *,
    retained: Iterable[str] = (),
    keywords: Iterable[str] | None = None,
    min_length: int = MIN_LENGTH,
) -> dict[Needle, str]:
    """Every spelling of every identifier of the cataloged files ``paths`` (all when None), each
    with the keyword it came from: :func:`needles_for` over :func:`identifier_values` (see both
    for ``keywords``, ``retained`` and ``min_length``)."""
    return needles_for(
        identifier_values(con, paths, keywords=keywords, retained=retained),
        min_length=min_length,
    )


def retained_by(profile: Profile) -> list[str]:
    """The identifier keywords ``profile`` keeps (action K): not leaks when found in its output."""
    from pydicom.datadict import tag_for_keyword

    from curation.deid.actions import action_for

    out = []
    for kw in IDENTIFIER_KEYWORDS:
        tag = tag_for_keyword(kw)
        if tag is not None and action_for(int(tag), profile) == "K":
            out.append(kw)
    return out


def _haystacks(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    yield data
    if data[:2] == b"\x1f\x8b":
        with contextlib.suppress(OSError, EOFError):
            yield gzip.decompress(data)
    if path.suffix == ".parquet":
        with contextlib.suppress(pl.exceptions.PolarsError, OSError):
            yield pl.read_parquet(path).cast(pl.String, strict=False).write_csv().encode()


def scan_bytes(data: bytes, needles: dict[Needle, str]) -> list[tuple[Needle, str]]:
    """The needles found in ``data`` (case-insensitive, whole words)."""
    hay = data.upper()
    words = set(_TOKEN.findall(hay))
    found = []
    for n, keyword in needles.items():
        if n.token not in words:
            continue
        if n.text == n.token or re.search(_BEFORE + re.escape(n.text) + _AFTER, hay):
            found.append((n, keyword))
    return found


def scan(root: str | Path, needles: dict[Needle, str]) -> list[Leak]:
    """Every identifier of ``needles`` found in any file under ``root`` (one per file, needle)."""
    base = Path(root)
    leaks = []
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        seen: set[Needle] = set()
        for hay in _haystacks(path):
            for n, keyword in scan_bytes(hay, needles):
                if n not in seen:
                    seen.add(n)
                    leaks.append(Leak(str(path.relative_to(base)), n.kind, keyword, n.spelling))
    return leaks


def redact(text: str, needles: dict[Needle, str], mark: str = "*") -> str:
    """``text`` with every identifier of ``needles`` found in it (whole words, any case) replaced
    by ``mark``: for what a de-identified cohort copies from elsewhere (a spec's values)."""
    found = [n for n, _ in scan_bytes(text.encode("utf-8", "replace"), needles)]
    for n in sorted(found, key=lambda n: len(n.text), reverse=True):
        pattern = (
            r"(?<![A-Za-z0-9_])"
            + re.escape(n.text.decode("utf-8", "replace"))
            + r"(?![A-Za-z0-9_])"
        )
        text = re.sub(pattern, mark, text, flags=re.IGNORECASE)
    return text


def redact_data(data: object, needles: dict[Needle, str]) -> object:
    """:func:`redact` applied to every text inside nested dicts and lists (keys included)."""
    if isinstance(data, str):
        return redact(data, needles)
    if isinstance(data, dict):
        return {redact_data(k, needles): redact_data(v, needles) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(v, needles) for v in data]
    return data
