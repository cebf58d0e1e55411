"""Pixel reading, metrics, computation and the pixel.* rules.

Reading is checked against pydicom's own decoding on real files of every compressed transfer syntax
(pydicom's test files) and on the real corpus; the metrics on images with known properties; the
whole step (crawl, compute, rules) on the shipped synthetic cohort, whose planted defects must be
found and whose clean series must not be flagged.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from curation.pixels import metrics as m
from curation.pixels.read import SliceRef, read_slices
from curation.pixels.sample import sample_indices
from tests.conftest import SAMPLE_DATA, SHARED_DICOM, needs_shared

SYNTH = SAMPLE_DATA / "synthetic"


# -- reading --------------------------------------------------------------------------------------


def _ref(path: str | Path, frame: int = 0, **kw: object) -> SliceRef:
    ds = dcmread(path, stop_before_pixels=True)
    return SliceRef(
        path=str(path),
        frame=frame,
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        rows=ds.Rows,
        columns=ds.Columns,
        bits_allocated=ds.BitsAllocated,
        pixel_representation=ds.PixelRepresentation,
        n_frames=int(ds.get("NumberOfFrames", 1) or 1),
        slope=float(ds.get("RescaleSlope", 1.0)),
        intercept=float(ds.get("RescaleIntercept", 0.0)),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("CT_small.dcm", 0),  # native, rescaled to HU
        ("MR_small_jpeg_ls_lossless.dcm", 0),  # JPEG-LS
        ("MR_small_RLE.dcm", 0),  # RLE
        ("MR_small_bigendian.dcm", 0),  # big endian
        ("JPEG2000.dcm", 0),  # JPEG 2000
        ("JPEG-LL.dcm", 0),  # JPEG lossless
        ("emri_small.dcm", 7),  # multi-frame, one frame of ten
        ("emri_small_RLE.dcm", 3),  # multi-frame RLE
    ],
)
def test_decodes_like_pydicom(name: str, frame: int) -> None:
    path = get_testdata_file(name)
    assert path is not None
    got = read_slices([_ref(path, frame)])[0]
    ds = dcmread(path)
    want = ds.pixel_array.astype(np.float64)
    if want.ndim == 3:
        want = want[frame]
    want = want * float(ds.get("RescaleSlope", 1.0)) + float(ds.get("RescaleIntercept", 0.0))
    assert got.reason is None, got.message
    assert got.image is not None and got.image.dtype == np.float32
    np.testing.assert_allclose(got.image, want, rtol=1e-6)


def test_raw_decoder_matches_pydicom_and_checks_its_offset(tmp_path: Path) -> None:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    data = Path(path).read_bytes()
    offset = data.rindex(b"\xe0\x7f\x10\x00OW") + 12  # where the catalog's size arithmetic points
    ref = _ref(path, pixel_offset=offset)
    raw = read_slices([ref])[0]
    assert raw.decoder == "raw"
    pyd = read_slices([_ref(path)])[0]
    assert pyd.decoder == "pydicom"
    assert raw.image is not None and pyd.image is not None
    np.testing.assert_array_equal(raw.image, pyd.image)
    # a wrong offset fails the tag check and falls back to pydicom, never reads garbage
    wrong = read_slices([_ref(path, pixel_offset=offset - 2)])[0]
    assert wrong.decoder == "pydicom"
    np.testing.assert_array_equal(wrong.image, pyd.image)  # type: ignore[arg-type]


def test_unreadable_pixels_are_reasons_not_exceptions(tmp_path: Path) -> None:
    ct = get_testdata_file("CT_small.dcm")
    assert ct is not None
    truncated = tmp_path / "cut.dcm"
    truncated.write_bytes(Path(ct).read_bytes()[:-5000])
    bad_gz = tmp_path / "bad.dcm.gz"
    bad_gz.write_bytes(b"\x1f\x8b not gzip at all")
    good_gz = tmp_path / "good.dcm.gz"
    with gzip.open(good_gz, "wb") as f:
        f.write(Path(ct).read_bytes())
    refs = [
        SliceRef(str(truncated), rows=128, columns=128),
        SliceRef(str(tmp_path / "gone.dcm"), rows=128, columns=128),
        SliceRef(str(bad_gz), gzip=True, rows=128, columns=128),
        SliceRef(str(good_gz), gzip=True, rows=128, columns=128, intercept=-1024.0),
    ]
    out = read_slices(refs)
    assert [r.reason for r in out] == ["truncated", "missing_file", "bad_gzip", None]
    assert out[3].image is not None
    np.testing.assert_array_equal(out[3].image, dcmread(ct).pixel_array - 1024.0)


def test_sample_indices() -> None:
    assert sample_indices(10, 4) == [0, 3, 6, 9]
    assert sample_indices(3, 12) == [0, 1, 2]
    assert sample_indices(1, 12) == [0]
    assert sample_indices(0, 5) == []
    assert sample_indices(100, 1) == [50]


# -- metrics ---------------------------------------------------------------------------------------


def _phantom(n: int = 256, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A CT-like slice: air, an elliptical body of soft tissue, a bone disc."""
    yy, xx = np.mgrid[:n, :n] / n - 0.5
    img = np.full((n, n), -1000.0, dtype=np.float32)
    img[(xx / 0.4) ** 2 + (yy / 0.3) ** 2 < 1] = 40.0
    img[(xx - 0.1) ** 2 + yy**2 < 0.01] = 900.0
    if noise:
        img += np.random.default_rng(seed).normal(0, noise, img.shape).astype(np.float32)
    return img


