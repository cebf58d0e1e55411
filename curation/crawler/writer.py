"""The catalog's writer: read batches into DuckDB, in transactions, in a thread of its own.

Each transaction appends the staged Arrow tables of a few batches to ``files``, ``crawl_errors``
and ``elements``, and derives the typed ``instances`` (and ``frames``) rows from them in bulk.
"""

from __future__ import annotations

import logging
import queue
import threading

import pyarrow as pa

from curation import catalog
from curation.crawler.batches import Batch
from curation.schema import PER_FRAME_FUNCTIONAL_GROUPS

log = logging.getLogger("curation.crawler")

#: Batches read and waiting for the writer (see _Writer).
_QUEUE_BATCHES = 6
#: Held while a writer adds names to ``element_names`` (see write_batches).
_NAMES_LOCK = threading.Lock()


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


def _with_name_ids(con: catalog.duckdb.DuckDBPyConnection, parts: list[Batch]) -> pa.Table:
    """The parts' element rows with their catalog-wide ``name_id``; new names added to the catalog.

    Names go first, in transactions of their own, one writer at a time: a statement begun under
    the lock sees every name committed before it, so no writer thread numbers a (tag, creator,
    VR) another has numbered, which the elements view would count twice. If the crawl stops
    before the rows commit, the names stay: harmless, and used by the next crawl.
    """
    import numpy as np  # not at import: `curation crawl` with nothing to read needs no numpy

    offsets = np.cumsum([0] + [p.names.num_rows for p in parts])
    names = pa.concat_tables(
        p.names.set_column(0, "local_id", pa.array(p.names["local_id"].to_numpy() + off))
        for p, off in zip(parts, offsets.tolist(), strict=False)
    )
    con.register("batch_names", names)
    try:
        with _NAMES_LOCK:
            con.execute(
                f"INSERT INTO element_names BY NAME {catalog.new_element_names_sql('batch_names')}"
            )
            found = con.execute(catalog.element_name_ids_sql("batch_names")).fetchnumpy()
    finally:
        con.unregister("batch_names")
    if len(found["local_id"]) != names.num_rows:
        raise RuntimeError("element_names lacks names the writer has just added")
    name_ids = np.zeros(names.num_rows, dtype=np.uint32)
    name_ids[found["local_id"]] = found["name_id"]
    return pa.concat_tables(
        (
            p.elements.append_column(
                "name_id",
                pa.array(name_ids[p.elements["name_index"].to_numpy() + off], pa.uint32()),
            )
            for p, off in zip(parts, offsets.tolist(), strict=False)
        ),
        promote_options="permissive",  # a batch of 2 GiB+ text has value as large_string
    )


def write_batches(con: catalog.duckdb.DuckDBPyConnection, parts: list[Batch]) -> None:
    """Write read batches to the catalog in one transaction (their new names just before)."""
    staged = {
        "batch_files": pa.concat_tables([p.files for p in parts]),
        "batch_elements": _with_name_ids(con, parts),
        "batch_errors": pa.concat_tables([p.errors for p in parts]),
        "batch_instances": pa.concat_tables([p.instances for p in parts]),
    }
    for name, table in staged.items():
        con.register(name, table)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("INSERT INTO files BY NAME SELECT * FROM batch_files")
        con.execute("INSERT INTO crawl_errors BY NAME SELECT * FROM batch_errors")
        con.execute(
            f"INSERT INTO element_values BY NAME {catalog.element_values_sql('batch_elements')}"
        )
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


class Writer:
    """Writes batches to the catalog in threads of its own, in transactions of ``commit_every`` files.

    DuckDB releases the GIL while it inserts, so reading the next files (in this process or in the
    workers) overlaps with writing the previous ones. The queue is bounded: a slow disk slows the
    readers down instead of filling memory.

    With ``threads`` > 1 each thread appends through a connection of its own (a cursor of
    ``con``): DuckDB runs appends of concurrent transactions to the same table side by side (a
    small append measured finishing while a large one on another connection was still running),
    so the appends, most of a crawl's time, can use more than one core. Each transaction still
    holds whole batches, so a killed crawl leaves whole files in the catalog either way.
    """

    def __init__(
        self, con: catalog.duckdb.DuckDBPyConnection, commit_every: int, threads: int = 1
    ) -> None:
        self.commit_every = commit_every
        # A few batches: with the compiled walker the writer (DuckDB) is the slower stage, so a
        # longer queue only holds more rows in memory (dense MR headers, 1 worker: room for 20
        # batches peaked at 731 MB RSS, room for 6 at 630 MB, as fast). With the pure-Python
        # walker the readers are the slower stage and the queue stays short anyway.
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=_QUEUE_BATCHES)
        self.error: BaseException | None = None
        self.cursors = [con] + [catalog.cursor(con) for _ in range(threads - 1)]
        self.threads = [
            threading.Thread(target=self._run, args=(c,), name=f"curation-writer-{i}", daemon=True)
            for i, c in enumerate(self.cursors)
        ]
        for t in self.threads:
            t.start()

    def _run(self, con: catalog.duckdb.DuckDBPyConnection) -> None:
        buffered: list[Batch] = []
        n = 0
        part: Batch | None = None
        try:
            while True:
                part = self.queue.get()
                if part is not None:
                    buffered.append(part)
                    n += part.files.num_rows
                if buffered and (part is None or n >= self.commit_every):
                    write_batches(con, buffered)
                    log.debug("committed %d files", n)
                    buffered, n = [], 0
                if part is None:
                    return
        except BaseException as exc:
            self.error = exc
            if part is None:  # the failed write was the last: this thread's sentinel is taken
                return
            while True:  # unblock a producer waiting on a full queue, then stop at the sentinel
                if self.queue.get() is None:
                    return

    def put(self, part: Batch) -> None:
        """Queue a batch for writing; raises what a writer thread met."""
        if self.error is not None:
            raise self.error
        self.queue.put(part)

    def close(self) -> None:
        """Write what is buffered and wait for the writer threads; raises what one met."""
        self._end()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """After an interruption: let each thread finish its current transaction and end."""
        if any(t.is_alive() for t in self.threads):
            self._end()

    def _end(self) -> None:
        for _ in self.threads:  # one sentinel each: a thread ends at the first it takes
            self.queue.put(None)
        for t in self.threads:
            t.join()
        for c in self.cursors[1:]:
            c.close()
        del self.cursors[1:]
