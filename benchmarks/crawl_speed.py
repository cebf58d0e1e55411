"""Crawl speed: curation's crawler against the usual pydicom way and dcm2niix, same files, one run.

Two corpora: ``--corpus synthetic`` (default) generates (once, cached under benchmarks/_work/) a
synthetic cohort of realistic CT and MR files with vendor private tags (``curation sample --profile
bench``); ``--corpus dense`` takes the Philips and Siemens MR series of ../shared/dicom (dense real
headers: ~600 elements per Philips file, large private sequences) and replicates them to at least
``--files`` files. Then it measures, each in a fresh process:

- a naive baseline: ``pydicom.dcmread(stop_before_pixels=True)`` + ``iterall()`` + ``str(value)``,
  rows appended through pandas to a table of the ``elements`` columns and to `instances`;
- ``curation.crawl`` with 1 worker, with the compiled walker and with the pure-Python one
  (``CURATION_WALKER=python``), and with all cores, each into a fresh catalog;
- a re-crawl with nothing changed;
- ``dcm2niix -b o`` (its header scan: BIDS sidecars only, no images), where installed;
- peak RSS of the crawling process and of one worker;
- the split of one worker's CPU time per stage (header reading, Arrow tables, DuckDB appends,
  aggregate rebuild), measured in one process without the writer thread's overlap.

Machines here are noisy: read the ratios, which come from the same run on the same files, not the
absolute times; ``--repeat`` runs the crawls several times and prints the spread.

    python benchmarks/crawl_speed.py --corpus dense --files 20000 --repeat 3 --writers 2
    python benchmarks/crawl_speed.py --files 20000 --replicas 4
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"

# Reader processes are children of the fork server, not of the crawl's process, so
# RUSAGE_CHILDREN never sees them: a thread reads their peak RSS (VmHWM) from /proc instead.
_CRAWL = """
import json, os, resource, sys, threading, time
from curation import crawl

def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []

def peak_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0

def cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0

worker_kb, worker_cpu = 0, {}
def watch():
    global worker_kb
    while True:  # readers: the fork server's children (grandchildren of this process)
        for pid in [g for c in children(os.getpid()) for g in children(c)]:
            worker_kb = max(worker_kb, peak_kb(pid))
            worker_cpu[pid] = max(worker_cpu.get(pid, 0.0), cpu_s(pid))
        time.sleep(0.05)

threading.Thread(target=watch, daemon=True).start()
cpu0 = time.process_time()
s = crawl(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]), progress=False,
          writers=int(sys.argv[4]) if len(sys.argv) > 4 else None)
print(json.dumps({"seconds": s.seconds, "n_seen": s.n_seen, "n_read": s.n_read, "n_ok": s.n_ok,
    "cpu_s": time.process_time() - cpu0, "worker_cpu_s": sum(worker_cpu.values()),
    "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rss_worker_mb": worker_kb / 1024}))
"""

_BASELINE = """
import json, os, resource, sys, time
import duckdb, pandas as pd, pydicom
from curation import catalog
from curation.schema import INSTANCE_ATTRIBUTES
files = [l for l in open(sys.argv[1]).read().splitlines()]
con = catalog.connect(sys.argv[2], create=True)
catalog.ensure_tables(con)
# The usual way: one table of every element column (elements itself is a view, see schema.py).
con.execute("CREATE TABLE naive_elements AS SELECT * FROM elements LIMIT 0")
keywords = [a.keyword for a in INSTANCE_ATTRIBUTES]
pydicom.config.convert_wrong_length_to_UN = True  # else one malformed private value stops it
t0 = time.perf_counter()
cpu0 = time.process_time()
elements, instances = [], []
def flush():
    global elements, instances
    if elements:
        df = pd.DataFrame(elements, columns=["file_id", "SOPInstanceUID", "tag", "seq_path", "private_creator",
                                             "vr", "keyword", "value"])
        con.execute("INSERT INTO naive_elements BY NAME SELECT * FROM df")
        di = pd.DataFrame(instances, columns=["file_id", "path", *keywords])
        for k in keywords:
            di[k] = di[k].astype("string")
        # The usual way: store text, let the database cast what it can.
        con.execute("CREATE OR REPLACE TEMP TABLE di_raw AS SELECT * FROM di")
        con.execute("INSERT INTO instances (file_id, path, SOPInstanceUID, Modality, InstanceNumber) "
                    "SELECT file_id, path, SOPInstanceUID, Modality, TRY_CAST(InstanceNumber AS BIGINT) FROM di_raw")
    elements, instances = [], []