def test_noise_sd_recovers_gaussian_noise() -> None:
    assert m.noise_sd(_phantom()) == 0.0  # piecewise constant: edges are not noise
    for sigma in (5.0, 20.0, 80.0):
        est = m.noise_sd(_phantom(noise=sigma))
        assert est == pytest.approx(sigma, rel=0.1)


def test_profile_blank_sharpness_and_direction() -> None:
    blank = m.slice_profile(np.full((64, 64), -1000.0, dtype=np.float32))
    assert blank.blank and np.isnan(blank.sharpness)
    img = _phantom(noise=10.0)
    sharp = m.slice_profile(img)
    assert sharp.directional_ratio > 0.6  # an elliptical body: not perfectly isotropic
    k = 9  # horizontal motion: a box blur along the rows
    blurred = sum(np.roll(img, s, axis=1) for s in range(k)) / k
    smeared = m.slice_profile(blurred.astype(np.float32))
    assert smeared.directional_ratio < 0.5 * sharp.directional_ratio
    assert smeared.sharpness < 0.5 * sharp.sharpness


def test_text_glyphs_find_burned_in_text_not_anatomy() -> None:
    from curation.synth.burnin import draw_text

    img = _phantom().astype(np.float64)
    assert m.text_glyphs(img.astype(np.float32)).n_aligned < 3
    draw_text(img, ["DOE^JANE", "ID 1234567"], 8, 8, 3000.0, 2)
    text = m.text_glyphs(img.astype(np.float32))
    assert text.n_aligned >= 7
    assert text.mask[8:22, 8:100].any() and not text.mask[128, 128]
    # metal is bright too, but not on a text line
    metal = _phantom()
    metal[120:126, 150:156] = 3000.0
    assert m.metal_pixels(metal) == 36
    # most text pixels are excluded; glyphs off the line (^) remain, which is why pixel.metal
    # also requires that the series shows no text line
    n_text = int(np.count_nonzero(img >= 2500))
    assert m.metal_pixels(img.astype(np.float32)) < 0.1 * n_text


def test_clipping_and_hu_landmarks() -> None:
    img = _phantom(noise=10.0)
    thr = m.foreground_threshold(img)
    assert -1000 < thr < 40  # between the air and the tissue peaks
    assert m.clipped_fraction(img, thr) < 0.01
    clipped = np.clip(img, -160, 150)
    assert m.clipped_fraction(clipped, m.foreground_threshold(clipped)) > 0.05
    hu = m.hu_landmarks(img.ravel())
    assert -1050 < hu.air_hu < -950 and -20 < hu.soft_tissue_hu < 100 and hu.bone_hu > 800
    shifted = m.hu_landmarks((img + 1024).ravel())  # RescaleIntercept 0 instead of -1024
    assert shifted.air_hu > 0


def test_fill_padding() -> None:
    img = _phantom()
    img[:10] = -3024.0
    mask = m.fill_padding(img, -3024.0)
    assert mask is not None and mask[:10].all() and img.min() == -1000.0
    assert m.fill_padding(_phantom(), None) is None


