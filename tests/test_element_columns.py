"""The compiled element columns (``StrColumn``, ``IntColumn`` of ``_walker.c``) behave as lists.

With the compiled walker the element rows go into these columns' Arrow buffers instead of Python
lists; every reader and test that appends, reads, slices or truncates rows uses them as lists. Here
each column goes through random operations side by side with a plain list doing the same, its
Arrow buffers must equal what pyarrow builds from the list, and a batch read into them must give the
same Arrow tables as one read into lists.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest

from curation.crawler import compiled, reader
from curation.crawler.batches import read_batch

from .conftest import SAMPLE_DATA, pydicom_test_files

pytestmark = pytest.mark.skipif(
    not compiled.AVAILABLE, reason="the compiled walker is not built (no C compiler at install)"
)

TEXTS = [
    "",
    "a",
    "1.2.840.10008.5.1.4.1.1.4",
    "Müller^Jürgen",
    "山田^太郎",
    "x\\y",
    "\x00",
    "é" * 300,
]


def _text_column() -> Any:
    assert compiled._compiled is not None
    return compiled._compiled.StrColumn()


def _int_column() -> Any:
    assert compiled._compiled is not None
    return compiled._compiled.IntColumn()


def _outcome(f: Callable[[], object]) -> object:
    try:
        return ("ok", f())
    except Exception as exc:  # the same exception type as the list's
        return ("error", type(exc))


@pytest.mark.parametrize("kind", ["text", "int"])
def test_columns_do_what_lists_do(kind: str) -> None:
    rng = random.Random(13)
    column = _text_column() if kind == "text" else _int_column()
    mirror: list[Any] = []

    def value() -> object:
        if rng.random() < 0.2:
            return None
        if kind == "text":
            return rng.choice(TEXTS)
        return rng.choice([0, 1, -1, 0xFFFFFFFF, 2**62, -(2**63), rng.randrange(-1000, 1000)])

    for step in range(3000):
        op = rng.random()
        if op < 0.5:
            v = value()
            column.append(v)
            mirror.append(v)
        elif op < 0.55 and mirror:
            # Mostly the last few rows, as a failed read drops them; now and then any number.
            far = op < 0.502
            k = rng.randrange(-2, len(mirror) + 3) if far else len(mirror) - rng.randrange(6)
            del column[k:]
            del mirror[k:]
        elif op < 0.7 and kind == "int":
            i, v = rng.randrange(-len(mirror) - 2, len(mirror) + 2), value()
            assert _outcome(lambda i=i, v=v: column.__setitem__(i, v)) == _outcome(
                lambda i=i, v=v: mirror.__setitem__(i, v)
            )
        elif op < 0.85:
            i = rng.randrange(-len(mirror) - 2, len(mirror) + 2)
            assert _outcome(lambda i=i: column[i]) == _outcome(lambda i=i: mirror[i])
        else:
            a, b = rng.randrange(-5, len(mirror) + 5), rng.randrange(-5, len(mirror) + 5)
            s = rng.choice([1, 1, 2, -1, -3])
            assert column[a:b:s] == mirror[a:b:s]
            assert column[a:] == mirror[a:]
        assert len(column) == len(mirror), step
    assert list(column) == mirror
    assert tuple(column) == tuple(mirror)
    assert len(mirror) > 50
    assert any(v is None for v in mirror) and any(v == "" or v == 0 for v in mirror)
    present = next(v for v in mirror if v is not None)
    assert column.index(present) == mirror.index(present)
    with pytest.raises(ValueError):
        column.index("never" if kind == "text" else 12345678901)


def test_columns_refuse_what_they_cannot_hold() -> None:
    text, ints = _text_column(), _int_column()
    for bad in (b"bytes", 3, 1.5):
        with pytest.raises(TypeError):
            text.append(bad)
    with pytest.raises(UnicodeEncodeError):
        text.append("\ud800")  # a lone surrogate has no UTF-8
    for bad_int in ("3", 1.5):
        with pytest.raises(TypeError):
            ints.append(bad_int)
    with pytest.raises(OverflowError):
        ints.append(2**63)
    assert len(text) == 0 and len(ints) == 0  # nothing half-appended
    text.append("a")
    text.append("b")
    with pytest.raises(TypeError):
        text[0] = "c"  # text rows are appended, never replaced
    with pytest.raises(TypeError):
        del text[0:1]  # only the last rows can be dropped
    with pytest.raises(TypeError):
        text["x"]
    assert list(text) == ["a", "b"]


@pytest.mark.parametrize("seed", [1, 2])
def test_arrow_buffers_are_what_pyarrow_builds(seed: int) -> None:
    rng = random.Random(seed)
    texts = [rng.choice([*TEXTS, None]) for _ in range(1000)]
    ints = [rng.choice([None, 0, 7, -5, 2**31 - 1, -(2**31)]) for _ in range(1000)]
    column, int_column = _text_column(), _int_column()
    for t, i in zip(texts, ints, strict=True):
        column.append(t)
        int_column.append(i)
    del column[900:]
    del int_column[900:]
    assert compiled.string_array(column).equals(pa.array(texts[:900], pa.string()))
    for type_ in (pa.int32(), pa.int64()):
        assert compiled.int_array(int_column, type_).equals(pa.array(ints[:900], type_))
    # No None: no validity bitmap; a value out of int32's range: an error, not a wrapped number.
    tags = _int_column()
    for t in (0x00080018, 0xFFFEE000, 0x7FE00010):
        tags.append(t)
    assert compiled.uint32_values(tags).tolist() == [0x00080018, 0xFFFEE000, 0x7FE00010]
    assert compiled.int_array(tags, pa.uint32()).null_count == 0
    with pytest.raises(OverflowError):
        compiled.int_array(tags, pa.int32())


@pytest.fixture
def walkers() -> Iterator[None]:
    before = compiled.in_use()
    yield
    compiled.select(before)


def test_element_columns_follow_the_walker_in_use(walkers: None) -> None:
    compiled.select("compiled")
    assert type(reader.ElementColumns().value).__name__ == "StrColumn"
    assert type(reader.ElementColumns().tag).__name__ == "IntColumn"
    compiled.select("python")
    assert type(reader.ElementColumns().value) is list


def _dataset(elements: list[tuple[int, bytes, bytes]]) -> bytes:
    """A file of explicit VR little endian elements (tag, VR, value) after a minimal meta group."""
    meta = b""
    for tag, vr, value in [(0x00020010, b"UI", b"1.2.840.10008.1.2.1\x00")]:
        meta += struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value
    body = b""
    for tag, vr, value in elements:
        if vr in (b"OB", b"SQ", b"UN", b"UT", b"SV", b"UV"):  # 4-byte lengths (PS3.5 7.1.2)
            body += struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr, 0, len(value)) + value
        else:
            body += struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value
    group = struct.pack("<HH2sHL", 2, 0, b"UL", 4, len(meta))
    return b"\x00" * 128 + b"DICM" + group + meta + body


def test_numbers_and_text_written_into_columns_read_as_pythons(walkers: None) -> None:
    # Values the compiled walker formats itself: whole floats (its own fast path, up to 1e16),
    # negative zero, NaN, the extremes of each integer VR, AT tags, Latin-1 text, padding.
    doubles = [0.0, -0.0, 1.0, -5.0, 1e15, 9999999999999998.0, 1e16, 2.0**53, 0.1, 1e-5, -1.5e300,
               float("nan"), float("inf"), -float("inf"), 123456.789]  # fmt: skip
    floats = [0.0, -0.0, 3.0, 0.1, -2.5e-8, 1e10, float("inf")]
    rows = [
        (0x00080005, b"CS", b"ISO_IR 100"),
        (0x00080018, b"UI", b"1.2.3\x00"),
        (0x00100010, b"PN", "Müller^Jürgen ".encode("latin-1")),
        (0x00181310, b"US", struct.pack("<4H", 0, 1, 65535, 512)),
        (0x00189219, b"SS", struct.pack("<3h", -32768, 0, 32767)),
        (0x00209057, b"UL", struct.pack("<2L", 0, 0xFFFFFFFF)),
        (0x00209162, b"SL", struct.pack("<2l", -(2**31), 2**31 - 1)),
        (0x00209165, b"AT", struct.pack("<4H", 0x0020, 0x9056, 0xFFFE, 0xE000)),
        (0x00280103, b"US", struct.pack("<H", 1)),
        (0x00281052, b"DS", b"-1024 "),
        (0x0040A13A, b"FD", struct.pack(f"<{len(doubles)}d", *doubles)),
        (0x0040A30A, b"FL", struct.pack(f"<{len(floats)}f", *floats)),
        (0x00431001, b"SV", struct.pack("<2q", -(2**63), 2**63 - 1)),
        (0x00431002, b"UV", struct.pack("<Q", 2**64 - 1)),
    ]
    data = _dataset(rows)
    outcomes = {}
    for name in ("python", "compiled"):
        compiled.select(name)
        out = reader.ElementColumns()
        reader.read_header_bytes(data, True, out)
        outcomes[name] = [tuple(getattr(out, f)) for f in ("tag", "vr", "value", "value_length")]
    assert outcomes["compiled"] == outcomes["python"]
    values = dict(zip(outcomes["python"][0], outcomes["python"][2], strict=True))
    assert values[0x00100010] == "Müller^Jürgen"
    assert values[0x0040A13A].split("\\")[:4] == ["0.0", "-0.0", "1.0", "-5.0"]


def _batch_tables(paths: list[str]) -> list[pa.Table]:
    import os

    items = [(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]
    return list(read_batch(items, 1))


def test_a_batch_reads_alike_into_lists_and_columns(walkers: None) -> None:
    # The compiled walker into lists (as before the columns) and into the columns: the same
    # element, instance, error and file tables, Arrow array for Arrow array.
    paths = sorted(str(p) for p in (SAMPLE_DATA / "real").rglob("*") if p.is_file())
    paths += [str(p) for p in pydicom_test_files()[:150]]
    compiled.select("compiled")
    columns = _batch_tables(paths)
    reader._text_column = reader._int_column = list
    try:
        lists = _batch_tables(paths)
    finally:
        compiled.select("compiled")
    assert columns[1].num_rows > 10_000
    for a, b in zip(lists, columns, strict=True):
        assert a.equals(b)
