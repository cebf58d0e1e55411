"""The README's first command: `curation demo` runs the whole path on the shipped sample data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest

from curation.cli.main import main


def test_demo_runs_the_whole_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--out", str(out), "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    for step in ("pixels:", "qc:", "cohort:", "validate:", "report:"):
        assert step in printed, step
    with duckdb.connect(str(out / "catalog.duckdb"), read_only=True) as con:
        n_instances = con.sql("SELECT count(*) FROM instances").fetchall()[0][0]
        n_findings = con.sql("SELECT count(*) FROM qc_findings").fetchall()[0][0]
        ids = {r[0] for r in con.sql("SELECT DISTINCT PatientID FROM instances").fetchall() if r[0]}
    assert n_instances > 2000 and n_findings > 0
    manifest = pl.read_parquet(out / "cohort" / "manifest.parquet")
    assert manifest.height > 0
    provenance = json.loads((out / "cohort" / "provenance.json").read_text())
    assert provenance
    # What the demo prints and the manifest show pseudonyms, never the patients' IDs.
    # (the archive's own file paths are left out: its folder names may hold IDs, see docs/cohort.md)
    manifest_text = str(manifest.drop("dicom_files").rows())
    for pid in ids:
        token = re.compile(rf"(?<![\w.-]){re.escape(pid)}(?![\w.-])")  # whole token only
        assert not token.search(printed), pid
        assert not token.search(manifest_text), pid
    html = (out / "report.html").read_text()
    assert html.count("<html") == 1 and len(html) > 1_000_000  # self-contained: plotly.js inlined
    # A second demo is incremental: the crawl reads nothing again.
    assert main(["-q", "demo", "--out", str(out), "--workers", "2"]) == 0
    assert " 0 read " in capsys.readouterr().out
