"""De-identification on real files: the synthetic sample (planted identifiers, burned-in text) and
a few series of each vendor of ../shared/dicom (compressed, enhanced multi-frame, private tags, SR).

One small cohort is crawled, measured and built once; the Basic and the research profiles run on
it once each. The tests then read what they wrote.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pydicom
import pytest

from curation import catalog, crawl, deid, pseudonym
from curation.cohort import build_cohort, parse
from curation.deid import deidentify, keys, load_profile, scan
from curation.deid.actions import action_for
from curation.deid.pixels import ocr_unavailable
from curation.deid.profile import parse as parse_profile
from curation.deid.run import DeidResult
from curation.deid.standard import lookup
from curation.errors import InputError
from tests.conftest import SAMPLE_DATA, SHARED_DICOM

SYN = SAMPLE_DATA / "synthetic"
KEY = b"deid-test-key-0123456789abcdef-0001"
UID_RE = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))+$")
#: (folder under ../shared/dicom, files taken): vendors, encodings and IODs the run must handle.
REAL: tuple[tuple[str, int | tuple[str, ...]], ...] = (
    ("dcm_qa_ge/In/01_Ax_DWI_TENSOR_R2", 3),  # GE private b-values
    ("dcm_qa_nih/In/20180918Si/mr_0003", 2),  # Siemens classic, CSA headers
    ("dcm_qa_philips/In/Magdeburg_2014/fmri", 2),
    ("dcm_qa_uih/In/DTI_132225/dti_tra_dir16_PA_rot_SaveBySlc__134057", 2),
    ("dcm_qa_ts/In", ("3.dcm", "4.dcm", "5.dcm", "7.dcm", "9.dcm")),  # big endian, RLE, JPEG...
    ("dcm_qa_frag/In/6001_anat-T1w_acq-tfl", 1),  # JPEG 2000, fragmented
    ("dcm_qa_enh/In/Philips", 1),  # enhanced multi-frame, nested private groups
    ("dcm_qa_enh/In/Siemens/XA10", 1),
    ("dcm_qa_ct/In/GE", 2),
)
needs_ocr = pytest.mark.skipif(
    ocr_unavailable() is not None, reason=f"OCR unavailable: {ocr_unavailable()}"
)


@dataclass
class Run:
    db: Path
    cohort: Path
    key_file: Path
    sources: list[str]
    basic: DeidResult
    research: DeidResult
    burned_series: str
    log: str


def _synthetic_files() -> tuple[list[Path], str]:
    """Five files of one series per planted privacy defect, and the burned-in series' UID."""
    truth = pl.read_parquet(SYN / "ground_truth.parquet")
    series = pl.read_parquet(SYN / "series.parquet")
    picked, burned = [], ""
    for kind in ("phi_in_header", "burned_in_annotation_flag", "burned_in_text"):
        uids = truth.filter(pl.col("kind") == kind)["SeriesInstanceUID"].unique().sort()
        rows = series.filter(pl.col("SeriesInstanceUID").is_in(uids.to_list())).sort("n_files")
        for row in rows.head(2 if kind == "phi_in_header" else 1).iter_rows(named=True):
            picked += sorted((SYN / row["series_dir"]).glob("*"))[:5]
            if kind == "burned_in_text":
                burned = row["SeriesInstanceUID"]
    return picked, burned


