"""Reader processes: batches of files read in a pool, surviving readers that die.

One worker reads in the crawl's own process; more start a ``forkserver`` pool whose processes run
at a lower priority than the writer, end with the crawl's process however it ends, and are replaced
when one dies (the batch it held is read again, alone, then file by file).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import forkserver
from multiprocessing.synchronize import Semaphore as SemaphoreType
from typing import NamedTuple

from curation.crawler.batches import Batch, read_batch, read_files
from curation.crawler.discover import file_id
from curation.crawler.reader import Limits
from curation.errors import CurationError

log = logging.getLogger("curation.crawler")

# Reader processes start with these imported (numpy, pydicom, pyarrow, the header walker).
_READER_MODULES = [
    "curation.crawler.batches",
    "curation.crawler.elements",
    "curation.crawler.pydicom_reader",
]

#: Files handed to a reader at once.
TASK_FILES = 128


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


def results(
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
                    yield read_files(suspect, crawl_id, limits, died=True)
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
