"""One batch of files read into Arrow tables staged for the catalog (runs in reader processes).

:func:`read_batch` reads ``(path, size, mtime_ns)`` files with the fast header reader (pydicom as
the fallback) and returns a :class:`Batch`: the ``files``, ``elements``, ``crawl_errors`` and raw
``instances`` rows of those files. Every failure becomes a row with a reason, never an exception.
Reader processes import this module, not the crawl's coordinator (:mod:`curation.crawler.run`).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import pyarrow as pa

from curation import catalog
from curation.crawler import compiled, discover
from curation.crawler.discover import file_id, text_path
from curation.crawler.reader import (
    DEFAULT_LIMITS,
    ElementColumns,
    Header,
    Limits,
    Unsupported,
    read_header,
)
from curation.errors import DicomReadError

log = logging.getLogger("curation.crawler")

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
FILE_SCHEMA = pa.schema(
    [
        ("file_id", pa.uint64()),
        ("path", pa.string()),
        ("path_bytes", pa.binary()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("SOPInstanceUID", pa.string()),
        ("reader", pa.string()),
        ("gzip", pa.bool_()),
        ("crawl_id", pa.int32()),
    ]
)
_RAW_INSTANCE_COLUMNS = catalog.raw_instance_columns()
_RAW_INSTANCE_KEYS = [(p, t) for _, t, p in _RAW_INSTANCE_COLUMNS]
RAW_INSTANCE_SCHEMA = pa.schema(
    [("file_id", pa.uint64()), ("n_elements", pa.int64())]
    + [(name, pa.string()) for name, _, _ in _RAW_INSTANCE_COLUMNS]
)
ERROR_SCHEMA = pa.schema(
    [
        ("file_id", pa.uint64()),
        ("path", pa.string()),
        ("reason", pa.string()),
        ("message", pa.string()),
        ("cataloged", pa.bool_()),
        ("crawl_id", pa.int32()),
    ]
)


class Batch(NamedTuple):
    """What a worker hands back for a chunk of files: Arrow tables staged for the catalog."""

    files: pa.Table
    elements: pa.Table  # element rows (elements.SCHEMA), each naming a row of names
    names: pa.Table  # the rows' distinct (tag, creator, VR) and their names (elements.NAMES_SCHEMA)
    errors: pa.Table
    instances: pa.Table  # raw text of the instance attributes, typed by DuckDB


class _Outcome(NamedTuple):
    """What reading one file came to."""

    status: str  # ok, error, skipped
    reason: str | None
    header: Header | None
    gzip: bool
    reader: str | None
    problems: list[tuple[str, str, bool]]  # (reason, message, header still cataloged)


def _failed(reason: str, message: str, reader: str | None = None) -> _Outcome:
    return _Outcome("error", reason, None, False, reader, [(reason, message, False)])


#: Fast-reader diagnoses that pydicom is not asked to second-guess: it would return a silently
#: partial dataset for a truncated header, and would do without limits the work that was refused.
_FINAL_REASONS = frozenset(
    (
        "zero_byte",
        "not_dicom",
        "bad_gzip",
        "truncated",
        "header_too_large",
        "too_deep",
        "zero_padding",
    )
)


def _read_one(path: str, size: int, out: ElementColumns, limits: Limits) -> _Outcome:
    """Read one file's header into ``out``; every failure becomes an outcome, never an exception."""
    if size == 0:
        return _failed("zero_byte", "the file is empty")
    problems: list[tuple[str, str, bool]] = []
    reader = "fast"
    try:
        try:
            header, gz = read_header(path, out, limits)
        except Unsupported as why:
            log.debug("%s: pydicom reads it (%s)", path, why)
            reader = "pydicom"
            from curation.crawler.pydicom_reader import read_with_pydicom  # pydicom: only if used

            header, gz = read_with_pydicom(path, out, limits)
        except DicomReadError as fast_error:
            if fast_error.reason in _FINAL_REASONS:
                raise
            # pydicom is more forgiving of some malformations; keep the fast reader's diagnosis.
            from curation.crawler.pydicom_reader import read_with_pydicom

            try:
                header, gz = read_with_pydicom(path, out, limits)
            except DicomReadError:
                raise fast_error from None
            reader = "pydicom"
            problems.append((fast_error.reason, fast_error.message + " (read by pydicom)", True))
    except DicomReadError as exc:
        return _failed(exc.reason, exc.message, reader)
    except PermissionError as exc:
        return _failed("permission_denied", f"cannot open for reading: {exc.strerror}", reader)
    except FileNotFoundError:
        return _failed("vanished", "file disappeared before it was read", reader)
    except OSError as exc:
        return _failed("os_error", str(exc), reader)
    except Exception as exc:  # a bug in a reader must not stop the crawl; report it as such
        # The path stays in crawl_errors (inside the catalog): folder names can be patient IDs.
        log.exception(
            "file %016x: unexpected error while reading (see crawl_errors)", file_id(path)
        )
        return _failed("internal", f"{type(exc).__name__}: {exc}", reader)
    if header.media_storage_sop_class == DICOMDIR_CLASS:
        return _Outcome("skipped", "dicomdir", None, gz, reader, [])
    if not header.sop_instance_uid:
        return _failed(
            "no_sop_instance_uid", "the dataset has no SOPInstanceUID (0008,0018)", reader
        )
    problems += [(reason, message, True) for reason, message in header.caveats]
    if header.pixel_data_offset is not None and header.pixel_data_length is not None:
        end = header.pixel_data_offset + header.pixel_data_length
        if not gz and end > size:
            message = f"pixel data needs {end} bytes, the file has {size}; header cataloged"
            problems.append(("truncated", message, True))
    return _Outcome("ok", None, header, gz, reader, problems)