def _real_files() -> list[Path]:
    if not SHARED_DICOM.is_dir():
        return []
    out = []
    for folder, n in REAL:
        files = sorted(p for p in (SHARED_DICOM / folder).rglob("*") if p.is_file())
        files = [p for p in files if p.name not in ("LICENSE", "DICOMDIR")]
        out += files[:n] if isinstance(n, int) else [p for p in files if p.name in n]
    return out


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("deid")
    synthetic, burned = _synthetic_files()
    files = synthetic + _real_files()
    db = tmp / "catalog.duckdb"
    crawl(files, db, workers=1, progress=False)
    from curation.pixels.compute import compute

    compute(db, series=[burned], workers=1, progress=False)
    key_file = tmp / "cohort.key"
    key_file.write_bytes(KEY + b"\n")
    spec = parse({"name": "deid_test", "split": {"ratios": {"train": 1.0}}})
    build_cohort(db, spec, tmp / "cohort", key=KEY)
    capture = _Capture()
    log = logging.getLogger("curation")
    old_level = log.level
    log.addHandler(capture)
    log.setLevel(logging.DEBUG)
    try:
        with catalog.opened(db) as con:
            basic = deidentify(
                con, tmp / "cohort", tmp / "basic", key_file=key_file, volumes=True, progress=False
            )
            research = deidentify(
                con,
                tmp / "cohort",
                tmp / "research",
                key_file=key_file,
                profile="research",
                workers=2,
                progress=False,
            )
            sources = [str(r[0]) for r in con.sql("SELECT path FROM files").fetchall()]
    finally:
        log.removeHandler(capture)
        log.setLevel(old_level)
    yield Run(
        db, tmp / "cohort", key_file, sources, basic, research, burned, "\n".join(capture.lines)
    )


def _pairs(result: DeidResult, sources: list[str]) -> list[tuple[Path, Path, dict]]:
    """(source file, written file, deid_files row) of each written file."""
    by_key = {pseudonym.pseudonym(p, KEY): p for p in sources}
    out = []
    for row in result.files.filter(pl.col("status") == "written").iter_rows(named=True):
        out.append((Path(by_key[row["file_key"]]), result.out_dir / row["out_path"], row))
    return out


def _needles(run: Run, profile_name: str) -> dict:
    with catalog.opened(run.db, read_only=True) as con:
        return scan.identifiers(con, retained=scan.retained_by(load_profile(profile_name)))