for n, path in enumerate(files):
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    sop = str(ds.get("SOPInstanceUID", ""))
    fid = n
    for elem in ds.iterall():
        creator = elem.private_creator if elem.tag.is_private else None
        value = None if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ") else str(elem.value)
        elements.append((fid, sop, f"{int(elem.tag):08X}", "", creator, elem.VR, elem.keyword, value))
    instances.append((fid, path, *[str(ds.get(k)) if k in ds else None for k in keywords]))
    if len(instances) >= 500:
        flush()
flush()
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "n_seen": len(files), "cpu_s": time.process_time() - cpu0,
    "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


# Process CPU time, not wall time: on a machine shared with other jobs the wall time of a stage
# is mostly waiting for a core, and the split then says more about the others than about us.
_STAGES = """
import json, sys, time
from curation import catalog
from curation.crawler import batches, discover, pool, run, writer
listing = discover.walk([sys.argv[1]])
items = sorted(zip(listing.paths, listing.sizes, listing.mtimes_ns))
con = catalog.connect(sys.argv[2], create=True)
catalog.ensure_tables(con)
con.execute("SET threads = 1")
con.execute(f"SET memory_limit = '{run.CRAWL_MEMORY_LIMIT}'")
read_one = batches._read_one
spent = {"read": 0.0, "batch": 0.0, "append": 0.0}
def timed_read_one(*args):
    t = time.process_time()
    try:
        return read_one(*args)
    finally:
        spent["read"] += time.process_time() - t
batches._read_one = timed_read_one
parts, n = [], 0
for i in range(0, len(items), pool.TASK_FILES):
    t = time.process_time()
    parts.append(batches.read_batch(items[i : i + pool.TASK_FILES], 1))
    spent["batch"] += time.process_time() - t
    n += parts[-1].files.num_rows
    if n >= run.COMMIT_FILES or i + pool.TASK_FILES >= len(items):
        t = time.process_time()
        writer.write_batches(con, parts)
        spent["append"] += time.process_time() - t
        parts, n = [], 0
con.execute("RESET threads")
t = time.process_time()
catalog.rebuild_aggregates(con)
aggregate = time.process_time() - t
print(json.dumps({"n_seen": len(items), "read": spent["read"], "arrow": spent["batch"] - spent["read"],
                  "append": spent["append"], "aggregate": aggregate}))
"""


def _run(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cohort(n_files: int) -> Path:
    """A bench-profile synthetic cohort of about ``n_files`` files, generated once and cached."""
    from curation.synth import generate_cohort

    out = WORK / f"bench-{n_files}"
    marker = out / ".complete"
    if not marker.exists():
        # The bench profile writes ~375 files per patient (a CT and an MR study).
        patients = max(1, round(n_files / 375))
        print(f"generating ~{n_files} files ({patients} patients) into {out} ...", file=sys.stderr)
        generate_cohort(out, patients=patients, seed=7, profile="bench")
        marker.write_text("ok")
    return out


def _header_bytes(path: str, size: int) -> int:
    """How many leading bytes of a file a replica keeps: its header, up to the pixel data."""
    from curation.crawler.reader import read_header

    try:
        header, gzipped = read_header(path)
    except Exception:  # junk, truncated or zero-byte files are copied whole
        return size
    if gzipped:
        return size
    start = header.pixel_data_offset or header.encapsulated_offset or size
    return min(size, start + 64)


def replicate(tree: Path, copies: int) -> Path:
    """A tree of ``copies`` sparse replicas of every file of ``tree`` (cached), for scale tests.

    Each replica keeps the original's header bytes, its size and its last bytes (so the checks the
    crawler makes on pixel data still see a complete file), with the pixel payload as a hole: a
    100,000-file archive then costs little disk. The crawler never reads pixel data, so it does the
    same work as on the originals. Replicas keep their SOP Instance UIDs: a catalog keeps them as
    distinct files (one instance row per file), as it does for copies in a real archive.
    """
    out = WORK / f"{tree.name}-x{copies}"
    marker = out / ".complete"
    if marker.exists():
        return out
    from curation.crawler import discover

    listing = discover.walk([str(tree)])
    for k in range(copies):
        for path, size in zip(listing.paths, listing.sizes, strict=True):
            dst = out / f"r{k}" / Path(path).relative_to(tree)
            dst.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "rb") as src, open(dst, "wb") as f:
                head = src.read(_header_bytes(path, size))
                f.write(head)
                if size > len(head):
                    src.seek(max(len(head), size - 64))
                    tail = src.read()
                    f.truncate(size - len(tail))
                    f.seek(size - len(tail))
                    f.write(tail)
    marker.write_text("ok")
    return out


