"""Crawl folder trees into the catalog: incremental, parallel, never stopped by a bad file.

The crawl lists the roots (stat only), compares size and mtime with the ``files`` table, and reads
only new or changed files with the fast header reader (pydicom as fallback): in this process with
one worker, in reader processes with more. Readers hand Arrow batches to a writer thread, which
commits them to DuckDB in transactions of ``commit_every`` files: killing a crawl leaves a
consistent catalog, and the next crawl carries on where it stopped. Typed tables (``instances``,
``frames``) are derived from each transaction's rows in bulk by DuckDB; ``series``, ``studies`` and
``patients`` are rebuilt once at the end.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import multiprocessing
import os
import queue
import select
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing import forkserver
from multiprocessing.synchronize import Semaphore as SemaphoreType
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
from tqdm import tqdm

from curation import __version__, catalog
from curation.crawler import compiled, discover, parts
from curation.crawler.reader import (
    DEFAULT_LIMITS,
    ElementColumns,
    Header,
    Limits,
    Unsupported,
    read_header,
)
from curation.errors import CatalogError, CurationError, DicomReadError, InputError
from curation.schema import PER_FRAME_FUNCTIONAL_GROUPS

# Reader processes start with these imported (numpy, pydicom, pyarrow, the header walker).
_READER_MODULES = [
    "curation.crawler.run",
    "curation.crawler.elements",
    "curation.crawler.pydicom_reader",
]

log = logging.getLogger("curation.crawler")

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
#: Files handed to a worker at once, and files written to DuckDB per transaction.
TASK_FILES = 128
COMMIT_FILES = 2048
#: Batches read and waiting for the writer (see _Writer).
_QUEUE_BATCHES = 6
#: DuckDB's memory limit while a crawl writes (see crawl()).
CRAWL_MEMORY_LIMIT = "512MB"
#: Reasons worth retrying on the next crawl even when size and mtime did not change.
TRANSIENT_REASONS = ("permission_denied", "vanished", "os_error")

_FILE_SCHEMA = pa.schema(
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
_RAW_INSTANCE_SCHEMA = pa.schema(
    [("file_id", pa.uint64()), ("n_elements", pa.int64())]
    + [(name, pa.string()) for name, _, _ in _RAW_INSTANCE_COLUMNS]
)
_ERROR_SCHEMA = pa.schema(
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
    elements: pa.Table
    errors: pa.Table
    instances: pa.Table  # raw text of the instance attributes, typed by DuckDB


@dataclass(frozen=True)
class CrawlSummary:
    """What a crawl did, as printed at its end."""

    db: str
    crawl_id: int
    n_seen: int
    n_read: int
    n_unchanged: int
    n_removed: int
    n_ok: int
    n_skipped: int
    n_errors: int
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Instances in the catalog under the crawled roots after the crawl (new and unchanged).
    n_cataloged: int = -1

    @property
    def files_per_second(self) -> float:
        """Files seen per second of wall-clock time (a re-crawl counts the files it only stats)."""
        return self.n_seen / self.seconds if self.seconds > 0 else float("inf")

    def __str__(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.errors_by_reason.items())) or "none"
        nothing = "; nothing cataloged under the roots" if self.n_cataloged == 0 else ""
        return (
            f"crawl {self.crawl_id} of {self.db}: {self.n_seen} files seen, {self.n_read} read "
            f"({self.n_ok} cataloged, {self.n_skipped} skipped, {self.n_errors} with problems), "
            f"{self.n_unchanged} unchanged, {self.n_removed} removed; "
            f"{self.seconds:.1f} s, {self.files_per_second:,.0f} files/s; problems by reason: {reasons}"
            f"{nothing}"
        )


def text_path(path: str) -> tuple[str, bytes | None]:
    """A path as catalog text, and its bytes when they are not UTF-8 (else None).

    File names are bytes; one that is not valid UTF-8 (``caf\\xe9.dcm`` from a Latin-1 system)
    reaches Python with surrogate escapes, which no UTF-8 text column takes. Its text shows each
    such byte as ``\\xNN``; the bytes are kept beside it, so the file can be opened again.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(path)
        return raw.decode("utf-8", "backslashreplace"), raw
    return path, None


