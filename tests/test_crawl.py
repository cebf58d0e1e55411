"""The crawler: what lands in the catalog, bad input, incremental re-crawls, interruption."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from curation import crawl
from curation.crawler.batches import read_batch
from curation.crawler.reader import Limits
from curation.errors import READ_ERROR_REASONS

from .conftest import ROOT, SHARED_DICOM, needs_proc, needs_shared, pydicom_test_files


def _test_file(name: str) -> Path:
    return next(f for f in pydicom_test_files() if f.name == name)


def _q(db: Path, sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _dataset(charset: str = "ISO_IR 100") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = uid
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientID = "P1"
    return ds


@pytest.fixture
def messy_tree(tmp_path: Path) -> Path:
    """A folder with good files and every kind of bad input the crawl must survive."""
    root = tmp_path / "tree"
    (root / "a" / "b").mkdir(parents=True)
    ct = _test_file("CT_small.dcm")
    shutil.copy(ct, root / "a" / "ct.dcm")
    shutil.copy(_test_file("MR_small.dcm"), root / "a" / "b" / "IM0001")  # no extension
    data = ct.read_bytes()
    (root / "a" / "ct2.dcm.gz").write_bytes(gzip.compress(_with_new_uid(data)))
    (root / "zero.dcm").write_bytes(b"")
    (root / "truncated.dcm").write_bytes(data[:600])  # ends inside the header
    (root / "short_pixels.dcm").write_bytes(_with_new_uid(data)[:-5000])  # header whole, pixels cut
    jpeg = _with_new_uid(_test_file("JPEG2000.dcm").read_bytes())
    (root / "short_jpeg.dcm").write_bytes(jpeg[:-100])  # encapsulated pixel data cut
    (root / "junk.dcm").write_bytes(b"this is not a DICOM file\n" * 20)
    (root / "notes.txt").write_text("a sidecar, never DICOM")
    (root / "bad.gz").write_bytes(b"\x1f\x8b" + b"garbage")
    # Undecodable text under a declared UTF-8 character set.
    ds = _dataset("ISO_IR 192")
    ds.add_new(0x00081030, "LO", "STUDY")
    ds.save_as(root / "charset.dcm", enforce_file_format=True)
    raw = (root / "charset.dcm").read_bytes().replace(b"STUDY ", b"ST\xff\xfeY ")
    (root / "charset.dcm").write_bytes(raw)
    # An explicit VR that DICOM does not define.
    ds = _dataset()
    ds.save_as(root / "badvr.dcm", enforce_file_format=True)
    raw = (root / "badvr.dcm").read_bytes().replace(b"\x08\x00\x60\x00CS", b"\x08\x00\x60\x00ZZ")
    (root / "badvr.dcm").write_bytes(raw)
    # A numeric value of impossible length (6 bytes of FD), as a real generator once wrote.
    ds = _dataset()
    ds.add_new(0x00181318, "FD", 1.5)
    ds.save_as(root / "badfd.dcm", enforce_file_format=True)
    raw = (root / "badfd.dcm").read_bytes()
    i = raw.find(b"\x18\x00\x18\x13FD")
    raw = raw[: i + 6] + (6).to_bytes(2, "little") + raw[i + 8 : i + 14] + raw[i + 16 :]
    (root / "badfd.dcm").write_bytes(raw)
    # A symlink cycle and a second link to the same folder.
    (root / "a" / "b" / "loop").symlink_to(root / "a")
    (root / "again").symlink_to(root / "a")
    return root


def _with_new_uid(data: bytes) -> bytes:
    ds = pydicom.dcmread(__import__("io").BytesIO(data))
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = __import__("io").BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_bad_input_lands_in_crawl_errors_and_the_crawl_goes_on(
    messy_tree: Path, tmp_path: Path
) -> None:
    db = tmp_path / "c.duckdb"
    summary = crawl(messy_tree, db, workers=1, progress=False)
    status = dict(_q(db, "SELECT replace(path, ?, ''), status FROM files", [str(messy_tree) + "/"]))
    assert status["a/ct.dcm"] == "ok"
    assert status["a/b/IM0001"] == "ok"
    assert status["a/ct2.dcm.gz"] == "ok"
    assert status["notes.txt"] == "skipped"
    assert _q(db, "SELECT gzip FROM files WHERE path LIKE '%ct2.dcm.gz'") == [(True,)]
    reasons = {
        Path(p).name: (r, c)
        for p, r, c in _q(db, "SELECT path, reason, cataloged FROM crawl_errors")
    }
    assert reasons["zero.dcm"] == ("zero_byte", False)
    assert reasons["truncated.dcm"] == ("truncated", False)
    assert reasons["short_pixels.dcm"] == ("truncated", True)  # header cataloged, pixels missing
    assert status["short_pixels.dcm"] == "ok"
    assert reasons["short_jpeg.dcm"] == ("truncated", True)
    assert reasons["junk.dcm"] == ("not_dicom", False)
    assert reasons["bad.gz"] == ("bad_gzip", False)
    # Undecodable text is read with replacement characters and reported; the header is kept.
    assert reasons["charset.dcm"] == ("bad_charset", True)
    assert status["charset.dcm"] == "ok"
    # One malformed value is kept as UN and reported; the rest of the header is cataloged.
    assert reasons["badfd.dcm"] == ("invalid_value", True)
    assert status["badfd.dcm"] == "ok"
    assert _q(db, "SELECT vr, value FROM elements WHERE tag = '00181318'") == [("UN", None)]
    # An explicit VR DICOM does not define: pydicom reads the rest, the element is kept as UN.
    assert reasons["badvr.dcm"] == ("invalid_vr", True)
    assert status["badvr.dcm"] == "ok"
    # Every reason is one of the documented stable codes.
    assert {r for r, _ in reasons.values()} <= set(READ_ERROR_REASONS)
    # The symlink cycle and the second link did not duplicate anything.
    assert _q(db, "SELECT count(*) FROM instances")[0][0] == sum(v == "ok" for v in status.values())
    assert summary.n_errors == len(reasons)
    assert all(m for (m,) in _q(db, "SELECT message FROM crawl_errors"))


def test_vanished_file_is_reported(tmp_path: Path) -> None:
    gone = tmp_path / "gone.dcm"
    batch = read_batch([(str(gone), 100, 0)], crawl_id=1)
    assert batch.files.column("status").to_pylist() == ["error"]
    assert batch.errors.column("reason").to_pylist() == ["vanished"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to crawl as another user")
def test_permission_denied_is_reported() -> None:
    # Root reads every file, so the crawl runs with the effective uid of 'nobody' against a
    # file only root may read; the real uid stays root, so the test can switch back.
    # pytest's tmp_path lies under a folder only root may enter, hence a folder of our own.
    tmp_path = Path(tempfile.mkdtemp(prefix="curation-perm-"))
    tmp_path.chmod(0o777)
    try:
        _permission_denied_case(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _permission_denied_case(tmp_path: Path) -> None:
    tree = tmp_path / "perm"
    tree.mkdir()
    shutil.copy(_test_file("CT_small.dcm"), tree / "ok.dcm")
    shutil.copy(_test_file("MR_small.dcm"), tree / "secret.dcm")
    (tree / "secret.dcm").chmod(0o600)
    for p in (tmp_path, tree):
        p.chmod(0o777)
    db = tmp_path / "perm.duckdb"
    # What the crawl imports lazily, imported as root: 'nobody' may not read this Python's
    # standard library (a pyenv install under /root).
    import multiprocessing.pool  # noqa: F401

    import curation.crawler.elements
    import curation.crawler.pool  # noqa: F401

    os.seteuid(65534)
    try:
        summary = crawl(tree, db, workers=1, progress=False)
    finally:
        os.seteuid(0)
    assert summary.n_errors == 1
    assert _q(db, "SELECT reason FROM crawl_errors") == [("permission_denied",)]
    assert _q(db, "SELECT count(*) FROM instances") == [(1,)]
    # Readable again: the next crawl retries it although size and mtime did not change.
    again = crawl(tree, db, workers=1, progress=False)
    assert (again.n_read, again.n_errors) == (1, 0)
    assert _q(db, "SELECT count(*) FROM instances") == [(2,)]


def test_incremental_recrawl_reads_only_what_changed(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm"]
    for n in names:
        shutil.copy(_test_file(n), tree / n)
    db = tmp_path / "c.duckdb"
    first = crawl(tree, db, workers=1, progress=False)
    assert (first.n_read, first.n_ok) == (4, 4)
    n_elements = _q(db, "SELECT count(*) FROM elements")[0][0]

    again = crawl(tree, db, workers=1, progress=False)
    assert (again.n_read, again.n_unchanged, again.n_removed) == (0, 4, 0)
    assert _q(db, "SELECT count(*) FROM elements")[0][0] == n_elements

    (tree / "rtplan.dcm").unlink()
    st = (tree / "CT_small.dcm").stat()
    os.utime(tree / "CT_small.dcm", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    shutil.copy(_test_file("MR_small_implicit.dcm"), tree / "new.dcm")
    third = crawl(tree, db, workers=1, progress=False)
    assert (third.n_read, third.n_unchanged, third.n_removed) == (2, 2, 1)
    assert _q(db, "SELECT count(*) FROM files") == [(4,)]
    assert _q(db, "SELECT count(*) FROM instances WHERE path LIKE '%rtplan.dcm'") == [(0,)]
    assert _q(db, "SELECT count(*) FROM elements e ANTI JOIN instances i USING (file_id)") == [(0,)]
    # Each element row belongs to exactly one instance, and the counts agree.
    assert _q(
        db,
        """SELECT count(*) FROM instances i JOIN
           (SELECT file_id, count(*) n FROM elements GROUP BY file_id) e USING (file_id)
           WHERE e.n <> i.n_elements""",
    ) == [(0,)]


def test_workers_give_the_same_catalog_as_one_reader(tmp_path: Path) -> None:
    files = [f for f in pydicom_test_files() if f.suffix == ".dcm"][:60]
    tree = tmp_path / "tree"
    tree.mkdir()
    for i, f in enumerate(files):
        shutil.copy(f, tree / f"{i:03d}_{f.name}")
    one, two = tmp_path / "one.duckdb", tmp_path / "two.duckdb"
    crawl(tree, one, workers=1, progress=False)
    crawl(tree, two, workers=2, progress=False)
    # Two writer threads, each committing transactions of a few files through its own connection.
    writers = tmp_path / "writers.duckdb"
    crawl(tree, writers, workers=1, progress=False, writers=2, commit_every=4)
    sql = """SELECT count(*), sum(hash(file_id, SOPInstanceUID, tag, seq_path, value, vr,
                                       private_creator, private_element, keyword))
             FROM elements"""
    for other in (two, writers):
        assert _q(one, sql) == _q(other, sql)
        # Each (tag, creator) named once, though two writers add names concurrently: the view
        # joins every stored element to exactly one name and one instance.
        assert _q(other, "SELECT count(*) FROM elements") == _q(
            other, "SELECT count(*) FROM element_values"
        )
        repeated = """SELECT count(*) FROM (SELECT tag_int, private_creator, vr
                      FROM element_names GROUP BY ALL HAVING count(*) > 1)"""
        assert _q(other, repeated) == [(0,)]
        for table in ("files", "instances", "frames", "crawl_errors", "series"):
            exclude = "EXCLUDE (crawl_id)" if table in ("files", "crawl_errors") else ""
            con = duckdb.connect(str(one), read_only=True)
            con.execute(f"ATTACH '{other}' AS other (READ_ONLY)")
            mine = f"SELECT * {exclude} FROM {table}"
            theirs = f"SELECT * {exclude} FROM other.{table}"
            n, a, b = (
                con.sql(f"SELECT count(*) FROM ({mine})").fetchall()[0][0],
                con.sql(f"SELECT count(*) FROM ({mine} EXCEPT ALL {theirs})").fetchall()[0][0],
                con.sql(f"SELECT count(*) FROM ({theirs} EXCEPT ALL {mine})").fetchall()[0][0],
            )
            con.close()
            assert (a, b) == (0, 0), (other.name, table, n, a, b)
    assert _q(writers, "SELECT count(*) FROM instances")[0][0] > 40


#: How earlier versions kept elements: a table of every column, or (a development version) a view
#: over element rows keyed by tag number and creator, without VR or name id in its names.
_OLD_LAYOUTS = {
    "table": [
        "CREATE TABLE old_elements AS SELECT * FROM elements",
        "DROP VIEW elements",
        "DROP TABLE element_values",
        "DROP TABLE element_names",
        "ALTER TABLE old_elements RENAME TO elements",
        # A row without a VR, which the old table allowed: it must arrive too.
        "UPDATE elements SET vr = NULL WHERE file_id = (SELECT min(file_id) FROM elements) "
        "AND tag = '00080016'",
    ],
    "view": [
        """CREATE TABLE v AS SELECT file_id, CAST(('0x' || tag) AS UINTEGER) AS tag_int, seq_path,
               private_creator, vr, value, value_length, n_items FROM elements""",
        """CREATE TABLE n AS SELECT DISTINCT CAST(('0x' || tag) AS UINTEGER) AS tag_int,
               private_creator, tag, private_element, keyword FROM elements""",
        "DROP VIEW elements",
        "DROP TABLE element_values",
        "DROP TABLE element_names",
        "ALTER TABLE v RENAME TO element_values",
        "ALTER TABLE n RENAME TO element_names",
        """CREATE VIEW elements AS SELECT v.file_id, i.SOPInstanceUID, n.tag, v.seq_path,
               v.private_creator, n.private_element, v.vr, n.keyword, v.value, v.value_length,
               v.n_items
           FROM element_values v JOIN element_names n ON n.tag_int = v.tag_int
               AND n.private_creator IS NOT DISTINCT FROM v.private_creator
           JOIN instances i ON i.file_id = v.file_id""",
    ],
}


@pytest.mark.parametrize("layout", sorted(_OLD_LAYOUTS))
def test_a_catalog_of_an_older_layout_is_moved_to_this_one(tmp_path: Path, layout: str) -> None:
    """A catalog an earlier version wrote: its element rows move over, unchanged."""
    files = [f for f in pydicom_test_files() if f.suffix == ".dcm"][:12]
    tree = tmp_path / "tree"
    tree.mkdir()
    for i, f in enumerate(files[:-1]):
        shutil.copy(f, tree / f"{i:03d}_{f.name}")
    db = tmp_path / "c.duckdb"
    crawl(tree, db, workers=1, progress=False)
    every = "SELECT * FROM elements"
    with duckdb.connect(str(db)) as con:  # the layout an older version wrote
        for sql in _OLD_LAYOUTS[layout]:
            con.execute(sql)
    before = _q(db, every)
    assert before
    shutil.copy(files[-1], tree / f"999_{files[-1].name}")
    crawl(tree, db, workers=1, progress=False)
    with duckdb.connect(str(db), read_only=True) as con:
        kinds = dict(
            con.sql(
                "SELECT table_name, table_type FROM information_schema.tables "
                "WHERE table_name LIKE 'element%'"
            ).fetchall()
        )
        assert kinds == {
            "elements": "VIEW",
            "element_values": "BASE TABLE",
            "element_names": "BASE TABLE",
        }
        assert "name_id" in {c[0] for c in con.sql("DESCRIBE element_names").fetchall()}
        after = con.sql(every).fetchall()
        added = con.sql(
            "SELECT count(*) FROM elements e JOIN files f USING (file_id) "
            "WHERE f.path LIKE '%/999_%'"
        ).fetchall()[0][0]
    assert added > 0
    # Every old row is still there, unchanged; the new file's rows were added, and nothing else.
    assert not Counter(before) - Counter(after)
    assert sum((Counter(after) - Counter(before)).values()) == added


def test_a_batch_whose_values_are_large_strings_is_written_like_any_other(tmp_path: Path) -> None:
    """Past 2 GiB of text in one batch's column, 32-bit Arrow offsets end: its values come as a
    large_string array (compiled.string_array). The writer takes such a batch beside ordinary ones
    in one transaction, and the catalog holds the same rows. (The 2 GiB itself is not built here.)"""
    import pyarrow as pa

    from curation import catalog
    from curation.crawler.writer import write_batches

    a, b = (_test_file(n) for n in ("CT_small.dcm", "MR_small.dcm"))
    first, second = (read_batch([(str(f), f.stat().st_size, 0)], 1) for f in (a, b))
    i = second.elements.schema.get_field_index("value")
    large = second._replace(
        elements=second.elements.set_column(
            i, "value", second.elements["value"].cast(pa.large_string())
        )
    )
    rows = []
    for name, parts in (("plain", [first, second]), ("large", [first, large])):
        con = catalog.connect(tmp_path / f"{name}.duckdb", create=True)
        catalog.ensure_tables(con, dictionary=False)
        write_batches(con, parts)
        rows.append(sorted(map(repr, con.sql("SELECT * FROM elements").fetchall())))
        con.close()
    assert rows[0] == rows[1] and len(rows[0]) > 100


@pytest.mark.parametrize("threads", [1, 2])
def test_a_failed_last_write_is_raised_not_waited_on(tmp_path: Path, threads: int) -> None:
    """The writer's last transaction failing ends the crawl with its error (the writer thread
    used to wait for a second end-of-queue marker, and the crawl with it, forever)."""
    from curation import catalog
    from curation.crawler.writer import Writer

    con = catalog.connect(tmp_path / "c.duckdb", create=True)
    catalog.ensure_tables(con, dictionary=False)
    con.execute("DROP TABLE crawl_errors")  # a catalog that lost a table: every write fails
    f = _test_file("CT_small.dcm")
    batch = read_batch([(str(f), f.stat().st_size, 0)], 1)
    writer = Writer(con, commit_every=1000, threads=threads)
    writer.put(batch)  # buffered: written when the queue ends, in close()
    raised: list[BaseException] = []

    def close() -> None:
        try:
            writer.close()
        except BaseException as exc:
            raised.append(exc)

    closing = threading.Thread(target=close, daemon=True)
    closing.start()
    closing.join(60)
    assert not closing.is_alive(), "the writer never ended"
    assert len(raised) == 1 and isinstance(raised[0], duckdb.CatalogException), raised
    con.close()


@pytest.mark.parametrize("writers", [1, 2])
def test_killed_crawl_leaves_a_consistent_catalog_and_resumes(tmp_path: Path, writers: int) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    src = _test_file("CT_small.dcm").read_bytes()
    for i in range(400):
        (tree / f"{i:04d}.dcm").write_bytes(_with_new_uid(src))
    db = tmp_path / "c.duckdb"
    script = (
        "import logging, sys; from curation import crawl; "
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stdout); "
        f"crawl({str(tree)!r}, {str(db)!r}, workers=1, progress=False, commit_every=20, "
        f"writers={writers})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "committed" in line:
            break
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_files = _q(db, "SELECT count(*) FROM files")[0][0]
    assert 0 < n_files < 400, "the kill should land mid-crawl"
    # Every committed file has its instance and all its elements: no half-written batch.
    assert _q(db, "SELECT count(*) FROM files f ANTI JOIN instances i USING (file_id)") == [(0,)]
    assert _q(
        db,
        """SELECT count(*) FROM instances i LEFT JOIN
           (SELECT file_id, count(*) n FROM elements GROUP BY file_id) e USING (file_id)
           WHERE e.n IS DISTINCT FROM i.n_elements""",
    ) == [(0,)]
    resumed = crawl(tree, db, workers=1, progress=False)
    assert resumed.n_unchanged == n_files
    assert _q(db, "SELECT count(*) FROM instances") == [(400,)]
    assert _q(db, "SELECT sum(n_instances) FROM series") == [(400,)]


@needs_shared
def test_shared_corpus_catalog(shared_catalog: Path) -> None:
    db = shared_catalog
    listed = len((SHARED_DICOM / "_DICOM_FILES.tsv").read_text().splitlines()) - 1
    ok, skipped = _q(
        db,
        "SELECT count(*) FILTER (status = 'ok'), count(*) FILTER (reason = 'dicomdir') FROM files",
    )[0]
    assert ok + skipped == listed
    # Enhanced multi-frame objects get their frames, with geometry from the functional groups.
    n_frames, n_mf = _q(
        db,
        """SELECT (SELECT count(*) FROM frames),
                  (SELECT sum(NumberOfFrames) FROM instances
                   WHERE SOPClassUID = '1.2.840.10008.5.1.4.1.1.4.1')""",
    )[0]
    assert n_frames == n_mf > 0
    assert _q(db, "SELECT count(*) FROM frames WHERE ImagePositionPatient IS NULL") == [(0,)]
    # Private tags are identified by creator + offset, whatever block they were written in.
    bvals = _q(
        db,
        """SELECT count(*) FROM elements
           WHERE private_creator = 'GEMS_PARM_01' AND private_element = '0043xx39'""",
    )[0][0]
    assert bvals > 0
    # Every table has rows; series counts add up to the instances.
    for table in ("elements", "instances", "series", "studies", "patients", "dicom_dictionary"):
        assert _q(db, f"SELECT count(*) FROM {table}")[0][0] > 0, table
    assert _q(db, "SELECT sum(n_instances) FROM series") == _q(db, "SELECT count(*) FROM instances")


def _corpus_sources() -> list[str]:
    from .test_reader import _sources

    return _sources()


@needs_shared
@pytest.mark.parametrize("source", _corpus_sources())
def test_typed_instance_columns_match_pydicom(shared_catalog: Path, source: str) -> None:
    rows = _q(
        shared_catalog,
        """SELECT path, InstanceNumber, SliceThickness, ImagePositionPatient, ImageOrientationPatient,
                  PixelSpacing, Rows, Columns, StudyDate, Modality, ImageType, EchoTime, NumberOfFrames
           FROM instances WHERE starts_with(path, ?) ORDER BY path""",
        [str(SHARED_DICOM / source) + "/"],
    )
    assert rows
    mismatches = []
    for path, inum, thick, ipp, iop, ps, rows_, cols, date, modality, itype, te, nf in rows:
        ds = pydicom.dcmread(path, stop_before_pixels=True)

        def num(v: object) -> float | None:
            return float(v) if v not in (None, "") else None  # type: ignore[arg-type]

        sfg = ds.get("SharedFunctionalGroupsSequence")
        measures = sfg[0].get("PixelMeasuresSequence") if sfg else None
        want_thick = ds.get("SliceThickness") or (
            measures[0].get("SliceThickness") if measures else None
        )
        checks = {
            "InstanceNumber": (
                inum,
                int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else None,
            ),
            "SliceThickness": (thick, num(want_thick)),
            "ImagePositionPatient": (
                ipp,
                tuple(map(float, ds.ImagePositionPatient))
                if "ImagePositionPatient" in ds
                else None,
            ),
            "ImageOrientationPatient": (
                iop,
                tuple(map(float, ds.ImageOrientationPatient))
                if "ImageOrientationPatient" in ds
                else iop,
            ),
            "PixelSpacing": (
                ps,
                tuple(map(float, ds.PixelSpacing)) if "PixelSpacing" in ds else ps,
            ),
            "Rows": (rows_, ds.get("Rows")),
            "Columns": (cols, ds.get("Columns")),
            # An invalid date (anonymizers write '***') is NULL in the typed column.
            "StudyDate": (
                date.strftime("%Y%m%d") if date else None,
                ds.StudyDate if str(ds.get("StudyDate", "")).isdigit() else None,
            ),
            "Modality": (modality, ds.get("Modality")),
            "ImageType": (
                itype,
                list(ds.ImageType) if "ImageType" in ds and ds.ImageType else itype,
            ),
            "EchoTime": (te, num(ds.get("EchoTime"))),
            "NumberOfFrames": (
                nf,
                int(ds.NumberOfFrames) if ds.get("NumberOfFrames") not in (None, "") else None,
            ),
        }
        for name, (got, want) in checks.items():
            if got != want and not (
                isinstance(got, float) and want is not None and abs(got - want) < 1e-9
            ):
                mismatches.append((path, name, got, want))
    assert not mismatches, mismatches[:5]


@needs_shared
@pytest.mark.parametrize("source", _corpus_sources())
def test_catalog_elements_match_pydicom(shared_catalog: Path, source: str) -> None:
    """What lands in the catalog's ``elements`` is what pydicom reads, for every corpus file."""
    from curation.crawler.pydicom_reader import read_with_pydicom

    from .test_reader import _norm, _rows

    prefix = str(SHARED_DICOM / source) + "/"
    rows = _q(
        shared_catalog,
        """SELECT f.path, e.tag, e.seq_path, e.vr, e.private_creator, e.value
           FROM elements e JOIN files f USING (file_id)
           WHERE starts_with(f.path, ?)
             AND NOT (e.seq_path = '' AND e.tag IN ('7FE00010', '7FE00008', '7FE00009'))""",
        [prefix],
    )
    catalog: dict[str, dict[tuple[str, int], tuple[str, str | None, str | None]]] = {}
    for path, tag, seq_path, vr, creator, value in rows:
        catalog.setdefault(str(path), {})[(str(seq_path), int(str(tag), 16))] = (
            str(vr),
            creator if creator is None else str(creator),
            _norm(value if value is None else str(value), str(vr)),
        )
    ok_paths = [
        p
        for (p,) in _q(
            shared_catalog,
            "SELECT path FROM files WHERE status = 'ok' AND starts_with(path, ?)",
            [prefix],
        )
    ]
    assert ok_paths and set(catalog) == set(ok_paths)
    differing = []
    for path in ok_paths:
        header, _ = read_with_pydicom(path)
        want = _rows(header)
        got = catalog[path]
        if got != want:
            keys = sorted(set(got) | set(want))
            differing.append(
                (
                    path,
                    [(k, got.get(k), want.get(k)) for k in keys if got.get(k) != want.get(k)][:3],
                )
            )
    assert not differing, differing[:3]


