"""Exit codes and messages that tell the truth: a damaged catalog (4), an output that cannot be
written (5), a read-only catalog without a pseudonym key; and the QC rule about non-DICOM files
agreeing with what the crawl classified as skipped."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from curation import catalog
from curation.cli.main import main

from .conftest import SAMPLE_DATA

KEY = "exit-code-test-key-0123456789"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sample_data/real crawled and QC'd (a real catalog with LICENSE/README sidecars)."""
    from curation import crawl, qc

    db = tmp_path_factory.mktemp("exit") / "catalog.duckdb"
    crawl(SAMPLE_DATA / "real", db, workers=1, progress=False)
    qc.run(db)
    return db


@pytest.fixture
def db(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CURATION_PSEUDONYM_KEY", KEY)
    copy = tmp_path / "catalog.duckdb"
    shutil.copy(base, copy)
    return copy


def test_not_dicom_findings_are_the_crawls_errors_not_its_skipped_sidecars(base: Path) -> None:
    con = catalog.connect(base, read_only=True)
    try:
        skipped = {
            r[0] for r in con.sql("SELECT path FROM files WHERE status = 'skipped'").fetchall()
        }
        flagged = {
            r[0]
            for r in con.sql(
                "SELECT path FROM qc_findings WHERE rule_id = 'instance.not_dicom'"
            ).fetchall()
        }
        errors = {
            r[0]
            for r in con.sql(
                "SELECT path FROM files WHERE status = 'error' AND reason = 'not_dicom'"
            ).fetchall()
        }
    finally:
        con.close()
    assert skipped, "sample_data/real ships LICENSE and README files beside the DICOM"
    assert not flagged & skipped
    assert flagged == errors


# -- a damaged catalog: exit 4, one line naming the file ----------------------------------------

COMMANDS = ("qc", "report", "cohort", "validate")


def _all_spec(tmp: Path) -> Path:
    """A spec every catalog satisfies (the real subset has no labels, no CT chest)."""
    spec = tmp / "all.yaml"
    spec.write_text("name: all\nsplit: {ratios: {train: 1.0}}\n")
    return spec


def _errors(err: str) -> list[str]:
    """stderr without log records (warnings still show under -q)."""
    return [x for x in err.splitlines() if x.strip() and not x.startswith(("WARNING ", "INFO "))]


def _argv(command: str, db: Path, tmp: Path) -> list[str]:
    if command == "cohort":
        return [
            "cohort",
            str(_all_spec(tmp)),
            "--db",
            str(db),
            "--out",
            str(tmp / "c"),
        ]
    if command == "report":
        return ["report", "--db", str(db), "--out", str(tmp / "r.html"), "--thumbnails", "0"]
    return [command, "--db", str(db)]


def _damage(db: Path, how: str) -> None:
    data = db.read_bytes()
    if how == "cut in half":
        db.write_bytes(data[: len(data) // 2])
    elif how == "cut to the header":
        db.write_bytes(data[:5000])
    elif how == "bytes overwritten":
        # the start of every data block after the header (12 KiB) and the first block (256 KiB):
        # any query reading table data meets a block whose checksum does not match
        buf = bytearray(data)
        for offset in range(12288 + 262144, len(buf) - 64, 262144):
            buf[offset + 8 : offset + 64] = b"\xde\xad\xbe\xef" * 14
        db.write_bytes(bytes(buf))
    elif how == "not duckdb":
        db.write_text("name,value\nnot,a catalog\n")


@pytest.mark.parametrize(
    "how", ["cut in half", "cut to the header", "bytes overwritten", "not duckdb"]
)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_damaged_catalog_is_exit_4_naming_the_file(
    db: Path, tmp_path: Path, command: str, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _damage(db, how)
    code = main([*_argv(command, db, tmp_path), "-q"])
    err = _errors(capsys.readouterr().err)
    if how == "bytes overwritten" and code in (0, 1):
        pytest.skip("the overwritten block was not one this command reads")
    assert code == 4, err
    assert len(err) == 1 and err[0].startswith(f"curation {command}: catalog error: "), err
    assert str(db) in err[0] or db.name in err[0]


def test_qc_on_a_catalog_cut_short_stops_at_the_first_rule_that_meets_it(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Cut further in, the catalog opens and the first rules run: the rule that meets the cut must
    # end the run (one line, exit 4), not be logged as one failed rule among others that follow.
    data = db.read_bytes()
    seen = []
    for percent in (70, 80, 90):
        cut = tmp_path / f"cut{percent}.duckdb"
        cut.write_bytes(data[: len(data) * percent // 100])
        code = main(["qc", "--db", str(cut), "-q"])
        captured = capsys.readouterr()
        if code in (0, 1):
            continue  # the cut fell in blocks this run never reads
        seen.append(percent)
        err = _errors(captured.err)
        assert code == 4, err
        assert len(err) == 1 and err[0].startswith("curation qc: catalog error: "), err
        assert captured.out == "", "no findings table for a run that could not finish"
    assert seen, "no cut reached a block qc reads"


# -- outputs that cannot be written: exit 5, one line naming the path ---------------------------


def _blocked(tmp_path: Path) -> Path:
    """A path whose parent is a regular file: no folder can be made there, even by root."""
    (tmp_path / "a-file").write_text("x")
    return tmp_path / "a-file" / "out"


@pytest.mark.parametrize(
    "argv_of",
    [
        lambda db, t: ["qc", "--db", str(db), "--json", "/dev/full"],
        lambda db, t: ["qc", "--db", str(db), "--junit", "/dev/full"],
        lambda db, t: ["qc", "--db", str(db), "--junit", str(_blocked(t) / "qc.xml")],
        lambda db, t: ["report", "--db", str(db), "--out", "/dev/full", "--thumbnails", "0"],
        lambda db, t: [
            "report",
            "--db",
            str(db),
            "--out",
            str(_blocked(t) / "r.html"),
            "--thumbnails",
            "0",
        ],
        lambda db, t: [
            "cohort",
            str(SAMPLE_DATA / "cohort_spec.yaml"),
            "--db",
            str(db),
            "--out",
            str(_blocked(t)),
        ],
        lambda db, t: ["validate", "--db", str(db), "--junit", "/dev/full"],
    ],
    ids=[
        "qc json disk full",
        "qc junit disk full",
        "qc junit not a folder",
        "report disk full",
        "report not a folder",
        "cohort not a folder",
        "validate junit disk full",
    ],
)
def test_an_output_that_cannot_be_written_is_exit_5_naming_it(
    db: Path, tmp_path: Path, argv_of: object, capsys: pytest.CaptureFixture[str]
) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    argv = argv_of(db, tmp_path)  # type: ignore[operator]
    if argv[0] == "cohort":
        argv[1] = str(_all_spec(tmp_path))
    code = main([*argv, "-q"])
    err = _errors(capsys.readouterr().err)
    assert code == 5, err
    assert len(err) == 1 and "cannot write" in err[0], err
    target = "/dev/full" if "/dev/full" in argv else str(tmp_path / "a-file")
    assert target in err[0], err
    if target != "/dev/full":
        assert f"its parent {target} is not a folder" in err[0], err


# -- a read-only catalog without a key ----------------------------------------------------------


def test_report_on_a_read_only_catalog_without_a_key_says_what_to_do(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CURATION_PSEUDONYM_KEY")
    # root ignores file modes; an immutable file (ext4 attribute) is read-only even for root
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        code = main(["report", "--db", str(db), "--out", str(tmp_path / "r.html"), "-q"])
        err = _errors(capsys.readouterr().err)
        assert code == 4, err
        assert len(err) == 1 and str(db) in err[0], err
        assert "CURATION_PSEUDONYM_KEY" in err[0] and "--key-file" in err[0], err
        key = tmp_path / "team.key"
        key.write_text("a team key of enough length\n")
        argv = [
            "report",
            "--db",
            str(db),
            "--out",
            str(tmp_path / "r.html"),
            "--key-file",
            str(key),
        ]
        assert main([*argv, "-q", "--thumbnails", "0"]) == 0
        assert (tmp_path / "r.html").is_file()
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)


def test_qc_json_and_junit_show_pseudonyms_under_the_key(db: Path, tmp_path: Path) -> None:
    import json

    from curation.pseudonym import pseudonym

    j, x = tmp_path / "qc.json", tmp_path / "qc.xml"
    assert main(["qc", "--db", str(db), "--json", str(j), "--junit", str(x), "-q"]) in (0, 1)
    con = catalog.connect(db, read_only=True)
    uids = dict(
        con.sql(
            "SELECT SeriesInstanceUID, PatientID FROM qc_findings "
            "WHERE run_id = 2 AND SeriesInstanceUID IS NOT NULL"
        ).fetchall()
    )
    con.close()
    assert uids
    findings = json.loads(j.read_text())["findings"]
    assert not {"PatientID", "SeriesInstanceUID", "SOPInstanceUID", "path"} & set(findings[0])
    keys = {f["series_key"] for f in findings}
    assert {pseudonym(u, KEY.encode()) for u in uids} <= keys
    text = x.read_text()
    assert not [u for u in uids if u in text]
    # site names (InstitutionName, StationName) leave as keyed labels, in messages too
    con = catalog.connect(db, read_only=True)
    sites = {
        r[0]
        for r in con.sql(
            "SELECT InstitutionName FROM series UNION SELECT StationName FROM series"
        ).fetchall()
        if r[0] and len(r[0]) >= 4
    }
    con.close()
    assert sites
    assert not [s for s in sites if s in text or s in j.read_text()]
    shown = [u for u in uids if "S-" + pseudonym(u, KEY.encode()) in text]
    assert shown  # findings are listed, by pseudonym


# -- crawl --strict is a gate: a retry over the same unreadable file still fails -------------------


def test_crawl_strict_fails_again_on_an_unchanged_unreadable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A re-crawl does not read an unchanged file again; --strict must still see that one under
    # PATH cannot be read (ci.md caches the catalog between pipeline runs).
    tree = tmp_path / "delivery"
    tree.mkdir()
    good = next((SAMPLE_DATA / "real" / "dcm_qa_ge" / "In").rglob("*.MRDC.*"))
    shutil.copy(good, tree / "good.dcm")
    cut = tree / "cut.dcm"
    cut.write_bytes(good.read_bytes()[:700])  # a header cut short: truncated
    db = tmp_path / "catalog.duckdb"
    argv = ["crawl", str(tree), "--db", str(db), "--workers", "1", "--no-progress", "-q"]

    assert main(argv) == 0  # without --strict problems are recorded, not fatal
    assert main([*argv, "--strict"]) == 1
    assert "0 read" in capsys.readouterr().out  # the second crawl read nothing
    assert main([*argv, "--strict"]) == 1
    # a sibling folder's unreadable file is not this PATH's
    assert main([*argv[:1], str(tree / "good.dcm"), *argv[2:], "--strict"]) == 0
    cut.unlink()  # gone: dropped from the catalog, the gate passes
    assert main([*argv, "--strict"]) == 0


def test_crawl_creates_the_folder_of_a_new_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # "--db: catalog DuckDB file (created if missing)": a folder of it too, as every step's --out.
    src = SAMPLE_DATA / "real" / "dcm_qa_philips"
    db = tmp_path / "out" / "new" / "catalog.duckdb"
    argv = ["crawl", str(src), "--workers", "1", "--no-progress", "-q"]
    assert main([*argv, "--db", str(db)]) == 0
    assert catalog.table_names(catalog.connect(db, read_only=True)) >= {"files", "instances"}
    # A file where the folder should be: an output that cannot be written (5), naming it.
    (tmp_path / "blocker").write_text("")
    capsys.readouterr()
    assert main([*argv, "--db", str(tmp_path / "blocker" / "catalog.duckdb")]) == 5
    err = _errors(capsys.readouterr().err)
    assert len(err) == 1 and str(tmp_path / "blocker") in err[0], err


def test_qc_without_db_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    # A missing argument is exit 2 (as argparse's own), not 3 (a value that cannot be used).
    assert main(["qc"]) == 2
    assert "--db" in capsys.readouterr().err
