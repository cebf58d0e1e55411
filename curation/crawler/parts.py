"""The Parquet part layout of a catalog crawled on a cluster: where parts live, how they become tables.

A crawl with ``--engine dask`` (:mod:`curation.crawler.dask_engine`) keeps the three big tables,
``instances``, ``frames`` and ``elements``, as Parquet files beside the catalog, and DuckDB views
in the catalog read them as one table. The small tables (``files``, ``crawl_errors``, ``crawls``,
the aggregates) and everything later steps write stay in the DuckDB file. The layout::

    catalog.duckdb                      files, crawl_errors, crawl_tasks, ...; views over the parts
    catalog.duckdb.parts/
        instances/crawl-000001-task-000000.parquet     one part per table and task
        frames/crawl-000001-task-000000.parquet
        elements/crawl-000001-task-000000.parquet
        _staging/crawl-000002/<table>/task-000007.parquet   written by workers, not yet committed

A worker writes its task's parts under ``_staging`` (each file under a temporary name, then
renamed). The crawl commits a task by inserting its ``files``, ``crawl_errors`` and ``crawl_tasks``
rows in one DuckDB transaction, then moves its parts into the table folders: the transaction is
the commit point, and a move that a crash cut short is completed by the next crawl
(:func:`roll_forward`), which also deletes staged parts of tasks that never committed. A task that
runs twice (its worker died, or it was thought to) writes the same names again: nothing is counted
twice.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import duckdb

from curation import catalog, schema
from curation.schema import Column, Table

#: The tables kept as Parquet parts (the rest of the catalog is in the DuckDB file).
PART_TABLES: tuple[Table, ...] = (schema.INSTANCES, schema.FRAMES, schema.ELEMENTS)
#: The tables a local crawl keeps ``elements`` in; a part of ``elements`` holds every column itself.
LOCAL_ONLY: tuple[Table, ...] = (schema.ELEMENT_VALUES, schema.ELEMENT_NAMES)
#: Parquet compression of the parts: zstd measured ~2x smaller than snappy on element rows, and
#: DuckDB scans it about as fast (benchmarks/dask_speed.py; docs/scale.md).
COMPRESSION = "zstd"
STAGING = "_staging"

_PART = re.compile(r"^crawl-(\d{6,})-task-(\d{6,})\.parquet$")

#: Committed tasks of cluster crawls (declared with the crawl's tables).
CRAWL_TASKS = schema.CRAWL_TASKS


def root_of(db: str | Path) -> Path:
    """The folder of ``db``'s Parquet parts: the catalog's file name plus ``.parts``, beside it."""
    path = Path(db).absolute()
    return path.with_name(path.name + ".parts")


def part_name(crawl_id: int, task: int) -> str:
    """File name of the part a task writes for each table: crawl and task, sortable."""
    return f"crawl-{crawl_id:06d}-task-{task:06d}.parquet"


def staged(root: Path, crawl_id: int, table: str, task: int) -> Path:
    """Where a worker writes its task's part of ``table`` before the crawl commits it."""
    return root / STAGING / f"crawl-{crawl_id:06d}" / table / f"task-{task:06d}.parquet"


def committed(root: Path, crawl_id: int, table: str, task: int) -> Path:
    """Where a committed part of ``table`` lives."""
    return root / table / part_name(crawl_id, task)


def temporary(path: Path) -> Path:
    """A unique temporary name beside ``path``, never matched by the views' ``*.parquet``."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def is_parquet_backed(con: duckdb.DuckDBPyConnection) -> bool:
    """True when the catalog's ``instances`` is a view over Parquet parts (a cluster crawl made it).

    (``elements`` is a view in every catalog; ``instances`` only in a Parquet-backed one.)
    """
    return catalog.table_kinds(con).get("instances") == "VIEW"


def _cast(c: Column) -> str:
    name = catalog.quote_ident(c.name)
    return f"CAST({name} AS {c.sql_type}) AS {name}"


def view_sql(table: Table, root: Path) -> str:
    """``CREATE OR REPLACE VIEW`` of ``table`` over its parts, typed as the declared table.

    Parquet has no fixed-size arrays (``DOUBLE[3]`` is read back as ``DOUBLE[]``): every column is
    cast to its declared type, so a query sees the same types as in a catalog crawled locally. With
    no part yet, the view is an empty relation of those types (a glob that matches no file is an
    error in DuckDB).
    """
    folder = root / table.name
    if any(folder.glob("*.parquet")):
        source = f"read_parquet({catalog.quote_literal(str(folder / '*.parquet'))})"
        select = ", ".join(_cast(c) for c in table.columns)
        return f"CREATE OR REPLACE VIEW {table.name} AS SELECT {select} FROM {source}"
    empty = ", ".join(
        f"CAST(NULL AS {c.sql_type}) AS {catalog.quote_ident(c.name)}" for c in table.columns
    )
    return f"CREATE OR REPLACE VIEW {table.name} AS SELECT {empty} WHERE false"


def create_views(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """(Re)create the views of the part tables; in the caller's transaction, if any."""
    for table in PART_TABLES:
        con.execute(view_sql(table, root))


