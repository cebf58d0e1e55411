"""The crawl on a Dask cluster: the same reader in tasks on many machines, each writing Parquet parts.

The crawl's process (the *driver*) lists the roots and plans against ``files`` exactly as a local
crawl does, then shards the files to read into tasks of ``task_files`` files. A task runs on a Dask
worker: it reads its files with the crawler's reader (:func:`curation.crawler.batches.read_batch`),
types the instance and frame rows with the catalog's own SQL in an in-memory DuckDB, and writes one
Parquet part per table (:mod:`curation.crawler.parts` has the layout). It hands back only the small
rows (``files``, ``crawl_errors``); the driver commits them with the task's ``crawl_tasks`` row in
one transaction and moves the parts into place. The catalog's ``instances``, ``frames`` and
``elements`` are views over the parts.

Faults: a worker that dies mid-task costs the task, which Dask runs again elsewhere and which
writes the same part names again (nothing lost, nothing twice). A task whose worker dies each time
it runs it (Dask gives up after ``distributed.scheduler.allowed-failures`` deaths) is split, down
to the one file that kills its reader: a ``reader_died`` row, as in a local crawl. A scheduler
that goes away stops the crawl with what was committed kept; the next crawl completes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow as pa

from curation import __version__, catalog, schema
from curation.crawler import batches, compiled, discover, parts, pool, run
from curation.crawler.reader import DEFAULT_LIMITS, Limits
from curation.errors import CatalogError, CurationError, InputError

if TYPE_CHECKING:
    import duckdb
    from distributed import Client

log = logging.getLogger("curation.crawler")

#: Files per task: one part per table and task. 1,024 dense MR files make an elements part of
#: ~660,000 rows (a few MB): few enough parts for 10 million files (~10,000 per table), and a
#: task short enough (seconds) that a lost worker costs little.
TASK_FILES = 1024
#: Tasks in flight per worker thread: enough to keep workers busy while the driver commits,
#: few enough that the scheduler does not hold millions of file names at once.
_IN_FLIGHT_PER_THREAD = 3

#: Seconds to wait for a first worker to join the scheduler.
WAIT_FOR_WORKERS = 120.0

Item = tuple[str, int, int]


class TaskResult(NamedTuple):
    """What a task hands back to the driver: the small rows, and what it wrote."""

    task: int
    files: pa.Table
    errors: pa.Table
    n_instances: int
    n_elements: int
    n_frames: int
    seconds: float
    worker: str


def crawl_task(
    items: list[Item], crawl_id: int, task: int, root: str, limits: Limits = DEFAULT_LIMITS
) -> TaskResult:
    """Read ``items`` ((path, size, mtime_ns) files) and write the task's staged Parquet parts.

    Runs on a Dask worker (or anywhere: it needs only the files and the parts folder). The files
    are read in batches of the local crawl's size, so a worker holds one batch's rows at a time;
    each batch becomes a row group of every part.
    """
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    compiled.select()  # the compiled walker when built (a worker may not have imported it yet)
    con = catalog.connect(":memory:")
    con.execute("SET threads = 1")
    base = Path(root)
    targets = {t.name: parts.staged(base, crawl_id, t.name, task) for t in parts.PART_TABLES}
    writers: dict[str, pq.ParquetWriter] = {}
    temps: dict[str, Path] = {}
    files, errors = [], []
    counts: Counter[str] = Counter()
    try:
        for start in range(0, max(len(items), 1), pool.TASK_FILES):
            batch = batches.read_batch(items[start : start + pool.TASK_FILES], crawl_id, limits)
            files.append(batch.files)
            errors.append(batch.errors)
            con.register("batch_files", batch.files)
            con.register("batch_instances", batch.instances)
            con.register("batch_elements", batch.elements)
            con.register("batch_names", batch.names)
            rows = {
                "instances": con.sql(
                    catalog.instances_sql("batch_instances", "batch_files")
                ).to_arrow_table(),
                "frames": con.sql(
                    catalog.frames_sql("batch_elements", "batch_files")
                ).to_arrow_table(),
                "elements": con.sql(
                    catalog.staged_elements_sql("batch_elements", "batch_names", "batch_files")
                ).to_arrow_table(),
            }
            for name, table in rows.items():
                if name not in writers:
                    targets[name].parent.mkdir(parents=True, exist_ok=True)
                    temps[name] = parts.temporary(targets[name])
                    writers[name] = pq.ParquetWriter(
                        temps[name], table.schema, compression=parts.COMPRESSION
                    )
                writers[name].write_table(table)
                counts[name] += table.num_rows
        for name, writer in writers.items():
            writer.close()
            os.replace(temps[name], targets[name])
        writers.clear()
    finally:
        for name, writer in writers.items():  # cut short: no half part is left under its name
            with contextlib.suppress(Exception):
                writer.close()
            with contextlib.suppress(FileNotFoundError):
                temps[name].unlink()
        con.close()
    return TaskResult(
        task,
        pa.concat_tables(files),
        pa.concat_tables(errors),
        counts["instances"],
        counts["elements"],
        counts["frames"],
        time.perf_counter() - t0,
        _worker_address(),
    )


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return ""


def _died(items: list[Item], crawl_id: int, task: int) -> TaskResult:
    """The result of a one-file task whose worker died each time it read it."""
    batch = batches.read_files(items, crawl_id, DEFAULT_LIMITS, died=True)
    return TaskResult(task, batch.files, batch.errors, 0, 0, 0, 0.0, "")


# -- the driver ----------------------------------------------------------------------------------


def prepare(con: duckdb.DuckDBPyConnection, db: str | Path) -> Path:
    """Make ``con`` a Parquet-backed catalog (or check it is one); finish a stopped crawl's moves.

    Raises
    ------
    CatalogError
        The catalog was crawled locally: its big tables are in the DuckDB file.
    """
    root = parts.root_of(db)
    have = catalog.table_names(con)
    if "instances" in have and not parts.is_parquet_backed(con):
        raise CatalogError(
            f"{db}: this catalog was crawled locally (its tables are in the DuckDB file); "
            "crawl it without --engine dask, or crawl into a new catalog"
        )
    con.execute("BEGIN TRANSACTION")
    try:
        if "instances" not in have:
            parts.create_views(con, root)
        for table in schema.CATALOG_TABLES:
            if table not in parts.PART_TABLES and table not in parts.LOCAL_ONLY:
                table.ensure(con)
        parts.CRAWL_TASKS.ensure(con)
        con.execute("ALTER TABLE files ADD COLUMN IF NOT EXISTS path_bytes BLOB")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    moved, deleted = parts.roll_forward(con, root)
    if moved or deleted:
        log.info(
            "a stopped crawl left %d committed task(s) to move into place and %d uncommitted "
            "part(s), now deleted",
            moved,
            deleted,
        )
    parts.create_views(con, root)
    return root


def _drop(root: Path) -> Any:
    def drop(con: duckdb.DuckDBPyConnection) -> None:
        # Parts first: a crash before the transaction commits leaves the files rows, so the next
        # crawl finds the same files stale again and drops them again (a no-op).
        parts.drop_files(con, root)
        for table in ("crawl_errors", "files"):
            con.execute(f"DELETE FROM {table} WHERE file_id IN (SELECT file_id FROM stale_files)")

    return drop


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler``, else of a LocalCluster of ``workers`` processes."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError(
            "--engine dask needs Dask distributed: pip install 'curation[scale]'"
        ) from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"no Dask scheduler answers at {scheduler}: {exc}") from exc
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.close()
        return
    n = max(1, workers if workers is not None else (os.cpu_count() or 1))
    # One thread per worker process: the reader holds the GIL, so threads would not add speed.
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _commit(con: duckdb.DuckDBPyConnection, root: Path, crawl_id: int, result: TaskResult) -> None:
    """Commit one task: its rows and its crawl_tasks row in one transaction, then its parts."""
    con.register("task_files", result.files)
    con.register("task_errors", result.errors)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("INSERT INTO files BY NAME SELECT * FROM task_files")
        con.execute("INSERT INTO crawl_errors BY NAME SELECT * FROM task_errors")
        con.execute(
            "INSERT INTO crawl_tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [crawl_id, result.task, result.files.num_rows, result.n_instances,
             result.n_elements, result.n_frames, result.seconds, result.worker, datetime.now()],
        )  # fmt: skip
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("task_files")
        con.unregister("task_errors")
    parts.move_task(root, crawl_id, result.task)


_SCHEDULER_GONE = (
    "the Dask scheduler went away during crawl {crawl_id} ({why}); the {n} task(s) committed "
    "are in the catalog, and crawling again completes it"
)


def crawl(
    paths: str | Path | Iterable[str | Path],
    db: str | Path,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    task_files: int = TASK_FILES,
    progress: bool | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> run.CrawlSummary:
    """Crawl ``paths`` into the catalog ``db`` on a Dask cluster (``curation crawl --engine dask``).

    Parameters
    ----------
    paths
        Folders and/or files, as for :func:`curation.crawler.run.crawl`. Every worker must see
        them under the same paths (network storage mounted alike).
    db
        The catalog DuckDB file, created if missing. Its Parquet parts go to the folder beside it
        named after it plus ``.parts`` (:func:`curation.crawler.parts.root_of`), which every
        worker must be able to write.
    scheduler
        Address of a running Dask scheduler (``tcp://host:8786``); default: a LocalCluster.
    workers
        Worker processes of the LocalCluster (default: all cores); ignored with ``scheduler``.
    task_files
        Files per task, and so per Parquet part.
    progress
        Show a progress bar; default: only when stderr is a terminal.
    limits
        Work limits per file, as for a local crawl.

    Returns
    -------
    CrawlSummary
        As a local crawl's.

    Raises
    ------
    CurationError
        The scheduler went away; what was committed stays, and the next crawl completes it.
    """
    t0 = time.perf_counter()
    if task_files < 1:
        raise InputError(f"task_files must be at least 1, not {task_files}")
    roots = run.resolve_roots(paths)
    con = catalog.connect(db, create=True)
    try:
        root = prepare(con, db)
        crawl_id = con.sql("SELECT coalesce(max(crawl_id), 0) + 1 FROM crawls").fetchall()[0][0]
        con.execute(
            "INSERT INTO crawls (crawl_id, started_at, roots, curation_version, workers) VALUES (?, ?, ?, ?, ?)",
            [crawl_id, datetime.now(), [discover.text_path(r)[0] for r in roots], __version__, 0],
        )
        listing = discover.walk(roots)
        to_read, n_unchanged, n_removed = run._plan(con, roots, listing, drop=_drop(root))
        if n_removed or n_unchanged < len(listing):
            parts.create_views(con, root)  # a part emptied by the drop is gone
        log.info(
            "crawl %d (dask): %d files under %d root(s), %d to read, %d unchanged, %d removed",
            crawl_id, len(listing), len(roots), len(to_read), n_unchanged, n_removed,
        )  # fmt: skip
        run._record_listing_problems(con, listing, crawl_id)
        statuses: Counter[str] = Counter()
        problems: Counter[str] = Counter()
        if to_read:
            catalog.ensure_dictionary(con)
            with _client(scheduler, workers) as client:
                _run_tasks(con, client, root, crawl_id, to_read, task_files, limits, progress,
                           statuses, problems)  # fmt: skip
        parts.create_views(con, root)
        staging = root / parts.STAGING / f"crawl-{crawl_id:06d}"
        if staging.is_dir():  # a task that ran twice may have left a second copy
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
        if to_read or n_removed or run._aggregates_stale(con):
            catalog.rebuild_aggregates(con)
        summary = run.finish(
            con, db, crawl_id, roots, listing, len(to_read), n_unchanged, n_removed, statuses,
            problems, t0,
        )  # fmt: skip
    finally:
        con.close()
    return summary


def _run_tasks(
    con: duckdb.DuckDBPyConnection,
    client: Client,
    root: Path,
    crawl_id: int,
    to_read: list[Item],
    task_files: int,
    limits: Limits,
    progress: bool | None,
    statuses: Counter[str],
    problems: Counter[str],
) -> None:
    """Submit the tasks (a bounded number in flight), commit each as it completes."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker
    from tqdm import tqdm

    try:
        client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS)
    except TimeoutError:
        raise InputError(
            f"no Dask worker joined the scheduler at {client.scheduler.address} within "
            f"{WAIT_FOR_WORKERS:.0f} s"
        ) from None
    threads = max(1, sum(client.nthreads().values()))
    con.execute("UPDATE crawls SET workers = ? WHERE crawl_id = ?", [threads, crawl_id])
    todo: list[list[Item]] = [
        to_read[i : i + task_files] for i in range(0, len(to_read), task_files)
    ]
    todo.reverse()  # popped from the end: tasks start in listing order
    next_task = 0
    items_of: dict[Any, tuple[int, list[Item]]] = {}
    n_committed = 0
    views_ready = bool(parts.parts_of(root, "instances"))

    def submit() -> Any:
        nonlocal next_task
        chunk = todo.pop()
        future = client.submit(
            crawl_task, chunk, crawl_id, next_task, str(root), limits,
            key=f"curation-crawl-{crawl_id}-task-{next_task}", pure=False,
        )  # fmt: skip
        items_of[future] = (next_task, chunk)
        next_task += 1
        return future

    bar = tqdm(total=len(to_read), unit="file", disable=None if progress is None else not progress,
               desc="crawl", smoothing=0.1)  # fmt: skip
    pending = as_completed(
        [submit() for _ in range(min(len(todo), _IN_FLIGHT_PER_THREAD * threads))]
    )
    # Single files whose worker died while they were in its hands. Dask counts a worker's death
    # against every task it held, queued ones too, so one of them may be innocent: each is read
    # again once the rest is done, alone on the cluster, and only a death then is its own.
    suspects: list[list[Item]] = []

    def commit(result: TaskResult) -> None:
        nonlocal n_committed, views_ready
        _commit(con, root, crawl_id, result)
        n_committed += 1
        if not views_ready:  # the views see the parts from the first one on (see view_sql)
            parts.create_views(con, root)
            views_ready = True
        statuses.update(result.files.column("status").to_pylist())
        problems.update(result.errors.column("reason").to_pylist())
        bar.update(result.files.num_rows)

    def failed(exc: Exception, future: Any, task: int) -> CurationError:
        why = f"{type(exc).__name__}: {exc}"
        if future.status == "error":  # the task itself raised (a bug, a full disk)
            return CurationError(
                f"crawl task {task} failed on its worker ({why}); the {n_committed} "
                "task(s) committed are in the catalog, and crawling again completes it"
            )
        return CurationError(_SCHEDULER_GONE.format(crawl_id=crawl_id, why=why, n=n_committed))

    try:
        for future in pending:
            task, chunk = items_of.pop(future)
            try:
                result: TaskResult = future.result()
            except KilledWorker:
                # Its worker died each time: split it, down to the file that kills its reader.
                if len(chunk) == 1:
                    suspects.append(chunk)
                else:
                    half = len(chunk) // 2
                    todo.extend([chunk[half:], chunk[:half]])
                    log.warning("task %d killed its workers; its %d files are read in halves",
                                task, len(chunk))  # fmt: skip
                while todo and len(items_of) < _IN_FLIGHT_PER_THREAD * threads:
                    pending.add(submit())
                continue
            except Exception as exc:
                raise failed(exc, future, task) from exc
            commit(result)
            future.release()
            while todo and len(items_of) < _IN_FLIGHT_PER_THREAD * threads:
                pending.add(submit())
        for chunk in suspects:
            todo.append(chunk)
            future = submit()
            task, _ = items_of.pop(future)
            try:
                result = future.result()
            except KilledWorker:
                log.warning(
                    "a file killed its Dask worker each time it was read (see crawl_errors)"
                )
                result = _died(chunk, crawl_id, task)
            except Exception as exc:
                raise failed(exc, future, task) from exc
            commit(result)
            future.release()
    finally:
        bar.close()