def file_id(path: str) -> int:
    """Stable 64-bit id of a path (the same path always gets the same id)."""
    return int.from_bytes(
        hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little"
    )


# -- reading (runs in worker processes) ------------------------------------------------------------


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
        return _read_batch(items, crawl_id, limits)
    finally:
        if gc_was_enabled:
            gc.enable()


_READER_DIED = _failed(
    "reader_died",
    "the reader process died while reading this file, and again when it was read alone "
    "(killed, e.g. by the kernel's out-of-memory killer, or crashed)",
)


def _read_batch(
    items: Sequence[tuple[str, int, int]], crawl_id: int, limits: Limits, died: bool = False
) -> Batch:
    from curation.crawler.elements import to_table as element_table

    pick = compiled.picker(_RAW_INSTANCE_KEYS)
    files: dict[str, list[object]] = {n: [] for n in _FILE_SCHEMA.names}
    errors: dict[str, list[object]] = {n: [] for n in _ERROR_SCHEMA.names}
    cols = ElementColumns()
    ids: list[int] = []
    counts: list[int] = []
    sops: list[str] = []
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
        sops.append(sop or "")
        counts.append(end - start)
        # The instance's attributes as text; DuckDB types them in bulk (catalog.instances_sql).
        rows.append(pick(cols.seq_path, cols.tag, cols.value, start, end))
    instances: dict[str, Any] = {"file_id": ids, "n_elements": counts}
    # One transpose per batch instead of a Python loop per column.
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(_RAW_INSTANCE_KEYS)
    instances.update(zip((n for n, _, _ in _RAW_INSTANCE_COLUMNS), columns, strict=True))
    elements = element_table(cols, ids, sops, counts)
    return Batch(
        pa.table(files, schema=_FILE_SCHEMA),
        elements,
        pa.table(errors, schema=_ERROR_SCHEMA),
        pa.table(instances, schema=_RAW_INSTANCE_SCHEMA),
    )


# -- writing (main process) --------------------------------------------------------------------


def _has_frames(elements: pa.Table) -> bool:
    """Whether a batch holds a per-frame functional groups sequence, the source of ``frames`` rows.

    Most files hold none; letting DuckDB find that out by scanning every element row of the
    transaction again cost ~5 % of the writer's time on dense MR headers, this test ~0.1 %.
    """
    import numpy as np  # not at import: `curation crawl` with nothing to read needs no numpy

    tags = elements.column("tag_int")
    return any(
        bool(np.any(chunk.to_numpy(zero_copy_only=False) == PER_FRAME_FUNCTIONAL_GROUPS))
        for chunk in tags.chunks
    )