def move_task(root: Path, crawl_id: int, task: int) -> None:
    """Move a committed task's staged parts into the table folders (idempotent)."""
    for table in PART_TABLES:
        source = staged(root, crawl_id, table.name, task)
        if source.exists():
            target = committed(root, crawl_id, table.name, task)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)


def roll_forward(con: duckdb.DuckDBPyConnection, root: Path) -> tuple[int, int]:
    """Finish what a crawl that stopped left: move committed tasks' parts, delete the others.

    Returns (tasks moved, staged parts deleted). Temporary files of writes cut short go too.
    """
    staging = root / STAGING
    moved = deleted = 0
    if staging.is_dir():
        done = set(con.sql("SELECT crawl_id, task FROM crawl_tasks").fetchall())
        for crawl_dir in sorted(staging.iterdir()):
            match = re.fullmatch(r"crawl-(\d+)", crawl_dir.name)
            crawl_id = int(match.group(1)) if match else -1
            tasks = {
                int(p.name[5:-8])
                for p in crawl_dir.glob("*/task-*.parquet")
                if p.name[5:-8].isdigit()
            }
            for task in sorted(tasks):
                if (crawl_id, task) in done:
                    move_task(root, crawl_id, task)
                    moved += 1
            for p in crawl_dir.glob("*/*"):
                if p.is_file():
                    deleted += 1
            shutil.rmtree(crawl_dir, ignore_errors=True)
    for table in PART_TABLES:
        for p in (root / table.name).glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return moved, deleted


def parts_of(root: Path, table: str) -> list[Path]:
    """The committed parts of ``table``, sorted (crawl, then task)."""
    return sorted(p for p in (root / table).glob("*.parquet") if _PART.match(p.name))


def drop_files(
    con: duckdb.DuckDBPyConnection, root: Path, stale: str = "stale_files"
) -> Iterable[str]:
    """Rewrite the parts holding rows of the files in table ``stale`` (column ``file_id``) without them.

    Parts are immutable files: a changed or vanished file's rows go by writing each part that has
    them anew (under a temporary name, then renamed over it; an emptied part is deleted). Which
    parts is found from ``instances`` alone: a task writes a file's rows to the same-named part of
    every table. Returns the names of the parts rewritten.
    """
    folder = root / "instances"
    if not any(folder.glob("*.parquet")):
        return []
    names = [
        os.path.basename(r[0])
        for r in con.sql(
            f"""SELECT DISTINCT filename
                FROM read_parquet({catalog.quote_literal(str(folder / "*.parquet"))}, filename = true)
                WHERE file_id IN (SELECT file_id FROM {stale})"""
        ).fetchall()
    ]
    for name in names:
        for table in PART_TABLES:
            part = root / table.name / name
            if not part.exists():
                continue
            tmp = temporary(part)
            source = catalog.quote_literal(str(part))
            n = con.sql(
                f"SELECT count(*) FROM read_parquet({source}) "
                f"WHERE file_id NOT IN (SELECT file_id FROM {stale})"
            ).fetchall()[0][0]
            if n == 0:
                part.unlink()
                continue
            con.execute(
                f"""COPY (SELECT * FROM read_parquet({source})
                          WHERE file_id NOT IN (SELECT file_id FROM {stale}))
                    TO {catalog.quote_literal(str(tmp))} (FORMAT parquet, COMPRESSION {COMPRESSION})"""
            )
            os.replace(tmp, part)
    return names
