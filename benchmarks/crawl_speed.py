"""Crawl speed: curation's crawler against the usual pydicom way, on the same files, in one run.

Generates (once, cached under benchmarks/_work/) a synthetic cohort of realistic CT and MR files with
vendor private tags and real pixel payloads (``curation sample --profile bench``), then measures:

- a naive baseline: ``pydicom.dcmread(stop_before_pixels=True)`` + ``iterall()`` + ``str(value)``,
  rows appended to the same DuckDB tables (``elements`` and ``instances``) through pandas;
- ``curation.crawl`` with 1 worker and with all cores, each into a fresh catalog;
- a re-crawl with nothing changed;
- peak RSS of the crawling process and of one worker.

Each measurement runs in a fresh process. Machines here are noisy: read the ratios, which come from
the same run on the same files, not the absolute times.

    python benchmarks/crawl_speed.py --files 20000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"

_CRAWL = """
import json, resource, sys
from curation import crawl
s = crawl(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]), progress=False)
print(json.dumps({"seconds": s.seconds, "n_seen": s.n_seen, "n_read": s.n_read, "n_ok": s.n_ok,
    "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""

_BASELINE = """
import json, os, resource, sys, time
import duckdb, pandas as pd, pydicom
from curation import catalog
from curation.schema import INSTANCE_ATTRIBUTES
files = [l for l in open(sys.argv[1]).read().splitlines()]
con = catalog.connect(sys.argv[2])
catalog.ensure_tables(con)
keywords = [a.keyword for a in INSTANCE_ATTRIBUTES]
pydicom.config.convert_wrong_length_to_UN = True  # else one malformed private value stops it
t0 = time.perf_counter()
elements, instances = [], []
def flush():
    global elements, instances
    if elements:
        df = pd.DataFrame(elements, columns=["file_id", "SOPInstanceUID", "tag", "seq_path", "private_creator",
                                             "vr", "keyword", "value"])
        con.execute("INSERT INTO elements BY NAME SELECT * FROM df")
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
print(json.dumps({"seconds": seconds, "n_seen": len(files),
    "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(code: str, *args: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=20000, help="size of the generated cohort")
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
    args = parser.parse_args(argv)

    tree = args.tree or cohort(args.files)
    if args.replicas:
        tree = replicate(tree, args.replicas)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # Warm the page cache so that every contender reads from memory alike.
        subprocess.run(["find", str(tree), "-type", "f", "-exec", "cat", "{}", "+"],
                       stdout=subprocess.DEVNULL, check=False)  # fmt: skip
        one = _run(_CRAWL, str(tree), str(work / "one.duckdb"), "1")
        many = _run(_CRAWL, str(tree), str(work / "many.duckdb"), str(cores))
        again = _run(_CRAWL, str(tree), str(work / "many.duckdb"), str(cores))
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
        sample = ok[:: max(1, len(ok) // args.baseline_files)][: args.baseline_files]
        (work / "sample.txt").write_text("\n".join(sample))
        base = _run(_BASELINE, str(work / "sample.txt"), str(work / "baseline.duckdb"))
        n_listed = int(many["n_seen"])

    def rate(r: dict[str, float]) -> float:
        return r["n_seen"] / r["seconds"]

    rows = [
        (
            "naive pydicom baseline (1 process)",
            rate(base),
            base["rss_main_mb"],
            None,
            base["n_seen"],
        ),
        ("curation crawl, 1 worker", rate(one), one["rss_main_mb"], None, one["n_seen"]),
        (
            f"curation crawl, {cores} workers",
            rate(many),
            many["rss_main_mb"],
            many["rss_worker_mb"],
            many["n_seen"],
        ),
        ("re-crawl, nothing changed", rate(again), again["rss_main_mb"], None, again["n_seen"]),
    ]
    print(f"\ncrawl speed on {n_listed} files ({tree}), {cores} cores\n")
    print(
        f"| {'what':<36} | {'files':>7} | {'files/s':>9} | {'x baseline':>10} | {'peak RSS MB':>12} |"
    )
    print(f"|{'-' * 38}|{'-' * 9}|{'-' * 11}|{'-' * 12}|{'-' * 14}|")
    for what, r, rss, rss_w, n in rows:
        rss_txt = f"{rss:.0f}" + (f" + {rss_w:.0f}/worker" if rss_w else "")
        print(f"| {what:<36} | {n:>7} | {r:>9,.0f} | {r / rate(base):>9.1f}x | {rss_txt:>12} |")
    print(f"\nfiles/s per worker with {cores} workers: {rate(many) / cores:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
