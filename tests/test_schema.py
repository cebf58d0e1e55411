"""The catalog contract is documented: every table and column, and the docs page is current."""

from __future__ import annotations

from curation import catalog, schema

from .conftest import ROOT


def test_every_table_and_column_has_a_description() -> None:
    tables = schema.all_tables()
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


def test_column_names_follow_the_contract() -> None:
    # DICOM attributes keep their keyword; computed columns are snake_case.
    from pydicom.datadict import keyword_dict

    for t in schema.all_tables().values():
        for c in t.columns:
            assert c.name in keyword_dict or c.name == c.name.lower(), f"{t.name}.{c.name}"


def test_docs_page_is_current() -> None:
    page = (ROOT / "docs" / "catalog.md").read_text()
    assert page == schema.render_markdown(), (
        "regenerate: python -m curation.schema > docs/catalog.md"
    )


def test_created_tables_match_their_declaration() -> None:
    con = catalog.connect(":memory:")
    catalog.ensure_tables(con)
    for t in schema.CATALOG_TABLES:
        cols = [r[0] for r in con.sql(f"DESCRIBE {t.name}").fetchall()]
        assert cols == t.column_names, t.name
