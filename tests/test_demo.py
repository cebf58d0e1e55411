"""The README's first command: `curation demo` runs the whole path on the shipped sample data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest

from curation.cli.main import main
from curation.deid import scan

#: The identifiers no output of the demo may hold (in any of the spellings the scanner knows).
DEMO_IDENTIFIERS = (
    "PatientID",
    "PatientName",
    "AccessionNumber",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
)


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
    leaks = identifier_leaks(out)
    assert leaks == {}, {f: sorted(v)[:5] for f, v in leaks.items()}
    # A second demo is incremental: the crawl reads nothing again.
    assert main(["-q", "demo", "--out", str(out), "--workers", "2"]) == 0
    assert " 0 read " in capsys.readouterr().out


def _output_text(path: Path) -> str:
    """What an output says, as text (a parquet file: its columns and rows)."""
    if path.suffix == ".parquet":
        frame = pl.read_parquet(path)
        return " ".join(frame.columns) + "\n" + str(frame.rows())
    text = path.read_bytes().decode("utf-8", "replace")
    if path.suffix == ".html":  # without the inlined plotly.js library (it holds no data)
        text = re.sub(
            r"<script type=\"text/javascript\">.*?</script>", "", text, count=1, flags=re.S
        )
    return text


def identifier_leaks(out: Path) -> dict[str, set[str]]:
    """Every identifier value of the demo's catalog found in one of its outputs, by output file.

    Everything under ``out`` but the catalog itself, the key and the pseudonymous links to the
    archive's DICOM files (``cohort/files/``: the images themselves, which the manifest points to).
    Searched by the de-identification's leak scanner (:mod:`curation.deid.scan`): every spelling,
    any case, whole words only (a PatientID "dicom" of the real subset is also part of the rule id
    ``instance.not_dicom``), from 3 characters on (the real subset has a PatientID "DEV").
    """
    with duckdb.connect(str(out / "catalog.duckdb"), read_only=True) as con:
        needles = scan.identifiers(con, keywords=DEMO_IDENTIFIERS, min_length=3)
    assert len(needles) > 2000  # every UID of 2,217 instances, and the patients
    assert set(needles.values()) == set(DEMO_IDENTIFIERS)
    outputs = [
        p
        for p in out.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and not p.name.startswith("catalog.duckdb")
        and p.name != "pseudonym.key"
        and "files" not in p.relative_to(out).parts[:2]
    ]
    assert {"qc.json", "qc.xml", "validate.xml", "report.html", "manifest.parquet"} <= {
        p.name for p in outputs
    }
    found: dict[str, set[str]] = {}
    for p in outputs:
        hits = {n.text.decode() for n, _ in scan.scan_bytes(_output_text(p).encode(), needles)}
        if hits:
            found[str(p.relative_to(out))] = hits
    return found