def test_steps_other_than_crawl_do_not_create_a_catalog(tmp_path: Path) -> None:
    from curation.cli.main import main

    missing = tmp_path / "typo.duckdb"
    assert main(["qc", "--db", str(missing)]) == 4  # catalog problem, named in the message
    assert not missing.exists()
    assert main(["crawl", str(tmp_path / "no such folder"), "--db", str(missing)]) == 3


def test_files_over_a_limit_get_a_reason_and_are_not_read_again(tmp_path: Path) -> None:
    from . import fuzz_cases

    tree = tmp_path / "tree"
    tree.mkdir()
    ct = _test_file("CT_small.dcm").read_bytes()
    (tree / "zeros.dcm").write_bytes(fuzz_cases.zero_bomb(2 << 20, ct))
    (tree / "bomb.dcm.gz").write_bytes(fuzz_cases.gzip_bomb(64 << 20))
    (tree / "deep.dcm").write_bytes(fuzz_cases.deep_sequence(600))
    (tree / "flood.dcm").write_bytes(fuzz_cases.element_bomb(30_000))
    # An explicit VR pydicom does not know either (it raised NotImplementedError: was `internal`).
    rle = _test_file("SC_rgb_rle.dcm").read_bytes()
    (tree / "vr.dcm").write_bytes(rle.replace(b" \x00 \x00CS", b" \x00 \x00S ", 1))
    shutil.copy(_test_file("MR_small.dcm"), tree / "ok.dcm")
    db = tmp_path / "c.duckdb"
    first = crawl(tree, db, workers=1, progress=False, limits=Limits(max_elements=10_000))
    reasons = dict(_q(db, "SELECT regexp_extract(path, '[^/]+$'), reason FROM files"))
    assert reasons == {
        "zeros.dcm": "zero_padding",
        "bomb.dcm.gz": "zero_padding",
        "deep.dcm": "too_deep",
        "flood.dcm": "header_too_large",
        "vr.dcm": None,  # cataloged, the element kept as UN
        "ok.dcm": None,
    }
    assert _q(db, "SELECT reason, cataloged FROM crawl_errors WHERE path LIKE '%vr.dcm'") == [
        ("invalid_vr", True)
    ]
    assert first.n_errors == 5
    again = crawl(tree, db, workers=1, progress=False, limits=Limits(max_elements=10_000))
    assert (again.n_read, again.n_unchanged) == (0, 6)


