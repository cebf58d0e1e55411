"""``crawl --engine dask``: the same catalog as a local crawl, row for row, through faults.

Real Dask clusters (a LocalCluster of worker processes; an external scheduler started with the
``dask`` command), the real corpus of ../shared/dicom, real files made bad on purpose.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from curation import catalog, crawl, harmonize, qc
from curation.cohort import build_cohort, parse
from curation.crawler import dask_engine, parts
from curation.errors import CatalogError, CurationError
from tests.conftest import SHARED_DICOM, needs_shared

distributed = pytest.importorskip("distributed", reason="Dask distributed (curation[scale])")
dask = pytest.importorskip("dask")

#: Tables a crawl writes, compared row for row (crawls differs: its workers and timing).
CRAWL_TABLES = ("files", "instances", "frames", "elements", "crawl_errors", "series", "studies",
                "patients")  # fmt: skip
#: A part of the corpus for the fault tests (the whole corpus is tested once): 160 Canon MR files.
SUBSET = SHARED_DICOM / "dcm_qa_canon" / "In"
N_SUBSET = 160


def _subset() -> list[Path]:
    return sorted(p for p in SUBSET.rglob("*") if p.is_file())[:N_SUBSET]


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    """Two worker processes of one thread, shared by the tests of this module."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as c:
        yield c


def _only(files: list[Path]) -> str:
    """A WHERE clause keeping the rows of ``files`` (``{files}``: whose files table)."""
    paths = ", ".join(catalog.quote_literal(str(p)) for p in files)
    return f"file_id IN (SELECT file_id FROM {{files}} WHERE path IN ({paths}))"


def _differences(
    db: Path, other: Path, where: str = "", exclude: str = ""
) -> dict[str, tuple[int, int, int]]:
    """Per table: (rows of ``db``, rows only in ``db``, rows only in ``other``), multisets.

    ``where`` (see :func:`_only`) keeps some files' rows, on each side from its own ``files``.
    """
    con = catalog.connect(db, read_only=True)
    try:
        con.execute(f"ATTACH {catalog.quote_literal(str(other))} AS other (READ_ONLY)")
        out = {}
        for t in CRAWL_TABLES:
            if where and t in ("series", "studies", "patients"):
                continue
            has = exclude and t in ("files", "instances", "crawl_errors")  # with a crawl_id
            cols = f"* EXCLUDE ({exclude})" if has else "*"
            mine = f"SELECT {cols} FROM {t}"
            theirs = f"SELECT {cols} FROM other.{t}"
            if where:
                mine += " WHERE " + where.format(files="files")
                theirs += " WHERE " + where.format(files="other.files")
            n = con.sql(f"SELECT count(*) FROM ({mine})").fetchall()[0][0]
            a = con.sql(f"SELECT count(*) FROM ({mine} EXCEPT ALL {theirs})").fetchall()[0][0]
            b = con.sql(f"SELECT count(*) FROM ({theirs} EXCEPT ALL {mine})").fetchall()[0][0]
            out[t] = (n, a, b)
        return out
    finally:
        con.close()


def _assert_equal(db: Path, other: Path, where: str = "", exclude: str = "") -> dict[str, int]:
    diff = _differences(db, other, where, exclude)
    assert {t: (a, b) for t, (_, a, b) in diff.items()} == dict.fromkeys(diff, (0, 0))
    return {t: n for t, (n, _, _) in diff.items()}