# -- the whole step on the synthetic cohort --------------------------------------------------------


@pytest.fixture(scope="module")
def synth_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curation import crawl
    from curation.pixels import compute

    db = tmp_path_factory.mktemp("pixels") / "synth.duckdb"
    crawl(SYNTH / "dicom", db, workers=2, progress=False)
    summary = compute(db, workers=2, progress=False)
    assert summary.n_series > 150
    return db


def test_compute_writes_metrics_for_every_image_series(synth_catalog: Path) -> None:
    with duckdb.connect(str(synth_catalog), read_only=True) as con:
        _check_metrics(con)


def _check_metrics(con: duckdb.DuckDBPyConnection) -> None:
    n_series = con.sql(
        "SELECT count(DISTINCT SeriesInstanceUID) FROM instances WHERE Rows IS NOT NULL"
    ).fetchall()[0][0]
    pm = con.sql("SELECT * FROM pixel_metrics").pl()
    assert pm.height == n_series
    # the truncated files of the cohort are unreadable pixels, recorded, not fatal
    bad = pm.filter(pl.col("status") != "ok")
    assert bad.height >= 1 and set(bad.get_column("error_reason")) <= {"truncated", "decode_error"}
    slices = con.sql(
        "SELECT count(*), count(*) FILTER (WHERE sampled) FROM pixel_slices"
    ).fetchall()
    n_slices = con.sql("SELECT sum(n_slices) FROM pixel_metrics").fetchall()[0][0]
    assert slices[0][0] == n_slices  # every slice profiled by default
    assert 0 < slices[0][1] <= 12 * pm.height


def test_pixel_rules_find_the_planted_artifacts(synth_catalog: Path) -> None:
    from curation import catalog

    con = catalog.connect(synth_catalog)
    try:
        _check_rules(con)
    finally:
        con.close()


def _check_rules(con: duckdb.DuckDBPyConnection) -> None:
    from curation.qc import run
    from curation.qc.rules.pixel import PIXEL_RULES
    from curation.qc.suite import from_mapping

    result = run(con, from_mapping({"name": "pixels", "include": ["pixel.*"]}, "pixels"))
    assert not result.errors, result.errors
    found = con.sql(
        f"SELECT rule_id, SeriesInstanceUID, message FROM qc_findings WHERE run_id = {result.run_id}"
    ).pl()
    truth = pl.read_parquet(SYNTH / "ground_truth.parquet")
    defective = set(truth.get_column("SeriesInstanceUID"))
    for rule in PIXEL_RULES:
        for kind in rule.detects:
            want = set(truth.filter(pl.col("kind") == kind).get_column("SeriesInstanceUID"))
            got = set(found.filter(pl.col("rule_id") == rule.id).get_column("SeriesInstanceUID"))
            assert want <= got, f"{rule.id} missed {len(want - got)} {kind} series"
            assert not (got - defective), f"{rule.id} flagged clean series"
    # pixel.unreadable: exactly the series whose pixels could not all be decoded, all of them
    # series of a planted truncated file (the cohort plants no other pixel-level damage)
    broken = {
        r[0]
        for r in con.sql(
            "SELECT SeriesInstanceUID FROM pixel_metrics WHERE status <> 'ok'"
        ).fetchall()
    }
    unreadable = set(
        found.filter(pl.col("rule_id") == "pixel.unreadable").get_column("SeriesInstanceUID")
    )
    truncated = set(truth.filter(pl.col("kind") == "truncated").get_column("SeriesInstanceUID"))
    assert unreadable and unreadable == broken and unreadable <= truncated
    # messages carry numbers, never identifiers
    ids = truth.get_column("PatientID").drop_nulls().unique().to_list()
    assert not any(i in msg for msg in found.get_column("message") for i in ids)


