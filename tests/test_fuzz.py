"""Hostile input: a few hundred mutants of real files and a few bombs, read with the crawl's limits.

Every file is accounted for with a documented reason, none as ``internal``; no file is read longer
than a fixed budget; the reading process stays within a fixed memory bound (the bombs here once
took minutes and gigabytes). The cases come from :mod:`tests.fuzz_cases` (fixed seed). Run with each header walker: the
pure-Python one and the compiled one (``CURATION_WALKER``), where built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from curation import crawl
from curation.crawler import compiled
from curation.errors import READ_ERROR_REASONS

from . import fuzz_cases
from .conftest import ROOT, needs_proc

N_MUTANTS = 300
#: Seconds any one file may take to read (the slowest here takes well under one on a busy machine).
FILE_BUDGET_S = 5.0
#: Peak RSS of the process that read every case, imports included (~150 MB of it; the 64 MiB
#: header limit reached by one bomb accounts for most of the rest).
RSS_BUDGET_MB = 500

_READ_EACH = """
import json, os, sys, time
from curation.crawler.batches import read_batch
folder = sys.argv[1]
out = {}
for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    t0 = time.perf_counter()
    batch = read_batch([(path, os.path.getsize(path), 0)], 1)
    out[name] = (time.perf_counter() - t0, batch.files.column("status")[0].as_py(),
                 batch.errors.column("reason").to_pylist())
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forked parent (pytest) across exec.
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
from curation.crawler import compiled
print(json.dumps({"files": out, "rss_mb": int(peak.split()[1]) / 1024, "walker": compiled.in_use()}))
"""


@needs_proc
@pytest.mark.parametrize(
    "walker",
    [
        "python",
        pytest.param(
            "compiled",
            marks=pytest.mark.skipif(not compiled.AVAILABLE, reason="compiled walker not built"),
        ),
    ],
)
def test_hostile_files_are_read_within_limits_and_all_accounted_for(
    tmp_path: Path, walker: str
) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    names = []
    for name, data in fuzz_cases.hostile_cases(N_MUTANTS, flood=False):
        (folder / name).write_bytes(data)
        names.append(name)
    # Each file read on its own, timed, in a process of its own (for its peak memory).
    done = subprocess.run(
        [sys.executable, "-c", _READ_EACH, str(folder)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env={**os.environ, compiled.ENV: walker},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["walker"] == walker
    files = report["files"]
    assert sorted(files) == sorted(names)
    slow = {n: round(t, 2) for n, (t, _, _) in files.items() if t > FILE_BUDGET_S}
    assert not slow, slow
    assert report["rss_mb"] < RSS_BUDGET_MB, report["rss_mb"]
    reasons = Counter(r for _, _, rs in files.values() for r in rs)
    # No bug, and no corrupt file passed off as a transient OS error (retried by every crawl).
    wrong = {n: rs for n, (_, _, rs) in files.items() if {"internal", "os_error"} & set(rs)}
    assert not wrong, wrong
    assert set(reasons) <= set(READ_ERROR_REASONS)
    # The bombs end with the reasons that say what they are.
    assert files["bomb_zeros_after_meta.dcm"][2] == ["zero_padding"]
    assert files["bomb_gzip_zeros.dcm.gz"][2] == ["zero_padding"]
    assert files["bomb_gzip_value.dcm.gz"][2] == ["header_too_large"]
    assert files["deep_600.dcm"][2] == ["too_deep"]
    # Most mutants are still cataloged (a flipped byte in a value costs nothing).
    assert sum(status == "ok" for _, status, _ in files.values()) > N_MUTANTS // 2

    # The crawl accounts for every file, and a second crawl reads none of them again.
    db = tmp_path / "c.duckdb"
    before = compiled.in_use()
    compiled.select(walker)
    try:
        first = crawl(folder, db, workers=1, progress=False)
        again = crawl(folder, db, workers=1, progress=False)
    finally:
        compiled.select(before)
    assert first.n_seen == len(names)
    with duckdb.connect(str(db), read_only=True) as con:
        statuses = dict(con.sql("SELECT status, count(*) FROM files GROUP BY ALL").fetchall())
        unexplained = con.sql(
            "SELECT count(*) FROM files WHERE status = 'error' AND file_id NOT IN "
            "(SELECT file_id FROM crawl_errors)"
        ).fetchall()[0][0]
    assert sum(statuses.values()) == len(names)
    assert unexplained == 0
    assert again.n_read == 0
