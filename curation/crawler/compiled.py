"""Which header walker the reader uses: the compiled one when it is built, else pure Python.

The compiled walker (``_walker.c``, built by ``setup.py`` when a C compiler is available) reads the
elements of files that read cleanly and hands everything else (every error, every rare path) back
to :meth:`curation.crawler.reader._Walker.walk`, which reads the same bytes again: the catalog is the
same with either, and the tests (``tests/test_walker.py``) hold them to it.

``CURATION_WALKER=python`` in the environment forces the pure-Python walker (reader processes
inherit it); :func:`select` switches in-process, for tests and benchmarks.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from curation.crawler.reader import Column, _Walker

log = logging.getLogger("curation.crawler")

#: Environment variable naming the walker: ``compiled`` (the default when built) or ``python``.
ENV = "CURATION_WALKER"

try:
    from curation.crawler import _walker as _compiled
except ImportError:  # not built: no C compiler at install time, or a plain source checkout
    _compiled = None

#: Whether the compiled walker is built and importable.
AVAILABLE = _compiled is not None
# Its element columns, absent from a build older than them (a checkout updated without rebuilding
# the extension): such a build's walker fills lists, as it always did.
_StrColumn: Any = getattr(_compiled, "StrColumn", None)
_IntColumn: Any = getattr(_compiled, "IntColumn", None)
# Whether the compiled module is in use (see select): the walker, and the Arrow helpers below.
_active = False

WalkFunction = Callable[["_Walker", int, "int | None", str, bool], int]
#: ``pick(paths, tags, values, start, end)``: see :func:`picker`.
PickFunction = Callable[
    ["Column[str]", "Column[int]", "Column[str | None]", int, int], list["str | None"]
]


def _compiled_walk() -> WalkFunction:
    from curation.crawler import reader

    assert _compiled is not None
    _compiled.configure(
        reader._NeedMore, reader.public_vr, reader.private_vr, reader._known_vr_of_un,
        reader._ambiguous,
    )  # fmt: skip
    c_walk = _compiled.walk
    fallback = _compiled.Fallback
    python_walk = reader._Walker.walk

    def walk(walker: _Walker, pos: int, end: int | None, path: str, top: bool) -> int:
        out = walker.out
        mark = len(out.tag)
        try:
            result: int = c_walk(walker, pos, end, path, top, walker.explicit)
            return result
        except fallback:
            # An error or a rare path: the Python walker reads these bytes and says what they are.
            out.truncate(mark)
            return python_walk(walker, pos, end, path, top)

    return walk


def select(name: str | None = None) -> str:
    """Make the reader use the walker ``name`` (``compiled`` or ``python``); return the one in use.

    ``None`` means the environment's choice (:data:`ENV`), else the compiled walker when built.
    Asking for ``compiled`` where it is not built raises ``RuntimeError``.
    """
    global _active
    from curation.crawler import reader

    name = name or os.environ.get(ENV) or ("compiled" if AVAILABLE else "python")
    if name == "compiled":
        if not AVAILABLE:
            raise RuntimeError(
                "the compiled walker is not built (pip install -e . with a C compiler)"
            )
        assert _compiled is not None
        reader._walk = _compiled_walk()
        # New element columns are the compiled ones: the walker fills their Arrow buffers.
        if _StrColumn is not None and _IntColumn is not None:
            reader._text_column, reader._int_column = _StrColumn, _IntColumn
        else:
            reader._text_column = reader._int_column = list
    elif name == "python":
        reader._walk = reader._python_walk
        reader._text_column = reader._int_column = list
    else:
        raise ValueError(f"{ENV} must be 'compiled' or 'python', not {name!r}")
    _active = name == "compiled"
    return name


def in_use() -> str:
    """``compiled`` or ``python``: the walker the reader uses now."""
    from curation.crawler import reader

    return "python" if reader._walk is reader._python_walk else "compiled"


def describe() -> str:
    """One line for the crawl log when a slower reader is in use (pure Python, an old build), else ``''``."""
    if in_use() == "compiled":
        if _StrColumn is None:  # a build older than its element columns: rows go through lists
            return "header reader: compiled walker built before its element columns (rebuild: pip install -e .)"
        return ""
    if AVAILABLE:
        return f"header reader: pure-Python walker ({ENV}=python)"
    return "header reader: pure-Python walker (the compiled walker is not built; see setup.py)"


def picker(keys: Sequence[tuple[str, int]]) -> PickFunction:
    """A function that picks the values of ``keys`` ((seq_path, tag) pairs) from element rows.

    ``pick(paths, tags, values, start, end)`` returns, for each key, the value of the last of rows
    ``start..end`` with that sequence path and tag, else None: one instance's attributes as text.
    Compiled when the compiled walker is in use (a dict lookup per row, no Python per row).
    """
    keys = list(keys)
    if _active and _compiled is not None:
        index: dict[int, tuple[str | int, ...]] = {}
        for column, (path, tag) in enumerate(keys):
            index[tag] = (*index.get(tag, ()), path, column)
        # The same for the compiled columns: an open-addressing hash table of the tags (see
        # _walker.pick_columns), filled to at most a quarter, and their entries.
        ordered = list(index)
        entries = tuple(index[t] for t in ordered)
        bits = max(2, (4 * len(ordered)).bit_length())
        table = [(0, -1)] * (1 << bits)
        for k, tag in enumerate(ordered):
            slot = ((tag * 2654435761) & 0xFFFFFFFF) >> (32 - bits)
            while table[slot][1] >= 0:
                slot = (slot + 1) & ((1 << bits) - 1)
            table[slot] = (tag, k)
        packed_keys = b"".join(struct.pack("<Ii", tag, k) for tag, k in table)
        c_pick, c_pick_columns = _compiled.pick, getattr(_compiled, "pick_columns", None)
        int_column = _IntColumn
        n = len(keys)

        def pick(
            paths: Column[str], tags: Column[int], values: Column[str | None], start: int, end: int
        ) -> list[str | None]:
            result: list[str | None]
            if int_column is not None and type(tags) is int_column:
                result = c_pick_columns(paths, tags, values, start, end, packed_keys, entries, n)
            else:
                result = c_pick(paths, tags, values, start, end, index, n)
            return result

        return pick
    wanted = frozenset(path for path, _ in keys)

    def python_pick(
        paths: Column[str], tags: Column[int], values: Column[str | None], start: int, end: int
    ) -> list[str | None]:
        found = {
            (paths[i], tags[i]): values[i]
            for i in range(start, end)
            if not paths[i] or paths[i] in wanted
        }
        return list(map(found.get, keys))

    return python_pick


def _is_compiled_column(values: object) -> bool:
    return _StrColumn is not None and type(values) in (_StrColumn, _IntColumn)


def string_array(values: Column[str] | Column[str | None] | Sequence[str | None]) -> pa.Array:
    """``pyarrow.array(values, pyarrow.string())``: from a compiled column's buffers, or built in
    one pass by the compiled module."""
    import pyarrow as pa

    column: Any = values
    try:
        if _is_compiled_column(column):
            validity, offsets, data, nulls = column.arrow()
        elif not _active:
            return pa.array(values, pa.string())  # chunked by pyarrow past 2 GiB
        else:
            assert _compiled is not None
            validity, offsets, data, nulls = _compiled.arrow_strings(values)
    except OverflowError:
        # More than 2 GiB of text in one batch's column (a batch of large RT structure sets, say):
        # past 32-bit offsets. A large_string array instead; the writer concatenates both kinds.
        return pa.array(list(values), pa.large_string())
    buffers = [None if validity is None else pa.py_buffer(validity), pa.py_buffer(offsets),
               pa.py_buffer(data)]  # fmt: skip
    return pa.Array.from_buffers(pa.string(), len(values), buffers, nulls)


def int_array(
    values: Column[int] | Column[int | None] | Sequence[int | None], type_: pa.DataType
) -> pa.Array:
    """``pyarrow.array(values, type_)`` for int32, uint32 or int64, by the compiled module."""
    import pyarrow as pa

    column: Any = values
    if _is_compiled_column(column):
        kind = {pa.int32(): "i", pa.uint32(): "I", pa.int64(): "q"}.get(type_)
        if kind is None:
            return pa.array(list(column), type_)
        validity, data, nulls = column.arrow(kind)
        buffers = [None if validity is None else pa.py_buffer(validity), pa.py_buffer(data)]
        return pa.Array.from_buffers(type_, len(column), buffers, nulls)
    width = {pa.int32(): 4, pa.int64(): 8}.get(type_)
    if not _active or width is None:
        return pa.array(values, type_)
    assert _compiled is not None
    validity, data, nulls = _compiled.arrow_ints(values, width)
    buffers = [None if validity is None else pa.py_buffer(validity), pa.py_buffer(data)]
    return pa.Array.from_buffers(type_, len(values), buffers, nulls)


def uint32_values(values: Column[int] | Sequence[int]) -> np.ndarray:
    """``numpy.asarray(values, dtype=numpy.uint32)`` (a tag column): from a compiled column's
    buffer, without a Python int per row."""
    import numpy as np

    column: Any = values
    if _is_compiled_column(column):
        _, data, nulls = column.arrow("I")
        if nulls:
            raise TypeError("a tag column holds None")
        return np.frombuffer(data, dtype=np.uint32)
    return np.asarray(values, dtype=np.uint32)