def test_series_blur_flags_a_sample_series_blurred_as_a_whole(
    synth_catalog: Path, tmp_path: Path
) -> None:
    """The shipped sample was generated before the series_blur kind existed (regenerating it
    would move every planted defect), so pixel.series_blur is checked here on copies of one of its
    clean MR series, among that series' own peers: a copy blurred as a whole by the synthetic
    cohort's own defect (curation.synth.implant) is flagged; a clean copy and the source are not."""
    from curation import catalog, crawl
    from curation.pixels import compute
    from curation.qc import run
    from curation.qc.suite import from_mapping
    from curation.synth.implant import plant_series

    db = tmp_path / "catalog.duckdb"
    shutil.copy(synth_catalog, db)
    truth = pl.read_parquet(SYNTH / "ground_truth.parquet")
    with duckdb.connect(str(db)) as con:
        con.register("defective", truth.select("SeriesInstanceUID").drop_nulls().unique())
        # a clean single-frame MR series with the most peers of the same description and vendor
        source, files = con.sql(
            """SELECT SeriesInstanceUID, list(path ORDER BY InstanceNumber) FROM instances i
            WHERE Modality = 'MR' AND coalesce(NumberOfFrames, 1) = 1
              AND SeriesInstanceUID NOT IN (SELECT SeriesInstanceUID FROM defective)
            GROUP BY SeriesInstanceUID, SeriesDescription, Manufacturer HAVING count(*) >= 10
            ORDER BY count(*) OVER (PARTITION BY SeriesDescription, Manufacturer) DESC,
                     SeriesInstanceUID LIMIT 1"""
        ).fetchall()[0]
    blurred = plant_series([Path(f) for f in files], tmp_path / "blurred", "series_blur", seed=2)
    clean = plant_series([Path(f) for f in files], tmp_path / "clean", None, seed=3)
    crawl([tmp_path / "blurred", tmp_path / "clean"], db, workers=1, progress=False)
    compute(
        db, series=[blurred.SeriesInstanceUID, clean.SeriesInstanceUID], workers=1, progress=False
    )
    con = catalog.connect(db)
    try:
        assert con.sql("SELECT count(*) FROM pixel_metrics").fetchall()[0][0] > 150  # sample kept
        result = run(con, from_mapping({"name": "blur", "include": ["pixel.series_blur"]}, "blur"))
        flagged = {
            r[0]
            for r in con.sql(
                f"SELECT SeriesInstanceUID FROM qc_findings WHERE run_id = {result.run_id}"
            ).fetchall()
        }
    finally:
        con.close()
    assert blurred.SeriesInstanceUID in flagged, blurred.params
    assert not flagged & {clean.SeriesInstanceUID, source}


FMRI = SHARED_DICOM / "dcm_qa_philips" / "In" / "Magdeburg_2014" / "fmri"


@needs_shared
def test_intensity_drift_on_real_mr_with_a_baseline_shift(tmp_path: Path) -> None:
    """The real Philips EPI volume twice: as it is, and with a baseline shift from the middle slice
    on (a receiver change mid-series). Only the shifted copy drifts."""
    from pydicom.uid import generate_uid

    from curation import crawl
    from curation.pixels import compute
    from curation.qc import run
    from curation.qc.suite import from_mapping

    files = sorted(FMRI.iterdir())
    shutil.copytree(FMRI, tmp_path / "dicom" / "clean")
    shifted = tmp_path / "dicom" / "shifted"
    shifted.mkdir()
    series_uid = generate_uid(entropy_srcs=[str(tmp_path)])
    sd = float(np.median([dcmread(f).pixel_array.std() for f in files]))
    for i, f in enumerate(files):
        ds = dcmread(f)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series_uid, generate_uid()
        if ds.InstanceNumber > len(files) // 2:
            ds.PixelData = (ds.pixel_array + round(3 * sd)).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(shifted / f"{i:03d}.dcm")
    db = tmp_path / "c.duckdb"
    crawl(tmp_path / "dicom", db, workers=1, progress=False)
    compute(db, workers=0, progress=False)
    con = duckdb.connect(str(db))
    # Two series are too few for the cohort fence (k robust SDs above the median of two values is
    # above both), so k is lowered: the absolute bound (min_drift) still decides.
    suite = {
        "include": ["pixel.intensity_drift"],
        "rules": {"pixel.intensity_drift": {"params": {"k": 0.5}}},
    }
    result = run(con, from_mapping(suite))
    flagged = con.sql(
        f"SELECT SeriesInstanceUID, value FROM qc_findings WHERE run_id = {result.run_id}"
    ).fetchall()
    drift = dict(con.sql("SELECT SeriesInstanceUID, intensity_drift FROM pixel_metrics").fetchall())
    con.close()
    assert [uid for uid, _ in flagged] == [series_uid]
    assert drift[series_uid] > 2.0 > max(v for k, v in drift.items() if k != series_uid)


