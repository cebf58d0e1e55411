"""The catalog contract is documented: every table and column, and the docs page is current."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path

import duckdb
import pytest

import curation
from curation import catalog, schema
from curation.errors import CatalogError
from curation.tables import ALL_TABLES

from .conftest import ROOT


def test_every_table_and_column_has_a_description() -> None:
    tables = {t.name: t for t in ALL_TABLES}
    assert {
        "files",
        "instances",
        "frames",
        "elements",
        "series",
        "studies",
        "patients",
        "crawl_errors",
    } <= set(tables)
    missing = [
        f"{t.name}.{c.name}"
        for t in tables.values()
        for c in t.columns
        if len(c.description.strip()) < 8
    ]
    missing += [t.name for t in tables.values() if len(t.description.strip()) < 8]
    assert not missing, f"undocumented: {missing}"


def test_the_table_list_names_every_declared_table_once() -> None:
    # A table declared in any module but missing from curation.tables would go undocumented.
    declared = {}
    for info in pkgutil.walk_packages(curation.__path__, "curation."):
        if ".cli." in info.name or info.name.endswith("__main__"):
            continue
        for value in vars(importlib.import_module(info.name)).values():
            if isinstance(value, schema.Table):
                declared[value.name] = value
    names = [t.name for t in ALL_TABLES]
    assert len(names) == len(set(names))
    assert sorted(declared) == sorted(names)


def test_column_names_follow_the_contract() -> None:
    # DICOM attributes keep their keyword; computed columns are snake_case.
    from pydicom.datadict import keyword_dict

    for t in ALL_TABLES:
        for c in t.columns:
            assert c.name in keyword_dict or c.name == c.name.lower(), f"{t.name}.{c.name}"


def test_docs_page_is_current() -> None:
    page = (ROOT / "docs" / "catalog.md").read_text()
    assert page == schema.render_markdown(ALL_TABLES), (
        "regenerate: python -m curation.schema > docs/catalog.md"
    )


def test_created_tables_match_their_declaration() -> None:
    con = catalog.connect(":memory:")
    catalog.ensure_tables(con)
    for t in schema.CATALOG_TABLES:
        cols = [r[0] for r in con.sql(f"DESCRIBE {t.name}").fetchall()]
        assert cols == t.column_names, t.name


def test_opened_closes_a_path_and_leaves_a_connection_open(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    catalog.connect(db, create=True).close()
    with catalog.opened(db) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(duckdb.ConnectionException):
        con.execute("SELECT 1")
    with catalog.opened(db, read_only=True) as ro, pytest.raises(duckdb.InvalidInputException):
        ro.execute("INSERT INTO t VALUES (1)")
    mine = catalog.connect(db)
    with catalog.opened(mine) as con:
        assert con is mine
    assert mine.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
    mine.close()
    with pytest.raises(CatalogError, match="no catalog here"), catalog.opened(tmp_path / "typo"):
        pass
    assert not (tmp_path / "typo").exists()


def test_has_table_sees_tables_views_and_temporary_tables() -> None:
    con = catalog.connect(":memory:")
    con.execute("CREATE TABLE a (x INTEGER)")
    con.execute("CREATE VIEW b AS SELECT 1 AS x")
    con.execute("CREATE TEMP TABLE c (x INTEGER)")
    assert [catalog.has_table(con, n) for n in ("a", "b", "c", "d")] == [True, True, True, False]


_T = schema.Table(
    "t_demo",
    "demo row",
    "A table for the test.",
    (schema.col("a", "INTEGER", "first column"), schema.col("b", "VARCHAR", "second column")),
    select="SELECT 'x' || n AS b, n AS a FROM range(3) r(n)",
)


def test_ensure_drops_a_stale_table_only_when_asked() -> None:
    con = catalog.connect(":memory:")
    con.execute("CREATE TABLE t_demo (a INTEGER)")
    con.execute("INSERT INTO t_demo VALUES (7)")
    _T.ensure(con)
    assert [r[0] for r in con.sql("DESCRIBE t_demo").fetchall()] == ["a"]
    _T.ensure(con, drop_stale=True)
    assert [r[0] for r in con.sql("DESCRIBE t_demo").fetchall()] == ["a", "b"]
    assert con.sql("SELECT count(*) FROM t_demo").fetchall() == [(0,)]


def test_rebuild_replaces_the_rows_with_its_select_by_column_name() -> None:
    con = catalog.connect(":memory:")
    _T.ensure(con)
    con.execute("INSERT INTO t_demo VALUES (99, 'old')")
    _T.rebuild(con)
    assert con.sql("SELECT a, b FROM t_demo ORDER BY a").fetchall() == [
        (0, "x0"),
        (1, "x1"),
        (2, "x2"),
    ]
    bare = schema.Table("t_bare", "row", "No select.", _T.columns)
    with pytest.raises(ValueError, match="no select"):
        bare.rebuild(con)


def test_a_temporary_table_rebuilds_on_a_read_only_catalog_and_stays_out_of_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "c.duckdb"
    catalog.connect(db, create=True).close()
    temp = dataclasses.replace(_T, name="t_temp", temporary=True)
    with catalog.opened(db, read_only=True) as con:
        temp.rebuild(con)
        temp.rebuild(con)  # again: replaced, not appended
        assert con.sql("SELECT count(*) FROM t_temp").fetchall() == [(3,)]
    with catalog.opened(db, read_only=True) as con:
        assert not catalog.has_table(con, "t_temp")
