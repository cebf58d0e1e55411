"""The hand-off to a training job: the demo cohort's datalist loaded as a data scientist would.

With MONAI (the ``monai`` extra: CPU torch) through ``load_decathlon_datalist``, ``LoadImaged``,
``EnsureChannelFirstd`` and a ``DataLoader``, for every split, from the DICOM series folders and
from exported volumes; and, always (MONAI or not), with plain nibabel / SimpleITK and polars.
Also: refused volumes leave the datalist but stay in the manifest, labels are numbers, volumes keep
HU unless normalization is asked for.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curation import catalog
from curation.cohort import build_cohort, parse
from curation.cohort.volumes import VolumeOptions, export_volumes
from curation.errors import InputError

from .conftest import SAMPLE_DATA

SYNTH = SAMPLE_DATA / "synthetic"
SPEC = SAMPLE_DATA / "cohort_spec.yaml"
KEY = b"datalist-test-key-0123456789"
SECTIONS = ("training", "validation", "test")


@pytest.fixture(scope="module")
def demo(
    labelled_synthetic_catalog: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """The demo cohort twice: as series folders (pseudonymous links) and as NIfTI volumes."""
    work = tmp_path_factory.mktemp("demo_cohort")
    db = work / "catalog.duckdb"
    shutil.copy(labelled_synthetic_catalog, db)
    with catalog.opened(db) as con:
        build_cohort(con, SPEC, work / "folders", key=KEY, files="link")
        res = build_cohort(con, SPEC, work / "volumes", key=KEY)
        export_volumes(con, res, work / "volumes", progress=False)
    return work / "folders", work / "volumes"


def _entries(datalist: Path) -> dict[str, list[dict[str, object]]]:
    data = json.loads(datalist.read_text())
    assert set(data) == set(SECTIONS), data.keys()
    return data


def _check_entries(out: Path) -> None:
    """Every entry loadable on its face: an existing image, numbers for labels, no nulls."""
    data = _entries(out / "datalist.json")
    manifest = pl.read_parquet(out / "manifest.parquet")
    n = sum(len(v) for v in data.values())
    assert n == manifest.filter(pl.col("excluded_reason").is_null()).height > 0
    for items in data.values():
        for item in items:
            assert item["image"] is not None and Path(str(item["image"])).exists(), item
            assert isinstance(item["pleural_effusion"], int), item
            assert None not in item.values(), item
    # the manifest keeps the text, the datalist carries the map's number
    text = dict(zip(manifest["series_key"], manifest["label_pleural_effusion"], strict=True))
    for items in data.values():
        for item in items:
            want = {"positive": 1, "negative": 0, None: 0}[text[item["series_key"]]]
            assert item["pleural_effusion"] == want, (item, text[item["series_key"]])


def test_datalist_entries_point_at_loadable_images_and_carry_numbers(
    demo: tuple[Path, Path],
) -> None:
    for out in demo:
        _check_entries(out)
    folders, _ = demo
    for item in _entries(folders / "datalist.json")["training"]:
        # a series folder holds that series' files alone: a reader takes it as one image
        assert Path(str(item["image"])).is_dir()
        assert Path(str(item["image"])).name == item["series_key"]


def test_refused_volumes_leave_the_datalist_and_stay_in_the_manifest(
    demo: tuple[Path, Path],
) -> None:
    _, volumes = demo
    manifest = pl.read_parquet(volumes / "manifest.parquet")
    report = pl.read_csv(volumes / "volumes.csv")
    refused = report.filter(pl.col("image").is_null())["series_key"].to_list()
    # the demo spec keeps one CT series whose irregular slice spacing refuses its volume
    assert refused, "the demo cohort was expected to hold a series whose volume is refused"
    rows = manifest.filter(pl.col("series_key").is_in(refused))
    assert rows.height == len(refused)
    assert rows["excluded_reason"].str.starts_with("volume not written").all()
    listed = {i["series_key"] for v in _entries(volumes / "datalist.json").values() for i in v}
    assert not listed & set(refused)
    attrition = pl.read_csv(volumes / "attrition.csv")
    last = attrition.row(-1, named=True)
    assert "loadable image" in last["criterion"]
    assert last["n_series_dropped"] == len(refused)
    assert last["n_series"] == len(listed)
    prov = json.loads((volumes / "provenance.json").read_text())
    assert prov["counts"]["datalist_series"] == len(listed)
    assert prov["volumes"]["normalize"] == {}


def test_volumes_keep_hounsfield_units_by_default(demo: tuple[Path, Path]) -> None:
    import nibabel as nib

    _, volumes = demo
    item = _entries(volumes / "datalist.json")["training"][0]
    arr = np.asarray(nib.load(str(item["image"])).dataobj)
    # chest CT in HU: air near -1000 and soft tissue/bone well above 0 survive (no [0, 1] window)
    assert arr.min() <= -900 and arr.max() >= 200, (arr.min(), arr.max())


def test_normalization_only_on_request_and_recorded(
    labelled_synthetic_catalog: Path, tmp_path: Path
) -> None:
    import nibabel as nib

    db = tmp_path / "catalog.duckdb"
    shutil.copy(labelled_synthetic_catalog, db)
    spec = parse(
        {
            "name": "lung",
            "include": [{"field": "series_type", "op": "=", "value": "ct_axial"}],
            "exclude": [{"qc_severity": "warning"}],
            "split": {"counts": {"test": 1}},
            "normalize": {"CT": {"window": [-600, 1500]}},
        }
    )
    with catalog.opened(db) as con:
        res = build_cohort(con, spec, tmp_path / "n", key=KEY)
        res.manifest = res.manifest.head(1)
        export_volumes(con, res, tmp_path / "n", progress=False)
    arr = np.asarray(nib.load(str(res.manifest["image"][0])).dataobj)
    assert arr.min() >= 0 and arr.max() <= 1 and arr.max() > arr.min()
    prov = json.loads((tmp_path / "n" / "provenance.json").read_text())
    assert prov["volumes"]["normalize"] == {"CT": {"window": [-600.0, 1500.0]}}
    with pytest.raises(InputError, match="width"):
        VolumeOptions(normalize={"CT": {"window": (40, 0)}})
    with pytest.raises(InputError, match="normalize"):
        parse({"name": "x", "normalize": {"CT": {"level": [1, 2]}}})


def test_label_map_and_require(labelled_synthetic_catalog: Path, tmp_path: Path) -> None:
    db = tmp_path / "catalog.duckdb"
    shutil.copy(labelled_synthetic_catalog, db)
    base = {
        "name": "lab",
        "include": [{"field": "Modality", "op": "=", "value": "CT"}],
        "split": {"ratios": {"train": 1.0}},
    }
    with catalog.opened(db) as con:
        # default map: positive 1, negative (negated) 0, uncertain dropped, the label required
        req = build_cohort(con, parse(base | {"labels": ["pleural_effusion"]}), key=KEY)
        texts = set(req.manifest["label_pleural_effusion"])
        assert texts <= {"positive", "negative"} and None not in texts
        steps = req.attrition["criterion"].to_list()
        assert any(s.startswith("require a pleural_effusion label") for s in steps)
        # uncertain counted as positive, missing read as 0: nothing dropped for the label
        lenient = build_cohort(
            con,
            parse(
                base
                | {
                    "labels": [
                        {
                            "name": "pleural_effusion",
                            "values": {"positive": 1, "negated": 0, "uncertain": 1},
                            "missing": 0,
                        }
                    ]
                }
            ),
            key=KEY,
        )
    m = lenient.manifest
    unc = m.filter(pl.col("label_pleural_effusion") == "uncertain")
    assert unc.height and (unc["target_pleural_effusion"] == 1).all()
    assert (
        m.filter(pl.col("label_pleural_effusion").is_null())["target_pleural_effusion"] == 0
    ).all()
    assert m["target_pleural_effusion"].null_count() == 0
    assert m.height > req.manifest.height
    with pytest.raises(InputError, match=r"labels\[0\].*neither a number nor 'drop'"):
        parse(base | {"labels": [{"name": "x", "values": {"positive": "yes"}}]}, where="s.yaml")


def test_spec_label_errors_name_their_line(tmp_path: Path) -> None:
    from curation.cohort import load_spec

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nlabels:\n  - pleural_effusion\n  - {name: y, values: {positive: 1}, mising: 0}\n"
    )
    with pytest.raises(InputError, match=r"bad.yaml:4.*mising.*did you mean 'missing'"):
        load_spec(bad)


def test_an_archive_folder_shared_by_series_is_no_image(tmp_path: Path) -> None:
    # A flat archive: two series' files in one folder. Without --files or --volumes the datalist
    # cannot point at a folder of one series: those series stay in the manifest with the reason.
    from curation import crawl

    flat = tmp_path / "flat"
    flat.mkdir()
    series = sorted(p for p in (SYNTH / "dicom").glob("*/*/*/*") if p.is_dir())[:2]
    for i, s in enumerate(series):
        for f in s.iterdir():
            shutil.copy(f, flat / f"{i}_{f.name}")
    db = tmp_path / "flat.duckdb"
    crawl(flat, db, workers=1, progress=False)
    spec = parse({"name": "flat", "split": {"ratios": {"train": 1.0}}})
    res = build_cohort(db, spec, tmp_path / "out", key=KEY)
    assert res.manifest.height == 2
    assert res.manifest["image"].null_count() == 2
    assert res.manifest["excluded_reason"].str.contains("other file").all()
    assert _entries_any(tmp_path / "out" / "datalist.json") == 0
    # with pseudonymous links each series gets its own folder
    res = build_cohort(db, spec, tmp_path / "out2", key=KEY, files="link")
    assert res.manifest["excluded_reason"].null_count() == 2


def _entries_any(path: Path) -> int:
    return sum(len(v) for v in json.loads(path.read_text()).values())


def test_plain_nibabel_and_polars_read_every_split(demo: tuple[Path, Path]) -> None:
    """What a job without MONAI does: polars for the manifest, nibabel / SimpleITK for images."""
    import nibabel as nib
    import SimpleITK as sitk  # noqa: N813

    folders, volumes = demo
    for out in (folders, volumes):
        data = _entries(out / "datalist.json")
        m = pl.read_parquet(out / "manifest.parquet").filter(pl.col("excluded_reason").is_null())
        for section in SECTIONS:
            split = {"training": "train", "validation": "val"}.get(section, section)
            assert len(data[section]) == m.filter(pl.col("split") == split).height
            for item in data[section][:2]:  # the MONAI test reads them all
                if out is volumes:
                    arr = np.asarray(nib.load(str(item["image"])).dataobj)
                else:
                    reader = sitk.ImageSeriesReader()
                    reader.SetFileNames(
                        sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(item["image"]))
                    )
                    arr = sitk.GetArrayFromImage(reader.Execute())
                assert arr.ndim == 3 and min(arr.shape) >= 2, (item, arr.shape)


def test_monai_loads_every_split(demo: tuple[Path, Path]) -> None:
    try:
        import monai
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI installs the monai extra (.ci/run): MONAI must load here")
        pytest.skip("the monai extra (pip install -e '.[monai]') is absent")
    from monai.data import DataLoader, Dataset, load_decathlon_datalist
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    assert monai.__version__
    for out in demo:
        loaded = 0
        for section in SECTIONS:
            items = load_decathlon_datalist(
                str(out / "datalist.json"), is_segmentation=False, data_list_key=section
            )
            assert items, f"{out.name}: {section} is empty"
            # DICOM folders are read by MONAI's pydicom reader; volumes by nibabel
            reader = "PydicomReader" if out.name == "folders" else "NibabelReader"
            transform = Compose(
                [LoadImaged(keys="image", reader=reader), EnsureChannelFirstd(keys="image")]
            )
            for batch in DataLoader(Dataset(items, transform), batch_size=1, num_workers=0):
                image = batch["image"]
                assert image.ndim == 5 and image.shape[1] == 1, image.shape  # B, C, x, y, z
                assert min(image.shape[2:]) >= 2
                assert str(batch["pleural_effusion"].dtype) == "torch.int64"
                # modality units (HU; planted defects included), not a [0, 1] window
                assert float(image.max()) > 100, (out.name, batch["series_key"], image.max())
                loaded += 1
        assert loaded == _entries_any(out / "datalist.json")