def test_thumbnail_and_series_image(synth_catalog: Path) -> None:

    with duckdb.connect(str(synth_catalog), read_only=True) as con:
        _check_thumbnail_and_image(con)


def _check_thumbnail_and_image(con: duckdb.DuckDBPyConnection) -> None:
    from curation.pixels import series_image
    from curation.pixels.draw import thumbnail

    uid, n = con.sql(
        "SELECT SeriesInstanceUID, n_slices FROM pixel_metrics WHERE Modality = 'CT' "
        "AND status = 'ok' AND n_slices > 5 ORDER BY SeriesInstanceUID LIMIT 1"
    ).fetchall()[0]
    png = thumbnail(con, uid, size=64)
    assert png.startswith(b"\x89PNG")
    img = series_image(con, uid)
    assert img.GetSize()[2] == n
    assert img.GetSpacing()[2] > 0


@needs_shared
def test_series_image_geometry_on_real_ct(tmp_path: Path) -> None:
    from curation import crawl
    from curation.pixels import series_image

    src = tmp_path / "ct"
    shutil.copytree(SHARED_DICOM / "dcm_qa_ct" / "In" / "GE", src)
    db = tmp_path / "c.duckdb"
    crawl(src, db, workers=1, progress=False)
    with duckdb.connect(str(db), read_only=True) as con:
        uid = con.sql("SELECT any_value(SeriesInstanceUID) FROM instances").fetchall()[0][0]
        img = series_image(con, uid)
        ps = con.sql("SELECT any_value(PixelSpacing) FROM instances").fetchall()[0][0]
    assert img.GetSize() == (512, 512, 28)
    assert img.GetSpacing()[0] == pytest.approx(ps[1])
    arr = __import__("SimpleITK").GetArrayViewFromImage(img)
    assert arr.min() < -900  # rescaled to HU: air


def test_cli(synth_catalog: Path, tmp_path: Path) -> None:
    from curation.cli.main import main

    db = tmp_path / "copy.duckdb"
    shutil.copy(synth_catalog, db)
    with duckdb.connect(str(db), read_only=True) as con:
        uid = con.sql("SELECT min(SeriesInstanceUID) FROM pixel_metrics").fetchall()[0][0]
    assert main(["pixels", "--db", str(db), "--series", uid, "--workers", "1", "-q"]) == 0
    assert main(["pixels", "--db", str(db), "--sample", "0", "-q"]) == 3
    assert main(["pixels", "--db", str(tmp_path / "none" / "x.duckdb"), "-q"]) == 4


def test_a_file_whose_name_is_not_utf8_is_read_by_its_bytes(tmp_path: Path) -> None:
    """The catalog's path text names no file here (\\xE9); pixels and volumes open the bytes."""
    from curation import crawl
    from curation.cohort import volumes
    from curation.pixels.read import refs_from_table
    from curation.pixels.sample import slice_table

    tree = tmp_path / "tree"
    tree.mkdir()
    raw = os.fsencode(tree) + b"/caf\xe9.dcm"
    src = get_testdata_file("CT_small.dcm")
    with open(raw, "wb") as f:
        f.write(Path(src).read_bytes())
    db = tmp_path / "c.duckdb"
    crawl(tree, db, workers=1, progress=False)
    ds = dcmread(src)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    with duckdb.connect(str(db), read_only=True) as con:
        slices = slice_table(con)
    assert slices["path_bytes"].to_list() == [raw]
    assert not Path(slices["path"][0]).exists()
    (result,) = read_slices(refs_from_table(slices))
    assert result.reason is None, result.message
    np.testing.assert_allclose(result.image, expected)
    # GDCM (SimpleITK) takes UTF-8 names: the export reads it through a link.
    task = {"multiframe": False, "files": [os.fsdecode(raw)]}
    image = volumes._read(task)
    np.testing.assert_allclose(_sitk_array(image)[0], expected)


def _sitk_array(image: object) -> np.ndarray:
    import SimpleITK as sitk  # noqa: N813

    return sitk.GetArrayFromImage(image)