@pytest.mark.parametrize("profile", ["basic", "research"])
def test_no_original_identifier_in_any_output_byte(run: Run, profile: str) -> None:
    result = run.basic if profile == "basic" else run.research
    retained = scan.retained_by(load_profile(profile))
    with catalog.opened(run.db, read_only=True) as con:
        needles = scan.identifiers(con, retained=retained)
        # Shifted dates may land on another patient's real date: a patient's files are searched
        # for that patient's own identifiers, the cohort-level files for everyone's.
        per_patient = {
            key: scan.identifiers(con, [str(s) for s, _, _ in group], retained=retained)
            for key, group in _by_patient(result, run.sources).items()
        }
    kinds = {n.kind for n in needles}
    assert {"name", "id", "date", "uid", "institution"} <= kinds  # the search has something to find
    # the scanner finds them in the sources (it can fail), every spelling kind included
    source_hits = {
        (n.kind, n.spelling)
        for p in run.sources
        for n, _ in scan.scan_bytes(Path(p).read_bytes(), needles)
    }
    assert {("name", "as stored"), ("id", "as stored"), ("uid", "as stored")} <= source_hits
    leaks = []
    for path in sorted(p for p in result.out_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(result.out_dir)
        mine = per_patient[rel.parts[1]] if rel.parts[0] == "dicom" else needles
        leaks += [
            (str(rel), n.kind, kw, n.spelling) for n, kw in scan.scan_bytes(path.read_bytes(), mine)
        ]
    leaks += [
        (x.path, x.kind, x.keyword, x.spelling)
        for x in scan.scan(result.out_dir, needles)
        if not x.path.startswith("dicom/")
    ]
    assert leaks == []
    assert result.n_written >= 30


def _by_patient(result: DeidResult, sources: list[str]) -> dict[str, list]:
    out: dict[str, list] = {}
    for pair in _pairs(result, sources):
        out.setdefault(pair[2]["patient_key"], []).append(pair)
    return out


def test_spellings_cover_the_ways_people_write_them() -> None:
    assert ("SMITH JOHN", "^ as space") in scan.spellings("Smith^John", "name")
    assert ("JOHN SMITH", "given family") in scan.spellings("Smith^John", "name")
    texts = [t for t, _ in scan.spellings("19650312", "date")]
    assert {"1965-03-12", "12.03.1965", "03/12/1965"} <= set(texts)
    needles = dict.fromkeys([scan._needle("12.03.1965", "date", "DD.MM.YYYY")], "PatientBirthDate")
    assert scan.scan_bytes(b"born 12.03.1965 here", needles)  # type: ignore[arg-type]
    assert not scan.scan_bytes(b"born 112.03.19650 here", needles)  # type: ignore[arg-type]


def test_key_never_written_or_logged(run: Run) -> None:
    texts = [KEY, KEY.hex().encode()]
    for root in (run.basic.out_dir, run.research.out_dir):
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(t in data for t in texts), path
    assert not (run.basic.out_dir / pseudonym.KEY_FILE_NAME).exists()
    assert "deid" in run.log and KEY.decode() not in run.log
    with catalog.opened(run.db, read_only=True) as con:
        dump = str(con.sql("SELECT * FROM deid_runs").fetchall())
        dump += str(con.sql("SELECT * FROM deid_files").fetchall())
    assert KEY.decode() not in dump and pseudonym.fingerprint(KEY) in dump


def test_output_crawls_clean_and_privacy_rules_find_nothing(run: Run, tmp_path: Path) -> None:
    from curation.qc import runner
    from curation.qc.rule import PRIVACY, tagged
    from curation.qc.suite import from_mapping

    suite = from_mapping({"name": "privacy", "include": [r.id for r in tagged(PRIVACY)]})
    with catalog.opened(run.db, read_only=True) as con:
        src_errors = con.sql("SELECT count(*) FROM crawl_errors").fetchall()[0][0]
    before = runner.run(run.db, suite)
    assert before.n_findings > 0  # the rules fire on the planted identifiers of the sources
    for result in (run.basic, run.research):
        db = tmp_path / f"{result.profile.name}.duckdb"
        crawl(result.out_dir / "dicom", db, workers=1, progress=False)
        with catalog.opened(db, read_only=True) as con:
            errors = con.sql("SELECT count(*) FROM crawl_errors").fetchall()[0][0]
            n_files = con.sql("SELECT count(*) FROM files WHERE status = 'ok'").fetchall()[0][0]
        assert errors <= src_errors and n_files == result.n_written
        after = runner.run(db, suite)
        assert after.n_findings == 0, after


def test_every_table_e11_attribute_is_handled_as_the_profile_says(run: Run) -> None:
    """Table-driven: each attribute of Table E.1-1 found at the top level of a source file."""
    checked: dict[tuple[str, str], int] = {}
    failures = []
    for result in (run.basic, run.research):
        profile = result.profile
        for src, out, _ in _pairs(result, run.sources):
            a = pydicom.dcmread(src, stop_before_pixels=True, force=True)
            b = pydicom.dcmread(out, stop_before_pixels=True)
            shift = keys.shift_days(
                str(a.get("PatientID", "")), KEY, profile.max_shift_days, profile.keep_weekday
            )
            for elem in a:
                if elem.tag.is_private or lookup(int(elem.tag)) is None:
                    continue
                if int(elem.tag) in (0x00120062, 0x00120063, 0x00120064, 0x00280303):
                    continue  # set by de-identification itself
                action = action_for(int(elem.tag), profile)
                assert action is not None
                got = b.get(elem.tag)
                ok = _handled(elem, got, action, shift, b)
                checked[(elem.keyword or str(elem.tag), f"{profile.name}:{action}")] = 1
                if not ok:
                    failures.append(
                        (
                            profile.name,
                            src.name,
                            elem.keyword,
                            action,
                            str(elem.value)[:20],
                            str(got.value if got is not None else None)[:20],
                        )
                    )
    assert failures == []
    actions = {k[1] for k in checked}
    assert {"basic:X", "basic:Z", "basic:D", "basic:U", "research:K", "research:C"} <= actions
    assert len(checked) >= 60


def _handled(elem, got, action: str, shift: int, out) -> bool:  # type: ignore[no-untyped-def]
    if action == "X":
        return got is None
    if got is None:
        return False
    if action == "Z":
        return got.value in (None, "", b"", []) or got.value == out.get("PatientID")
    if action == "K":
        return got.value == elem.value
    if action == "U":
        if elem.VR == "SQ":
            return True  # its items are checked by the UID test
        vals = got.value if isinstance(got.value, list | tuple) else [got.value]
        return all(str(v).startswith("2.25.") for v in vals) and got.value != elem.value
    if action == "D":
        return elem.VR == "SQ" or got.value != elem.value or not str(elem.value).strip()
    if action == "C":
        if elem.VR == "DA" and elem.value:
            # a value that is not a date ('***' in an anonymized export) cannot be shifted: emptied
            return (got.value or None) == (keys.shift_date(str(elem.value), shift) or None)
        return True  # text cleaning: checked by the leak scan
    return False


def test_uids_are_remapped_consistently_everywhere(run: Run) -> None:
    for src, out, _ in _pairs(run.basic, run.sources):
        a, b = pydicom.dcmread(src, force=True), pydicom.dcmread(out)
        assert b.file_meta.MediaStorageSOPInstanceUID == b.SOPInstanceUID
        assert b.SOPInstanceUID == pseudonym.uid(a.SOPInstanceUID, KEY)
        assert b.SeriesInstanceUID == pseudonym.uid(a.SeriesInstanceUID, KEY)
        assert b.StudyInstanceUID == pseudonym.uid(a.StudyInstanceUID, KEY)
        src_uids = {
            str(v).strip("\0 ")
            for e in a.iterall()
            if e.VR == "UI"
            for v in (e.value if isinstance(e.value, list | tuple) else [e.value])
            if v
        }
        mapped = {pseudonym.uid(u, KEY) for u in src_uids}
        for e in b.iterall():
            if e.VR != "UI" or not e.value:
                continue
            for v in e.value if isinstance(e.value, list | tuple) else [e.value]:
                assert UID_RE.match(str(v)) and len(str(v)) <= 64, (e.keyword, v)
                assert (
                    str(v).startswith("1.2.840.10008.")
                    or str(v) in mapped
                    or (e.tag in (0x00020012,))
                ), (out.name, e.keyword)
        assert b.PatientID == keys.patient_key(str(a.get("PatientID", "")), KEY)
    # a reference nested in a sequence is remapped as the instance it names is
    refs = [
        (e.value, f)
        for f in run.sources
        for e in pydicom.dcmread(f, stop_before_pixels=True, force=True).iterall()
        if e.keyword == "ReferencedSOPInstanceUID"
    ]
    assert refs, "the corpus subset has nested references"
    # the same UID gives the same new UID in both runs (stable across runs and profiles)
    a_uids = {r["instance_key"]: r["out_path"] for r in run.basic.files.iter_rows(named=True)}
    for r in run.research.files.head(5).iter_rows(named=True):
        if r["status"] == "written" and a_uids.get(r["instance_key"]):
            x = pydicom.dcmread(run.research.out_dir / r["out_path"], stop_before_pixels=True)
            y = pydicom.dcmread(
                run.basic.out_dir / a_uids[r["instance_key"]], stop_before_pixels=True
            )
            assert x.SOPInstanceUID == y.SOPInstanceUID


def test_keyed_uids_differ_by_key_and_are_valid() -> None:
    u = "1.2.826.0.1.3680043.8.498.123456789"
    a, b = pseudonym.uid(u, KEY), pseudonym.uid(u, b"another-key-0123456789")
    assert a != b and a == pseudonym.uid(u, KEY)
    assert UID_RE.match(a) and len(a) <= 64 and a.startswith("2.25.")


def test_geometry_kept_and_pixels_changed_only_where_masked(run: Run) -> None:
    from curation.synth.burnin import draw_text

    truth = pl.read_parquet(SYN / "ground_truth.parquet").filter(pl.col("kind") == "burned_in_text")
    text_at = {r["path"].split("/", 1)[1]: json.loads(r["params"]) for r in truth.to_dicts()}
    n_masked = n_text = 0
    for src, out, row in _pairs(run.basic, run.sources):
        a, b = pydicom.dcmread(src, force=True), pydicom.dcmread(out)
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "SliceThickness", "NumberOfFrames"):  # fmt: skip
            assert a.get(kw) == b.get(kw), (src.name, kw)
        if "PixelData" not in a:
            continue
        pa, pb = a.pixel_array, b.pixel_array
        assert pa.shape == pb.shape
        changed = pa != pb
        if not row["n_masked"]:
            assert not changed.any(), src
            continue
        n_masked += 1
        assert (pb[changed] == pa.min()).all()  # masked with the background, nothing else moved
        assert b.BurnedInAnnotation == "NO"
        codes = {i.CodeValue for i in b.DeidentificationMethodCodeSequence}
        assert "113101" in codes
        rel = str(src).split("/dicom/", 1)[-1]
        params = text_at.get("dicom/" + rel) or text_at.get(rel)
        if params is not None:
            rows, cols = pa.shape
            mask = np.zeros(pa.shape)
            draw_text(mask, params["lines"], int(rows * params["row_fraction"]), int(cols * params["col_fraction"]), 1.0, max(1, rows // 128))  # fmt: skip
            assert changed[mask > 0].all(), "every pixel of the burned-in text is masked"
            n_text += 1
    if ocr_unavailable() is None:
        assert n_masked >= 3 and n_text >= 3
    burned = run.basic.files.filter(pl.col("inspected").is_not_null())
    assert burned.height >= 5


def test_research_profile_keeps_what_its_options_retain(run: Run) -> None:
    profile = run.research.profile
    safe = profile.safe_private_keys()
    weekdays_kept = kept_private = 0
    for src, out, _ in _pairs(run.research, run.sources):
        a = pydicom.dcmread(src, stop_before_pixels=True)
        b = pydicom.dcmread(out, stop_before_pixels=True)
        for kw in ("PatientSex", "PatientAge", "PatientWeight", "Manufacturer"):
            assert a.get(kw) == b.get(kw), kw
        if a.get("StudyDate") and b.get("StudyDate"):
            from datetime import datetime as dt

            da = dt.strptime(a.StudyDate, "%Y%m%d")
            db_ = dt.strptime(b.StudyDate, "%Y%m%d")
            assert (da - db_).days == keys.shift_days(a.PatientID, KEY, 365, True)
            weekdays_kept += da.weekday() == db_.weekday()
        for e in b.iterall():
            if e.tag.is_private and e.tag.element >= 0x1000:
                kept_private += 1
        for e in b:
            if e.tag.is_private and e.tag.element >= 0x1000:
                creator = b[(e.tag.group << 16) | (e.tag.element >> 8)].value
                assert (creator, e.tag.group, e.tag.element & 0xFF) in safe
        assert b.LongitudinalTemporalInformationModified == "MODIFIED"
    assert weekdays_kept >= 10 and kept_private >= 3
    # descriptors are kept, cleaned: the planted "pt NAME" / "MRN ..." / "DOB ..." are gone
    desc = [
        pydicom.dcmread(o, stop_before_pixels=True).get("SeriesDescription")
        for _, o, _ in _pairs(run.research, run.sources)
    ]
    assert sum(1 for d in desc if d) >= 20


def test_manifest_points_at_the_deidentified_files(run: Run) -> None:
    m = pl.read_parquet(run.basic.out_dir / "manifest.parquet")
    assert "InstitutionName" not in m.columns  # the Basic Profile removes it from the files too
    files = [f for fs in m["dicom_files"].to_list() for f in fs]
    assert len(files) == run.basic.n_written
    assert all((run.basic.out_dir / f).is_file() for f in files)
    pairs = {str(o.relative_to(run.basic.out_dir)): s for s, o, _ in _pairs(run.basic, run.sources)}
    for row in m.head(3).iter_rows(named=True):
        ds = pydicom.dcmread(run.basic.out_dir / row["dicom_files"][0], stop_before_pixels=True)
        assert ds.PatientID == row["patient_key"]
        assert row["dicom_files"][0] in pairs
    datalist = json.loads((run.basic.out_dir / "datalist.json").read_text())
    entries = datalist["training"]
    quarantined = set(run.basic.quarantined["series_key"])
    # one entry per series with every file written and its volume; the rest say why not
    ok = m.filter(pl.col("excluded_reason").is_null())
    assert {e["series_key"] for e in entries} == set(ok["series_key"])
    assert not quarantined & set(ok["series_key"])
    for e in entries:
        assert (run.basic.out_dir / e["image"]).is_file()
    # without volumes, the image is the series folder, holding exactly its files
    folders = deid.run.deidentified_manifest(
        pl.read_parquet(run.cohort / "manifest.parquet"), run.basic.files, run.basic.profile
    )
    for row in folders.filter(pl.col("excluded_reason").is_null()).iter_rows(named=True):
        folder = run.basic.out_dir / row["image"]
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            Path(f).name for f in row["dicom_files"]
        )
    assert folders.filter(pl.col("excluded_reason").is_not_null()).height == len(quarantined)
    with catalog.opened(run.db, read_only=True) as con:
        runs = con.sql(
            "SELECT profile, n_written, n_quarantined FROM deid_runs ORDER BY 1"
        ).fetchall()
    assert [r[0] for r in runs] == ["basic", "research"]


def test_volumes_are_read_from_the_deidentified_files_and_carry_no_identifier(run: Run) -> None:
    import nibabel as nib

    from curation.deid.volumes import DESCRIP

    m = pl.read_parquet(run.basic.out_dir / "manifest.parquet")
    vols = m.filter(pl.col("image").str.ends_with(".nii.gz"))
    assert vols.height >= 3
    for row in vols.iter_rows(named=True):
        h = nib.load(run.basic.out_dir / row["image"]).header
        assert h["descrip"].tobytes().rstrip(b"\0").decode() == DESCRIP
        assert not h["aux_file"].tobytes().strip(b"\0") and not h["intent_name"].tobytes().strip(
            b"\0"
        )
    # the masked burned-in series: its volume shows no text either (read from the masked files)
    burned = keys.series_key(run.burned_series, KEY)
    row = m.filter(pl.col("series_key") == burned).row(0, named=True)
    if row["image"] and row["image"].endswith(".nii.gz"):
        from pydicom.pixels import apply_modality_lut

        img = np.asarray(nib.load(run.basic.out_dir / row["image"]).dataobj)
        pairs = [(s, o) for s, o, r in _pairs(run.basic, run.sources) if r["series_key"] == burned]
        src_max = max(apply_modality_lut(d.pixel_array, d).max() for d in (pydicom.dcmread(s, force=True) for s, _ in pairs))  # fmt: skip
        out_max = max(apply_modality_lut(d.pixel_array, d).max() for d in (pydicom.dcmread(o) for _, o in pairs))  # fmt: skip
        assert img.max() <= out_max + 1e-3 < src_max  # the text was the brightest thing
    # enhanced multi-frame series are not exported from copies, and say why
    reasons = m.filter(pl.col("image").is_null())["excluded_reason"].to_list()
    assert any("multi-frame" in (r or "") for r in reasons)


def test_profile_errors_name_the_line(tmp_path: Path) -> None:
    cases = {
        "name: x\noptions:\n  - retain_safe_privat\n": (":3", "retain_safe_private"),
        "name: x\nactions:\n  PatientName: Q\n": (":3", "one of"),
        "name: x\nactions:\n  PatientNam: X\n": (":3", "PatientName"),
        "name: x\nactions:\n  PatientName: K\n": (":3", "allow_retain"),
        "name: x\nburned_in:\n  min_confidense: 3\n": (":3", "min_confidence"),
        "name: x\nsafe_private:\n  - {creator: A, group: 0x0010, element: 1, name: b}\n": (
            ":3",
            "even",
        ),
        "name: x\nbogus: 1\n": (":2", "unknown key"),
    }
    for text, (line, words) in cases.items():
        p = tmp_path / "p.yaml"
        p.write_text(text)
        with pytest.raises(InputError) as err:
            load_profile(p)
        assert line in str(err.value) and words in str(err.value), str(err.value)
    p.write_text("name: x\nallow_retain: true\nactions:\n  PatientName: K\n")
    assert load_profile(p).actions == {0x00100010: "K"}
    with pytest.raises(InputError, match="shipped profiles"):
        load_profile("no-such-profile")


def test_safe_private_allow_list_is_what_harmonization_reads() -> None:
    from curation.harmonize.fields import RAW

    wanted = {(r.creator, int(r.tag[:4], 16), int(r.tag[6:], 16)) for r in RAW if r.creator}
    assert load_profile("research").safe_private_keys() == wanted
    assert load_profile("basic").safe_private == ()


def test_unsafe_files_are_quarantined_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unparseable file, and a file that needs OCR where there is none; a compressed file
    masked by a fixed region is decoded and written in explicit VR little endian."""
    from curation.cli.main import main

    src = tmp_path / "src"
    src.mkdir()
    synthetic, _ = _synthetic_files()
    bia = [p for p in synthetic if pydicom.dcmread(p, stop_before_pixels=True).get("BurnedInAnnotation") == "YES"]  # fmt: skip
    picked = [synthetic[0], synthetic[1], bia[0]]
    if SHARED_DICOM.is_dir():
        picked.append(SHARED_DICOM / "dcm_qa_ts/In/5.dcm")  # JPEG lossless
    for i, p in enumerate(picked):
        shutil.copy(p, src / f"{i}.dcm")
    db = tmp_path / "c.duckdb"
    crawl(src, db, workers=1, progress=False)
    build_cohort(db, parse({"name": "q", "split": {"ratios": {"train": 1.0}}}), tmp_path / "cohort", key=KEY)  # fmt: skip
    (src / "0.dcm").write_bytes(b"\0" * 200)  # damaged after it was cataloged
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "name: masked\nburned_in:\n  regions:\n"
        "    - {manufacturer: SIEMENS, model: TrioTim, boxes: [[0, 0, 10, 20]]}\n"
    )
    key_file = tmp_path / "k"
    key_file.write_bytes(KEY)
    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path))  # no language data there: no OCR
    args = ["deid", "--db", str(db), "--cohort", str(tmp_path / "cohort"), "--key-file", str(key_file)]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "out"), "--profile", str(profile), "-q"]) == 1
    with catalog.opened(db, read_only=True) as con:
        rows = dict(con.sql("SELECT file_key, coalesce(reason, status) FROM deid_files").fetchall())
    by_name = {Path(p).name: rows[pseudonym.pseudonym(str(p), KEY)] for p in sorted(src.resolve().glob("*.dcm"))}  # fmt: skip
    assert by_name["0.dcm"] == "unreadable"
    assert by_name["2.dcm"] == "ocr_unavailable"
    assert by_name["1.dcm"] == "written"
    quarantine = pl.read_csv(tmp_path / "out" / "quarantine.csv")
    assert set(quarantine["reason"]) == {"unreadable", "ocr_unavailable"}
    if SHARED_DICOM.is_dir():
        assert by_name["3.dcm"] == "written"
        with catalog.opened(db, read_only=True) as con:
            rel = con.execute(
                "SELECT out_path FROM deid_files WHERE file_key = $k",
                {"k": pseudonym.pseudonym(str((src / "3.dcm").resolve()), KEY)},
            ).fetchall()[0][0]
        out = tmp_path / "out" / rel
        a, b = pydicom.dcmread(picked[3]), pydicom.dcmread(out)
        assert a.file_meta.TransferSyntaxUID.is_compressed
        assert b.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        pa, pb = a.pixel_array, b.pixel_array
        assert (pb[:10, :20] == pa.min()).all() and (pb[10:] == pa[10:]).all()
        assert (pb[:, 20:] == pa[:, 20:]).all()
    # a key that is not the cohort's, and a bad profile: input errors (exit 3)
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"not-the-cohort-key-0123456789")
    assert main([*args[:-1], str(wrong), "--out", str(tmp_path / "o2")]) == 3
    assert main([*args, "--out", str(tmp_path / "o3"), "--profile", "bogus"]) == 3


def test_shipped_profiles_parse_and_cite_their_codes() -> None:
    basic, research = load_profile("basic"), load_profile("research")
    assert basic.options == () and len(research.options) == 5
    assert parse_profile({"name": "inline"}).burned_in.min_confidence == 40
    # the options change the table's actions: dates shifted (C), patient sex kept (K)
    assert action_for(0x00080020, basic) == "Z" and action_for(0x00080020, research) == "C"
    assert action_for(0x00100040, basic) == "Z" and action_for(0x00100040, research) == "K"
    assert action_for(0x00100020, basic) == "D"  # Z/D resolved to the stricter-valid D