def dense(n_files: int) -> Path:
    """The Philips and Siemens MR series of ../shared/dicom, replicated to at least ``n_files``."""
    shared = HERE.parent.parent / "shared" / "dicom"
    manifest = shared / "MANIFEST.tsv"
    if not manifest.exists():
        raise SystemExit(f"--corpus dense needs {manifest}")
    src = WORK / "dense-src"
    n_src = 0
    for line in manifest.read_text().splitlines()[1:]:
        cols = line.split("\t")
        source, series_dir, n, vendor, modality = cols[0], cols[1], int(cols[2]), cols[4], cols[6]
        if modality != "MR" or not vendor.lower().startswith(("philips", "siemens")):
            continue
        if "Little Endian" not in cols[9]:
            # Compressed series: dcm2niix reads their pixel data (a hole in a sparse replica).
            continue
        n_src += n
        link = src / series_dir
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(shared / source / series_dir.split("/", 1)[1])
    copies = -(-n_files // n_src)
    return replicate(src, copies)


def dcm2niix(tree: Path, work: Path) -> dict[str, float] | None:
    """Whole-process time of ``dcm2niix -b o`` (header scan, sidecars only), or None if absent."""
    exe = shutil.which("dcm2niix") or str(Path(sys.executable).parent / "dcm2niix")
    if not os.path.exists(exe):
        print("dcm2niix not installed (pip install dcm2niix): skipped", file=sys.stderr)
        return None
    out = work / "dcm2niix"
    out.mkdir()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([exe, "-b", "o", "-z", "n", "-o", str(out), str(tree)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    found = re.search(r"Found (\d+) DICOM file", proc.stdout)
    if proc.returncode not in (0, 2) or not found:  # 2: some files were not convertible
        print(f"dcm2niix failed ({proc.returncode}): {proc.stderr[-500:]}", file=sys.stderr)
        return None
    return {"seconds": seconds, "n_seen": int(found.group(1)), "rss_main_mb": 0.0, "cpu_s": cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", choices=("synthetic", "dense"), default="synthetic")
    parser.add_argument("--files", type=int, default=20000, help="files of the corpus")
    parser.add_argument(
        "--tree", type=Path, default=None, help="crawl this folder instead of a generated cohort"
    )
    parser.add_argument(
        "--baseline-files", type=int, default=1500, help="files timed for the slow baseline"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=0,
        help="crawl this many sparse replicas of the cohort instead (same headers, pixel payload "
        "as a hole): a cheap 100,000-file archive for the RSS target",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each crawl (spread shown)")
    parser.add_argument(
        "--no-python-walker", action="store_true", help="skip the pure-Python walker's crawl"
    )
    parser.add_argument("--no-dcm2niix", action="store_true", help="skip dcm2niix")
    parser.add_argument(
        "--writers",
        type=int,
        default=0,
        help="also crawl with this many writer threads (1 worker, and all cores), beside the "
        "default number (curation.crawler.run.default_writers)",
    )
    args = parser.parse_args(argv)

    if args.tree:
        tree = args.tree
    elif args.corpus == "dense":
        tree = dense(args.files)
    else:
        tree = cohort(args.files)
    if args.replicas:
        tree = replicate(tree, args.replicas)
    cores = os.cpu_count() or 1
    from curation.crawler import compiled

    walker = "compiled" if compiled.AVAILABLE else "python (compiled walker not built)"
    runs: dict[str, list[dict[str, float]]] = {}

    def measure(key: str, code: str, *a: str, env: dict[str, str] | None = None) -> None:
        runs.setdefault(key, []).append(_run(code, *a, env=env))
        print(f"{key}: {runs[key][-1]}", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # Warm the page cache so that every contender reads from memory alike.
        subprocess.run(["find", str(tree), "-type", "f", "-exec", "cat", "{}", "+"],
                       stdout=subprocess.DEVNULL, check=False)  # fmt: skip
        for k in range(args.repeat):
            for db in work.glob("*.duckdb*"):
                db.unlink()
            measure("one", _CRAWL, str(tree), str(work / "one.duckdb"), "1")
            if not args.no_python_walker:
                measure("py", _CRAWL, str(tree), str(work / "py.duckdb"), "1",
                        env={"CURATION_WALKER": "python"})  # fmt: skip
            measure("many", _CRAWL, str(tree), str(work / "many.duckdb"), str(cores))
            if args.writers > 0:
                w = str(args.writers)
                measure("one_w", _CRAWL, str(tree), str(work / "one_w.duckdb"), "1", w)
                measure("many_w", _CRAWL, str(tree), str(work / "many_w.duckdb"), str(cores), w)
            measure("again", _CRAWL, str(tree), str(work / "many.duckdb"), str(cores))
            (work / f"d{k}").mkdir()
            peer = None if args.no_dcm2niix else dcm2niix(tree, work / f"d{k}")
            if peer:
                # Per file of the tree, as the crawl: the same files, so files/s compares the
                # time each takes over them (dcm2niix counts fewer as DICOM; it reads them all).
                peer["found"], peer["n_seen"] = peer["n_seen"], runs["many"][-1]["n_seen"]
                runs.setdefault("dcm2niix", []).append(peer)
        measure("stages", _STAGES, str(tree), str(work / "stages.duckdb"))
        # The baseline reads a sample of the files the crawl cataloged (pydicom would stop at the
        # planted junk files, which is the point of the crawler, not of this comparison).
        import duckdb

        with duckdb.connect(str(work / "one.duckdb"), read_only=True) as con:
            ok = [
                r[0]
                for r in con.sql(
                    "SELECT path FROM files WHERE status = 'ok' AND NOT gzip ORDER BY path"
                ).fetchall()
            ]
            n_elements = con.sql("SELECT count(*) FROM elements").fetchall()[0][0]
        sample = ok[:: max(1, len(ok) // args.baseline_files)][: args.baseline_files]
        (work / "sample.txt").write_text("\n".join(sample))
        base = _run(_BASELINE, str(work / "sample.txt"), str(work / "baseline.duckdb"))

    def rate(r: dict[str, float]) -> float:
        return r["n_seen"] / r["seconds"]

    def best(key: str) -> tuple[dict[str, float], str]:
        """The fastest run, and the spread of all runs as text."""
        rs = sorted(runs[key], key=rate, reverse=True)
        spread = "" if len(rs) == 1 else f"{rate(rs[-1]):,.0f}-{rate(rs[0]):,.0f}"
        return rs[0], spread

    rows = [("naive pydicom baseline (1 process)", base, "")]
    rows.append((f"curation crawl, 1 worker ({walker.split()[0]})", *best("one")))
    if "py" in runs:
        rows.append(("curation crawl, 1 worker (pure Python)", *best("py")))
    rows.append((f"curation crawl, {cores} workers", *best("many")))
    if "one_w" in runs:
        rows.append((f"curation crawl, 1 worker, {args.writers} writers", *best("one_w")))
        rows.append((f"curation crawl, {cores} workers, {args.writers} writers", *best("many_w")))
    rows.append(("re-crawl, nothing changed", *best("again")))
    if "dcm2niix" in runs:
        rows.append(("dcm2niix -b o (1 process)", *best("dcm2niix")))
    n_listed = int(runs["many"][0]["n_seen"])
    print(f"\ncrawl speed on {n_listed} files ({tree}), {cores} cores, walker: {walker}, "
          f"{n_elements / max(1, len(ok)):.0f} elements per cataloged file\n")  # fmt: skip
    print(
        f"| {'what':<40} | {'files':>7} | {'files/s':>9} | {'spread':>13} | {'x baseline':>10} | {'peak RSS MB':>16} |"
    )
    print(f"|{'-' * 42}|{'-' * 9}|{'-' * 11}|{'-' * 15}|{'-' * 12}|{'-' * 18}|")
    for what, r, spread in rows:
        rss_w = r.get("rss_worker_mb") if "workers" in what else None
        rss_txt = f"{r['rss_main_mb']:.0f}" + (f" + {rss_w:.0f}/worker" if rss_w else "")
        print(
            f"| {what:<40} | {int(r['n_seen']):>7} | {rate(r):>9,.0f} | {spread:>13} | "
            f"{rate(r) / rate(base):>9.1f}x | {rss_txt:>16} |"
        )
    one, many = best("one")[0], best("many")[0]
    print(f"\nper worker: {rate(one) / rate(base):.1f}x the naive baseline (1 worker)")
    # CPU time per file: what a worker costs, whatever else the machine runs meanwhile (the 1
    # worker crawl runs in one process, threads included; so does the baseline).
    cpu_one = min(r["cpu_s"] / r["n_seen"] for r in runs["one"])
    cpu_base = base["cpu_s"] / base["n_seen"]
    print(f"per worker, CPU time: {1e6 * cpu_one:,.0f} us/file against the baseline's "
          f"{1e6 * cpu_base:,.0f}: {cpu_base / cpu_one:.1f}x")  # fmt: skip
    if "py" in runs:
        print(
            f"compiled walker: {rate(one) / rate(best('py')[0]):.2f}x the pure-Python crawl (1 worker)"
        )
    from curation.crawler.run import default_writers

    if "one_w" in runs:
        for key, what in (("one_w", "1 worker"), ("many_w", f"{cores} workers")):
            plain = best("one" if key == "one_w" else "many")[0]
            r = best(key)[0]
            print(f"{what}, {args.writers} writers: {rate(r) / rate(base):.1f}x the naive baseline, "
                  f"{rate(r) / rate(plain):.2f}x the default "
                  f"({default_writers(1 if key == 'one_w' else cores)})")  # fmt: skip
    if "dcm2niix" in runs:
        d = best("dcm2niix")[0]
        print(f"dcm2niix -b o: over the same {int(d['n_seen'])} files (it counted "
              f"{int(d['found'])} as DICOM); whole process each, all {cores} cores:")  # fmt: skip
        print(f"1 worker ({default_writers(1)} writer threads): "
              f"{rate(one) / rate(d):.2f}x dcm2niix -b o")  # fmt: skip
        print(f"{cores} workers: {rate(many) / rate(d):.2f}x dcm2niix -b o")
        if "many_w" in runs:
            print(f"{cores} workers, {args.writers} writers: "
                  f"{rate(best('many_w')[0]) / rate(d):.2f}x dcm2niix -b o")  # fmt: skip
        # CPU time per file of all the crawl's processes against dcm2niix's: the wall-time ratio
        # a machine with the cores to spare would give, if the crawl spread evenly over them.
        cpu_many = min((r["cpu_s"] + r["worker_cpu_s"]) / r["n_seen"] for r in runs["many"])
        cpu_d = min(r["cpu_s"] / r["n_seen"] for r in runs["dcm2niix"])
        print(f"{cores} workers, CPU time: {1e6 * cpu_many:,.0f} us/file (crawl process and "
              f"readers) against dcm2niix's {1e6 * cpu_d:,.0f}: {cpu_d / cpu_many:.2f}x; "
              f"{cores} cores at most {cores * cpu_d / cpu_many:.2f}x")  # fmt: skip
    st = runs["stages"][0]
    total = st["read"] + st["arrow"] + st["append"] + st["aggregate"]
    print(
        f"\none worker's CPU time per stage ({int(st['n_seen'])} files, {total:.1f} s, no overlap):"
    )
    for stage, what in (("read", "header reading (walk + file I/O)"),
                        ("arrow", "Arrow tables (instances, element names, dictionaries)"),
                        ("append", "DuckDB appends (elements, instances, frames, files)"),
                        ("aggregate", "aggregate rebuild (series, studies, patients)")):  # fmt: skip
        print(f"  {what:<56} {st[stage]:7.2f} s  {100 * st[stage] / total:5.1f} %  "
              f"{1e6 * st[stage] / st['n_seen']:7.0f} us/file")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
