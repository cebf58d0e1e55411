"""CPU per file of reading a batch (walk + Arrow tables): element rows in lists vs compiled columns.

The compiled walker writes its rows either into Python lists (one int or str object per value,
turned into Arrow arrays afterwards) or into the compiled columns of ``_walker.c`` (Arrow buffers
filled directly). This times :func:`curation.crawler.batches.read_batch` over the same files both
ways in one process, interleaved (ABAB..., the order flipped every round), and prints the best
CPU time per file of each and their ratio; it first checks that both give the same Arrow tables.
``--parent REV`` also times the crawler of another commit (built into a temporary git worktree),
in a child process, in the same rounds.

    python benchmarks/walker_columns.py --tree /tmp/i13_work/dense-src-x25 --files 3000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# numpy's OpenBLAS threads spin after start-up and their CPU time counts in process_time: noise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 128  # files per read_batch call, as the crawl's reader processes (pool.TASK_FILES)


def _files(tree: str, n: int) -> list[tuple[str, int, int]]:
    paths = sorted(str(p) for p in Path(tree).rglob("*") if p.is_file())
    step = max(1, len(paths) // n)
    chosen = paths[::step][:n]
    return [(p, (st := os.stat(p)).st_size, st.st_mtime_ns) for p in chosen]


def _use(variant: str) -> None:
    """Make new element columns lists (the old path) or the compiled columns."""
    from curation.crawler import compiled, reader

    compiled.select("compiled")
    if variant == "lists":
        reader._text_column = reader._int_column = list
    _time_walk()


_SPENT: dict[str, float] = {}


def _timed(f: Callable[..., Any], key: str) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.process_time()
        try:
            return f(*args, **kwargs)
        finally:
            _SPENT[key] = _SPENT.get(key, 0.0) + time.process_time() - t

    return timed


def _instrument() -> None:
    """Time the stages this is about: reading headers (file reads + walk) and to_table."""
    from curation.crawler import batches, elements

    batches.read_header = _timed(batches.read_header, "header")  # type: ignore[assignment]
    # to_tables since the element rows carry name ids; to_table in commits before that.
    name = "to_tables" if hasattr(elements, "to_tables") else "to_table"
    setattr(elements, name, _timed(getattr(elements, name), "to_table"))


def _time_walk() -> None:
    """Time the walks of datasets (compiled.select, which sets reader._walk, undoes it)."""
    from curation.crawler import reader

    reader._walk = _timed(reader._walk, "walk")


def _cpu_per_file(items: list[tuple[str, int, int]]) -> dict[str, float]:
    """CPU seconds per file of read_batch ('total') and of its two stages."""
    from curation.crawler.batches import read_batch

    _SPENT.clear()
    t = time.process_time()
    for i in range(0, len(items), CHUNK):
        read_batch(items[i : i + CHUNK], 1)
    spent = {"total": time.process_time() - t, **_SPENT}
    return {k: v / len(items) for k, v in spent.items()}


def _child(items_file: str, rounds: int) -> None:
    """In a child process (another commit's crawler): one timing per line on request."""
    items = [tuple(x) for x in json.loads(Path(items_file).read_text())]
    _instrument()
    _time_walk()
    _cpu_per_file(items)  # type: ignore[arg-type]  # warm
    for line in sys.stdin:
        if not line.strip():
            break
        print(json.dumps(_cpu_per_file(items)), flush=True)  # type: ignore[arg-type]


def _parent_process(rev: str, tmp: Path, items_file: Path, rounds: int) -> subprocess.Popen[str]:
    tree = tmp / "parent"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree,
                   check=True, capture_output=True)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree), "CURATION_WALKER": "compiled"}
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--tree", "-", "--child", str(items_file),
         "--rounds", str(rounds)],
        cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def _same_tables(items: list[tuple[str, int, int]]) -> bool:
    from curation.crawler.batches import read_batch

    batches = {}
    for variant in ("lists", "columns"):
        _use(variant)
        batches[variant] = read_batch(items[:CHUNK], 1)
    a, b = batches["lists"], batches["columns"]
    return all(x.equals(y) for x, y in zip(a, b, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tree", required=True, help="a folder of DICOM files")
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--parent", help="also time this commit's crawler (e.g. main)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # another commit's crawler, first on PYTHONPATH
        _child(args.child, args.rounds)
        return 0
    sys.path.insert(0, str(ROOT))
    items = _files(args.tree, args.files)
    print(f"{len(items)} files of {args.tree}, batches of {CHUNK}, best of {args.rounds} rounds")
    if not _same_tables(items):
        print("the two paths give different Arrow tables")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        parent = None
        if args.parent:
            items_file = Path(tmp) / "items.json"
            items_file.write_text(json.dumps(items))
            parent = _parent_process(args.parent, Path(tmp), items_file, args.rounds)
        try:
            _instrument()
            best: dict[str, dict[str, float]] = {}
            for variant in ("lists", "columns"):  # warm the page cache and the caches
                _use(variant)
                _cpu_per_file(items)
            for r in range(args.rounds):
                order = ["lists", "columns"] if r % 2 == 0 else ["columns", "lists"]
                for variant in order + (["parent"] if parent else []):
                    if variant == "parent":
                        assert parent is not None and parent.stdin and parent.stdout
                        parent.stdin.write("go\n")
                        parent.stdin.flush()
                        t = json.loads(parent.stdout.readline())
                    else:
                        _use(variant)
                        t = _cpu_per_file(items)
                    # Best of the rounds, stage by stage (the least disturbed run of each).
                    best[variant] = {k: min(v, best.get(variant, t)[k]) for k, v in t.items()}
                    print(f"  round {r}: {variant:<8} "
                          + ", ".join(f"{k} {v * 1e6:6.1f} us" for k, v in t.items()))  # fmt: skip
        finally:
            if parent is not None:
                assert parent.stdin is not None
                with contextlib.suppress(OSError):  # the child may have died
                    parent.stdin.write("\n")
                    parent.stdin.close()
                parent.wait()
            if args.parent:  # the worktree, even when its build failed
                subprocess.run(["git", "worktree", "remove", "--force", str(Path(tmp) / "parent")],
                               cwd=ROOT, check=False, capture_output=True)  # fmt: skip
    for b in best.values():
        b["walk + to_table"] = b["walk"] + b["to_table"]
    print(f"\nCPU per file, best of {args.rounds} rounds, as a ratio to the lists path's:")
    stages = list(best["lists"])
    print(f"  {'':<8} " + " ".join(f"{k:>15}" for k in stages))
    for variant, b in best.items():
        print(f"  {variant:<8} " + " ".join(f"{b[k] / best['lists'][k]:15.2f}" for k in stages))
    lists = ", ".join(f"{k} {v * 1e6:.1f} us" for k, v in best["lists"].items())
    print(f"  (lists: {lists})")
    if "parent" in best:
        print(f"columns / parent ({args.parent}): " + ", ".join(
            f"{k} {best['columns'][k] / best['parent'][k]:.2f}" for k in stages))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
