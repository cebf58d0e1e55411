"""Expectation suites and ``curation validate`` on a real crawled catalog of sample_data."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import duckdb
import pytest

from curation import expectations
from curation.cli.main import main
from curation.errors import READ_ERROR_REASONS, InputError
from tests.test_report import crawled  # noqa: F401  (the shared crawl fixture)

pytest.importorskip("great_expectations", reason="the expectations extra is not installed")


@pytest.fixture
def catalog(crawled: Path, tmp_path: Path) -> Path:  # noqa: F811
    """A private copy of the crawled sample catalog (tests plant defects in it)."""
    db = tmp_path / "catalog.duckdb"
    shutil.copy(crawled, db)
    return db


def _suite(tmp_path: Path, source: str, *exps: dict[str, object], name: str = "custom") -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(
        json.dumps({"name": name, "meta": {"curation": {"source": source}}, "expectations": exps})
    )
    return path


def _findings(db: Path) -> list[tuple[str, str, str, str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.sql(
            """SELECT f.rule_id, f.severity, f.level, f.message FROM qc_findings f
               JOIN qc_runs r USING (run_id) WHERE r.suite_name LIKE 'expectations/%'
               ORDER BY 1"""
        ).fetchall()
    finally:
        con.close()


def test_shipped_suites_are_valid_and_gx_knows_every_type() -> None:
    suites = expectations.find_suites()
    assert {s.name for s in suites} >= {
        "catalog_files",
        "catalog_instances",
        "catalog_series",
        "catalog_studies",
        "manifest",
    }
    known = expectations.expectation_types()
    for s in suites:
        assert {e["type"] for e in s.data["expectations"]} <= known, s.name
    files = next(s for s in suites if s.name == "catalog_files")
    reason = next(e for e in files.data["expectations"] if e["kwargs"].get("column") == "reason")
    assert set(reason["kwargs"]["value_set"]) == set(READ_ERROR_REASONS)


def test_shipped_suites_pass_on_the_sample_catalog_and_are_recorded(catalog: Path) -> None:
    result = expectations.validate(catalog)
    ran = {s.suite.name: s for s in result.suites}
    assert ran["manifest"].status == "skipped" and "--cohort" in (ran["manifest"].reason or "")
    assert all(s.status == "ok" for n, s in ran.items() if n != "manifest")
    assert [o.rule_id for s in result.suites for o in s.failures] == []
    assert not result.failed("info")
    con = duckdb.connect(str(catalog), read_only=True)
    runs = con.sql("SELECT suite_name, n_rules, n_findings FROM qc_runs ORDER BY run_id").fetchall()
    n_rule_runs = con.sql("SELECT count(*) FROM qc_rule_runs").fetchall()[0][0]
    con.close()
    assert [r[0] for r in runs] == [
        "expectations/catalog_files",
        "expectations/catalog_instances",
        "expectations/catalog_series",
        "expectations/catalog_studies",
    ]
    assert n_rule_runs == sum(r[1] for r in runs) and all(r[2] == 0 for r in runs)
    # printing the result shows the outcome, not the suites' JSON
    text, rep = str(result), repr(result)
    assert text.startswith("4 expectation suite(s), ") and "1 suite(s) skipped" in text
    assert rep.startswith("ValidationResult(suites=['catalog_files'")
    assert len(text) < 200 and len(rep) < 300 and len(repr(result.suites[0])) < 200


def test_failures_land_in_qc_findings_exit_1_and_junit(catalog: Path, tmp_path: Path) -> None:
    con = duckdb.connect(str(catalog))
    con.execute(
        """UPDATE series SET SeriesInstanceUID = (SELECT min(SeriesInstanceUID) FROM series)
           WHERE SeriesInstanceUID = (SELECT max(SeriesInstanceUID) FROM series)"""
    )
    con.execute(
        "UPDATE instances SET Rows = 0 WHERE SOPInstanceUID = (SELECT min(SOPInstanceUID) FROM instances)"
    )
    con.execute("UPDATE instances SET SliceThickness = 80 WHERE Modality = 'CT'")  # a warning
    con.execute(
        """UPDATE studies SET StudyInstanceUID = StudyInstanceUID || '.x'
           WHERE StudyInstanceUID = (SELECT min(StudyInstanceUID) FROM studies)"""
    )
    con.close()
    junit = tmp_path / "validate.xml"
    args = ["validate", "--db", str(catalog), "--junit", str(junit)]
    assert main(args) == 1
    found = {(r[0], r[1], r[2]) for r in _findings(catalog)}
    assert found == {
        ("expect.catalog_series.series_instance_uid_unique", "error", "cohort"),
        ("expect.catalog_instances.rows_range", "error", "cohort"),
        ("expect.catalog_instances.slice_thickness_range", "warning", "cohort"),
        ("expect.catalog_studies.study_instance_uid_format", "error", "cohort"),
    }
    message = next(r[3] for r in _findings(catalog) if r[0].endswith("rows_range"))
    assert "1 of 2217 rows unexpected" in message and "e.g. '0'" in message
    root = ET.parse(junit).getroot()
    failures = {f.get("message", "").split(":")[0] for f in root.iter("failure")}
    assert failures == {"catalog_series", "catalog_instances", "catalog_studies"}
    assert sum(int(ts.get("failures", "0")) for ts in root.iter("testsuite")) == 3
    assert [c.get("name") for c in root.iter("testcase") if c.find("skipped") is not None] == [
        "manifest"
    ]


def test_warning_severity_fails_only_when_asked(catalog: Path) -> None:
    con = duckdb.connect(str(catalog))
    con.execute("UPDATE instances SET SliceThickness = 80 WHERE Modality = 'CT'")
    con.close()
    base = ["validate", "--db", str(catalog), "--suite", "catalog_instances", "--no-record"]
    assert main(base) == 0
    assert main([*base, "--fail-on", "warning"]) == 1
    con = duckdb.connect(str(catalog), read_only=True)
    tables = {r[0] for r in con.sql("SELECT table_name FROM information_schema.tables").fetchall()}
    con.close()
    assert "qc_findings" not in tables  # --no-record leaves the catalog as it was


def _manifest(db: Path, out: Path, split: str = "split") -> Path:
    """A manifest in the cohort's layout (pseudonym keys, split, files), written by curation.cohort."""
    from curation.cohort import build_cohort, parse

    spec = parse(
        {
            "name": "all_ct",
            "include": [{"field": "Modality", "op": "=", "value": "CT"}],
            "split": {"ratios": {"train": 0.6, "val": 0.2, "test": 0.2}, "seed": 0},
        }
    )
    build_cohort(db, spec, out, key=b"expectations-test-key-0123")
    if split != "split":
        path = out / "manifest.parquet"
        duckdb.sql(
            f"COPY (SELECT * RENAME (split AS {split}) FROM '{path}') TO '{path}.tmp' (FORMAT parquet)"
        )
        Path(f"{path}.tmp").replace(path)
    return out


