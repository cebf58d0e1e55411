"""DICOM JSON (PS3.18 F.2) as the element rows a folder crawl writes.

A WADO-RS metadata response holds every data element of every instance of a series, nested and
private ones included. This module turns one instance's JSON object into rows of the crawler's
:class:`~curation.crawler.reader.ElementColumns`, formatted as the crawler formats a file's
values, so that the catalog built through a PACS equals the one built from the same files on
disk. Where the JSON cannot carry what the file had, the row says less, never something else:

- DS and IS come as JSON numbers: the text is the number's shortest form (``0.5``, not the
  file's ``0.50``); they are equal as numbers, not always as text.
- Value lengths are those of the value as sent (text padded to even length, binary numbers by
  their size); DS/IS and sequence lengths are not known (NULL), nor is a bulk data element's
  unless its bytes are fetched (see :func:`bulk_uris`).
- The file meta group (0002) and group lengths (gggg,0000) are not part of DICOM JSON.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from curation.crawler.reader import PIXEL_TAGS, ElementColumns

#: Binary numbers: their size in bytes (the crawler prints them with Python's ``str``).
_NUMBER_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8}
_BINARY_VRS = frozenset(["OB", "OD", "OF", "OL", "OV", "OW", "UN"])


class JsonError(ValueError):
    """The DICOM JSON does not follow PS3.18 F.2 (what it says cannot be a data element)."""


def loads(text: str | bytes) -> Any:
    """Parse a DICOM JSON response keeping each number's literal text.

    The literal is what the server wrote; converting it to a float and back would invent digits
    (an FL of 0.1 is 0.10000000149011612 as a double).
    """
    return json.loads(text, parse_float=str, parse_int=str)


def _number_text(vr: str, literal: Any, where: str) -> str:
    text = str(literal)
    try:
        if vr in ("FL", "FD"):
            x = float(text)
            # The crawler prints the value read from the file: an FL is a 32-bit float.
            return repr(float(np.float32(x))) if vr == "FL" else repr(x)
        if vr in ("DS",):
            x = float(text)
            if x.is_integer() and "e" not in text.lower() and "." not in text:
                return str(int(x))
            return repr(x)
        return str(int(text))  # IS and the binary integers
    except (ValueError, OverflowError) as exc:
        raise JsonError(f"{where}: {vr} value {text!r} is not a number") from exc


def _person_name(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, Mapping):
        raise JsonError(f"{where}: PN value is not an object")
    groups = [value.get(k) or "" for k in ("Alphabetic", "Ideographic", "Phonetic")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def _value_text(vr: str, values: list[Any], where: str) -> tuple[str, int | None]:
    """(text, value length) of a non-sequence, non-binary element's ``Value`` list."""
    if vr == "PN":
        text = "\\".join(_person_name(v, where) for v in values)
    elif vr in _NUMBER_SIZE:
        text = "\\".join(_number_text(vr, v, where) for v in values)
        return text, _NUMBER_SIZE[vr] * len(values)
    elif vr in ("DS", "IS"):
        return "\\".join("" if v is None else _number_text(vr, v, where) for v in values), None
    elif vr == "AT":
        text = "\\".join(str(v).upper() for v in values)
        return text, 4 * len(values)
    else:
        if any(not (v is None or isinstance(v, str)) for v in values):
            raise JsonError(f"{where}: {vr} value is not a string")
        text = "\\".join(v or "" for v in values)
    text = text.rstrip("\x00 ")
    n = len(text.encode("utf-8"))
    return text, n + (n & 1)


def _tag(key: str, where: str) -> int:
    if len(key) != 8:
        raise JsonError(f"{where}: {key!r} is not a tag (8 hex digits)")
    try:
        return int(key, 16)
    except ValueError:
        raise JsonError(f"{where}: {key!r} is not a tag (8 hex digits)") from None


