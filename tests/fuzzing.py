"""Mutants of real DICOM headers for the walker fuzz tests (and ``benchmarks/walker_fuzz.py``).

Each mutant is the header bytes of a real file (all vendors and encodings we have) with one kind of
damage: bytes flipped, the file cut short, an element or item length set to 0xFFFFFFFF or to a
random value, an explicit VR replaced by garbage, or sequences nested deeper than any real file.
Seeded: the same seed gives the same mutants.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

from curation.crawler.reader import ElementColumns, Header, read_header_bytes

from .conftest import SHARED_DICOM, pydicom_test_files, shared_corpus_files

#: Bytes of each seed file a mutant starts from: the header, and a little pixel data.
HEAD_BYTES = 48 * 1024

_VR_PAIRS = [
    b"OB",
    b"OW",
    b"SQ",
    b"UN",
    b"UT",
    b"UL",
    b"US",
    b"CS",
    b"LO",
    b"SH",
    b"DS",
    b"IS",
    b"PN",
]
_PREAMBLE = b"\0" * 128 + b"DICM"


def seed_files(per_source: int = 3) -> list[Path]:
    """A few files of every source of ../shared/dicom and of pydicom's test files."""
    chosen: list[Path] = []
    by_source: dict[str, list[Path]] = {}
    for f in shared_corpus_files():
        by_source.setdefault(f.relative_to(SHARED_DICOM).parts[0], []).append(f)
    for files in by_source.values():
        step = max(1, len(files) // per_source)
        chosen += files[::step][:per_source]
    wanted = {"CT_small.dcm", "MR_small_implicit.dcm", "MR_small.dcm", "rtplan.dcm",
              "emri_small.dcm", "nested_priv_SQ.dcm", "chr_arab.dcm", "chrH31.dcm",
              "chrSQEncoding.dcm", "image_dfl.dcm", "reportsi.dcm", "JPEG2000.dcm",
              "ExplVR_BigEnd.dcm", "SC_rgb_small_odd.dcm"}  # fmt: skip
    chosen += [f for f in pydicom_test_files() if f.name in wanted]
    return chosen


def _vr_offsets(data: bytes) -> list[int]:
    """Offsets of what look like explicit VRs (two known VR letters after a 4-byte tag)."""
    out = []
    for vr in _VR_PAIRS:
        start = 0
        while (i := data.find(vr, start)) >= 0:
            if i >= 4:
                out.append(i)
            start = i + 1
    return out


def _nested(depth: int, explicit: bool, undefined: bool) -> bytes:
    """A small valid dataset whose one sequence nests ``depth`` levels deep."""
    sop = b"1.2.3.4\x00"
    meta_ts = b"1.2.840.10008.1.2.1\x00" if explicit else b"1.2.840.10008.1.2\x00"
    meta = b"\x02\x00\x10\x00UI" + struct.pack("<H", len(meta_ts)) + meta_ts

    def element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
        if explicit:
            return struct.pack("<HH", group, elem) + vr + struct.pack("<H", len(value)) + value
        return struct.pack("<HHL", group, elem, len(value)) + value

    inner = element(0x0008, 0x0100, b"SH", b"CODE")
    for _ in range(depth):
        if undefined:
            item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + inner + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
            seq_len = 0xFFFFFFFF
            body = item + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        else:
            item = b"\xfe\xff\x00\xe0" + struct.pack("<L", len(inner)) + inner
            body = item
            seq_len = len(body)
        head = struct.pack("<HH", 0x0008, 0x1115)
        head += (b"SQ\x00\x00" if explicit else b"") + struct.pack("<L", seq_len)
        inner = head + body
    return _PREAMBLE + meta + element(0x0008, 0x0018, b"UI", sop) + inner


def mutants(n: int, seed: int = 13) -> Iterator[tuple[str, bytes]]:
    """``n`` (kind, bytes) mutants of the seed files' headers, and deeply nested datasets."""
    rng = random.Random(seed)
    originals = [f.read_bytes()[:HEAD_BYTES] for f in seed_files()]
    originals = [d for d in originals if len(d) > 64]
    for depth in (1, 8, 63, 64, 65, 100, 300):
        for explicit in (True, False):
            for undefined in (True, False):
                yield f"nested{depth}", _nested(depth, explicit, undefined)
    for i in range(n):
        data = bytearray(rng.choice(originals))
        kind = ("flip", "cut", "ffff", "length", "vr", "flip")[i % 6]
        if kind == "flip":
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == "cut":
            del data[rng.randrange(len(data)) :]
        elif kind in ("ffff", "length"):
            # An element's or item's length: 4 bytes after its tag (implicit, items) or 2 bytes
            # after its VR (explicit short form) or 4 after the reserved bytes (long form).
            vrs = _vr_offsets(bytes(data))
            if vrs and rng.random() < 0.7:
                at = rng.choice(vrs) + rng.choice((2, 4))
            else:
                at = rng.randrange(0, len(data) - 4) & ~1
            value = (
                0xFFFFFFFF if kind == "ffff" else rng.choice((0, 1, 3, 0xFFFF, rng.getrandbits(32)))
            )
            data[at : at + 4] = struct.pack("<L", value)
        else:
            vrs = _vr_offsets(bytes(data))
            if not vrs:
                continue
            at = rng.choice(vrs)
            data[at : at + 2] = bytes((rng.randrange(256), rng.randrange(256)))
        yield kind, bytes(data)


_FIELDS = [f.name for f in fields(ElementColumns)]


def outcome(data: bytes, complete: bool = True) -> tuple[object, ...]:
    """Everything reading ``data`` comes to: the rows and header facts, or the exception."""
    out = ElementColumns()
    try:
        header: Header = read_header_bytes(data, complete, out)
    except RecursionError:
        return ("error", "RecursionError")
    except Exception as exc:
        return ("error", type(exc).__name__, getattr(exc, "reason", None),
                getattr(exc, "end", None), str(exc))  # fmt: skip
    columns = tuple(tuple(getattr(out, f)) for f in _FIELDS)
    return (columns, header.start, header.transfer_syntax, header.sop_instance_uid,
            header.media_storage_sop_class, header.pixel_data_offset, header.pixel_data_length,
            header.encapsulated_offset, tuple(header.caveats))  # fmt: skip