def test_manifest_suite(catalog: Path, tmp_path: Path) -> None:
    good = _manifest(catalog, tmp_path / "good")
    assert (
        main(["validate", "--db", str(catalog), "--suite", "manifest", "--cohort", str(good)]) == 0
    )
    bad = _manifest(catalog, tmp_path / "bad", split="fold")
    assert (
        main(["validate", "--db", str(catalog), "--suite", "manifest", "--cohort", str(bad)]) == 1
    )
    rules = {r[0] for r in _findings(catalog)}
    assert {"expect.manifest.split_exists", "expect.manifest.split_not_null"} <= rules
    # Named explicitly but no manifest: the step it needs has not run (exit 4).
    assert main(["validate", "--db", str(catalog), "--suite", "manifest"]) == 4


def test_identifying_values_stay_out_of_findings(catalog: Path, tmp_path: Path) -> None:
    suite = _suite(
        tmp_path,
        "instances",
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "PatientID", "value_set": ["x"]},
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "Modality", "value_set": ["x"]},
        },
    )
    assert main(["validate", "--db", str(catalog), "--suite", str(suite)]) == 1
    messages = {r[0]: r[3] for r in _findings(catalog)}
    assert "e.g." not in messages["expect.custom.column_values_to_be_in_set.PatientID"]
    assert "e.g. 'CT'" in messages["expect.custom.column_values_to_be_in_set.Modality"] or (
        "e.g. 'MR'" in messages["expect.custom.column_values_to_be_in_set.Modality"]
    )