def test_paths_are_canonical_through_a_symlinked_root(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    shutil.copy(_test_file("CT_small.dcm"), real / "ct.dcm")
    link = tmp_path / "link"
    link.symlink_to(real)
    db = tmp_path / "c.duckdb"
    crawl(link, db, workers=1, progress=False)
    # Stored as Path.resolve() gives it, which is what other steps compare with.
    assert _q(db, "SELECT path FROM instances") == [(str((link / "ct.dcm").resolve()),)]
    # The same folder reached the other way is the same files, not a second copy.
    again = crawl(real, db, workers=1, progress=False)
    assert (again.n_read, again.n_unchanged) == (0, 1)
    assert _q(db, "SELECT count(*) FROM files") == [(1,)]


def test_file_name_that_is_not_utf8_is_stored_losslessly_and_crawled(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    raw = os.fsencode(tree) + b"/caf\xe9.dcm"
    with open(raw, "wb") as f:
        f.write(_test_file("CT_small.dcm").read_bytes())
    shutil.copy(_test_file("MR_small.dcm"), tree / "ok.dcm")
    db = tmp_path / "c.duckdb"
    summary = crawl(tree, db, workers=1, progress=False)
    assert (summary.n_ok, summary.n_errors) == (2, 0)
    rows = _q(db, "SELECT path, path_bytes FROM files WHERE path_bytes IS NOT NULL")
    assert rows == [(str(tree) + "/caf\\xe9.dcm", raw)]
    assert _q(db, "SELECT path_bytes FROM instances WHERE path LIKE '%caf%'") == [(raw,)]
    assert _q(db, "SELECT count(*) FROM instances WHERE path_bytes IS NULL") == [(1,)]
    # Unchanged on the next crawl; changed, it is read again under the same name.
    assert crawl(tree, db, workers=1, progress=False).n_unchanged == 2
    os.utime(raw, ns=(0, 10**18))
    third = crawl(tree, db, workers=1, progress=False)
    assert (third.n_read, third.n_ok) == (1, 1)
    assert _q(db, "SELECT count(*) FROM files") == [(2,)]


def test_a_crawl_that_catalogs_nothing_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "notes.txt").write_text("no DICOM here")
    summary = crawl(tree, tmp_path / "c.duckdb", workers=1, progress=False)
    assert summary.n_cataloged == 0
    assert "nothing cataloged" in str(summary)
    assert any(
        r.levelname == "WARNING" and "nothing cataloged" in r.getMessage() for r in caplog.records
    )
    shutil.copy(_test_file("CT_small.dcm"), tree / "ct.dcm")
    caplog.clear()
    again = crawl(tree, tmp_path / "c.duckdb", workers=1, progress=False)
    assert again.n_cataloged == 1 and "nothing" not in str(again)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_crawl_with_nothing_to_read_starts_light(tmp_path: Path) -> None:
    """No pyarrow (with numpy and pandas), pydicom, tqdm, dictionary fill or aggregate rebuild for
    an empty folder; a crawl with files fills the dictionary."""
    empty, db = tmp_path / "empty", tmp_path / "c.duckdb"
    empty.mkdir()
    code = (
        "import sys; from curation import catalog, crawl; rebuilt = []; "
        "rebuild = catalog.rebuild_aggregates; "
        "catalog.rebuild_aggregates = lambda con: rebuilt.append(1) or rebuild(con); "
        f"crawl({str(empty)!r}, {str(db)!r}, workers=1, progress=False); "
        "print(*(m in sys.modules for m in ('pyarrow', 'numpy', 'pandas', 'pydicom', 'tqdm')), "
        "len(rebuilt))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    # Each is a share of the start-up (benchmarks/startup.py): pyarrow ~0.1 s with numpy, pandas
    # (pa.array() of Python values imports it) ~0.25 s, pydicom's dictionaries ~0.5 s; a catalog
    # with no instances has no series, studies or patients to rebuild.
    assert proc.stdout.split() == ["False"] * 5 + ["0"], proc.stderr
    assert _q(db, "SELECT count(*) FROM series") == [(0,)]
    assert _q(db, "SELECT count(*) FROM dicom_dictionary") == [(0,)]
    shutil.copy(_test_file("CT_small.dcm"), empty / "ct.dcm")
    assert crawl(empty, db, workers=1, progress=False).n_cataloged == 1
    from pydicom.datadict import DicomDictionary, RepeatersDictionary, private_dictionaries

    n_entries = (
        len(DicomDictionary)
        + len(RepeatersDictionary)
        + sum(len(e) for e in private_dictionaries.values())
    )
    assert _q(db, "SELECT count(*) FROM dicom_dictionary") == [(n_entries,)]


# -- faults: a reader process killed, the crawl's own process killed ------------------------------


def _descendants(pid: int) -> list[int]:
    """Processes under ``pid`` (children, grandchildren, ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, pp in parents.items() if pp in frontier]
        found += children
        frontier = children
    return found


def _readers(crawl_pid: int) -> list[int]:
    """The crawl's reader processes: children of its fork server (its grandchildren)."""
    children = set(_descendants(crawl_pid))
    return [p for p in children if _parent(p) in children]


def _parent(pid: int) -> int:
    try:
        return int((Path(f"/proc/{pid}/stat")).read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _copies(tree: Path, n: int) -> None:
    tree.mkdir()
    src = _test_file("CT_small.dcm")
    for i in range(n):
        shutil.copy(src, tree / f"{i:04d}.dcm")


def _crawl_process(tree: Path, db: Path, **kwargs: object) -> subprocess.Popen[str]:
    options = ", ".join(
        f"{k}={v!r}" for k, v in {"workers": 2, "progress": False, **kwargs}.items()
    )
    script = (
        "import logging, sys; from curation import crawl\n"
        "if __name__ == '__main__':\n"
        "    logging.basicConfig(level=logging.DEBUG, stream=sys.stdout)\n"
        f"    print(crawl({str(tree)!r}, {str(db)!r}, {options}))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-u", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


@needs_proc
def test_a_killed_reader_process_does_not_stop_the_crawl(tmp_path: Path) -> None:
    tree, db = tmp_path / "tree", tmp_path / "c.duckdb"
    _copies(tree, 600)
    proc = _crawl_process(tree, db)
    # Kill a reader while it reads a file (it has one open), as the kernel's OOM killer would.
    killed = False
    while not killed and proc.poll() is None:
        for pid in _readers(proc.pid):
            if any(str(tree) in name for name in _open_files(pid)):
                os.kill(pid, signal.SIGKILL)
                killed = True
                break
        time.sleep(0.002)
    out = proc.communicate(timeout=120)[0]
    assert killed and proc.returncode == 0, out[-3000:]
    assert "a reader process died" in out
    # Every file accounted for: the lost batches were read again.
    assert _q(db, "SELECT status, count(*) FROM files GROUP BY ALL") == [("ok", 600)]
    assert _q(db, "SELECT count(*) FROM crawl_errors") == [(0,)]


def _open_files(pid: int) -> list[str]:
    names = []
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                names.append(os.readlink(fd))
    return names


@needs_proc
def test_a_file_that_kills_its_reader_is_found_and_recorded(tmp_path: Path) -> None:
    from . import fuzz_cases

    tree, db = tmp_path / "tree", tmp_path / "c.duckdb"
    _copies(tree, 20)
    culprit = tree / "culprit.dcm"
    culprit.write_bytes(fuzz_cases.element_bomb(200_000))  # half a second of reading
    proc = _crawl_process(tree, db)
    kills = 0
    while proc.poll() is None:
        # Kill any reader holding the culprit open, as if reading it exhausted memory.
        for pid in _readers(proc.pid):
            if any(name.endswith("culprit.dcm") for name in _open_files(pid)):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
        time.sleep(0.005)
    out = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 0, out[-3000:]
    assert kills >= 3  # in its batch, in its batch alone, then alone
    assert _q(db, "SELECT reason, count(*) FROM files GROUP BY ALL ORDER BY 1") == [
        ("reader_died", 1),
        (None, 20),
    ]
    assert _q(db, "SELECT path FROM crawl_errors") == [(str(culprit),)]
    # Not read again until it changes.
    assert crawl(tree, db, workers=1, progress=False).n_read == 0


@needs_proc
def test_readers_end_when_the_crawl_process_is_killed(tmp_path: Path) -> None:
    tree, db = tmp_path / "tree", tmp_path / "c.duckdb"
    _copies(tree, 600)
    proc = _crawl_process(tree, db)
    left: list[int] = []
    while len(left) < 3 and proc.poll() is None:  # fork server, resource tracker, a busy reader
        readers = [p for p in _readers(proc.pid) if any(str(tree) in n for n in _open_files(p))]
        left = _descendants(proc.pid) if readers else []
        time.sleep(0.002)
    assert len(left) >= 3, "the kill should land mid-crawl"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    while any(map(_alive, left)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in left if _alive(p)]


def test_workers_start_whatever_the_current_directory(tmp_path: Path) -> None:
    # A folder named like the package in the current directory (a checkout seen from its parent)
    # once shadowed it in every reader process.
    (tmp_path / "curation").mkdir()
    tree = tmp_path / "tree"
    _copies(tree, 3)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "curation"), "crawl", str(tree), "--db",
         str(tmp_path / "c.duckdb"), "--workers", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert _q(tmp_path / "c.duckdb", "SELECT count(*) FROM instances") == [(3,)]


def test_a_script_without_the_main_guard_is_told_the_fix(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _copies(tree, 3)
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from curation import crawl\n"
        f"crawl({str(tree)!r}, {str(tmp_path / 'c.duckdb')!r}, workers=2, progress=False)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("curation.errors.CurationError") and "__name__" in last, last
