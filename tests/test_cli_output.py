"""What the CLI says: each summary once (stdout), not again in the log; results print short."""

from __future__ import annotations

from pathlib import Path

import pytest

from curation import catalog, qc
from curation.cli.main import main

from .conftest import SAMPLE_DATA

REAL = SAMPLE_DATA / "real" / "dcm_qa_philips"


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("cli") / "catalog.duckdb"
    assert main(["crawl", str(REAL), "--db", str(db), "--workers", "1", "--no-progress"]) == 0
    return db


def _said_twice(out: str, err: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip() and line.strip() in err]


def test_each_summary_line_is_printed_once(
    small_catalog: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CURATION_PSEUDONYM_KEY", "test-key-not-for-real-data")
    db = str(small_catalog)
    capsys.readouterr()
    for argv in (
        ["pixels", "--db", db, "--workers", "0", "--no-progress"],
        ["qc", "--db", db],
        ["report", "--db", db, "--out", str(tmp_path / "r.html"), "--thumbnails", "0"],
    ):
        assert main(argv) in (0, 1)
        out, err = capsys.readouterr()
        assert out.strip(), argv
        assert _said_twice(out, err) == [], argv


def test_a_qc_result_prints_a_short_summary(small_catalog: Path, tmp_path: Path) -> None:
    con = catalog.connect(small_catalog)
    result = qc.run(con)
    con.close()
    text, rep = str(result), repr(result)
    assert text.startswith(f"qc run {result.run_id} of suite default: {result.n_findings} finding")
    assert f"from {len(result.rule_runs)} rules" in text
    assert rep.startswith(f"RunResult(run_id={result.run_id}, suite='default'")
    # The suite behind it holds every rule's SQL (tens of KB); neither form carries it.
    assert len(text) < 300 and len(rep) < 300


def test_a_reader_that_closes_the_pipe_is_named_as_standard_output() -> None:
    # `curation qc --list | head -1`: the reader goes away; the one line says what could not be
    # written (it said "None: cannot write"), and nothing follows it at the interpreter's exit.
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "curation.cli.main", "qc", "--list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # no reader left: every write of the command fails with EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 5
    assert err.splitlines() == ["curation qc: error: standard output: cannot write: Broken pipe"]
