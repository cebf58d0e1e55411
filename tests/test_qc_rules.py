"""Each QC rule, on real headers: a clean real series passes, the same series with one defect planted
in its catalog rows fails, and the finding names the series.

The series is the Philips CT of dcm_qa_ct (28 axial slices, 5 mm), crawled once; each test plants
its defect with SQL on a copy of that catalog, the way a broken archive would look to the crawler.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pydicom import Dataset

from curation.qc import run
from curation.qc.suite import from_mapping

from .conftest import SHARED_DICOM

CT = SHARED_DICOM / "dcm_qa_ct" / "In" / "Philips"
MR_ENHANCED = SHARED_DICOM / "dcm_qa_enh" / "In" / "Siemens" / "XA10"


def _crawled(tmp_path_factory: pytest.TempPathFactory, src: Path, name: str) -> Path:
    if not src.is_dir():
        pytest.skip("../shared/dicom (the real multi-vendor corpus) is not here")
    from curation import crawl

    db = tmp_path_factory.mktemp(name) / "catalog.duckdb"
    crawl(src, db, workers=1, progress=False)
    return db


@pytest.fixture(scope="module")
def ct_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _crawled(tmp_path_factory, CT, "ct")


@pytest.fixture
def con(ct_catalog: Path, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    db = tmp_path / "catalog.duckdb"
    shutil.copy(ct_catalog, db)
    c = duckdb.connect(str(db))
    yield c
    c.close()


def findings(con: duckdb.DuckDBPyConnection, rule_id: str, **params: Any) -> list[dict[str, Any]]:
    """Run one rule (with ``params``) and return its findings as dicts."""
    suite = from_mapping({"include": [rule_id], "rules": {rule_id: {"params": params}}})
    result = run(con, suite)
    assert not result.errors, result.errors
    return con.sql(f"SELECT * FROM qc_findings WHERE run_id = {result.run_id}").pl().to_dicts()


def series_uid(con: duckdb.DuckDBPyConnection) -> str:
    return str(con.sql("SELECT any_value(SeriesInstanceUID) FROM instances").fetchall()[0][0])


def by_instance_number(con: duckdb.DuckDBPyConnection, where: str) -> str:
    return f"SOPInstanceUID IN (SELECT SOPInstanceUID FROM instances WHERE {where})"


def test_clean_real_series_passes_every_completeness_and_geometry_rule(
    con: duckdb.DuckDBPyConnection,
) -> None:
    suite = from_mapping({"include": ["instance.*", "series.*"]})
    result = run(con, suite)
    assert not result.errors
    bad = con.sql(
        f"SELECT rule_id, message FROM qc_findings WHERE run_id = {result.run_id} "
        "AND severity IN ('error', 'warning')"
    ).fetchall()
    assert bad == []


def test_missing_slices(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"DELETE FROM instances WHERE {by_instance_number(con, 'InstanceNumber IN (10, 11)')}"
    )
    (f,) = findings(con, "series.missing_slices")
    assert f["SeriesInstanceUID"] == series_uid(con)
    assert f["value"] == "2"
    assert findings(con, "series.nonuniform_spacing") == []


def test_nonuniform_spacing_not_missing(con: duckdb.DuckDBPyConnection) -> None:
    # from slice 15 on the table moves 7.5 mm per slice instead of 5 mm
    con.execute(
        "UPDATE instances SET ImagePositionPatient = [ImagePositionPatient[1], "
        "ImagePositionPatient[2], ImagePositionPatient[3] + sign(ImagePositionPatient[3] - "
        "(SELECT min(ImagePositionPatient[3]) FROM instances)) * 0 + 2.5 * (InstanceNumber - 14)] "
        "WHERE InstanceNumber > 14"
    )
    assert len(findings(con, "series.nonuniform_spacing")) == 1
    assert findings(con, "series.missing_slices") == []


def test_tolerance_parameter_changes_the_verdict(con: duckdb.DuckDBPyConnection) -> None:
    # one slice off by 0.2 mm: irregular at the default 1 % of 5 mm, regular at 10 %
    con.execute(
        "UPDATE instances SET ImagePositionPatient = [ImagePositionPatient[1], "
        "ImagePositionPatient[2], ImagePositionPatient[3] + 0.2] WHERE InstanceNumber = 12"
    )
    assert len(findings(con, "series.nonuniform_spacing")) == 1
    assert findings(con, "series.nonuniform_spacing", spacing_tolerance_fraction=0.1) == []


def test_duplicate_positions(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "INSERT INTO instances SELECT * REPLACE (SOPInstanceUID || '.9' AS SOPInstanceUID, "
        "file_id + 1 AS file_id) FROM instances WHERE InstanceNumber = 7"
    )
    (f,) = findings(con, "series.duplicate_positions")
    assert f["value"] == "1"


def test_multi_volume_series_is_not_duplicate(con: duckdb.DuckDBPyConnection) -> None:
    # a second volume at the same positions (fMRI-like) is not a duplicate
    con.execute(
        "INSERT INTO instances SELECT * REPLACE (SOPInstanceUID || '.9' AS SOPInstanceUID, "
        "file_id + 1 AS file_id, InstanceNumber + 100 AS InstanceNumber) FROM instances"
    )
    assert findings(con, "series.duplicate_positions") == []
    assert findings(con, "series.missing_slices") == []


def test_duplicate_sop_in_two_files(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "INSERT INTO instances SELECT * REPLACE (file_id + 1 AS file_id, path || '.copy' AS path) "
        "FROM instances WHERE InstanceNumber = 3"
    )
    assert len(findings(con, "instance.duplicate_sop")) == 2


def test_series_uid_reused_by_a_second_acquisition(con: duckdb.DuckDBPyConnection) -> None:
    # the same series exported again, in another folder: copies are no evidence ...
    con.execute(
        "INSERT INTO instances SELECT * REPLACE (file_id + 1000 AS file_id, "
        "replace(path, '/S2010/', '/copy/') AS path) FROM instances"
    )
    assert findings(con, "series.uid_reused") == []
    # ... but other instances at the same positions (a rescan under the same UID) are
    con.execute(
        "INSERT INTO instances SELECT * REPLACE (file_id + 2000 AS file_id, "
        "SOPInstanceUID || '.2' AS SOPInstanceUID, replace(path, '/S2010/', '/rescan/') AS path) "
        "FROM instances WHERE path LIKE '%/S2010/%'"
    )
    (f,) = findings(con, "series.uid_reused")
    assert f["value"] == "3" and f["SeriesInstanceUID"] == series_uid(con)


def test_mixed_orientation(con: duckdb.DuckDBPyConnection) -> None:
    # the last 5 slices rotated 15 degrees about the left-right axis
    con.execute(
        "UPDATE instances SET ImageOrientationPatient = [1, 0, 0, 0, cos(radians(15)), "
        "-sin(radians(15))] WHERE InstanceNumber > 23"
    )
    (f,) = findings(con, "series.mixed_orientation")
    assert 14.9 < float(f["value"]) < 15.1
    assert findings(con, "instance.embedded_localizer") == []


def test_embedded_localizer(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "UPDATE instances SET ImageOrientationPatient = [1, 0, 0, 0, 0, -1], "
        "ImageType = ['ORIGINAL', 'PRIMARY', 'LOCALIZER'], Rows = 256 WHERE InstanceNumber = 1"
    )
    (f,) = findings(con, "instance.embedded_localizer")
    assert f["SOPInstanceUID"] is not None
    # the localizer is reported once, not again as orientation / matrix / spacing trouble
    for rule in ("series.mixed_orientation", "series.mixed_matrix", "series.missing_slices"):
        assert findings(con, rule) == [], rule


def test_mixed_pixel_spacing_and_matrix(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("UPDATE instances SET PixelSpacing = [0.6, 0.6] WHERE InstanceNumber > 20")
    assert len(findings(con, "series.mixed_pixel_spacing")) == 1
    assert findings(con, "series.mixed_matrix") == []
    con.execute(
        "UPDATE instances SET Rows = Rows // 2, Columns = Columns // 2, "
        "PixelSpacing = [PixelSpacing[1] * 2, PixelSpacing[2] * 2] WHERE InstanceNumber > 20"
    )
    assert len(findings(con, "series.mixed_matrix")) == 1


def test_gantry_tilt_and_obliquity(con: duckdb.DuckDBPyConnection) -> None:
    # image plane tilted 12 degrees, positions still stepping along z: a sheared stack
    con.execute(
        "UPDATE instances SET ImageOrientationPatient = [1, 0, 0, 0, cos(radians(12)), "
        "-sin(radians(12))]"
    )
    (f,) = findings(con, "series.gantry_tilt")
    assert 11.9 < float(f["value"]) < 12.1
    assert findings(con, "series.obliquity", max_obliquity_deg=10.0) != []
    assert findings(con, "series.obliquity") == []


def test_too_few_slices(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DELETE FROM instances WHERE InstanceNumber > 3")
    (f,) = findings(con, "series.too_few_slices")
    assert f["value"] == "3"
    assert findings(con, "series.too_few_slices", min_slices=3) == []


def test_instance_number_gap_and_duplicate(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("UPDATE instances SET InstanceNumber = InstanceNumber + 3 WHERE InstanceNumber > 9")
    (f,) = findings(con, "series.instance_number_gaps")
    assert f["value"] == "3"
    assert findings(con, "series.instance_number_duplicates") == []
    con.execute("UPDATE instances SET InstanceNumber = 5 WHERE InstanceNumber = 6")
    assert len(findings(con, "series.instance_number_duplicates")) == 1


def test_nonorthogonal_cosines_and_rescale(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "UPDATE instances SET ImageOrientationPatient = [1, 0, 0, 0.1, 1, 0], "
        "RescaleIntercept = -1000 WHERE InstanceNumber = 4"
    )
    assert len(findings(con, "series.nonorthogonal_cosines")) == 1
    assert len(findings(con, "series.rescale_varies")) == 1


def test_thickness_vs_spacing(con: duckdb.DuckDBPyConnection) -> None:
    assert findings(con, "series.thickness_vs_spacing") == []
    con.execute("UPDATE instances SET SliceThickness = 2.5")
    (f,) = findings(con, "series.thickness_vs_spacing")
    assert float(f["value"]) == pytest.approx(2.5, abs=0.01)


def test_burned_in_and_secondary_capture(con: duckdb.DuckDBPyConnection) -> None:
    assert findings(con, "series.burned_in_annotation") == []
    con.execute("UPDATE instances SET BurnedInAnnotation = 'YES' WHERE InstanceNumber = 2")
    assert len(findings(con, "series.burned_in_annotation")) == 1
    con.execute("UPDATE instances SET SOPClassUID = '1.2.840.10008.5.1.4.1.1.7'")
    assert len(findings(con, "series.secondary_capture")) == 1


def test_phi_in_header_never_repeats_the_identifier(con: duckdb.DuckDBPyConnection) -> None:
    assert findings(con, "series.phi_in_header") == []
    con.execute("UPDATE instances SET PatientName = 'Zuckerbrot^Amalia', PatientID = 'MX77123'")
    # elements is a view: the stored values are in element_values, their names in element_names.
    con.execute(
        """UPDATE element_values v SET value = v.value || ' pt Amalia Zuckerbrot'
           FROM element_names n
           WHERE n.name_id = v.name_id AND n.private_creator IS NULL
             AND (n.keyword = 'SeriesDescription' OR (n.keyword = 'StudyDescription'
                  AND v.file_id IN (SELECT min(file_id) FROM element_values)))"""
    )
    con.execute(
        """UPDATE element_values v SET value = 'MRN MX77123' FROM element_names n
           WHERE n.name_id = v.name_id AND n.private_creator IS NULL
             AND n.keyword = 'ImageComments'"""
    )
    rows = findings(con, "series.phi_in_header")
    assert {r["value"] for r in rows} >= {"SeriesDescription"}
    for r in rows:
        for ident in ("ZUCKERBROT", "AMALIA", "MX77123"):
            assert ident not in (r["message"] + r["value"]).upper()


@pytest.fixture(scope="module")
def enhanced_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _crawled(tmp_path_factory, MR_ENHANCED, "enh")


def test_enhanced_multiframe_geometry_from_frames(enhanced_catalog: Path, tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    shutil.copy(enhanced_catalog, db)
    con = duckdb.connect(str(db))
    # clean: 4 files (volumes) x frames at the same positions
    result = run(con, from_mapping({"include": ["series.*", "instance.*"]}))
    errors = con.sql(
        f"SELECT rule_id FROM qc_findings WHERE run_id = {result.run_id} AND severity = 'error'"
    ).fetchall()
    assert errors == []
    n = con.sql("SELECT count(*) FROM qc_slices WHERE frame_index IS NOT NULL").fetchall()[0][0]
    assert n == con.sql("SELECT count(*) FROM frames").fetchall()[0][0] > 0
    # drop one frame of one file: that position is now short in one volume
    con.execute(
        "DELETE FROM frames WHERE (file_id, frame_index) = "
        "(SELECT (file_id, frame_index) FROM frames ORDER BY file_id, frame_index LIMIT 1 OFFSET 2)"
    )
    rows = findings(con, "series.missing_slices")
    assert len(rows) == 1 and rows[0]["value"] == "1"
    con.close()


# -- rules whose defect is in the files themselves: modified copies of real files, crawled ----------


def _copies(src: Path, out: Path, edit: Callable[[int, Dataset], None]) -> Path:
    """Copies of the instances of ``src`` (in name order; a DICOMDIR is left out) in ``out``, each
    changed by ``edit(i, ds)``."""
    import pydicom

    if not src.is_dir():
        pytest.skip("../shared/dicom (the real multi-vendor corpus) is not here")
    out.mkdir(parents=True)
    datasets = (pydicom.dcmread(p) for p in sorted(q for q in src.rglob("*") if q.is_file()))
    instances = (ds for ds in datasets if "SOPInstanceUID" in ds)
    for i, ds in enumerate(instances):
        edit(i, ds)
        ds.save_as(out / f"{i:03d}.dcm")
    return out


def _crawl_to(src: Path, db: Path) -> duckdb.DuckDBPyConnection:
    from curation import crawl

    crawl(src, db, workers=1, progress=False)
    return duckdb.connect(str(db))


def test_unreadable_file(tmp_path: Path) -> None:
    if not CT.is_dir():
        pytest.skip("../shared/dicom (the real multi-vendor corpus) is not here")
    src = tmp_path / "ct"
    shutil.copytree(CT, src)
    victim = sorted(p for p in src.rglob("*") if p.is_file())[5]
    raw = victim.read_bytes()
    # SeriesDescription (0008,103E) with the VR bytes "ZZ", which DICOM does not define
    element = b"\x08\x00\x3e\x10LO"
    assert raw.count(element) == 1
    victim.write_bytes(raw.replace(element, b"\x08\x00\x3e\x10ZZ"))
    con = _crawl_to(src, tmp_path / "c.duckdb")
    (f,) = findings(con, "instance.unreadable")
    con.close()
    assert f["path"] == str(victim) and f["value"] == "invalid_vr"


def test_unreadable_file_passes_a_clean_copy(con: duckdb.DuckDBPyConnection) -> None:
    assert findings(con, "instance.unreadable") == []


def test_frame_count_mismatch(tmp_path: Path) -> None:
    def one_frame_too_many(i: int, ds: Dataset) -> None:
        if i == 1:
            ds.NumberOfFrames = int(ds.NumberOfFrames) + 1

    con = _crawl_to(
        _copies(MR_ENHANCED, tmp_path / "enh", lambda i, ds: None), tmp_path / "a.duckdb"
    )
    assert findings(con, "instance.frame_count_mismatch") == []
    con.close()
    bad = _copies(MR_ENHANCED, tmp_path / "bad", one_frame_too_many)
    con = _crawl_to(bad, tmp_path / "b.duckdb")
    (f,) = findings(con, "instance.frame_count_mismatch")
    con.close()
    assert f["path"] == str(bad / "001.dcm") and f["value"] == "6/7"


def test_inplane_drift(con: duckdb.DuckDBPyConnection) -> None:
    assert findings(con, "series.inplane_drift") == []
    # one slice of the stack 2 mm to the patient's left of the others (a table shift)
    con.execute(
        "UPDATE instances SET ImagePositionPatient = [ImagePositionPatient[1] + 2, "
        "ImagePositionPatient[2], ImagePositionPatient[3]] WHERE InstanceNumber = 14"
    )
    (f,) = findings(con, "series.inplane_drift")
    assert f["SeriesInstanceUID"] == series_uid(con) and float(f["value"]) > 1.5


def _four_series(out: Path, thin: bool) -> Path:
    """The CT's 28 slices as four series of 7; with ``thin``, the third has 0.5 mm slices."""
    from pydicom.uid import generate_uid

    uids = [generate_uid(entropy_srcs=[str(out), str(k)]) for k in range(4)]

    def split(i: int, ds: Dataset) -> None:
        k = i // 7
        ds.SeriesInstanceUID, ds.SeriesNumber = uids[k], 100 + k
        if thin and k == 2:
            ds.SliceThickness = "0.5"

    return _copies(CT, out, split)


def test_rare_and_outlier_values(tmp_path: Path) -> None:
    # the cohort is four series: a value held by one of them is rare (share 0.25 < 0.3), and a
    # tenth of the others' thickness is an outlier (10 robust SDs at the spread's floor)
    rare = {"max_share": 0.3, "min_series": 4, "attributes": ["SliceThickness"]}
    outlier = {"min_series": 4, "attributes": ["SliceThickness"]}
    con = _crawl_to(_four_series(tmp_path / "same", thin=False), tmp_path / "a.duckdb")
    assert findings(con, "series.rare_value", **rare) == []
    assert findings(con, "series.outlier_value", **outlier) == []
    con.close()
    con = _crawl_to(_four_series(tmp_path / "thin", thin=True), tmp_path / "b.duckdb")
    thin = con.sql("SELECT SeriesInstanceUID FROM series WHERE SliceThickness < 1").fetchall()
    (r,) = findings(con, "series.rare_value", **rare)
    (o,) = findings(con, "series.outlier_value", **outlier)
    con.close()
    assert r["SeriesInstanceUID"] == o["SeriesInstanceUID"] == thin[0][0]
    assert r["value"] == "SliceThickness=0.5" and o["value"] == "SliceThickness=0.5"
