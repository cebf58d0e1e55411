"""Notebooks are shipped without outputs and executed by the test suite (nbmake, from
``notebooks/``); stored outputs would go stale, would carry values (and images) of whatever data
they last ran on, and plotly's would embed megabytes of JavaScript each (docs/notebooks.md).

Each starts with one parameter cell (catalog, data roots, cohort spec) and finds the sample data
from the package, not from the working directory; notebook 02 is also run from the repository root
here, on a catalog of real files, and what it shows is checked for identifiers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import ROOT, SAMPLE_DATA

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PARAMETERS = ("CATALOG", "DATA_ROOTS", "COHORT_SPEC")


def _code(nb: dict[str, object]) -> list[dict[str, object]]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]  # type: ignore[attr-defined, index]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_stored_outputs(path: Path) -> None:
    nb = json.loads(path.read_text())
    stored = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and c.get("outputs")]
    assert not stored, f"{path}: cells {stored} keep outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_one_parameter_cell_and_no_relative_paths(path: Path) -> None:
    cells = _code(json.loads(path.read_text()))
    first = "".join(cells[0]["source"])  # type: ignore[arg-type]
    assert "parameters" in cells[0]["metadata"].get("tags", []), path  # type: ignore[attr-defined]
    for name in PARAMETERS:
        assert re.search(rf"^{name} = ", first, re.M), f"{path}: the parameter cell sets no {name}"
    for i, cell in enumerate(cells[1:], 1):
        src = "".join(cell["source"])  # type: ignore[arg-type]
        assert not re.search(rf"^({'|'.join(PARAMETERS)}) = ", src, re.M), (path, i)
        # the working directory is the repository root or notebooks/: neither may be assumed
        assert not re.search(r"""Path\(["']\.\.["']\)|["']\.\./|Path\.cwd\(\)""", src), (path, i)


def test_every_issue_notebook_is_here() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"01_catalog.ipynb", "02_quality.ipynb", "03_cohort.ipynb", "04_pixels.ipynb"} <= names


def test_quality_notebook_runs_from_the_root_and_shows_no_identifier(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    from curation import catalog, crawl

    db = tmp_path / "catalog.duckdb"
    crawl(SAMPLE_DATA / "real", db, workers=1, progress=False)
    with catalog.opened(db, read_only=True) as con:
        ids = {
            str(v)
            for (v,) in con.sql(
                """SELECT DISTINCT x FROM (
                    SELECT unnest([PatientID, StudyInstanceUID, SeriesInstanceUID]) AS x
                    FROM instances) WHERE length(x) >= 4"""
            ).fetchall()
        }
    assert ids
    nb = nbformat.read(ROOT / "notebooks" / "02_quality.ipynb", as_version=4)
    params = next(c for c in nb.cells if c.cell_type == "code")
    params.source = params.source.replace("CATALOG = None", f"CATALOG = {str(db)!r}")
    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(ROOT)}}).execute()
    shown = json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])
    assert "series_key" in shown  # series are shown, by pseudonym
    leaked = sorted(x for x in ids if x in shown)
    assert not leaked, f"notebook 02 shows identifiers: {leaked[:5]}"
