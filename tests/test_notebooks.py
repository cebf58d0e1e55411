"""Notebooks are shipped without outputs: the test suite runs them (nbmake); stored outputs would
only go stale, and could carry images or values of the data they last ran on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_stored_outputs(path: Path) -> None:
    nb = json.loads(path.read_text())
    stored = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and c.get("outputs")]
    assert not stored, f"{path}: cells {stored} keep outputs; clear them before committing"


def test_every_issue_notebook_is_here() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"01_catalog.ipynb", "02_quality.ipynb", "03_cohort.ipynb", "04_pixels.ipynb"} <= names
