"""Hostile inputs for the crawler: mutants of real files, bombs, deep nesting (fixed seed).

Used by tests/test_fuzz.py; also runnable on its own to write the cases to a folder
(``python -m tests.fuzz_cases OUT [N]``) for a longer run by hand.
"""

from __future__ import annotations

import gzip
import random
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

from .conftest import pydicom_test_files

#: Real files the mutants start from: explicit and implicit VR, nested sequences, encapsulated
#: pixel data, private tags, a non-default character set.
SEEDS = (
    "CT_small.dcm",
    "MR_small_implicit.dcm",
    "rtplan.dcm",
    "JPEG2000.dcm",
    "chrH31.dcm",
    "SC_rgb_rle.dcm",
)
_GARBAGE_VRS = (b"ZZ", b"\x00\x00", b"\xff\xff", b"ob", b"S ", b"\x01Q")


def seeds() -> dict[str, bytes]:
    """The seed files' bytes by name."""
    by_name = {f.name: f for f in pydicom_test_files()}
    return {name: by_name[name].read_bytes() for name in SEEDS if name in by_name}


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    group, elem = tag >> 16, tag & 0xFFFF
    if vr in (b"SQ", b"OB", b"UN", b"UT"):
        return struct.pack("<HH2sHL", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def _meta(transfer_syntax: bytes = b"1.2.840.10008.1.2.1\x00") -> bytes:
    body = _element(0x00020010, b"UI", transfer_syntax)
    return (
        b"\x00" * 128 + b"DICM" + _element(0x00020000, b"UL", struct.pack("<L", len(body))) + body
    )


def deep_sequence(depth: int) -> bytes:
    """An explicit VR file whose one sequence nests ``depth`` levels deep (undefined lengths)."""
    inner = _element(0x00080018, b"UI", b"1.2.3.4\x00")
    for _ in range(depth):
        item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + inner + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
        inner = (
            struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
            + item
            + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        )
    return _meta() + _element(0x00080018, b"UI", b"1.2.3\x00") + inner


def zero_bomb(n_bytes: int, seed: bytes) -> bytes:
    """A real file's preamble and file meta, then ``n_bytes`` of zeros."""
    group_length = struct.unpack_from("<L", seed, 140)[0]
    return seed[: 144 + group_length] + b"\x00" * n_bytes


def gzip_bomb(n_bytes: int) -> bytes:
    """A gzip file that inflates to a preamble and ``n_bytes`` of zeros."""
    return gzip.compress(b"\x00" * 128 + b"DICM" + b"\x00" * n_bytes, compresslevel=9)


def element_bomb(n_elements: int) -> bytes:
    """A valid-looking header of ``n_elements`` small private elements (a flood, not zeros)."""
    flood = _element(0x00091010, b"LO", b"x\x00") * n_elements
    return (
        _meta()
        + _element(0x00080018, b"UI", b"1.2.3\x00")
        + _element(0x00090010, b"LO", b"FLOOD ")
        + flood
    )


def gzip_element_bomb(n_elements: int) -> bytes:
    """:func:`element_bomb`, gzip-wrapped: a small file that inflates to a long header."""
    return gzip.compress(element_bomb(n_elements), compresslevel=9)


def gzip_value_bomb(n_bytes: int) -> bytes:
    """A gzip file that inflates to a header with one private OB value of ``n_bytes``."""
    head = (
        _meta() + _element(0x00080018, b"UI", b"1.2.3\x00") + _element(0x00090010, b"LO", b"BOMB")
    )
    body = struct.pack("<HH2sHL", 0x0009, 0x1011, b"OB", 0, n_bytes) + b"\x01" * n_bytes
    return gzip.compress(head + body, compresslevel=6)


def huge_length(seed: bytes) -> bytes:
    """A long element in the middle of the header claims almost 4 GB."""
    i = seed.find(b"\x08\x00\x30\x10")  # StudyDescription, or any text element after it
    if i < 0:
        i = 400
    return seed[: i + 4] + b"UT\x00\x00" + struct.pack("<L", 0xFFFFFFF0) + seed[i + 8 :]


def mutants(n: int, seed: int = 11) -> Iterator[tuple[str, bytes]]:
    """``n`` mutants of the seed files: byte flips, truncations, 0xFFFFFFFF lengths, garbage VRs."""
    rng = random.Random(seed)
    sources = seeds()
    names = sorted(sources)
    for k in range(n):
        name = names[k % len(names)]
        data = bytearray(sources[name])
        kind = rng.choice(("flip", "flip", "truncate", "length", "vr", "splice", "zeros"))
        lo = 132 if len(data) > 200 else 0
        hi = min(len(data), 6000)
        if kind == "flip":
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(lo, hi)] = rng.randrange(256)
        elif kind == "truncate":
            data = data[: rng.randrange(lo, len(data))]
        elif kind == "length":
            at = rng.randrange(lo, hi - 4)
            data[at : at + 4] = b"\xff\xff\xff\xff"
        elif kind == "vr":
            # Replace a two-letter VR in the header with garbage.
            spots = [
                i
                for i in range(lo, hi - 2)
                if data[i : i + 2].isalpha() and data[i : i + 2].isupper()
            ]
            if spots:
                at = rng.choice(spots)
                data[at : at + 2] = rng.choice(_GARBAGE_VRS)
        elif kind == "splice":
            # Copy a random stretch of the header elsewhere (duplicate and out-of-order tags).
            a = rng.randrange(lo, hi - 64)
            b = rng.randrange(lo, hi - 64)
            data[b:b] = data[a : a + rng.randint(8, 64)]
        else:
            at = rng.randrange(lo, hi)
            data[at : at + rng.randint(8, 256)] = b"\x00" * 64
        suffix = ".dcm.gz" if k % 17 == 0 else ".dcm"
        payload = bytes(data)
        if suffix == ".dcm.gz":
            payload = gzip.compress(payload)
        yield f"{k:04d}_{kind}_{name.removesuffix('.dcm')}{suffix}", payload


def hostile_cases(n_mutants: int, flood: bool = True) -> Iterator[tuple[str, bytes]]:
    """Every hostile case: mutants, bombs, deep nesting (``flood``: also a header of 2,000,000
    elements, which costs a few seconds to reach the element limit)."""
    sources = seeds()
    yield from mutants(n_mutants)
    ct = sources["CT_small.dcm"]
    yield "bomb_zeros_after_meta.dcm", zero_bomb(8 << 20, ct)
    yield "bomb_zeros_after_preamble.dcm", b"\x00" * 128 + b"DICM" + b"\x00" * (8 << 20)
    yield "bomb_gzip_zeros.dcm.gz", gzip_bomb(256 << 20)
    if flood:
        yield "bomb_gzip_flood.dcm.gz", gzip_element_bomb(2_000_000)
    yield "bomb_gzip_value.dcm.gz", gzip_value_bomb(128 << 20)
    yield "bomb_huge_length.dcm", huge_length(ct)
    yield "deep_40.dcm", deep_sequence(40)
    yield "deep_600.dcm", deep_sequence(600)
    yield (
        "deflate_bomb.dcm",
        _meta(b"1.2.840.10008.1.2.1.99\x00") + zlib.compress(b"\x00" * (64 << 20))[2:-4],
    )


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for case, payload in hostile_cases(int(sys.argv[2]) if len(sys.argv) > 2 else 300):
        (out / case).write_bytes(payload)