def add_dataset(
    dataset: Mapping[str, Any],
    out: ElementColumns,
    path: str = "",
    bulk: dict[str, int] | None = None,
) -> None:
    """Append the rows of one DICOM JSON dataset (an instance or a sequence item) to ``out``.

    Parameters
    ----------
    dataset
        The JSON object, keys 'GGGGEEEE' (as :func:`loads` returns it).
    out
        The element columns, as the crawler's readers fill them.
    path
        ``seq_path`` of the dataset ('' at the top level).
    bulk
        Lengths of bulk data already fetched, by BulkDataURI; a URI not in it gets NULL.

    Raises
    ------
    JsonError
        The object is not DICOM JSON (a key that is not a tag, a value of the wrong kind).
    """
    if not isinstance(dataset, Mapping):
        raise JsonError(f"{path or 'dataset'}: not a JSON object")
    keyed = sorted((_tag(k, path or "dataset"), v) for k, v in dataset.items())
    creators: dict[int, str] = {}
    for tag, elem in keyed:
        where = f"{path}/{tag:08X}" if path else f"{tag:08X}"
        if not isinstance(elem, Mapping) or not isinstance(elem.get("vr"), str):
            raise JsonError(f"{where}: an element needs an object with a 'vr'")
        group, number = tag >> 16, tag & 0xFFFF
        if number == 0 or group == 0x0002:
            continue  # group lengths and file meta are not part of a dataset's rows
        vr = elem["vr"]
        creator = None
        if group & 1 and number >= 0x1000:
            creator = creators.get(group << 8 | number >> 8)
        values = elem.get("Value")
        if values is not None and not isinstance(values, list):
            raise JsonError(f"{where}: 'Value' is not an array")
        text: str | None
        length: int | None
        n_items: int | None = None
        if vr == "SQ":
            items = values or []
            out.tag.append(tag)
            out.vr.append("SQ")
            out.value.append(None)
            out.value_length.append(None)
            out.seq_path.append(path)
            out.private_creator.append(creator)
            out.n_items.append(len(items))
            for i, item in enumerate(items):
                add_dataset(item, out, f"{where}[{i}]", bulk)
            continue
        if vr in _BINARY_VRS or (not path and tag in PIXEL_TAGS):
            text = None
            if "InlineBinary" in elem:
                try:
                    length = len(base64.b64decode(elem["InlineBinary"], validate=True))
                except (ValueError, TypeError) as exc:
                    raise JsonError(f"{where}: InlineBinary is not base64") from exc
            elif "BulkDataURI" in elem:
                length = (bulk or {}).get(elem["BulkDataURI"])
            elif values is not None:
                length = None  # OF/OD/OL/OV may come as numbers: their bytes are not rows' text
            else:
                length = 0
        elif values is None:
            text, length = "", 0
        else:
            text, length = _value_text(vr, values, where)
        if group & 1 and 0x10 <= number <= 0xFF and text:
            creators[group << 8 | number] = text.split("\\")[0]
        out.tag.append(tag)
        out.vr.append(vr)
        out.value.append(text)
        out.value_length.append(length)
        out.seq_path.append(path)
        out.private_creator.append(creator)
        out.n_items.append(n_items)


def bulk_uris(dataset: Mapping[str, Any], *, top: bool = True) -> list[str]:
    """The BulkDataURIs of a dataset's elements, nested ones included, pixel data left out."""
    found: list[str] = []
    for key, elem in dataset.items():
        if not isinstance(elem, Mapping):
            continue
        if top and len(key) == 8 and key.upper() in ("7FE00010", "7FE00008", "7FE00009"):
            continue
        uri = elem.get("BulkDataURI")
        if isinstance(uri, str):
            found.append(uri)
        if elem.get("vr") == "SQ":
            for item in elem.get("Value") or []:
                if isinstance(item, Mapping):
                    found += bulk_uris(item, top=False)
    return found


def first_value(dataset: Mapping[str, Any], tag: str) -> str | None:
    """The first value of a top-level element as text (a UID, a date), else None."""
    elem = dataset.get(tag)
    if not isinstance(elem, Mapping):
        return None
    values = elem.get("Value")
    if not isinstance(values, list) or not values or values[0] is None:
        return None
    v = values[0]
    if isinstance(v, Mapping):
        return _person_name(v, tag)
    return str(v)
