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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

    from curation.crawler.reader import _Walker

log = logging.getLogger("curation.crawler")

#: Environment variable naming the walker: ``compiled`` (the default when built) or ``python``.
ENV = "CURATION_WALKER"

try:
    from curation.crawler import _walker as _compiled
except ImportError:  # not built: no C compiler at install time, or a plain source checkout
    _compiled = None

#: Whether the compiled walker is built and importable.
AVAILABLE = _compiled is not None
# Whether the compiled module is in use (see select): the walker, and the Arrow helpers below.
_active = False

WalkFunction = Callable[["_Walker", int, "int | None", str, bool], int]
#: ``pick(paths, tags, values, start, end)``: see :func:`picker`.
PickFunction = Callable[[list[str], list[int], list["str | None"], int, int], list["str | None"]]


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
        reader._walk = _compiled_walk()
    elif name == "python":
        reader._walk = reader._python_walk
    else:
        raise ValueError(f"{ENV} must be 'compiled' or 'python', not {name!r}")
    _active = name == "compiled"
    return name


def in_use() -> str:
    """``compiled`` or ``python``: the walker the reader uses now."""
    from curation.crawler import reader

    return "python" if reader._walk is reader._python_walk else "compiled"


def describe() -> str:
    """One line for the crawl log when the pure-Python walker is in use, else ``''``."""
    if in_use() == "compiled":
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
        c_pick = _compiled.pick
        n = len(keys)

        def pick(
            paths: list[str], tags: list[int], values: list[str | None], start: int, end: int
        ) -> list[str | None]:
            result: list[str | None] = c_pick(paths, tags, values, start, end, index, n)
            return result

        return pick
    wanted = frozenset(path for path, _ in keys)

    def python_pick(
        paths: list[str], tags: list[int], values: list[str | None], start: int, end: int
    ) -> list[str | None]:
        found = {
            (paths[i], tags[i]): values[i]
            for i in range(start, end)
            if not paths[i] or paths[i] in wanted
        }
        return list(map(found.get, keys))

    return python_pick


def string_array(values: Sequence[str | None]) -> pa.Array:
    """``pyarrow.array(values, pyarrow.string())``, built in one pass by the compiled module."""
    import pyarrow as pa

    if not _active:
        return pa.array(values, pa.string())
    assert _compiled is not None
    validity, offsets, data, nulls = _compiled.arrow_strings(values)
    buffers = [None if validity is None else pa.py_buffer(validity), pa.py_buffer(offsets),
               pa.py_buffer(data)]  # fmt: skip
    return pa.Array.from_buffers(pa.string(), len(values), buffers, nulls)


def int_array(values: Sequence[int | None], type_: pa.DataType) -> pa.Array:
    """``pyarrow.array(values, type_)`` for int32 or int64, by the compiled module."""
    import pyarrow as pa

    width = {pa.int32(): 4, pa.int64(): 8}.get(type_)
    if not _active or width is None:
        return pa.array(values, type_)
    assert _compiled is not None
    validity, data, nulls = _compiled.arrow_ints(values, width)
    buffers = [None if validity is None else pa.py_buffer(validity), pa.py_buffer(data)]
    return pa.Array.from_buffers(type_, len(values), buffers, nulls)
