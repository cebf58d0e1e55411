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

import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from curation import __version__, catalog
from curation.crawler import compiled, discover, parts
from curation.crawler.discover import file_id, text_path
from curation.crawler.reader import DEFAULT_LIMITS, Limits
from curation.errors import CatalogError, CurationError, InputError

# Light on purpose: a crawl with nothing to read imports neither pyarrow (with numpy) nor tqdm nor
# the reader processes' modules (see benchmarks/startup.py); they come with the first file to read.

log = logging.getLogger("curation.crawler")

#: Files written to DuckDB per transaction (shared among the writer threads).
COMMIT_FILES = 2048


def default_writers(workers: int) -> int:
    """Writer threads when none are asked for: 2 where a core is left beside the readers, else 1.

    Measured (docs/reader.md, "The writer"): with 1 reader on 2 cores a second writer gave 1.18x
    the files/s on dense MR headers (0.97x on small synthetic ones); with 2 readers on 2 cores,
    1.00x and 0.90x: the reader processes already take the cores.
    """
    return 2 if (os.cpu_count() or 1) > workers else 1


#: DuckDB's memory limit while a crawl writes (see crawl()).
CRAWL_MEMORY_LIMIT = "512MB"
#: Reasons worth retrying on the next crawl even when size and mtime did not change.
TRANSIENT_REASONS = ("permission_denied", "vanished", "os_error")


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


def crawl(
    paths: str | Path | Iterable[str | Path],
    db: str | Path,
    *,
    workers: int | None = None,
    progress: bool | None = None,
    commit_every: int = COMMIT_FILES,
    limits: Limits = DEFAULT_LIMITS,
    writers: int | None = None,
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
        Files written per transaction, shared among the writers (each commits ``commit_every /
        writers``: the rows held in memory stay those of one writer). Smaller loses less work to
        a kill, larger is faster.
    limits
        Work limits per file (header bytes, data elements, sequence depth; see
        :class:`curation.crawler.reader.Limits`). A file over a limit is a ``crawl_errors`` row
        (``header_too_large``, ``too_deep``), not read again until it changes.
    writers
        Threads appending to the catalog, each through a connection of its own (DuckDB runs
        their appends side by side); default: 2 where there are more cores than ``workers``, else
        1 (:func:`default_writers`; docs/reader.md, "The writer").

    Returns
    -------
    CrawlSummary
        Counts, timing and problems by reason. Unreadable files are rows of ``crawl_errors``.
    """
    # A reader process has multiprocessing imported; this process need not import it (~10 ms).
    mp = sys.modules.get("multiprocessing")
    if mp is not None and getattr(mp.current_process(), "_inheriting", False):
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
        statuses: Counter[str] = Counter()
        problems: Counter[str] = Counter()
        if to_read:
            _read_and_write(con, to_read, crawl_id, workers, progress, commit_every, limits,
                            statuses, problems, writers)  # fmt: skip
        if to_read or n_removed or _aggregates_stale(con):
            catalog.rebuild_aggregates(con)
        summary = finish(
            con, db, crawl_id, roots, listing, len(to_read), n_unchanged, n_removed, statuses,
            problems, t0,
        )  # fmt: skip
    finally:
        con.close()
    return summary


def _read_and_write(
    con: catalog.duckdb.DuckDBPyConnection,
    to_read: list[tuple[str, int, int]],
    crawl_id: int,
    workers: int,
    progress: bool | None,
    commit_every: int,
    limits: Limits,
    statuses: Counter[str],
    problems: Counter[str],
    writers: int | None = None,
) -> None:
    """Read ``to_read`` in reader processes (or here) and write the batches to the catalog."""
    from tqdm import tqdm

    from curation.crawler.pool import results
    from curation.crawler.writer import Writer

    catalog.ensure_dictionary(con)  # only now: a crawl with nothing to read needs no pydicom
    # The one line saying that the (slower) pure-Python walker is in use.
    if note := compiled.describe():
        log.info("%s", note)
    bar = tqdm(total=len(to_read), unit="file", disable=None if progress is None else not progress,
               desc="crawl", smoothing=0.1)  # fmt: skip
    # Many small inserts: one DuckDB thread measured ~1.7x faster than the default here, and
    # leaves the other cores to the readers. The aggregates below get every thread again.
    con.execute("SET threads = 1")
    # DuckDB's buffer pool otherwise grows towards 80 % of RAM as the catalog grows (measured
    # 1.6 GB RSS at 112k files); the crawl only appends, so a small pool costs no speed.
    con.execute(f"SET memory_limit = '{CRAWL_MEMORY_LIMIT}'")
    n = max(1, default_writers(workers) if writers is None else writers)
    writer = Writer(con, max(1, commit_every // n), n)
    try:
        for part in results(to_read, crawl_id, workers, limits):
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
    n_cataloged = files_under(con, roots, "ok")
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


def files_under(con: catalog.duckdb.DuckDBPyConnection, roots: list[str], status: str) -> int:
    """Rows of ``files`` with ``status`` under the canonical ``roots`` (a root itself or below it)."""
    n = con.sql(
        """SELECT count(*) FROM files WHERE status = $status AND (list_contains($roots, path)
           OR list_bool_or(list_transform($roots, lambda r: starts_with(path, r || '/'))))""",
        params={"roots": [text_path(r)[0].rstrip("/") for r in roots], "status": status},
    ).fetchall()[0][0]
    return int(n)


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


def _register_listing(con: catalog.duckdb.DuckDBPyConnection, listing: discover.Listing) -> None:
    """The listing as view ``seen_files`` (path, path_bytes, size, mtime_ns) of the connection."""
    if not len(listing):  # an empty folder: no pyarrow, no numpy (see benchmarks/startup.py)
        con.execute(
            """CREATE OR REPLACE TEMP VIEW seen_files AS SELECT NULL::VARCHAR AS path,
               NULL::BLOB AS path_bytes, NULL::BIGINT AS size, NULL::BIGINT AS mtime_ns LIMIT 0"""
        )
        return
    import pyarrow as pa

    try:
        paths = pa.array(listing.paths, pa.string())
        raw = pa.nulls(len(listing), pa.binary())
    except UnicodeEncodeError:  # a name that is not UTF-8: text and bytes (see text_path)
        texts, raws = zip(*map(text_path, listing.paths), strict=True)
        paths, raw = pa.array(texts, pa.string()), pa.array(raws, pa.binary())
    seen = pa.table(
        [paths, raw, pa.array(listing.sizes, pa.int64()), pa.array(listing.mtimes_ns, pa.int64())],
        names=["path", "path_bytes", "size", "mtime_ns"],
    )
    con.register("seen_files", seen)


def _drop_stale(con: catalog.duckdb.DuckDBPyConnection) -> None:
    """Delete the rows of the files in temp table ``stale_files`` (in the open transaction)."""
    catalog.drop_file_rows(con, "stale_files")


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
    _register_listing(con, listing)
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
        con.unregister("seen_files")  # the Arrow table
        con.execute("DROP VIEW IF EXISTS seen_files")  # the empty listing's view
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