@needs_shared
def test_dask_catalog_equals_the_local_one_and_steps_run_on_it(
    shared_catalog: Path, cluster: distributed.LocalCluster, tmp_path: Path
) -> None:
    db = tmp_path / "catalog.duckdb"
    summary = dask_engine.crawl(
        SHARED_DICOM, db, scheduler=cluster.scheduler_address, task_files=300, progress=False
    )
    counts = _assert_equal(db, shared_catalog)
    assert counts["instances"] > 2000 and counts["elements"] > 500_000 and counts["frames"] > 0
    assert summary.n_read == summary.n_seen == counts["files"]
    con = catalog.connect(db, read_only=True)
    try:
        assert parts.is_parquet_backed(con)
        n_tasks, n_files = con.sql("SELECT count(*), sum(n_files) FROM crawl_tasks").fetchall()[0]
        assert (n_tasks, n_files) == (-(-summary.n_read // 300), summary.n_read)
        # Typed as the declared tables: fixed-size arrays, dates.
        assert con.sql("SELECT typeof(ImagePositionPatient), typeof(StudyDate) FROM instances "
                       "LIMIT 1").fetchall() == [("DOUBLE[3]", "DATE")]  # fmt: skip
    finally:
        con.close()
    assert len(parts.parts_of(parts.root_of(db), "elements")) == n_tasks

    # QC rules, harmonization and a cohort run unchanged on it, with the local catalog's results.
    local = tmp_path / "local.duckdb"
    shutil.copy(shared_catalog, local)
    spec = parse({"name": "mr", "include": [{"field": "Modality", "op": "=", "value": "MR"}],
                  "exclude": [{"qc_severity": "error"}], "split": {"ratios": {"train": 1.0}}})  # fmt: skip
    results = []
    for path in (db, local):
        con = catalog.connect(path)
        try:
            qc.run(con)
            harmonize.build(con, read_csa=False)
            manifest = build_cohort(con, spec, None, key=b"k" * 16).manifest
            # every finding, series.thickness_vs_spacing too: its modal spacing is an ordered
            # mode(), so a tie no longer falls by the scan order of the two catalogs
            findings = con.sql("SELECT * EXCLUDE (run_id) FROM qc_findings").fetchall()
            harmonized = con.sql("SELECT * FROM harmonized_series").fetchall()
        finally:
            con.close()
        results.append((sorted(map(repr, findings)), sorted(map(repr, harmonized)),
                        manifest.sort("series_key")))  # fmt: skip
    (f1, h1, m1), (f2, h2, m2) = results
    assert f1 == f2 and len(f1) > 0
    assert h1 == h2 and len(h1) > 0
    assert m1.equals(m2) and m1.height > 0


def _kill_when_working(address: str, parts_root: Path, done: threading.Event, out: dict) -> None:
    """Kill (SIGKILL) a worker that holds crawl tasks, once the crawl has committed one."""
    with distributed.Client(address) as client:
        pids = client.run(os.getpid)
        while not done.is_set():
            if any((parts_root / "instances").glob("*.parquet")):
                busy = {w: ts for w, ts in client.processing().items() if ts}
                if busy:
                    worker, tasks = next(iter(busy.items()))
                    os.kill(pids[worker], signal.SIGKILL)
                    out.update(worker=worker, tasks=tasks, crawl_running=not done.is_set())
                    return
            time.sleep(0.02)


@needs_shared
def test_a_worker_killed_mid_crawl_loses_no_rows_and_duplicates_none(
    shared_catalog: Path, cluster: distributed.LocalCluster, tmp_path: Path
) -> None:
    db = tmp_path / "catalog.duckdb"
    done, killed = threading.Event(), {}
    killer = threading.Thread(
        target=_kill_when_working,
        args=(cluster.scheduler_address, parts.root_of(db), done, killed),
    )
    killer.start()
    try:
        dask_engine.crawl(_subset(), db, scheduler=cluster.scheduler_address, task_files=8,
                          progress=False)  # fmt: skip
    finally:
        done.set()
        killer.join()
    assert killed.get("crawl_running") and killed["tasks"], "no worker was killed while working"
    counts = _assert_equal(db, shared_catalog, _only(_subset()))
    assert counts["instances"] == N_SUBSET
    cluster.wait_for_workers(2)  # the nanny starts a new worker for the next tests


def _kill_holders(name: str, done: threading.Event, kills: list[int]) -> None:
    """SIGKILL any of this user's processes holding file ``name`` open, until ``done``."""
    me = os.getuid()
    while not done.is_set():
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                if proc.stat().st_uid != me:
                    continue
                held = any(os.readlink(fd) == name for fd in (proc / "fd").iterdir())
            except OSError:
                continue
            if held:
                with contextlib.suppress(OSError):
                    os.kill(int(proc.name), signal.SIGKILL)
                    kills.append(int(proc.name))
        time.sleep(0.005)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_file_that_kills_its_worker_each_time_is_recorded_and_the_crawl_goes_on(
    tmp_path: Path,
) -> None:
    """Dask gives up on a task whose worker died (KilledWorker, after Dask's own 3 retries); the
    crawl halves it down to the one file that kills its worker, records that file as
    ``reader_died`` and reads the rest. A cluster of its own: its workers die 8 times."""
    from pydicom.data import get_testdata_file

    from . import fuzz_cases

    tree, db = tmp_path / "tree", tmp_path / "c.duckdb"
    tree.mkdir()
    for i in range(6):
        shutil.copy(get_testdata_file("CT_small.dcm"), tree / f"{i}.dcm")
    # Early, in a task with another file (the halving is exercised), and with tasks after it:
    # those queued on its worker when it dies are counted a death too, and must not be taken
    # for the culprit (they are read again alone).
    culprit = tree / "2-culprit.dcm"
    culprit.write_bytes(fuzz_cases.element_bomb(200_000))  # half a second of reading
    done, kills = threading.Event(), []
    killer = threading.Thread(target=_kill_holders, args=(str(culprit), done, kills))
    killer.start()
    # A scheduler that gives up on a task at the first death of a worker holding it, and hands
    # each worker more tasks than it runs at once: the tasks queued behind the culprit's die
    # with it, which is what an innocent file meets on a busy cluster, made certain here.
    strict = {
        "distributed.scheduler.allowed-failures": 0,
        "distributed.scheduler.worker-saturation": 3.0,
    }
    with (
        dask.config.set(strict),
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        ) as cluster,
    ):
        try:
            summary = dask_engine.crawl(
                tree, db, scheduler=cluster.scheduler_address, task_files=2, progress=False
            )
        finally:
            done.set()
            killer.join()
        # Not read again until it changes.
        again = dask_engine.crawl(tree, db, scheduler=cluster.scheduler_address, progress=False)
    assert kills, "the culprit's worker was never killed"
    con = catalog.connect(db, read_only=True)
    try:
        assert con.sql("SELECT reason, count(*) FROM files GROUP BY ALL ORDER BY 1").fetchall() == [
            ("reader_died", 1),
            (None, 6),
        ]
        assert con.sql("SELECT path, reason FROM crawl_errors").fetchall() == [
            (str(culprit), "reader_died")
        ]
        assert con.sql("SELECT count(*) FROM instances").fetchall() == [(6,)]
    finally:
        con.close()
    assert summary.n_read == 7 and summary.errors_by_reason == {"reader_died": 1}
    assert again.n_read == 0


def test_bad_files_and_incremental_crawls_match_the_local_crawl(
    cluster: distributed.LocalCluster, tmp_path: Path
) -> None:
    from pydicom.data import get_testdata_file

    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    sources = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm", "emri_small.dcm"]
    for name in sources:
        shutil.copy(get_testdata_file(name), tree / "a" / name)
    (tree / "a" / "empty.dcm").write_bytes(b"")
    head = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (tree / "a" / "cut.dcm").write_bytes(head[:700])  # cut inside the header
    (tree / "notes.txt").write_text("not DICOM")
    local, remote = tmp_path / "local.duckdb", tmp_path / "dask.duckdb"
    address = cluster.scheduler_address

    def both() -> dict[str, int]:
        a = crawl(tree, local, workers=1, progress=False)
        b = dask_engine.crawl(tree, remote, scheduler=address, task_files=2, progress=False)
        assert (a.n_read, a.n_removed, a.n_errors) == (b.n_read, b.n_removed, b.n_errors)
        return _assert_equal(remote, local)

    first = both()
    assert first["crawl_errors"] >= 2 and first["instances"] == len(sources)
    con = catalog.connect(remote, read_only=True)
    reasons = {r[0] for r in con.sql("SELECT reason FROM crawl_errors").fetchall()}
    con.close()
    assert {"zero_byte", "truncated"} <= reasons

    # A changed file replaces its rows, a vanished one is dropped, a new one is added.
    shutil.copy(get_testdata_file("MR_small.dcm"), tree / "a" / "CT_small.dcm")
    os.utime(tree / "a" / "CT_small.dcm", ns=(1, 1))
    (tree / "a" / "rtplan.dcm").unlink()
    shutil.copy(get_testdata_file("SC_rgb.dcm"), tree / "new.dcm")
    second = both()
    assert second["instances"] == len(sources)  # one gone, one added
    con = catalog.connect(remote, read_only=True)
    try:
        assert con.sql(
            "SELECT count(*) FROM instances WHERE path LIKE '%rtplan.dcm'"
        ).fetchall() == [(0,)]
        changed = con.sql(
            "SELECT Modality, crawl_id FROM instances WHERE path LIKE '%CT_small.dcm'"
        )
        assert changed.fetchall() == [("MR", 2)]
        # The part that held the dropped rows was rewritten without them.
        n_parts = con.sql("SELECT count(DISTINCT filename) FROM read_parquet("
                          f"{catalog.quote_literal(str(parts.root_of(remote) / 'instances' / '*.parquet'))}"
                          ", filename = true)").fetchall()[0][0]  # fmt: skip
        assert n_parts >= 2
    finally:
        con.close()
    # A third crawl of the unchanged tree reads nothing and changes nothing.
    third = both()
    assert third == second

    # One engine per catalog: each refuses the other's catalog, saying why.
    with pytest.raises(CatalogError, match="--engine dask"):
        crawl(tree, remote, workers=1, progress=False)
    with pytest.raises(CatalogError, match="crawled locally"):
        dask_engine.crawl(tree, local, scheduler=address, progress=False)


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


@needs_shared
def test_a_scheduler_that_goes_away_leaves_a_catalog_the_next_crawl_completes(
    shared_catalog: Path, cluster: distributed.LocalCluster, tmp_path: Path
) -> None:
    info = tmp_path / "scheduler.json"
    scheduler = _start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file",
                        str(info), "--port", "0", "--no-dashboard"], tmp_path / "s.log")  # fmt: skip
    worker = None
    try:
        for _ in range(600):
            if info.exists() and info.stat().st_size:
                break
            time.sleep(0.1)
        worker = _start([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(info),
                         "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                         "--death-timeout", "60"], tmp_path / "w.log")  # fmt: skip
        db = tmp_path / "catalog.duckdb"
        instances = parts.root_of(db) / "instances"

        def stop_scheduler() -> None:
            while scheduler.poll() is None:
                if len(list(instances.glob("*.parquet"))) >= 3:
                    scheduler.send_signal(signal.SIGKILL)
                    return
                time.sleep(0.02)

        stopper = threading.Thread(target=stop_scheduler)
        stopper.start()
        import json

        address = json.loads(info.read_text())["address"]
        # The client gives up reconnecting after this (30 s by default, for a scheduler restart).
        with (
            dask.config.set({"distributed.comm.timeouts.connect": "3s"}),
            pytest.raises(CurationError, match="scheduler went away"),
        ):
            dask_engine.crawl(_subset(), db, scheduler=address, task_files=8, progress=False)
        stopper.join()
    finally:
        for p in (scheduler, worker):
            if p is not None and p.poll() is None:
                p.kill()
            if p is not None:
                p.wait()
    # What was committed is whole: every committed task's files and parts, nothing else.
    con = catalog.connect(db, read_only=True)
    try:
        n_files, n_tasks_files, n_ok, n_instances = con.sql(
            """SELECT (SELECT count(*) FROM files), (SELECT sum(n_files) FROM crawl_tasks),
                      (SELECT count(*) FROM files WHERE status = 'ok'),
                      (SELECT count(*) FROM instances)"""
        ).fetchall()[0]
        assert 3 * 8 <= n_files == n_tasks_files < N_SUBSET and n_ok == n_instances
    finally:
        con.close()
    dask_engine.crawl(_subset(), db, scheduler=cluster.scheduler_address, task_files=64,
                      progress=False)  # fmt: skip
    # crawl_id differs for the files of the stopped crawl: compare all else, row for row.
    counts = _assert_equal(db, shared_catalog, _only(_subset()), exclude="crawl_id")
    assert counts["instances"] == N_SUBSET
    assert not list((parts.root_of(db) / parts.STAGING).glob("*/*/*"))
