"""The synthetic cohort generator: files read cleanly, geometry holds, the truth matches the files."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pydicom
import pytest
from pydicom.errors import InvalidDicomError

from curation.cli.main import main
from curation.synth import DEFECTS, generate_cohort
from curation.synth.truth import GROUND_TRUTH_COLUMNS, REPORT_COLUMNS, SERIES_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
STACK_TYPES = ("ct_axial", "mr_t1", "mr_t2", "mr_flair", "mr_dwi")


def _read(path: Path) -> pydicom.Dataset:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return pydicom.dcmread(io.BytesIO(data))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small cohort with every defect kind, read back once."""
    root = tmp_path_factory.mktemp("synth") / "cohort"
    summary = generate_cohort(root, patients=14, seed=7, progress=False)
    truth = pl.read_parquet(root / "ground_truth.parquet")
    series = pl.read_parquet(root / "series.parquet")
    bad_paths = set(truth.filter(pl.col("level") == "file")["path"].to_list())
    by_series: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    by_sop: dict[str, pydicom.Dataset] = {}
    for path in sorted((root / "dicom").rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in bad_paths:
            ds = _read(path)
            by_series[ds.SeriesInstanceUID].append(ds)
            by_sop[ds.SOPInstanceUID] = ds
    return {
        "root": root,
        "summary": summary,
        "truth": truth,
        "series": series,
        "by_series": by_series,
        "by_sop": by_sop,
    }


def test_every_kind_planted(cohort: dict[str, Any]) -> None:
    kinds = set(cohort["truth"]["kind"].to_list())
    assert kinds == set(DEFECTS)
    series = cohort["series"]
    n_clean = series.filter(pl.col("defect").is_null()).height
    assert n_clean > series.height / 2, "clean series must be the majority"


def test_files_read_cleanly(cohort: dict[str, Any]) -> None:
    for ds in cohort["by_sop"].values():
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
        assert ds.SOPInstanceUID.startswith("2.25.") and len(ds.SOPInstanceUID) <= 64
        arr = ds.pixel_array
        assert arr.shape == (ds.Rows, ds.Columns)
    readable = cohort["series"]["n_instances_readable"].sum()
    assert len(cohort["by_sop"]) == readable


def _stack(dss: list[pydicom.Dataset]) -> tuple[np.ndarray, np.ndarray]:
    iop = np.array(dss[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    pos = np.array([d.ImagePositionPatient for d in dss], dtype=float)
    return pos, normal


def test_clean_series_have_consistent_geometry(cohort: dict[str, Any]) -> None:
    clean = cohort["series"].filter(
        pl.col("defect").is_null() & pl.col("series_type").is_in(STACK_TYPES)
    )
    assert clean.height > 10
    for row in clean.iter_rows(named=True):
        dss = cohort["by_series"][row["SeriesInstanceUID"]]
        assert len(dss) == row["n_files"]
        assert len({tuple(d.ImageOrientationPatient) for d in dss}) == 1
        assert len({tuple(d.PixelSpacing) for d in dss}) == 1
        assert len({(d.Rows, d.Columns) for d in dss}) == 1
        assert len({d.FrameOfReferenceUID for d in dss}) == 1
        pos, normal = _stack(dss)
        along = pos @ normal
        # every position lies on one line along the slice normal ...
        off_axis = pos - np.outer(along, normal)
        assert np.allclose(off_axis, off_axis[0], atol=1e-3)
        # ... at a constant spacing (a DWI series repeats each position once per volume)
        steps = np.diff(np.unique(np.round(along, 3)))
        assert np.allclose(steps, row["slice_spacing_mm"], atol=1e-3)
        assert sorted(int(d.InstanceNumber) for d in dss) == list(range(1, len(dss) + 1))
        assert all(float(getattr(d, "GantryDetectorTilt", 0)) == 0 for d in dss)
        assert all(getattr(d, "BurnedInAnnotation", "NO") == "NO" for d in dss)


def _hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))


def test_truth_matches_files(cohort: dict[str, Any]) -> None:
    root, by_series, by_sop = cohort["root"], cohort["by_series"], cohort["by_sop"]
    for row in cohort["truth"].iter_rows(named=True):
        kind, params = row["kind"], json.loads(row["params"])
        dss = by_series.get(row["SeriesInstanceUID"], [])
        if row["level"] == "instance":
            assert row["SOPInstanceUID"] in by_sop, row
        if kind == "missing_slices":
            along = np.sort(_stack(dss)[0] @ _stack(dss)[1])
            assert np.isclose(np.diff(along).max(), params["gap_mm"], atol=1e-3)
            assert len(dss) == params["n_planned"] - len(params["missing_indices"])
        elif kind == "duplicate_slices":
            along = np.round(_stack(dss)[0] @ _stack(dss)[1], 3)
            assert len(along) - len(np.unique(along)) == len(params["SOPInstanceUID_pairs"])
        elif kind == "nonuniform_spacing":
            along = np.sort(_stack(dss)[0] @ _stack(dss)[1])
            assert len(np.unique(np.round(np.diff(along), 3))) == 2
        elif kind == "mixed_orientation":
            assert len({tuple(d.ImageOrientationPatient) for d in dss}) == 2
        elif kind == "embedded_localizer":
            loc = by_sop[row["SOPInstanceUID"]]
            assert "LOCALIZER" in loc.ImageType
            assert [float(v) for v in loc.ImageOrientationPatient] == [1, 0, 0, 0, 0, -1]
        elif kind == "mixed_pixel_spacing":
            assert len({tuple(d.PixelSpacing) for d in dss}) == 2
        elif kind == "mixed_matrix":
            assert len({(d.Rows, d.Columns) for d in dss}) == 2
        elif kind == "gantry_tilt":
            assert {float(d.GantryDetectorTilt) for d in dss} == {params["tilt_deg"]}
            pos, normal = _stack(dss)
            steps = np.diff(pos, axis=0)
            # the table moves along z, not along the tilted slice normal
            assert np.allclose(steps[:, :2], 0) and abs(normal[2]) < 0.999
        elif kind == "too_few_slices":
            assert len(dss) == params["n_slices"] <= 3
        elif kind == "instance_number_gap":
            numbers = sorted(int(d.InstanceNumber) for d in dss)
            assert max(np.diff(numbers)) == params["gap"]
        elif kind == "instance_number_duplicate":
            numbers = [int(d.InstanceNumber) for d in dss]
            assert numbers.count(params["InstanceNumber"]) == 2
        elif kind == "zero_byte":
            assert (root / row["path"]).stat().st_size == 0
        elif kind == "truncated":
            data = (root / row["path"]).read_bytes()
            with pytest.raises(Exception):  # noqa: B017 - pydicom raises various errors
                ds = pydicom.dcmread(io.BytesIO(data))
                ds.pixel_array  # noqa: B018
        elif kind == "not_dicom":
            with pytest.raises(InvalidDicomError):
                pydicom.dcmread(root / row["path"])
        elif kind == "blank_slices":
            assert np.ptp(by_sop[row["SOPInstanceUID"]].pixel_array) == 0
        elif kind == "clipping":
            ds = by_sop[row["SOPInstanceUID"]]
            values = (
                _hu(ds)
                if ds.Modality == "CT"
                else ds.pixel_array * float(ds.get("RescaleSlope", 1))
            )
            assert values.max() <= params["high"] + 1
        elif kind == "metal_streaks":
            assert _hu(by_sop[row["SOPInstanceUID"]]).max() >= 2900
        elif kind == "burned_in_text":
            ds = by_sop[row["SOPInstanceUID"]]
            assert getattr(ds, "BurnedInAnnotation", "NO") != "YES"
            corner = ds.pixel_array[: ds.Rows // 4, : ds.Columns // 2]
            assert corner.max() > np.percentile(ds.pixel_array, 99.9) * 0.99
        elif kind == "wrong_rescale":
            key = "RescaleIntercept" if "RescaleIntercept" in params else "RescaleSlope"
            assert {float(d.get(key)) for d in dss} == {params[key]}
        elif kind == "phi_in_header":
            assert all(params["text"] in str(d.get(params["keyword"])) for d in dss)
        elif kind == "burned_in_annotation_flag":
            assert {d.BurnedInAnnotation for d in dss} == {"YES"}


def test_high_noise_and_motion_differ_from_clean(cohort: dict[str, Any]) -> None:
    truth, by_sop = cohort["truth"], cohort["by_sop"]
    for kind in ("high_noise", "motion_blur"):
        sop = truth.filter(pl.col("kind") == kind)["SOPInstanceUID"][0]
        ds = by_sop[sop]
        arr = ds.pixel_array.astype(float)
        # clean small-profile images are piecewise constant: few distinct values
        assert len(np.unique(arr)) > 50


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    def digest(root: Path) -> str:
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(p.relative_to(root).as_posix().encode())
                h.update(p.read_bytes())
        return h.hexdigest()

    a = generate_cohort(tmp_path / "a", patients=3, seed=11, progress=False)
    b = generate_cohort(tmp_path / "b", patients=3, seed=11, progress=False)
    c = generate_cohort(tmp_path / "c", patients=3, seed=12, progress=False)
    assert digest(a.root) == digest(b.root)
    assert digest(a.root) != digest(c.root)


def test_tables_are_documented(cohort: dict[str, Any]) -> None:
    root = cohort["root"]
    doc = (ROOT / "docs" / "synthetic.md").read_text()
    for name, columns in (
        ("ground_truth", GROUND_TRUTH_COLUMNS),
        ("series", SERIES_COLUMNS),
        ("reports", REPORT_COLUMNS),
    ):
        table = pl.read_parquet(root / f"{name}.parquet")
        assert table.columns == list(columns)
        for column, (_, description) in columns.items():
            assert description, f"{name}.{column} has no description"
            assert f"`{column}`" in doc, f"{name}.{column} is not in docs/synthetic.md"
    for kind in DEFECTS:
        assert f"`{kind}`" in doc, f"defect kind {kind} is not in docs/synthetic.md"


def test_reports_and_labels(cohort: dict[str, Any]) -> None:
    reports = pl.read_parquet(cohort["root"] / "reports.parquet")
    assert reports.height == cohort["summary"].n_studies
    for row in reports.iter_rows(named=True):
        assert (cohort["root"] / row["report_path"]).read_text() == row["report_text"]
        for finding in row["findings"]:
            assert finding["label"] in ("positive", "negated", "uncertain", "historical")
            assert finding["sentence"] in row["report_text"]


def test_vendor_heterogeneity(cohort: dict[str, Any]) -> None:
    vendors = set(cohort["series"]["vendor"].to_list())
    assert vendors == {"ge", "siemens", "philips", "canon"}
    dwi = cohort["series"].filter(pl.col("series_type") == "mr_dwi")
    seen = set()
    for row in dwi.iter_rows(named=True):
        ds = next(d for d in cohort["by_series"][row["SeriesInstanceUID"]] if d.InstanceNumber > 1)
        if row["vendor"] == "ge":
            b = int(ds.private_block(0x0043, "GEMS_PARM_01")[0x39].value[0]) % 1_000_000_000
        elif row["vendor"] == "siemens":
            b = int(ds.private_block(0x0019, "SIEMENS MR HEADER")[0x0C].value)
        elif row["vendor"] == "philips":
            b = int(ds.private_block(0x2001, "Philips Imaging DD 001")[0x03].value)
        else:
            b = int(ds.DiffusionBValue)
        assert b in (0, 1000)
        seen.add(row["vendor"])
    assert len(seen) >= 2


def test_crawl_generated_cohort(cohort: dict[str, Any], tmp_path: Path) -> None:
    from curation import catalog
    from curation.crawler.run import crawl

    root = cohort["root"]
    db = tmp_path / "catalog.duckdb"
    summary = crawl(root / "dicom", db, workers=1, progress=False)
    truth = cohort["truth"]
    con = catalog.connect(db, read_only=True)
    try:
        instance_paths = {r[0] for r in con.sql("SELECT path FROM instances").fetchall()}
        errors = dict(con.sql("SELECT path, reason FROM crawl_errors").fetchall())
    finally:
        con.close()
    files = {str(p) for p in (root / "dicom").rglob("*") if p.is_file()}
    bad = {str(root / p) for p in truth.filter(pl.col("level") == "file")["path"].to_list()}
    # every intact file is an instance; every unreadable one is a planted defect
    assert files - bad <= instance_paths
    assert set(errors) <= bad
    assert summary.n_seen == len(files)
    assert summary.n_ok + summary.n_skipped + summary.n_errors == len(files)
    zero = {str(root / p) for p in truth.filter(pl.col("kind") == "zero_byte")["path"].to_list()}
    assert {p for p, r in errors.items() if r == "zero_byte"} == zero


def test_cli_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["-q", "sample", "--out", str(out), "--patients", "1", "--seed", "3"]) == 0
    assert (out / "ground_truth.parquet").exists()
    assert "files" in capsys.readouterr().out
    # a non-empty output directory is refused with the input-error exit code
    assert main(["-q", "sample", "--out", str(out), "--patients", "1"]) == 3
    assert main(["-q", "sample", "--out", str(tmp_path / "x"), "--patients", "0"]) == 3
