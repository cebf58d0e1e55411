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

from curation import catalog
from curation.cohort import build_cohort, load_spec, parse
from curation.deid import scan
from curation.errors import InputError
from curation.pseudonym import ENV_VAR

from .conftest import SAMPLE_DATA, needs_shared

SYNTH = SAMPLE_DATA / "synthetic"
SPEC = SAMPLE_DATA / "cohort_spec.yaml"
KEY = b"test-key-0123456789abcdef"


@pytest.fixture
def db(labelled_synthetic_catalog: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "catalog.duckdb"
    shutil.copy(labelled_synthetic_catalog, copy)
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
    steps = list(range(len(res.spec.steps) + 1))
    # a last step when some series have no folder of their own (the datalist leaves them out)
    assert a["step"].to_list() in (steps, [*steps, len(steps)])
    assert (a["n_series"].diff().drop_nulls() <= 0).all()  # attrition only removes
    assert a["n_series"][len(steps) - 1] == res.manifest.height > 0
    assert a["n_series"][-1] == res.manifest["excluded_reason"].null_count()
    m = pl.read_parquet(out / "manifest.parquet")
    assert set(m["Modality"]) == {"CT"} and set(m["series_type"]) == {"ct_axial"}
    assert (m["slice_thickness_mm"] <= 5).all()
    assert "label_pleural_effusion" in m.columns
    assert "uncertain" not in set(m["label_pleural_effusion"].drop_nulls())
    # printing the result (a notebook's last line) gives the outcome in one line, not the frames
    for text in (str(res), repr(res)):
        assert "\n" not in text and len(text) < 300, text
        assert str(res.cohort_id) in text and str(res.manifest.height) in text
    assert f"{res.manifest['patient_key'].n_unique()} patient(s)" in str(res)


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
            f"SELECT SeriesInstanceUID FROM cohort_exclusions WHERE cohort_id = {res.cohort_id} "
            f"AND step <= {len(spec.steps)}"  # not the datalist's step (series without a folder)
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


def test_a_spec_the_catalog_cannot_answer_leaves_no_key_behind(db: Path, tmp_path: Path) -> None:
    # The key is generated into the out folder on first use; a build refused for its spec is not
    # a first use (the key used to be written before the criteria were checked).
    spec = parse({"name": "x", "include": [{"field": "no_such_field", "op": "=", "value": 1}]})
    out = tmp_path / "cohort"
    with pytest.raises(InputError, match="no column"):
        build_cohort(db, spec, out)
    assert not (out / "pseudonym.key").exists()


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
        # dicom_files and image (the series folder) are the archive's own paths here
        pl.read_csv(out / "manifest.csv").drop("dicom_files", "image").write_csv()
        + (out / "provenance.json").read_text()
        + (out / "attrition.csv").read_text()
    )
    assert not [x for x in ids | names if x and x in text]
    assert "PatientID" not in m.columns and "PatientName" not in m.columns
    # sites leave as keyed labels, never by name (docs/cohort.md: what the manifest promises)
    con = catalog.connect(db, read_only=True)
    sites = {
        r[0] for r in con.sql("SELECT DISTINCT InstitutionName FROM series").fetchall() if r[0]
    }
    con.close()
    assert sites and not [x for x in sites if x in text + (out / "datalist.json").read_text()]
    assert "InstitutionName" not in m.columns
    from curation.pseudonym import site_label

    assert set(m["site"].drop_nulls()) <= {site_label(x, KEY) for x in sites}
    assert m["site"].drop_nulls().n_unique() > 1
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
    assert sum(len(v) for v in datalist.values()) == res.manifest["excluded_reason"].null_count()
    first = next(iter(datalist.values()))[0]
    assert Path(first["image"]).is_dir()  # the series folder (tests/test_datalist.py loads it)


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
    assert arr.min() < -500 and arr.max() > 100  # HU kept: no normalization unless asked
    m = pl.read_parquet(tmp_path / "v" / "manifest.parquet")
    assert m["image"].null_count() == 0
    assert load_spec(SPEC).name == "ct_chest_effusion"


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


# -- which QC run a spec reads (issue 10) -------------------------------------------------------


def _qc_error_series(db: Path, run_id: int) -> set[str]:
    con = catalog.connect(db, read_only=True)
    try:
        return {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT SeriesInstanceUID FROM qc_findings WHERE run_id = $r "
                "AND severity = 'error' AND SeriesInstanceUID IS NOT NULL",
                {"r": run_id},
            ).fetchall()
        }
    finally:
        con.close()