def test_a_typo_in_a_suite_is_an_input_error(catalog: Path, tmp_path: Path) -> None:
    typo = _suite(
        tmp_path, "series", {"type": "expect_column_values_to_be_uniqe", "kwargs": {"column": "x"}}
    )
    assert main(["validate", "--db", str(catalog), "--suite", str(typo)]) == 3
    with pytest.raises(InputError, match="severity"):
        expectations.load_suite(
            _suite(
                tmp_path,
                "series",
                {"type": "expect_column_to_exist", "kwargs": {"column": "x"}, "severity": "fatal"},
                name="sev",
            )
        )
    assert main(["validate", "--db", str(catalog), "--suite", "no_such_suite"]) == 3


def test_missing_table_named_suite_exits_4_and_missing_catalog_too(
    catalog: Path, tmp_path: Path
) -> None:
    suite = _suite(
        tmp_path, "pixel_metrics", {"type": "expect_column_to_exist", "kwargs": {"column": "snr"}}
    )
    assert main(["validate", "--db", str(catalog), "--suite", str(suite)]) == 4
    assert main(["validate", "--db", str(tmp_path / "none.duckdb")]) == 4


def test_missing_column_is_a_failure_not_a_crash(catalog: Path, tmp_path: Path) -> None:
    suite = _suite(
        tmp_path,
        "series",
        {"type": "expect_column_to_exist", "kwargs": {"column": "NoSuchColumn"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "NoSuchColumn"}},
    )
    result = expectations.validate(catalog, [suite], record=False)
    outcomes = result.suites[0].outcomes
    assert [o.success for o in outcomes] == [False, False]
    assert outcomes[0].message.endswith("the column is missing")
    assert result.failed()


def test_report_shows_expectation_findings(catalog: Path, tmp_path: Path) -> None:
    from curation.report import build_report

    con = duckdb.connect(str(catalog))
    con.execute(
        "UPDATE instances SET Rows = 0 WHERE SOPInstanceUID = (SELECT min(SOPInstanceUID) FROM instances)"
    )
    con.close()
    expectations.validate(catalog, ["catalog_instances"])
    result = build_report(catalog, tmp_path / "r.html", thumbnails=0)
    html = result.path.read_text()
    assert "findings" in result.sections
    assert (
        "expectations/catalog_instances" in html and "expect.catalog_instances.rows_range" in html
    )


def test_an_expectation_gx_cannot_evaluate_is_recorded_and_reported_as_an_error(
    catalog: Path, tmp_path: Path
) -> None:
    # A column that is not there: GX raises inside the expectation, the others still run.
    suite = _suite(
        tmp_path,
        "instances",
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "NoSuchColumn"}},
        {"type": "expect_column_to_exist", "kwargs": {"column": "Rows"}},
    )
    junit = tmp_path / "v.xml"
    assert (
        main(["validate", "--db", str(catalog), "--suite", str(suite), "--junit", str(junit)]) == 1
    )
    con = duckdb.connect(str(catalog), read_only=True)
    runs = con.sql("SELECT n_rules, n_findings, n_rule_errors, finished_at FROM qc_runs").fetchall()
    rule_runs = con.sql(
        "SELECT rule_id, status, n_findings, seconds FROM qc_rule_runs ORDER BY rule_id"
    ).fetchall()
    con.close()
    assert [r[:3] for r in runs] == [(2, 1, 1)] and runs[0][3] is not None
    assert "could not be evaluated" in _findings(catalog)[0][3]  # with GX's reason
    assert rule_runs == [
        ("expect.custom.column_to_exist.Rows", "ok", 0, None),
        ("expect.custom.column_values_to_be_unique.NoSuchColumn", "error", 1, None),
    ]
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and root.get("errors") == "1" and root.get("failures") == "0"
    assert [c.get("name") for c in root.iter("testcase") if c.find("error") is not None] == [
        "expect.custom.column_values_to_be_unique.NoSuchColumn"
    ]
