"""The QC engine: rule declarations, the registry, suite files, the runner's provenance, the CLI."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import duckdb
import pytest

from curation.cli.main import main
from curation.errors import InputError
from curation.qc import RULES, Param, Rule, Severity, all_rules, junit, register, run
from curation.qc.rule import fail_threshold
from curation.qc.suite import from_mapping, load_suite
from curation.tables import ALL_TABLES

from .conftest import SHARED_DICOM

SLICEINCREMENT = SHARED_DICOM / "dicom2nifti" / "tests" / "data" / "failing" / "sliceincrement"


def _rule(**kw: object) -> Rule:
    base: dict[str, object] = {
        "id": "series.example",
        "level": "series",
        "severity": "warning",
        "title": "t",
        "description": "d",
        "not_checked": "n",
        "query": "SELECT 1",
    }
    base.update(kw)
    return Rule(**base)  # type: ignore[arg-type]


def test_rule_declaration_is_validated() -> None:
    with pytest.raises(ValueError, match="level"):
        _rule(id="instance.example")
    with pytest.raises(ValueError, match="snake_case"):
        _rule(id="series.Bad-Name")
    with pytest.raises(ValueError, match="undeclared"):
        _rule(query="SELECT $limit")
    with pytest.raises(ValueError):
        _rule(severity="fatal")
    with pytest.raises(ValueError, match="required"):
        _rule(not_checked="")


def test_registry_rejects_a_second_rule_with_the_same_id() -> None:
    existing = next(iter(all_rules().values()))
    with pytest.raises(ValueError, match="declared twice"):
        register(_rule(id=existing.id, level=existing.level))
    assert register(existing) is existing


def test_every_shipped_rule_is_fully_declared() -> None:
    rules = all_rules()
    assert len(rules) >= 25
    for r in rules.values():
        assert r.description and r.not_checked and r.title
        for p in r.params:
            assert p.description, (r.id, p.name)


def test_privacy_rules_are_tagged_and_pixel_rules_ship_with_the_others() -> None:
    from curation.qc import rules
    from curation.qc.rule import PRIVACY, tagged

    assert {r.id for r in tagged(PRIVACY)} == {
        "series.phi_in_header",
        "series.burned_in_annotation",
        "series.secondary_capture",
        "pixel.burned_in_text",
    }
    pixel_ids = {rid for rid in all_rules() if rid.startswith("pixel.")}
    assert pixel_ids == {r.id for r in rules.pixel.PIXEL_RULES} and len(pixel_ids) == 10
    # pixel.metal trusts air where pixel.hu_implausible does: one declaration of the range
    metal, hu = all_rules()["pixel.metal"], all_rules()["pixel.hu_implausible"]
    for name in ("min_air_hu", "max_air_hu"):
        assert metal.param(name) is hu.param(name)
    assert "-850" not in str(metal.query) and "$max_air_hu" in str(metal.query)


def test_qc_tables_are_registered_and_documented() -> None:
    tables = {t.name: t for t in ALL_TABLES}
    for name in ("qc_findings", "qc_runs", "qc_rule_runs", "qc_slices", "qc_series_geometry"):
        t = tables[name]
        assert all(len(c.description) >= 8 for c in t.columns), name
    need = {
        "run_id",
        "rule_id",
        "severity",
        "level",
        "PatientID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "value",
        "message",
    }
    assert need <= set(tables["qc_findings"].column_names)


def test_suite_yaml_and_toml(tmp_path: Path) -> None:
    y = tmp_path / "s.yaml"
    y.write_text(
        "name: ct\ninclude: ['series.*']\nexclude: ['series.obliquity']\n"
        "rules:\n  series.missing_slices: {severity: warning, params: {spacing_tolerance_mm: 0.2}}\n"
    )
    s = load_suite(y)
    ids = {r.rule.id for r in s.rules}
    assert "series.missing_slices" in ids and "series.obliquity" not in ids
    assert not any(i.startswith("instance.") for i in ids)
    sel = next(r for r in s.rules if r.rule.id == "series.missing_slices")
    assert sel.severity.value == "warning" and sel.params["spacing_tolerance_mm"] == 0.2
    assert len(s.sha256) == 64
    t = tmp_path / "s.toml"
    t.write_text(
        'name = "t"\ninclude = ["instance.*"]\n[rules."instance.zero_byte"]\nseverity = "info"\n'
    )
    assert {r.rule.id for r in load_suite(t).rules} == {
        i for i in all_rules() if i.startswith("instance.")
    }


@pytest.mark.parametrize("include", [["pixel.*"], ["pixel.metal"]])
def test_metal_runs_with_the_air_range_the_suite_gives_hu_implausible(include: list[str]) -> None:
    # also when hu_implausible itself is not selected: the range is still the suite's
    suite = from_mapping(
        {
            "include": include,
            "rules": {
                "pixel.hu_implausible": {"params": {"max_air_hu": -800, "min_air_hu": -1300}}
            },
        }
    )
    params = {s.rule.id: s.params for s in suite.rules}
    assert params["pixel.metal"]["max_air_hu"] == -800
    assert params["pixel.metal"]["min_air_hu"] == -1300
    assert suite.provenance()["pixel.metal"]["params"]["max_air_hu"] == -800
    assert from_mapping({})  # defaults still resolve
    with pytest.raises(InputError, match=r"rules\.pixel\.hu_implausible\.params\.max_air_hu"):
        from_mapping({"rules": {"pixel.metal": {"params": {"max_air_hu": -800}}}})


@pytest.mark.parametrize(
    ("suite", "message"),
    [
        ({"rules": {"series.nope": {}}}, "no such rule"),
        ({"include": ["nothing.*"]}, "matches no rule"),
        # the reason as it reads, not a KeyError's repr in quotes
        (
            {"rules": {"series.missing_slices": {"params": {"tolerance": 1}}}},
            r"params\.tolerance: rule series\.missing_slices has no parameter 'tolerance'$",
        ),
        ({"rules": {"series.missing_slices": {"params": {"spacing_tolerance_mm": "x"}}}}, "number"),
        ({"rules": {"series.missing_slices": {"severity": "fatal"}}}, "severity"),
        ({"fail": 1}, "unknown key"),
    ],
)
def test_suite_errors_name_the_key(suite: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        from_mapping(suite, "x.yaml")


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SLICEINCREMENT.is_dir():
        pytest.skip("../shared/dicom (the real multi-vendor corpus) is not here")
    from curation import crawl

    db = tmp_path_factory.mktemp("inc") / "catalog.duckdb"
    crawl(SLICEINCREMENT, db, workers=1, progress=False)
    return db


@pytest.fixture
def db(small_catalog: Path, tmp_path: Path) -> Path:
    out = tmp_path / "catalog.duckdb"
    shutil.copy(small_catalog, out)
    return out


def test_run_records_provenance_and_isolates_a_broken_rule(db: Path) -> None:
    broken = _rule(id="series.zz_broken_for_test", query="SELECT * FROM no_such_table")
    RULES[broken.id] = broken
    try:
        result = run(db)
    finally:
        del RULES[broken.id]
    assert [r.rule_id for r in result.errors] == ["series.zz_broken_for_test"]
    assert result.n_findings > 0  # the other rules still ran
    con = duckdb.connect(str(db))
    name, params, version, started, finished, n = con.sql(
        "SELECT suite_name, parameters, curation_version, started_at, finished_at, n_findings "
        "FROM qc_runs WHERE run_id = $r",
        params={"r": result.run_id},
    ).fetchall()[0]
    assert name == "default" and version and started <= finished and n == result.n_findings
    assert json.loads(params)["series.missing_slices"]["params"]["spacing_tolerance_mm"] == 0.01
    per_rule = con.sql(
        "SELECT count(*), sum(n_findings) FROM qc_rule_runs WHERE run_id = $r",
        params={"r": result.run_id},
    ).fetchall()[0]
    assert per_rule == (len(result.rule_runs), result.n_findings)
    # a second run appends, with the next id
    assert run(con).run_id == result.run_id + 1
    con.close()


def test_messages_never_hold_patient_name_or_id(db: Path) -> None:
    con = duckdb.connect(str(db))
    con.execute("UPDATE instances SET PatientName = 'Quaresma^Ilse', PatientID = 'QX5521'")
    run(con)
    leaks = con.sql(
        "SELECT rule_id, message FROM qc_findings WHERE contains(upper(message || coalesce(value, "
        "'')), 'QUARESMA') OR contains(message || coalesce(value, ''), 'QX5521')"
    ).fetchall()
    assert leaks == []
    con.close()


def test_cli_exit_codes_json_and_junit(db: Path, tmp_path: Path) -> None:
    j, x = tmp_path / "qc.json", tmp_path / "qc.xml"
    # sliceincrement has missing slices: errors
    assert main(["qc", "--db", str(db), "--json", str(j), "--junit", str(x)]) == 1
    assert main(["qc", "--db", str(db), "--fail-on", "never"]) == 0
    data = json.loads(j.read_text())
    assert any(f["rule_id"] == "series.missing_slices" for f in data["findings"])
    root = ET.parse(x).getroot()
    failed = {c.get("name") for c in root.iter("testcase") if c.find("failure") is not None}
    assert "series.missing_slices" in failed
    assert int(root.get("failures") or 0) == len(failed)
    only_info = tmp_path / "info.yaml"
    only_info.write_text("name: info\ninclude: ['series.thickness_vs_spacing']\n")
    assert main(["qc", "--db", str(db), "--suite", str(only_info), "--fail-on", "warning"]) == 0
    assert main(["qc", "--db", str(db), "--suite", str(tmp_path / "missing.yaml")]) == 3
    assert main(["qc", "--db", str(tmp_path / "none.duckdb")]) == 4


def test_junit_names_no_patient_id_or_path(db: Path, tmp_path: Path) -> None:
    con = duckdb.connect(str(db))
    con.execute("UPDATE instances SET PatientID = 'QX5521'")
    paths = [r[0] for r in con.sql("SELECT path FROM files").fetchall()]
    result = run(con)
    out = junit.write(result, con, tmp_path / "qc.xml", "warning")
    con.close()
    text = out.read_text()
    listed = [c for c in ET.parse(out).getroot().iter("testcase") if c.find("failure") is not None]
    assert listed and "series " in text  # findings are listed, by series or instance UID
    assert "QX5521" not in text and not any(p in text for p in paths)


def test_one_severity_order_for_every_threshold() -> None:
    assert [s.value for s in sorted(Severity, key=lambda s: s.rank)] == ["info", "warning", "error"]
    assert Severity.WARNING.fails("warning") and not Severity.WARNING.fails("error")
    assert not Severity.ERROR.fails("never") and fail_threshold(Severity.INFO) == 0
    with pytest.raises(InputError, match="fail_on"):
        fail_threshold("fatal")


def test_cli_list_and_explain(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qc", "--list"]) == 0
    out = capsys.readouterr().out
    assert "series.missing_slices" in out and "cohort.site_shortcut" in out
    assert main(["qc", "--explain", "series.missing_slices"]) == 0
    out = capsys.readouterr().out
    assert "does not check" in out and "spacing_tolerance_fraction" in out
    assert main(["qc", "--explain", "series.nope"]) == 3


def test_param_coercion() -> None:
    p = Param("n", 3, "count", "d")
    assert p.coerce(4.0, "r") == 4
    with pytest.raises(ValueError):
        p.coerce(True, "r")


def test_docs_page_lists_every_rule_as_declared() -> None:
    from curation.qc import docs

    page = (Path(__file__).resolve().parents[1] / "docs" / "qc.md").read_text()
    assert docs.update(page) == page, "regenerate: python -m curation.qc.docs docs/qc.md"


def test_the_robust_fence_is_median_and_mad_of_logs_floored() -> None:
    """curation.qc.robust against numpy, on two groups: one spread out (the MAD decides), one where
    every value is nearly the same (the floor decides), with an outlier in each and values that
    have no log (0, negative, NULL) left out of both the rows and the statistics."""
    import numpy as np
    import polars as pl

    from curation.qc.robust import log_robust_z

    rng = np.random.default_rng(3)
    spread = np.exp(rng.normal(1.0, 0.4, 41))
    spread[0] = 40.0
    flat = np.full(12, 5.0) * (1 + rng.uniform(-0.01, 0.01, 12))
    flat[0] = 9.0
    frame = pl.DataFrame(
        {
            "g": ["spread"] * 41 + ["flat"] * 12 + ["flat"] * 3,
            "v": [*spread, *flat, 0.0, -1.0, None],
        }
    )
    con = duckdb.connect()
    con.register("vals", frame)
    got = con.sql(
        f"SELECT g, v, n, med, sd, z FROM ({log_robust_z('vals', 'v', 'g', '$floor')}) ORDER BY g, v",
        params={"floor": 0.25},
    ).pl()
    assert got.height == 53
    for g, values in (("spread", spread), ("flat", flat)):
        lx = np.log(np.sort(values))
        med = np.median(lx)
        sd = max(1.4826 * np.median(np.abs(lx - med)), np.log(1.25))
        rows = got.filter(pl.col("g") == g)
        assert rows["n"].to_list() == [len(values)] * len(values)
        np.testing.assert_allclose(rows["med"], med, rtol=1e-12)
        np.testing.assert_allclose(rows["sd"], sd, rtol=1e-12)
        np.testing.assert_allclose(rows["z"], (lx - med) / sd, rtol=1e-9)
    # the flat group's spread is the floor, not its ~1 % MAD; its outlier is still far out
    flat_rows = got.filter(pl.col("g") == "flat")
    assert flat_rows["sd"][0] == pytest.approx(np.log(1.25))
    assert flat_rows["z"].max() > 2.5 and flat_rows["z"].abs().sort()[-2] < 0.1
