"""Read a header with pydicom into the same element columns as the fast reader.

The fallback for what :mod:`curation.crawler.reader` leaves alone (big endian, deflate, files that mix
encodings, unusual VRs), and the formatting the tests use when they compare the fast reader with
pydicom. Values are formatted the way :mod:`curation.crawler.reader` produces them: strings as read (trailing
padding removed), several values joined by a backslash, numbers as Python's ``str``, binary VRs and
sequences without a text value.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import struct
import warnings
from collections.abc import Iterator
from typing import Any

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from curation.crawler.reader import PIXEL_TAGS, ElementColumns, Header
from curation.errors import DicomReadError

_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "OB or OW", "US or OW"})


def value_text(elem: DataElement) -> str | None:
    """An element's value as curation's text (see the module docstring)."""
    vr = elem.VR
    value = elem.value
    if vr in _BINARY_VRS or vr == "SQ":
        return None
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return None
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_one(v) for v in value)
    return _one(value)


def _one(v: Any) -> str:
    if isinstance(v, BaseTag):
        return f"{int(v):08X}"
    if isinstance(v, bytes):
        return v.decode("latin-1")
    return str(v)


def _walk(
    ds: Dataset, path: str, top: bool, out: ElementColumns, caveats: list[tuple[str, str]]
) -> None:
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset yields elements, not tags)
        raw = ds.get_item(tag)
        if top and int(tag) in PIXEL_TAGS:
            continue
        length = raw.length if isinstance(raw, RawDataElement) else None
        try:
            elem = ds[tag]
        except Exception as exc:  # pydicom raises many types when converting a broken value
            if isinstance(raw, RawDataElement) and raw.VR != "SQ":
                # One value that cannot be converted does not cost the file: kept as UN bytes.
                where = f"({tag.group:04X},{tag.element:04X})"
                reason = (
                    "invalid_vr" if raw.VR is not None and raw.VR not in _KNOWN else "invalid_value"
                )
                caveats.append((reason, f"{where} cannot be read ({exc}); kept as UN"))
                for column, value in ((out.tag, int(tag)), (out.vr, "UN"), (out.value, None),
                                      (out.value_length, length), (out.seq_path, path),
                                      (out.private_creator, None), (out.n_items, None)):  # fmt: skip
                    column.append(value)
                continue
            raise DicomReadError(
                "invalid_value", f"({tag.group:04X},{tag.element:04X}) cannot be read: {exc}"
            ) from exc
        creator = None
        if tag.group & 1 and tag.element >= 0x1000:
            # Resolved here rather than from elem.private_creator, which pydicom leaves unset
            # on some elements (sequences among them).
            creator_elem = ds.get((tag.group << 16) | (tag.element >> 8))
            creator = str(creator_elem.value).rstrip("\x00 ") if creator_elem is not None else None
        vr = elem.VR if elem.VR in _KNOWN else "UN"
        out.tag.append(int(tag))
        out.vr.append(vr)
        out.seq_path.append(path)
        out.private_creator.append(creator)
        out.value_length.append(None if length in (None, 0xFFFFFFFF) else length)
        if vr == "SQ":
            out.value.append(None)
            out.n_items.append(len(elem.value))
            prefix = f"{path}/{int(tag):08X}" if path else f"{int(tag):08X}"
            for i, item in enumerate(elem.value):
                _walk(item, f"{prefix}[{i}]", False, out, caveats)
        else:
            text = value_text(elem)
            out.value.append(text.rstrip("\x00 ") if text is not None else None)
            out.n_items.append(None)


_KNOWN = frozenset(
    [
        "AE",
        "AS",
        "AT",
        "CS",
        "DA",
        "DS",
        "DT",
        "FD",
        "FL",
        "IS",
        "LO",
        "LT",
        "OB",
        "OD",
        "OF",
        "OL",
        "OV",
        "OW",
        "PN",
        "SH",
        "SL",
        "SQ",
        "SS",
        "ST",
        "SV",
        "TM",
        "UC",
        "UI",
        "UL",
        "UN",
        "UR",
        "US",
        "UT",
        "UV",
    ]
)


@contextlib.contextmanager
def _wrong_length_as_un() -> Iterator[None]:
    """pydicom reads a numeric value of impossible length as UN (as the fast reader does)."""
    saved = pydicom.config.convert_wrong_length_to_UN
    pydicom.config.convert_wrong_length_to_UN = True
    try:
        yield
    finally:
        pydicom.config.convert_wrong_length_to_UN = saved


def read_with_pydicom(path: str, out: ElementColumns | None = None) -> tuple[Header, bool]:
    """Read a header with pydicom: ``(header, gzipped)``; errors as :class:`DicomReadError`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise DicomReadError("vanished", "file disappeared before it could be read") from exc
    gzipped = data[:2] == b"\x1f\x8b"
    if gzipped:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DicomReadError("bad_gzip", f"not valid gzip: {exc}") from exc
    if not data:
        raise DicomReadError("zero_byte", "the file is empty")
    with warnings.catch_warnings(record=True) as caught, _wrong_length_as_un():
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        except InvalidDicomError as exc:
            raise DicomReadError("not_dicom", str(exc)) from exc
        except EOFError as exc:
            raise DicomReadError("truncated", f"file ends early: {exc}") from exc
        except (ValueError, OverflowError, struct.error) as exc:
            raise DicomReadError("bad_length", f"pydicom cannot parse it: {exc}") from exc
        out = ElementColumns() if out is None else out
        start = len(out)
        element_caveats: list[tuple[str, str]] = []
        try:
            if ds.file_meta:
                _walk(ds.file_meta, "", True, out, element_caveats)
            n_meta = len(out)
            _walk(ds, "", True, out, element_caveats)
            if len(out) == n_meta:
                raise DicomReadError("not_dicom", "pydicom found no data elements")
        except EOFError as exc:
            out.truncate(start)
            raise DicomReadError("truncated", f"file ends early: {exc}") from exc
        except (ValueError, OverflowError, struct.error) as exc:
            out.truncate(start)
            raise DicomReadError("bad_length", f"pydicom cannot parse it: {exc}") from exc
        except BaseException:
            out.truncate(start)
            raise
    caveats = element_caveats + [
        ("bad_charset", str(w.message))
        for w in caught
        if "character set" in str(w.message).lower() or "decode" in str(w.message).lower()
    ]
    sop = ds.get("SOPInstanceUID")
    return (
        Header(
            elements=out,
            start=start,
            transfer_syntax=str(ds.file_meta.get("TransferSyntaxUID", "")) or None,
            sop_instance_uid=str(sop).rstrip("\x00 ") if sop else None,
            media_storage_sop_class=str(ds.file_meta.get("MediaStorageSOPClassUID", "")) or None,
            pixel_data_offset=None,
            pixel_data_length=None,
            encapsulated_offset=None,
            caveats=caveats,
        ),
        gzipped,
    )
