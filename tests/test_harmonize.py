"""Harmonized fields and series types: on the real multi-vendor corpus (against dcm2niix's sidecars)
and on the synthetic cohort (against its series truth)."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from curation import catalog, harmonize
from curation.harmonize import agreement, classify
from curation.harmonize.fields import FIELDS, RAW
from curation.harmonize.vendors import VENDORS, normalize_vendor

from .conftest import SAMPLE_DATA, SHARED_DICOM, needs_shared

SYNTH = SAMPLE_DATA / "synthetic"


@pytest.fixture(scope="module")
def shared_harmonized(shared_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("harm") / "catalog.duckdb"
    shutil.copy(shared_catalog, db)
    harmonize.build(db)
    return db


@pytest.fixture(scope="module")
def synth_harmonized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curation import crawl

    db = tmp_path_factory.mktemp("synth") / "catalog.duckdb"
    crawl(SYNTH / "dicom", db, workers=1, progress=False)
    harmonize.build(db)
    return db


@pytest.mark.parametrize(
    ("manufacturer", "vendor"),
    [
        ("GE MEDICAL SYSTEMS", "GE"),
        ("GE Healthcare", "GE"),
        ("SIEMENS", "Siemens"),
        ("Siemens Healthineers", "Siemens"),
        ("Philips Medical Systems", "Philips"),
        ("ELSCINT", "Philips"),
        ("TOSHIBA", "Canon"),
        ("CANON_MEC", "Canon"),
        ("UIH", "UIH"),
        ("Hitachi Medical Corporation", "Hitachi"),
        ("FUJIFILM Corporation", "Fujifilm"),
        ("CPS", "other"),  # CPS alone is not CPS Innovations
        ("CTI", "Siemens"),
        ("ADAC", "Philips"),
        ("Lunar", "GE"),
        ("KODAK", "Carestream"),
        ("Carestream Health", "Carestream"),
        ("KONICA MINOLTA", "Konica Minolta"),
        ("HOLOGIC, Inc.", "Hologic"),
        ("Varian Medical Systems", "Varian"),
        ("Samsung Medison", "Samsung"),
        ("OECS", "other"),  # a word boundary: OEC, not any name starting with it
        ("ACME imaging", "other"),
        (None, None),
    ],
)
def test_vendor_names(manufacturer: str | None, vendor: str | None) -> None:
    assert normalize_vendor(manufacturer) == vendor


def test_vendor_sql_matches_python() -> None:
    con = duckdb.connect()
    names = ["GE MEDICAL SYSTEMS", "Siemens HealthCare GmbH", "Philips", "TOSHIBA", "UIH", "foo"]
    names += ["Lunar", "CTI", "FUJIFILM Corporation", "OEC Medical Systems", "OECS", "KODAK"]
    got = con.execute(
        f"SELECT {harmonize.vendors.vendor_sql('m')} FROM unnest($n) t(m)", {"n": names}
    ).fetchall()
    assert [g[0] for g in got] == [normalize_vendor(n) for n in names]
    assert len({v.name for v in VENDORS}) == len(VENDORS)


def test_every_field_documents_its_sources() -> None:
    for f in FIELDS:
        assert f.unit and len(f.description) > 5, f.name
        assert f.sources, f.name
        for s in f.sources:
            assert s.vendor == "*" or s.vendor in {v.name for v in VENDORS}, (f.name, s.vendor)
            assert len(s.where) > 5, (f.name, s.vendor)
    # private elements are named by creator + offset, never raw group/element
    for r in RAW:
        assert (r.creator is None) == ("xx" not in r.tag), r.name


def test_docs_list_every_field() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "harmonize.md").read_text()
    for f in FIELDS:
        assert f"`{f.name}`" in page, f.name


@needs_shared
def test_agreement_with_dcm2niix(shared_harmonized: Path) -> None:
    con = catalog.connect(shared_harmonized, read_only=True)
    table = agreement.compare(con, SHARED_DICOM)
    summary = agreement.summary(table)
    print(summary)  # the per-field, per-vendor table, with -s
    overall = summary.filter(pl.col("field") == "(all)")["rate"][0]
    assert table.height > 600
    assert set(table["vendor"]) >= {"GE", "Siemens", "Philips", "Canon", "UIH"}
    assert overall >= 0.95, table.filter(~pl.col("agree"))
    # The private-tag fields the issue asks for are compared, per vendor that stores them.
    compared = {(r["field"], r["vendor"]) for r in table.iter_rows(named=True)}
    for need in [
        ("bval", "GE"),
        ("bval", "Philips"),
        ("bval", "Canon"),
        ("bval", "UIH"),
        ("bval", "Siemens"),
        ("PhaseEncodingDirection", "Siemens"),
        ("TotalReadoutTime", "GE"),
        ("TotalReadoutTime", "Siemens"),
        ("SliceTiming", "Siemens"),
        ("SliceTiming", "UIH"),
    ]:
        assert need in compared, need
    # Known disagreements are explained in docs/harmonize.md: only the rotated UIH DTI, whose
    # two reference sidecars (two corpus copies, two dcm2niix runs) disagree with each other.
    bad = table.filter(~pl.col("agree"))
    assert set(bad["vendor"]) <= {"UIH"}, bad


@needs_shared
def test_siemens_phase_encoding_polarity(shared_harmonized: Path) -> None:
    con = catalog.connect(shared_harmonized, read_only=True)
    rows = dict(
        con.sql(
            "SELECT SeriesDescription, phase_encoding_direction FROM harmonized_series "
            "WHERE SeriesDescription LIKE 'EPI PE=%'"
        ).fetchall()
    )
    # dcm_qa_nih acquired the same EPI with four phase-encoding directions
    assert rows == {"EPI PE=AP": "j-", "EPI PE=PA": "j", "EPI PE=RL": "i", "EPI PE=LR": "i-"}


def test_classification_on_synthetic_truth(synth_harmonized: Path) -> None:
    con = catalog.connect(synth_harmonized, read_only=True)
    truth = pl.read_parquet(SYNTH / "series.parquet")
    con.register("truth", truth)
    for ours, theirs, floor in [
        ("series_type", "series_type", 0.97),
        ("contrast_phase", "contrast_phase", 0.97),
        ("kernel_class", "kernel_class", 0.97),
        ("body_part", "body_part", 0.97),
    ]:
        n, acc = con.sql(
            f"""SELECT count(*), avg(CASE WHEN h.{ours} = t.{theirs} THEN 1.0 ELSE 0.0 END)
            FROM truth t JOIN harmonized_series h USING (SeriesInstanceUID) WHERE t.{theirs} IS NOT NULL"""
        ).fetchall()[0]
        assert n > 20 and acc >= floor, (ours, n, acc)


def test_synthetic_dwi_b_values_per_vendor(synth_harmonized: Path) -> None:
    # GE writes 1e9 + b on MR29, Siemens SIEMENS MR HEADER, Philips 2001,xx03, Canon public + comments
    con = catalog.connect(synth_harmonized, read_only=True)
    truth = pl.read_parquet(SYNTH / "series.parquet").filter(pl.col("series_type") == "mr_dwi")
    con.register("truth", truth)
    rows = con.sql(
        """SELECT t.vendor, list_sort(list_distinct(t.b_values)) AS want,
            list_sort(list_distinct(h.b_values_s_mm2)) AS got
        FROM truth t JOIN harmonized_series h USING (SeriesInstanceUID)"""
    ).pl()
    assert set(rows["vendor"]) == {"ge", "siemens", "philips", "canon"}
    assert (rows["want"] == rows["got"]).all(), rows


def test_classification_rules_are_declarations() -> None:
    sql = classify.classification_sql()
    assert set(sql) == {"series_type", "contrast_phase", "kernel_class"}
    labels = [label for label, _ in classify.MR_SERIES_TYPES]
    assert labels[:3] == ["mr_localizer", "mr_adc", "mr_dwi"]  # order is precedence