def test_qc_criteria_read_the_rule_suite_run_not_a_later_validate_run(
    db: Path, tmp_path: Path
) -> None:
    from curation import expectations

    spec = parse({"name": "no-errors", "exclude": [{"qc_severity": "error"}]})
    before = build_cohort(db, spec, None, key=KEY).manifest.height
    # `curation validate` records its own, later run in qc_runs (nothing failing here)
    validation = expectations.validate(db, ["catalog_series"])
    assert validation.suites[0].run_id is not None and validation.suites[0].run_id > 1
    res = build_cohort(db, spec, tmp_path / "out", key=KEY)
    assert res.manifest.height == before
    assert not _qc_error_series(db, 1) & set(
        catalog.connect(db, read_only=True)
        .sql(f"SELECT SeriesInstanceUID FROM cohort_members WHERE cohort_id = {res.cohort_id}")
        .pl()["SeriesInstanceUID"]
    )
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert prov["qc_run"]["run_id"] == 1 and prov["qc_run"]["suite_name"] == "default"
    assert prov["qc_run"]["selected_by"] == "latest rule-suite run"


def test_a_spec_names_the_qc_suite_or_run(db: Path, tmp_path: Path) -> None:
    from curation import expectations

    run = expectations.validate(db, ["catalog_series"]).suites[0].run_id
    spec = parse({"name": "s", "qc": {"suite": "default"}, "exclude": [{"qc_severity": "error"}]})
    assert build_cohort(db, spec, None, key=KEY).provenance["qc_run"]["run_id"] == 1
    spec = parse({"name": "r", "qc": {"run": 1}, "exclude": [{"qc_severity": "error"}]})
    res = build_cohort(db, spec, None, key=KEY)
    assert res.provenance["qc_run"] == {
        **res.provenance["qc_run"],
        "run_id": 1,
        "selected_by": "run 1 named by the spec",
        "suite_name": "default",
    }
    # an expectation-suite run's findings name no series: a QC criterion over it is refused
    for qc in ({"run": run}, {"suite": "expectations/catalog_series"}):
        for criterion in ({"qc_severity": "error"}, {"qc_rule": "catalog_series.x"}):
            with pytest.raises(InputError, match=rf"reads QC run {run} .*`curation validate` run"):
                build_cohort(
                    db, parse({"name": "e", "qc": qc, "exclude": [criterion]}), None, key=KEY
                )
    # without a QC criterion, naming that run is only provenance
    spec = parse({"name": "p", "qc": {"run": run}})
    assert build_cohort(db, spec, None, key=KEY).provenance["qc_run"]["run_id"] == run
    with pytest.raises(InputError, match=r"qc.suite 'defualt'.*did you mean 'default'"):
        build_cohort(
            db,
            parse({"name": "x", "qc": {"suite": "defualt"}, "exclude": [{"qc_severity": "error"}]}),
            None,
            key=KEY,
        )
    with pytest.raises(InputError, match=r"qc\.run 999: no such QC run"):
        build_cohort(
            db,
            parse({"name": "x", "qc": {"run": 999}, "exclude": [{"qc_severity": "error"}]}),
            None,
            key=KEY,
        )


# -- what only the catalog knows: labels, columns, rules (issue 10) ----------------------------