_NEVER_DICOM = _Outcome("skipped", "not_dicom", None, False, None, [])


def read_batch(
    items: Sequence[tuple[str, int, int]], crawl_id: int, limits: Limits = DEFAULT_LIMITS
) -> Batch:
    """Read ``(path, size, mtime_ns)`` files into Arrow tables staged for the catalog."""
    # The rows are acyclic lists and strings freed by reference counting; pausing the cyclic
    # collector, which would otherwise scan them again and again, makes reading ~25% faster.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return read_files(items, crawl_id, limits)
    finally:
        if gc_was_enabled:
            gc.enable()


_READER_DIED = _failed(
    "reader_died",
    "the reader process died while reading this file, and again when it was read alone "
    "(killed, e.g. by the kernel's out-of-memory killer, or crashed)",
)


def read_files(
    items: Sequence[tuple[str, int, int]], crawl_id: int, limits: Limits, died: bool = False
) -> Batch:
    from curation.crawler.elements import to_tables as element_tables

    pick = compiled.picker(_RAW_INSTANCE_KEYS)
    files: dict[str, list[object]] = {n: [] for n in FILE_SCHEMA.names}
    errors: dict[str, list[object]] = {n: [] for n in ERROR_SCHEMA.names}
    cols = ElementColumns()
    ids: list[int] = []
    counts: list[int] = []
    rows: list[list[str | None]] = []
    for path, size, mtime_ns in items:
        fid = file_id(path)
        text, raw = text_path(path)
        mark = len(cols)
        if died:
            outcome = _READER_DIED
        elif discover.never_dicom(os.path.basename(path)):
            outcome = _NEVER_DICOM
        else:
            outcome = _read_one(path, size, cols, limits)
        header = outcome.header
        sop = header.sop_instance_uid if header else None
        row: tuple[object, ...] = (fid, text, raw, size, mtime_ns, outcome.status, outcome.reason,
                                   sop, outcome.reader, outcome.gzip, crawl_id)  # fmt: skip
        for column, value in zip(files.values(), row, strict=True):
            column.append(value)
        for p_reason, message, cataloged in outcome.problems:
            row = (fid, text, p_reason, message, cataloged, crawl_id)
            for column, value in zip(errors.values(), row, strict=True):
                column.append(value)
        if header is None or outcome.status != "ok":
            cols.truncate(mark)  # read, but not an instance (a DICOMDIR, no SOP Instance UID)
            continue
        start, end = header.start, len(cols)
        ids.append(fid)
        counts.append(end - start)
        # The instance's attributes as text; DuckDB types them in bulk (catalog.instances_sql).
        rows.append(pick(cols.seq_path, cols.tag, cols.value, start, end))
    instances: dict[str, Any] = {"file_id": ids, "n_elements": counts}
    # One transpose per batch instead of a Python loop per column.
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(_RAW_INSTANCE_KEYS)
    instances.update(zip((n for n, _, _ in _RAW_INSTANCE_COLUMNS), columns, strict=True))
    elements, names = element_tables(cols, ids, counts)
    return Batch(
        pa.table(files, schema=FILE_SCHEMA),
        elements,
        names,
        pa.table(errors, schema=ERROR_SCHEMA),
        pa.table(instances, schema=RAW_INSTANCE_SCHEMA),
    )


# -- other sources (curation.pacs): rows read elsewhere, written by the same path ----------------


def make_batch(
    files: dict[str, list[Any]],
    errors: dict[str, list[Any]],
    cols: ElementColumns,
    ids: list[int],
    counts: list[int],
) -> Batch:
    """A :class:`Batch` of instances whose element rows were read elsewhere than from files.

    ``files`` and ``errors`` hold the columns of ``files`` and ``crawl_errors`` rows (every name
    of their schemas); ``cols`` the element rows of the ``ids`` instances, ``counts`` rows each,
    in order. The instance attributes are picked from them as a file's are.
    """
    from curation.crawler.elements import to_tables as element_tables

    pick = compiled.picker(_RAW_INSTANCE_KEYS)
    rows, start = [], 0
    for n in counts:
        rows.append(pick(cols.seq_path, cols.tag, cols.value, start, start + n))
        start += n
    instances: dict[str, Any] = {"file_id": ids, "n_elements": counts}
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(_RAW_INSTANCE_KEYS)
    instances.update(zip((n for n, _, _ in _RAW_INSTANCE_COLUMNS), columns, strict=True))
    elements, names = element_tables(cols, ids, counts)
    return Batch(
        pa.table(files, schema=FILE_SCHEMA),
        elements,
        names,
        pa.table(errors, schema=ERROR_SCHEMA),
        pa.table(instances, schema=RAW_INSTANCE_SCHEMA),
    )