def _write(con: catalog.duckdb.DuckDBPyConnection, parts: list[Batch]) -> None:
    """Write read batches to the catalog in one transaction."""
    staged = {
        "batch_files": pa.concat_tables([p.files for p in parts]),
        "batch_elements": pa.concat_tables([p.elements for p in parts]),
        "batch_errors": pa.concat_tables([p.errors for p in parts]),
        "batch_instances": pa.concat_tables([p.instances for p in parts]),
    }
    for name, table in staged.items():
        con.register(name, table)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("INSERT INTO files BY NAME SELECT * FROM batch_files")
        con.execute("INSERT INTO crawl_errors BY NAME SELECT * FROM batch_errors")
        con.execute(f"INSERT INTO elements BY NAME {catalog.elements_sql('batch_elements')}")
        con.execute(
            f"INSERT INTO instances BY NAME {catalog.instances_sql('batch_instances', 'batch_files')}"
        )
        if _has_frames(staged["batch_elements"]):
            con.execute(
                f"INSERT INTO frames BY NAME {catalog.frames_sql('batch_elements', 'batch_files')}"
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        for name in staged:
            con.unregister(name)


class _Writer:
    """Writes batches to the catalog in a thread of its own, in transactions of ``commit_every`` files.

    DuckDB releases the GIL while it inserts, so reading the next files (in this process or in the
    workers) overlaps with writing the previous ones. The queue is bounded: a slow disk slows the
    readers down instead of filling memory.
    """

    def __init__(self, con: catalog.duckdb.DuckDBPyConnection, commit_every: int) -> None:
        self.con = con
        self.commit_every = commit_every
        # A few batches: with the compiled walker the writer (DuckDB) is the slower stage, so a
        # longer queue only holds more rows in memory (dense MR headers, 1 worker: room for 20
        # batches peaked at 731 MB RSS, room for 6 at 630 MB, as fast). With the pure-Python
        # walker the readers are the slower stage and the queue stays short anyway.
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=_QUEUE_BATCHES)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="curation-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        buffered: list[Batch] = []
        n = 0
        try:
            while True:
                part = self.queue.get()
                if part is not None:
                    buffered.append(part)
                    n += part.files.num_rows
                if buffered and (part is None or n >= self.commit_every):
                    _write(self.con, buffered)
                    log.debug("committed %d files", n)
                    buffered, n = [], 0
                if part is None:
                    return
        except BaseException as exc:
            self.error = exc
            while True:  # unblock a producer waiting on a full queue, then stop
                try:
                    if self.queue.get(timeout=0.1) is None:
                        return
                except queue.Empty:
                    if not self.thread.is_alive():
                        return

    def put(self, part: Batch) -> None:
        """Queue a batch for writing; raises what the writer met."""
        if self.error is not None:
            raise self.error
        self.queue.put(part)

    def close(self) -> None:
        """Write what is buffered and wait for the writer; raises what it met."""
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """After an interruption: let the writer finish its current transaction and end."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()


def _chunks(items: list[tuple[str, int, int]], n: int) -> Iterator[list[tuple[str, int, int]]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _yield_to_writer() -> None:
    """Readers run at a lower priority than the process that writes the catalog.

    The writer is the stage every file passes through; when readers take all cores it starves and
    the whole crawl slows down (measured on 2 cores: 2 readers at equal priority were 2x slower than
    1). At a lower priority the readers use what the writer leaves.
    """
    with contextlib.suppress(OSError):
        os.nice(5)


def _start_reader(crawl_pid: int, closing: SemaphoreType) -> None:
    """Start-up of a reader process: lower priority, and an end when the crawl's process ends or
    its pool closes (see :func:`_closing`)."""
    _yield_to_writer()
    _exit_with(crawl_pid)
    threading.Thread(target=_exit_on, args=(closing,), name="curation-pool-watch",
                     daemon=True).start()  # fmt: skip


def _exit_on(closing: SemaphoreType) -> None:
    closing.acquire()
    os._exit(0)


def _exit_with(pid: int) -> None:
    """End this process when process ``pid`` ends, however it ends (SIGKILL included).

    A reader waits for work on a pipe whose other end it also holds, so it never sees the crawl's
    process go; without this, the readers, the fork server and the resource tracker outlived a
    killed crawl by minutes. A thread blocked on a pidfd (Linux) costs nothing; elsewhere it polls.
    """
    try:
        fd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while True:
                time.sleep(1.0)
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
        os._exit(1)

    threading.Thread(target=watch, name="curation-crawl-watch", daemon=True).start()


@contextlib.contextmanager
def _safe_sys_path() -> Iterator[None]:
    """Processes started here do not put the current directory first on ``sys.path``.

    The fork server is started as ``python -c ...``, which would: a folder named ``curation`` in
    the current directory (a checkout seen from its parent) then shadowed the installed package in
    every reader process, and each died at start-up.
    """
    saved = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["PYTHONSAFEPATH"]
        else:
            os.environ["PYTHONSAFEPATH"] = saved


_START_FAILED = (
    "reader processes die as they start (the error above says why). A script that calls "
    'crawl() with workers > 1 must guard its top level with `if __name__ == "__main__":` '
    "(each reader process imports the script again); or crawl with workers=1"
)


class _ReaderPool(NamedTuple):
    pool: ProcessPoolExecutor
    #: Released once per reader when the pool closes: each reader then ends (see _closing). A
    #: semaphore, not an Event: Event.set() waits for every waiting process to wake, and a reader
    #: killed or already gone never does (a crawl hung so).
    closing: SemaphoreType
    workers: int


def _reader_pool(workers: int) -> _ReaderPool:
    # forkserver: children never inherit the parent's open DuckDB connection or its threads.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_READER_MODULES)
    with _safe_sys_path():
        forkserver.ensure_running()
    closing = ctx.Semaphore(0)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_start_reader,
                               initargs=(os.getpid(), closing))  # fmt: skip
    return _ReaderPool(pool, closing, workers)


@contextlib.contextmanager
def _closing(readers: _ReaderPool) -> Iterator[ProcessPoolExecutor]:
    """The pool, shut down on leaving with its reader processes ended, even stuck ones.

    A reader killed while it waited for work dies holding the lock of the pool's task queue: the
    other readers then wait for that lock forever, and a plain shutdown waits for them forever (as
    a crawl did here). No work is left for them when this ends, so each ends itself when the
    pool's ``closing`` semaphore is released (a thread of its own waits for it, lock or no lock).
    """
    try:
        yield readers.pool
    finally:
        readers.pool.shutdown(wait=False, cancel_futures=True)
        for _ in range(readers.workers):  # never blocks, whoever is alive to take it
            readers.closing.release()
        readers.pool.shutdown(wait=True)


def _results(
    items: list[tuple[str, int, int]], crawl_id: int, workers: int, limits: Limits
) -> Iterator[Batch]:
    """Read batches, in this process (1 worker) or in a pool with a bounded number in flight.

    A reader process that dies (the kernel's out-of-memory killer, a crash) loses the batches in
    flight, not the crawl: the pool is replaced and each lost batch is read again alone in the
    pool; a batch whose reader dies again is read file by file, so that the file that kills its
    reader is known. It is recorded as ``reader_died`` and the crawl goes on.
    """
    if workers <= 1:
        for chunk in _chunks(items, TASK_FILES):
            yield read_batch(chunk, crawl_id, limits)
        return
    todo = deque(_chunks(items, TASK_FILES))
    alone: deque[list[tuple[str, int, int]]] = deque()  # lost batches, to read one at a time
    replacing = False
    while todo or alone:
        with _closing(_reader_pool(workers)) as pool:
            if replacing:
                try:
                    pool.submit(os.getpid).result()
                except BrokenProcessPool:
                    raise CurationError(_START_FAILED) from None
            in_flight: dict[Future[Batch], list[tuple[str, int, int]]] = {}
            suspect: list[tuple[str, int, int]] | None = None  # the batch read alone, if any
            try:
                while todo or alone or in_flight:
                    if alone or suspect is not None:
                        if suspect is None:
                            suspect = alone.popleft()
                            in_flight[pool.submit(read_batch, suspect, crawl_id, limits)] = suspect
                    else:
                        # Bounded memory: at most a few batches per worker in flight.
                        while todo and len(in_flight) < 3 * workers:
                            chunk = todo.popleft()
                            in_flight[pool.submit(read_batch, chunk, crawl_id, limits)] = chunk
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for f in done:
                        batch = f.result()
                        del in_flight[f]
                        suspect = None
                        yield batch
            except BrokenProcessPool:
                replacing = True
                if suspect is not None and len(suspect) == 1:
                    log.warning("file %016x killed its reader process (see crawl_errors)",
                                file_id(suspect[0][0]))  # fmt: skip
                    yield _read_batch(suspect, crawl_id, limits, died=True)
                elif suspect is not None:
                    log.warning("a reader process died again; its %d files are read one by one",
                                len(suspect))  # fmt: skip
                    alone.extendleft([item] for item in reversed(suspect))
                else:
                    lost = []
                    for f, chunk in in_flight.items():
                        if f.done() and not f.cancelled() and f.exception() is None:
                            yield f.result()  # finished before the pool broke
                        else:
                            lost.append(chunk)
                    log.warning("a reader process died; the %d batches in flight are read again, "
                                "one at a time", len(lost))  # fmt: skip
                    alone.extend(lost)
            except BaseException:
                for f in in_flight:
                    f.cancel()
                raise


def crawl(
    paths: str | Path | Iterable[str | Path],
    db: str | Path,
    *,
    workers: int | None = None,
    progress: bool | None = None,
    commit_every: int = COMMIT_FILES,
    limits: Limits = DEFAULT_LIMITS,
) -> CrawlSummary:
    """Crawl ``paths`` (folders or files) into the catalog ``db``.

    Parameters
    ----------
    paths
        Folders (walked recursively, following symlinks once) and/or files.
    db
        The catalog DuckDB file; created if missing.
    workers
        Reader processes; default: all cores. ``1`` reads in this process. Reader processes are
        started with the ``forkserver`` method: a script that calls ``crawl`` with several workers
        must guard its top level with ``if __name__ == "__main__":``, as with any multiprocessing.
    progress
        Show a progress bar; default: only when stderr is a terminal.
    commit_every
        Files written per transaction. Smaller loses less work to a kill, larger is faster.
    limits
        Work limits per file (header bytes, data elements, sequence depth; see
        :class:`curation.crawler.reader.Limits`). A file over a limit is a ``crawl_errors`` row
        (``header_too_large``, ``too_deep``), not read again until it changes.

    Returns
    -------
    CrawlSummary
        Counts, timing and problems by reason. Unreadable files are rows of ``crawl_errors``.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # This process is a reader starting up, and importing the caller's script ran it again.
        raise CurationError(
            "crawl() ran again in a reader process as it started: the script that calls it has "
            'no `if __name__ == "__main__":` guard around its top level (each reader process '
            "imports the script). Put the crawl under that guard, or use workers=1"
        )
    t0 = time.perf_counter()
    roots = resolve_roots(paths)
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    con = catalog.connect(db, create=True)
    try:
        if parts.is_parquet_backed(con):
            raise CatalogError(
                f"{db}: its instances, frames and elements are Parquet parts written by "
                "`crawl --engine dask`; crawl it with --engine dask"
            )
        catalog.ensure_tables(con, dictionary=False)
        _add_path_bytes(con)
        crawl_id = con.sql("SELECT coalesce(max(crawl_id), 0) + 1 FROM crawls").fetchall()[0][0]
        con.execute(
            "INSERT INTO crawls (crawl_id, started_at, roots, curation_version, workers) VALUES (?, ?, ?, ?, ?)",
            [crawl_id, datetime.now(), [text_path(r)[0] for r in roots], __version__, workers],
        )
        listing = discover.walk(roots)
        to_read, n_unchanged, n_removed = _plan(con, roots, listing)
        log.info(
            "crawl %d: %d files under %d root(s), %d to read, %d unchanged, %d removed, "
            "%d reached again through a second link (not read twice)",
            crawl_id, len(listing), len(roots), len(to_read), n_unchanged, n_removed,
            listing.n_duplicate_links,
        )  # fmt: skip
        _record_listing_problems(con, listing, crawl_id)
        if to_read:  # a crawl with nothing to read starts without pydicom's dictionaries
            catalog.ensure_dictionary(con)
        # The one line saying that the (slower) pure-Python walker is in use.
        if to_read and (note := compiled.describe()):
            log.info("%s", note)
        statuses: Counter[str] = Counter()
        problems: Counter[str] = Counter()
        bar = tqdm(total=len(to_read), unit="file", disable=None if progress is None else not progress,
                   desc="crawl", smoothing=0.1)  # fmt: skip
        # Many small inserts: one DuckDB thread measured ~1.7x faster than the default here, and
        # leaves the other cores to the readers. The aggregates below get every thread again.
        con.execute("SET threads = 1")
        # DuckDB's buffer pool otherwise grows towards 80 % of RAM as the catalog grows (measured
        # 1.6 GB RSS at 112k files); the crawl only appends, so a small pool costs no speed.
        con.execute(f"SET memory_limit = '{CRAWL_MEMORY_LIMIT}'")
        writer = _Writer(con, commit_every)
        try:
            for part in _results(to_read, crawl_id, workers, limits):
                writer.put(part)
                statuses.update(part.files.column("status").to_pylist())
                problems.update(part.errors.column("reason").to_pylist())
                bar.update(part.files.num_rows)
            writer.close()
        finally:
            writer.stop()
            bar.close()
        con.execute("RESET threads")
        con.execute("RESET memory_limit")
        if to_read or n_removed or _aggregates_stale(con):
            catalog.rebuild_aggregates(con)
        summary = finish(
            con, db, crawl_id, roots, listing, len(to_read), n_unchanged, n_removed, statuses,
            problems, t0,
        )  # fmt: skip
    finally:
        con.close()
    return summary


def resolve_roots(paths: str | Path | Iterable[str | Path]) -> list[str]:
    """The crawl roots in their canonical form; raises InputError when none or one is missing."""
    roots = [str(paths)] if isinstance(paths, str | Path) else [str(p) for p in paths]
    if not roots:
        raise InputError("no paths to crawl")
    missing = [r for r in roots if not os.path.exists(r)]
    if missing:
        raise InputError(f"path does not exist: {missing[0]}")
    # One canonical form for every path of the catalog: the root with its symlinks resolved (as
    # Path.resolve() gives it), then the names walked below it. The same folder crawled through
    # two links is so one set of files, and other steps compare paths with resolve().
    return [os.path.realpath(r) for r in roots]


def finish(
    con: catalog.duckdb.DuckDBPyConnection,
    db: str | Path,
    crawl_id: int,
    roots: list[str],
    listing: discover.Listing,
    n_read: int,
    n_unchanged: int,
    n_removed: int,
    statuses: Counter[str],
    problems: Counter[str],
    t0: float,
) -> CrawlSummary:
    """Count what the crawl did, record it in ``crawls``, and return it as a summary."""
    for _path, reason, _msg in listing.problems:
        problems[reason] += 1
    n_errors = con.sql(
        "SELECT count(DISTINCT file_id) FROM crawl_errors WHERE crawl_id = ?", params=[crawl_id]
    ).fetchall()[0][0]
    text_roots = [text_path(r)[0] for r in roots]
    n_cataloged = con.sql(
        """SELECT count(*) FROM files WHERE status = 'ok' AND (list_contains($roots, path)
           OR list_bool_or(list_transform($roots, lambda r: starts_with(path, r || '/'))))""",
        params={"roots": [r.rstrip("/") for r in text_roots]},
    ).fetchall()[0][0]
    seconds = time.perf_counter() - t0
    con.execute(
        """UPDATE crawls SET finished_at = ?, n_seen = ?, n_read = ?, n_unchanged = ?,
           n_removed = ?, n_errors = ?, seconds = ? WHERE crawl_id = ?""",
        [datetime.now(), len(listing), n_read, n_unchanged, n_removed, n_errors, seconds, crawl_id],
    )
    summary = CrawlSummary(
        db=str(db),
        crawl_id=crawl_id,
        n_seen=len(listing),
        n_read=n_read,
        n_unchanged=n_unchanged,
        n_removed=n_removed,
        n_ok=statuses["ok"],
        n_skipped=statuses["skipped"],
        n_errors=n_errors,
        n_cataloged=n_cataloged,
        errors_by_reason=dict(problems),
        seconds=seconds,
    )
    log.debug("%s", summary)
    if n_cataloged == 0:
        log.warning(
            "nothing cataloged under %s: %d file(s) seen, none a readable DICOM instance%s",
            ", ".join(text_roots),
            len(listing),
            " (see crawl_errors)" if n_errors else "",
        )
    return summary


def _add_path_bytes(con: catalog.duckdb.DuckDBPyConnection) -> None:
    """Catalogs written before ``path_bytes`` existed get the column rather than fail."""
    have = con.sql(
        """SELECT table_name FROM information_schema.columns
           WHERE column_name = 'path_bytes' AND table_name IN ('files', 'instances')"""
    ).fetchall()
    if len(have) == 2:
        return
    con.execute("ALTER TABLE files ADD COLUMN IF NOT EXISTS path_bytes BLOB")
    con.execute("ALTER TABLE instances ADD COLUMN IF NOT EXISTS path_bytes BLOB")
    con.execute(
        """UPDATE instances i SET path_bytes = f.path_bytes FROM files f
           WHERE i.file_id = f.file_id AND f.path_bytes IS NOT NULL"""
    )


def _aggregates_stale(con: catalog.duckdb.DuckDBPyConnection) -> bool:
    """True when an earlier crawl stopped before rebuilding series/studies/patients.

    A catalog without instances has nothing to aggregate: an empty crawl into a new catalog so
    skips the rebuild (~0.1 s, a third of that crawl's start-up).
    """
    stale = con.sql(
        """SELECT EXISTS (SELECT 1 FROM crawls WHERE finished_at IS NULL
                          AND crawl_id < (SELECT max(crawl_id) FROM crawls))
               OR (NOT EXISTS (SELECT 1 FROM series) AND EXISTS (SELECT 1 FROM instances))"""
    ).fetchall()[0][0]
    return bool(stale)


def _array(values: Sequence[object], type_: pa.DataType) -> pa.Array:
    # pa.array() of Python values imports pandas (~0.25 s, pyarrow 26) even when there are none;
    # an empty listing so costs no pandas.
    return pa.array(values, type_) if len(values) else pa.nulls(0, type_)


def _drop_stale(con: catalog.duckdb.DuckDBPyConnection) -> None:
    """Delete the rows of the files in temp table ``stale_files`` (in the open transaction)."""
    for table in ("elements", "instances", "frames", "crawl_errors", "files"):
        con.execute(f"DELETE FROM {table} WHERE file_id IN (SELECT file_id FROM stale_files)")


def _plan(
    con: catalog.duckdb.DuckDBPyConnection,
    roots: list[str],
    listing: discover.Listing,
    drop: Callable[[catalog.duckdb.DuckDBPyConnection], None] = _drop_stale,
) -> tuple[list[tuple[str, int, int]], int, int]:
    """Compare the listing with ``files``: drop what vanished or changed; return what to read.

    ``drop`` deletes the rows of the files listed in temp table ``stale_files``, inside the
    transaction (a catalog whose big tables are Parquet parts rewrites the parts; see
    :func:`curation.crawler.parts.drop_files`).
    """
    try:
        paths = _array(listing.paths, pa.string())
        raw = pa.nulls(len(listing), pa.binary())
    except UnicodeEncodeError:  # a name that is not UTF-8: text and bytes (see text_path)
        texts, raws = zip(*map(text_path, listing.paths), strict=True)
        paths, raw = pa.array(texts, pa.string()), pa.array(raws, pa.binary())
    seen = pa.table(
        [paths, raw, _array(listing.sizes, pa.int64()), _array(listing.mtimes_ns, pa.int64())],
        names=["path", "path_bytes", "size", "mtime_ns"],
    )
    con.register("seen_files", seen)
    roots = [text_path(r)[0] for r in roots]
    prefixes = [r.rstrip("/") + "/" for r in roots]
    same = "s.path = f.path AND s.path_bytes IS NOT DISTINCT FROM f.path_bytes"
    try:
        con.execute("BEGIN TRANSACTION")
        # Files under the roots that are gone, changed, or failed for a reason worth a retry.
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE stale_files AS
            SELECT f.file_id, s.path IS NULL AS removed
            FROM files f LEFT JOIN seen_files s ON {same}
            WHERE (list_contains(?::VARCHAR[], f.path)
                   OR list_bool_or(list_transform(?::VARCHAR[], lambda p: starts_with(f.path, p))))
              AND (s.path IS NULL OR s.size <> f.size OR s.mtime_ns <> f.mtime_ns
                   OR (f.status = 'error' AND f.reason IN {TRANSIENT_REASONS}))""",
            [roots, prefixes],
        )
        drop(con)
        n_removed = con.sql("SELECT count(*) FROM stale_files WHERE removed").fetchall()[0][0]
        con.execute("COMMIT")
        found = con.sql(
            f"""SELECT s.path, s.size, s.mtime_ns, s.path_bytes FROM seen_files s
                ANTI JOIN files f ON {same} ORDER BY s.path, s.path_bytes"""
        ).fetchall()
        rows = [(p if b is None else os.fsdecode(b), size, mtime) for p, size, mtime, b in found]
        n_unchanged = len(listing) - len(rows)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("seen_files")
    return rows, n_unchanged, n_removed


def _record_listing_problems(
    con: catalog.duckdb.DuckDBPyConnection, listing: discover.Listing, crawl_id: int
) -> None:
    """Directories that could not be listed, as crawl_errors rows (replacing older ones)."""
    if not listing.problems:
        return
    rows = [(file_id(p), text_path(p)[0], r, m, False, crawl_id) for p, r, m in listing.problems]
    con.execute(
        "DELETE FROM crawl_errors WHERE path IN (SELECT unnest(?::VARCHAR[]))",
        [[r[1] for r in rows]],
    )
    con.executemany("INSERT INTO crawl_errors VALUES (?, ?, ?, ?, ?, ?)", rows)


# -- other sources (curation.pacs): rows read elsewhere, written by the same path ----------------


def make_batch(
    files: dict[str, list[Any]],
    errors: dict[str, list[Any]],
    cols: ElementColumns,
    ids: list[int],
    sops: list[str],
    counts: list[int],
) -> Batch:
    """A :class:`Batch` of instances whose element rows were read elsewhere than from files.

    ``files`` and ``errors`` hold the columns of ``files`` and ``crawl_errors`` rows (every name
    of their schemas); ``cols`` the element rows of the ``ids`` instances, ``counts`` rows each,
    in order. The instance attributes are picked from them as a file's are.
    """
    from curation.crawler.elements import to_table as element_table

    pick = compiled.picker(_RAW_INSTANCE_KEYS)
    rows, start = [], 0
    for n in counts:
        rows.append(pick(cols.seq_path, cols.tag, cols.value, start, start + n))
        start += n
    instances: dict[str, Any] = {"file_id": ids, "n_elements": counts}
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(_RAW_INSTANCE_KEYS)
    instances.update(zip((n for n, _, _ in _RAW_INSTANCE_COLUMNS), columns, strict=True))
    return Batch(
        pa.table(files, schema=_FILE_SCHEMA),
        element_table(cols, ids, sops, counts),
        pa.table(errors, schema=_ERROR_SCHEMA),
        pa.table(instances, schema=_RAW_INSTANCE_SCHEMA),
    )


def write_batches(con: catalog.duckdb.DuckDBPyConnection, parts: list[Batch]) -> None:
    """Write batches to the catalog in one transaction, as a crawl's writer does."""
    _write(con, parts)
