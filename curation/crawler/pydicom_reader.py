"""Read a header with pydicom into the same element columns as the fast reader.

The fallback for what :mod:`curation.crawler.reader` leaves alone (big endian, deflate, files that mix
encodings, unusual VRs), and the formatting the tests use when they compare the fast reader with
pydicom. Values are formatted the way :mod:`curation.crawler.reader` produces them: strings as read (trailing
padding removed), several values joined by a backslash, numbers as Python's ``str``, binary VRs and
sequences without a text value.
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from typing import Any

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import (
    _at_pixel_data,
    _read_file_meta_info,
    read_dataset,
    read_partial,
    read_preamble,
)
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import DeflatedExplicitVRLittleEndian

from curation.crawler.reader import DEFAULT_LIMITS, PIXEL_TAGS, ElementColumns, Header, Limits
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


class _TooMany(Exception):
    """More data elements than ``Limits.max_elements``."""


def _walk(
    ds: Dataset,
    path: str,
    top: bool,
    out: ElementColumns,
    caveats: list[tuple[str, str]],
    row_limit: int,
) -> None:
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset yields elements, not tags)
        if len(out) >= row_limit:
            raise _TooMany
        try:
            raw = ds.get_item(tag)
        except Exception:
            # pydicom converts some elements on access (a broken value then raises): the stored
            # raw element is what ds[tag] below reports on.
            raw = ds._dict[tag]  # type: ignore[assignment]
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
                _walk(item, f"{prefix}[{i}]", False, out, caveats, row_limit)
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


def _head(path: str, cap: int) -> tuple[bytes, bool, bool]:
    """The first ``cap`` bytes of a file, decompressed when gzipped: (bytes, gzipped, cut)."""
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except FileNotFoundError as exc:
        raise DicomReadError("vanished", "file disappeared before it could be read") from exc
    gzipped = data[:2] == b"\x1f\x8b"
    if gzipped:
        # The compressed bytes are read whole (a gzip file of more than the cap inflates to more),
        # but inflated no further than the cap: a small file may inflate to gigabytes.
        with open(path, "rb") as f:
            data = f.read()
        decoder = zlib.decompressobj(wbits=31)
        try:
            data = decoder.decompress(data, cap + 1)
        except zlib.error as exc:
            raise DicomReadError("bad_gzip", f"not valid gzip: {exc}") from exc
        if len(data) <= cap and not decoder.eof:
            raise DicomReadError("bad_gzip", "gzip stream ends early")
    return data[:cap], gzipped, len(data) > cap


def _parse(data: bytes, limits: Limits) -> tuple[Dataset, bool]:
    """pydicom's reading of ``data`` up to the pixel data: (dataset, whether it read to the end).

    A deflated dataset is inflated here, no further than ``max_header_bytes`` (pydicom would
    inflate it whole); at most ``max_elements`` top-level elements are read.
    """
    count = 0

    def stop(tag: BaseTag, vr: str | None, length: int) -> bool:
        nonlocal count
        count += 1
        if count > limits.max_elements:
            raise _TooMany
        return _at_pixel_data(tag, vr, length)

    fp = io.BytesIO(data)
    read_preamble(fp, force=True)
    meta = _read_file_meta_info(fp)
    if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        cap = limits.max_header_bytes
        try:
            body = zlib.decompressobj(-zlib.MAX_WBITS).decompress(fp.read(), cap + 1)
        except zlib.error as exc:
            raise DicomReadError("invalid_value", f"deflated dataset: {exc}") from exc
        if body[:8] == bytes(8):
            raise DicomReadError("zero_padding", "the deflated dataset starts with zero bytes")
        inner = io.BytesIO(body[:cap])
        ds = read_dataset(inner, False, True, stop_when=stop)
        ds.file_meta = meta
        return ds, len(body) > cap or inner.tell() >= len(body)
    fp.seek(0)
    ds = read_partial(fp, stop_when=stop, force=True)
    return ds, fp.tell() >= len(data)


def read_with_pydicom(
    path: str, out: ElementColumns | None = None, limits: Limits = DEFAULT_LIMITS
) -> tuple[Header, bool]:
    """Read a header with pydicom: ``(header, gzipped)``; errors as :class:`DicomReadError`.

    Bounded like the fast reader: pydicom sees at most ``limits.max_header_bytes`` of the file
    (decompressed), a deflated dataset is inflated no further, and a dataset of more than
    ``limits.max_elements`` top-level elements is given up.
    """
    data, gzipped, cut = _head(path, limits.max_header_bytes)
    if not data:
        raise DicomReadError("zero_byte", "the file is empty")
    too_large = DicomReadError(
        "header_too_large",
        f"the header goes on past {limits.max_header_bytes} bytes (limit max_header_bytes)",
    )
    too_many = DicomReadError(
        "header_too_large",
        f"more than {limits.max_elements} data elements (limit max_elements)",
    )
    with warnings.catch_warnings(record=True) as caught, _wrong_length_as_un():
        warnings.simplefilter("always")
        try:
            ds, to_the_end = _parse(data, limits)
        except _TooMany as exc:
            raise too_many from exc
        except EOFError as exc:
            if cut:
                raise too_large from exc
            raise DicomReadError("truncated", f"file ends early: {exc}") from exc
        except InvalidDicomError as exc:
            raise DicomReadError("not_dicom", str(exc)) from exc
        except NotImplementedError as exc:
            # pydicom's word for an explicit VR it does not know ("Unknown Value Representation").
            raise DicomReadError("invalid_vr", f"pydicom cannot parse it: {exc}") from exc
        except (ValueError, OverflowError, struct.error, OSError) as exc:
            # OSError too: pydicom parses bytes in memory here, so it is about the content (e.g.
            # "No tag to read" where a sequence item should start), never a transient I/O error.
            raise DicomReadError("bad_length", f"pydicom cannot parse it: {exc}") from exc
        if cut and to_the_end:
            raise too_large  # the dataset went on to the cut (pydicom stops quietly there)
        out = ElementColumns() if out is None else out
        start = len(out)
        element_caveats: list[tuple[str, str]] = []
        row_limit = start + limits.max_elements
        try:
            if ds.file_meta:
                _walk(ds.file_meta, "", True, out, element_caveats, row_limit)
            n_meta = len(out)
            _walk(ds, "", True, out, element_caveats, row_limit)
            if len(out) == n_meta:
                raise DicomReadError("not_dicom", "pydicom found no data elements")
        except _TooMany as exc:
            out.truncate(start)
            raise too_many from exc
        except EOFError as exc:
            out.truncate(start)
            raise DicomReadError("truncated", f"file ends early: {exc}") from exc
        except (ValueError, OverflowError, struct.error, OSError) as exc:
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
