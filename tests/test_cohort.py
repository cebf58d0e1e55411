"""The cohort builder on the synthetic cohort: spec validation, parameter binding, attrition,
leakage-free deterministic splits, pseudonyms, manifest files, CLI, volumes."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from curation import catalog, harmonize
from curation.cohort import build_cohort, load, load_labels, parse, synthetic_report_labels
from curation.cohort.pseudonym import ENV_VAR
from curation.errors import InputError

from .conftest import SAMPLE_DATA, needs_shared

SYNTH = SAMPLE_DATA / "synthetic"
SPEC = SAMPLE_DATA / "cohort_spec.yaml"
KEY = b"test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def base_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic cohort crawled, harmonized, QC'd and labelled once per module."""
    from curation import crawl, qc

    db = tmp_path_factory.mktemp("cohort") / "catalog.duckdb"
    crawl(SYNTH / "dicom", db, workers=1, progress=False)
    con = catalog.connect(db)
    harmonize.build(con)
    qc.run(con)
    load_labels(con, synthetic_report_labels(SYNTH / "reports.parquet"))
    con.close()
    return db


@pytest.fixture
def db(base_db: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "catalog.duckdb"
    shutil.copy(base_db, copy)
    return copy


def test_shipped_spec_builds(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = build_cohort(db, SPEC, out, key=KEY)
    for name in (
        "manifest.parquet",
        "manifest.csv",
        "datalist.json",
        "attrition.csv",
        "provenance.json",
    ):
        assert (out / name).is_file(), name
    a = res.attrition
    assert a["step"].to_list() == list(range(len(res.spec.criteria) + 1))
    assert (a["n_series"].diff().drop_nulls() <= 0).all()  # attrition only removes
    assert a["n_series"][-1] == res.manifest.height > 0
    m = pl.read_parquet(out / "manifest.parquet")
    assert set(m["Modality"]) == {"CT"} and set(m["series_type"]) == {"ct_axial"}
    assert (m["slice_thickness_mm"] <= 5).all()
    assert "label_pleural_effusion" in m.columns
    assert "uncertain" not in set(m["label_pleural_effusion"].drop_nulls())


def test_attrition_and_exclusions_are_in_the_catalog(db: Path) -> None:
    res = build_cohort(db, SPEC, None, key=KEY)
    con = catalog.connect(db, read_only=True)
    stored = con.sql(
        f"SELECT step, n_series FROM cohort_attrition WHERE cohort_id = {res.cohort_id} ORDER BY step"
    ).fetchall()
    assert [r[1] for r in stored] == res.attrition["n_series"].to_list()
    # every dropped series has exactly one reason, and reasons add up to the attrition
    per_step = dict(
        con.sql(
            f"SELECT step, count(*) FROM cohort_exclusions WHERE cohort_id = {res.cohort_id} GROUP BY step"
        ).fetchall()
    )
    for row in res.attrition.iter_rows(named=True):
        assert per_step.get(row["step"], 0) == row["n_series_dropped"]


def test_qc_exclusion_drops_what_the_findings_name(db: Path) -> None:
    spec = parse({"name": "qc", "exclude": [{"qc_rule": "series.missing_slices"}]})
    res = build_cohort(db, spec, None, key=KEY)
    con = catalog.connect(db, read_only=True)
    flagged = {
        r[0]
        for r in con.sql(
            "SELECT DISTINCT SeriesInstanceUID FROM qc_findings WHERE rule_id = 'series.missing_slices' "
            "AND run_id = (SELECT max(run_id) FROM qc_runs)"
        ).fetchall()
    }
    assert flagged, "the synthetic cohort plants missing slices"
    dropped = {
        r[0]
        for r in con.sql(
            f"SELECT SeriesInstanceUID FROM cohort_exclusions WHERE cohort_id = {res.cohort_id}"
        ).fetchall()
    }
    assert dropped == flagged


def test_values_are_bound_not_pasted(db: Path) -> None:
    # A value that would break (or inject into) SQL if pasted is just a value that matches nothing.
    evil = "CT' OR 1=1 --"
    spec = parse({"name": "x", "include": [{"field": "Modality", "op": "=", "value": evil}]})
    res = build_cohort(db, spec, None, key=KEY)
    assert res.manifest.height == 0
    spec = parse(
        {"name": "x", "include": [{"field": "Modality", "op": "in", "value": [evil, "MR"]}]}
    )
    assert set(build_cohort(db, spec, None, key=KEY).manifest["Modality"]) == {"MR"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"include": [{"field": "Modality"}]}, "needs an op"),
        ({"include": [{"field": "Modality", "op": "~", "value": 1}]}, "unknown op"),
        ({"include": [{"field": "Modality", "op": "in", "value": "CT"}]}, "list value"),
        ({"include": [{"qc_severity": "fatal"}]}, "qc_severity"),
        ({"include": [{"field": "a", "label": "b", "op": "=", "value": 1}]}, "exactly one"),
        ({"split": {"ratios": {"train": 0.5, "test": 0.4}}}, "sum to 1"),
        ({"bogus": 1}, "unknown key"),
    ],
)
def test_bad_specs_are_rejected(data: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse(data)


def test_unknown_column_is_reported(db: Path) -> None:
    spec = parse(
        {"name": "x", "include": [{"field": "no_such; DROP TABLE files", "op": "=", "value": 1}]}
    )
    with pytest.raises(InputError, match="no column"):
        build_cohort(db, spec, None, key=KEY)


def test_splits_are_patient_level_deterministic_and_stratified(db: Path) -> None:
    spec = parse(
        {
            "name": "all",
            "split": {
                "ratios": {"train": 0.6, "val": 0.2, "test": 0.2},
                "stratify": ["vendor"],
                "seed": 7,
            },
        }
    )
    a = build_cohort(db, spec, None, key=KEY).manifest
    b = build_cohort(db, spec, None, key=KEY).manifest
    assert (
        a.select("series_key", "split")
        .sort("series_key")
        .equals(b.select("series_key", "split").sort("series_key"))
    )
    # no patient (and no study) in two splits
    assert a.group_by("patient_key").agg(pl.col("split").n_unique())["split"].max() == 1
    assert a.group_by("study_key").agg(pl.col("split").n_unique())["split"].max() == 1
    per = a.group_by("split").agg(pl.col("patient_key").n_unique())
    counts = dict(per.iter_rows())
    n = sum(counts.values())
    assert abs(counts["train"] / n - 0.6) < 0.15
    reseeded = parse(
        {
            "name": "all",
            "split": {
                "ratios": {"train": 0.6, "val": 0.2, "test": 0.2},
                "stratify": ["vendor"],
                "seed": 8,
            },
        }
    )
    other = build_cohort(db, reseeded, None, key=KEY).manifest
    assert (
        not other.select("series_key", "split")
        .sort("series_key")
        .equals(a.select("series_key", "split").sort("series_key"))
    )


def test_split_by_counts_and_label_strata(db: Path) -> None:
    spec = parse(
        {
            "name": "c",
            "split": {"counts": {"test": 5, "val": 5}, "stratify": ["label:acute_infarct"]},
        }
    )
    m = build_cohort(db, spec, None, key=KEY).manifest
    per = dict(m.group_by("split").agg(pl.col("patient_key").n_unique()).iter_rows())
    assert per["test"] == 5 and per["val"] == 5 and per["train"] > 0


def test_a_single_split_takes_every_patient(db: Path) -> None:
    spec = parse({"name": "all", "split": {"ratios": {"train": 1.0}}})
    m = build_cohort(db, spec, None, key=KEY).manifest
    assert m.height > 0 and m["split"].unique().to_list() == ["train"]


def test_pseudonyms_are_keyed_hashes_and_no_identifier_leaks(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = build_cohort(db, SPEC, out, key=KEY)
    con = catalog.connect(db, read_only=True)
    pid, skey = con.sql(
        f"SELECT PatientID, patient_key FROM cohort_members WHERE cohort_id = {res.cohort_id} LIMIT 1"
    ).fetchall()[0]
    assert skey == hmac.new(KEY, pid.encode(), hashlib.sha256).hexdigest()[:24]
    ids = {r[0] for r in con.sql("SELECT PatientID FROM patients").fetchall()}
    names = {
        r[0]
        for r in con.sql(
            "SELECT DISTINCT PatientName FROM instances WHERE PatientName IS NOT NULL"
        ).fetchall()
    }
    con.close()
    m = pl.read_parquet(
        out / "manifest.parquet"
    )  # dicom_files: the archive's own paths, see docs/cohort.md
    text = (
        pl.read_csv(out / "manifest.csv").drop("dicom_files").write_csv()
        + (out / "provenance.json").read_text()
        + (out / "attrition.csv").read_text()
    )
    assert not [x for x in ids | names if x and x in text]
    assert "PatientID" not in m.columns and "PatientName" not in m.columns
    # another key gives other pseudonyms
    other = build_cohort(db, SPEC, None, key=b"another-key-0123456789").manifest
    assert set(other["patient_key"]).isdisjoint(set(res.manifest["patient_key"]))


def test_key_comes_from_env_or_is_generated_with_a_warning(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    out = tmp_path / "gen"
    build_cohort(db, SPEC, out)
    assert (out / "pseudonym.key").is_file()
    assert "generated" in caplog.text
    monkeypatch.setenv(ENV_VAR, KEY.decode())
    a = build_cohort(db, SPEC, tmp_path / "env").manifest
    b = build_cohort(db, SPEC, None, key=KEY).manifest
    assert a["patient_key"].to_list() == b["patient_key"].to_list()


def test_provenance_and_datalist(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = build_cohort(db, SPEC, out, key=KEY)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["spec_sha256"] == hashlib.sha256(SPEC.read_text().encode()).hexdigest()
    assert prov["qc_run"]["run_id"] >= 1 and prov["catalog_fingerprint"].startswith("files=")
    assert prov["curation_version"]
    datalist = json.loads((out / "datalist.json").read_text())
    assert set(datalist) <= {"training", "validation", "test"}
    assert sum(len(v) for v in datalist.values()) == res.manifest.height
    first = next(iter(datalist.values()))[0]
    assert all(Path(p).is_file() for p in first["image"])


def test_cli(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from curation.cli.main import main

    monkeypatch.setenv(ENV_VAR, KEY.decode())
    out = tmp_path / "cli"
    assert main(["cohort", str(SPEC), "--db", str(db), "--out", str(out)]) == 0
    assert "split train" in capsys.readouterr().out
    assert (out / "manifest.parquet").is_file()
    assert main(["cohort", str(tmp_path / "nope.yaml"), "--db", str(db), "--out", str(out)]) == 3
    assert (
        main(["cohort", str(SPEC), "--db", str(tmp_path / "none.duckdb"), "--out", str(out)]) == 4
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("include: [{field: Modality}]\n")
    assert main(["cohort", str(bad), "--db", str(db), "--out", str(out)]) == 3


def test_volumes_match_their_dicom_geometry(db: Path, tmp_path: Path) -> None:
    import SimpleITK as sitk  # noqa: N813

    from curation.cohort.volumes import VolumeOptions, export_volumes

    con = catalog.connect(db)
    spec = parse(
        {
            "name": "v",
            "include": [
                {"field": "series_type", "op": "in", "value": ["ct_axial", "mr_t2"]},
                {"field": "vendor", "op": "in", "value": ["GE", "Siemens"]},
            ],
            "exclude": [{"qc_severity": "warning"}],
            "split": {"counts": {"test": 2}},
        }
    )
    res = build_cohort(con, spec, tmp_path / "v", key=KEY)
    res.manifest = res.manifest.head(4)
    report = export_volumes(
        con, res, tmp_path / "v", VolumeOptions(spacing_mm=(2.0, 2.0, 4.0)), progress=False
    )
    assert report.height == 4 and report["error"].null_count() == 4
    assert report["geometry_ok"].all(), report
    img = sitk.ReadImage(report["image"][0])
    assert img.GetSpacing() == pytest.approx((2.0, 2.0, 4.0))
    arr = sitk.GetArrayViewFromImage(img)
    assert arr.min() >= 0.0 and arr.max() <= 1.0
    m = pl.read_parquet(tmp_path / "v" / "manifest.parquet")
    assert m["image"].null_count() == 0
    assert load(SPEC).name == "ct_chest_effusion"


@needs_shared
def test_a_series_stored_twice_lists_each_image_once(shared_catalog: Path, tmp_path: Path) -> None:
    # The corpus holds some series twice (dcm_qa_stc copies files of dcm_qa_nih, dcm_qa_uih,
    # dcm_qa_enh): the manifest must give a training job each image once.
    db = tmp_path / "catalog.duckdb"
    shutil.copy(shared_catalog, db)
    con = catalog.connect(db)
    try:
        copied = con.sql(
            """SELECT SeriesInstanceUID, count(*) AS n_files, count(DISTINCT SOPInstanceUID) AS n_sop
               FROM instances GROUP BY 1 HAVING count(*) > count(DISTINCT SOPInstanceUID)"""
        ).fetchall()
        assert copied, "the corpus should hold a series stored twice"
        uid, n_files, n_sop = copied[0]
        spec = parse(
            {
                "name": "copies",
                "include": [{"field": "SeriesInstanceUID", "op": "=", "value": uid}],
                "split": {"ratios": {"train": 1.0}},
            }
        )
        manifest = build_cohort(con, spec, None, key=KEY).manifest
    finally:
        con.close()
    (files,) = manifest["dicom_files"].to_list()
    assert n_files > n_sop == len(files) == len(set(files))