def _spec_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: x\nlabels: [pleural_efusion]\n",
            r"spec.yaml:2: labels\[0\]: no label 'pleural_efusion'.*did you mean 'pleural_effusion'",
        ),
        (
            "name: x\nexclude:\n  - {label: pleural_efusion, value: uncertain}\n",
            r"spec.yaml:3: exclude\[0\]: no label 'pleural_efusion'.*did you mean 'pleural_effusion'",
        ),
        (
            "name: x\ninclude:\n  - {field: Modality, op: '=', value: CT}\n  - {field: SliceThickness, op: '<=', value: 3}\n",
            r"spec.yaml:4: include\[1\]: 'SliceThickness' is a DICOM keyword; use the harmonized field 'slice_thickness_mm'",
        ),
        (
            "name: x\ninclude:\n  - {field: PatientAge, op: '=', value: 040Y}\n",
            r"spec.yaml:3: include\[0\]: 'PatientAge' is a DICOM keyword that harmonized_series",
        ),
        (
            "name: x\ninclude:\n  - {field: slice_thikness_mm, op: '<=', value: 3}\n",
            r"no column 'slice_thikness_mm'.*did you mean 'slice_thickness_mm'",
        ),
        (
            "name: x\nexclude:\n  - {qc_rule: series.missing_slice}\n",
            r"spec.yaml:3: exclude\[0\]: QC run 1 .*ran no rule 'series.missing_slice'.*did you mean 'series.missing_slices'",
        ),
        ("name: x\nexclude:\n  - {qc_severity: eror}\n", r"spec.yaml:3: .*did you mean 'error'"),
        (
            "name: x\nexclude:\n  - {qc_sevrity: error}\n",
            r"spec.yaml:3: .*did you mean 'qc_severity'",
        ),
        ("name: x\nincluded: []\n", r"spec.yaml:2: unknown key.*did you mean 'include'"),
        ("name: x\n\nqc_run: 1\n", r"spec.yaml:3: unknown key.*use `qc: \{run: N\}`"),
        ("name: x\nqc_suite: default\n", r"spec.yaml:2: unknown key.*use `qc: \{suite: NAME\}`"),
        (
            "name: x\nsplit: {ratios: {train: 1.0}, stratify: [vendr]}\n",
            r"no column 'vendr'.*did you mean 'vendor'",
        ),
    ],
)
def test_unknown_names_are_errors_naming_the_spec_line(
    db: Path, tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        build_cohort(db, _spec_file(tmp_path, text), None, key=KEY)


def test_a_dicom_keyword_that_is_a_harmonized_column_is_accepted(db: Path) -> None:
    spec = parse({"name": "x", "include": [{"field": "Modality", "op": "=", "value": "MR"}]})
    assert set(build_cohort(db, spec, None, key=KEY).manifest["Modality"]) == {"MR"}


def test_criteria_built_in_python_are_validated() -> None:
    from curation.cohort import CohortSpec, Criterion

    with pytest.raises(InputError, match="unknown op"):
        Criterion("include", "field", "Modality", "= 'nope' OR 1=1 OR Modality =", "x")
    with pytest.raises(InputError, match="unknown op"):
        Criterion("include", "field", "Modality", "IS NULL; DROP TABLE labels; --")
    with pytest.raises(InputError, match="action"):
        Criterion("drop", "field", "Modality", "=", "CT")
    with pytest.raises(InputError, match="kind"):
        Criterion("include", "sql", "1=1")
    with pytest.raises(InputError, match="qc_severity"):
        Criterion("exclude", "qc_severity", "fatal")
    with pytest.raises(InputError, match="a value is"):
        Criterion("include", "field", "Modality", "=", {"a": 1})
    with pytest.raises(InputError, match="label name"):
        CohortSpec("x", labels=("ok", ""))
    with pytest.raises(InputError, match="Criterion"):
        CohortSpec("x", criteria=("include Modality = CT",))  # type: ignore[arg-type]
    ok = CohortSpec("x", [Criterion("include", "field", "Modality", "=", "CT")])  # type: ignore[arg-type]
    assert isinstance(ok.criteria, tuple)


# -- what the manifest's file paths leak, and the way out (issue 10) ----------------------------


def test_the_path_warning_names_every_identifier_the_paths_carry(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    with caplog.at_level(logging.WARNING, logger="curation.cohort"):
        res = build_cohort(db, SPEC, None, key=KEY)
    con = catalog.connect(db, read_only=True)
    rows = con.sql(
        f"""SELECT i.path, i.PatientID, i.AccessionNumber, strftime(i.StudyDate, '%Y%m%d')
        FROM cohort_members m JOIN instances i USING (SeriesInstanceUID)
        WHERE m.cohort_id = {res.cohort_id}"""
    ).fetchall()
    con.close()
    # the synthetic archive's folders are named after patient, accession and date
    for what, i in (("PatientID", 1), ("AccessionNumber", 2), ("StudyDate", 3)):
        n = sum(1 for r in rows if r[i] and r[i] in r[0])
        assert n > 0, what
        assert f"{what} in {n}" in caplog.text
    assert "--files link" in caplog.text and "--files copy" in caplog.text


@pytest.mark.parametrize("mode", ["link", "copy"])
def test_pseudonymous_files_carry_no_identifier_in_their_paths(
    db: Path, tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="curation.cohort"):
        res = build_cohort(db, SPEC, out, key=KEY, files=mode)
    assert "carry identifiers" not in caplog.text
    con = catalog.connect(db, read_only=True)
    pairs = scan.identifier_values(con, keywords=("PatientID", "AccessionNumber", "StudyDate"))
    ids = {v.strip() for _, v in pairs if len(v.strip()) >= scan.MIN_LENGTH}
    needles = scan.needles_for(pairs)
    originals = dict(
        con.sql(
            f"""SELECT m.series_key, list(i.path ORDER BY i.InstanceNumber, i.path)
            FROM cohort_members m JOIN instances i USING (SeriesInstanceUID)
            WHERE m.cohort_id = {res.cohort_id} GROUP BY 1"""
        ).fetchall()
    )
    con.close()
    manifest = pl.read_parquet(out / "manifest.parquet")
    datalist = (out / "datalist.json").read_text()
    paths = [p for files in manifest["dicom_files"].to_list() for p in files]
    assert paths and all(p.startswith(str(out / "files")) for p in paths)
    assert not [x for x in ids if any(x in p for p in paths) or x in datalist]
    # nor in another spelling (a date as YYYY-MM-DD) or case
    assert not [p for p in [*paths, datalist] if scan.scan_bytes(p.encode(), needles)]
    for row in manifest.iter_rows(named=True):
        for made, src in zip(row["dicom_files"], originals[row["series_key"]], strict=True):
            assert Path(made).read_bytes() == Path(src).read_bytes()
            assert Path(made).is_symlink() == (mode == "link")
