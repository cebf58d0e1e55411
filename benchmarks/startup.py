"""Start-up time of the ``curation`` command: ``--help``, and a crawl of an empty folder.

Each is run several times in a fresh process (best and median wall time printed), then once under
``python -X importtime`` to list the imports that cost the most. Target: under 0.3 s each.

    python benchmarks/startup.py --runs 7
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-1000:]}")
    return seconds


def _top_imports(cmd: list[str], n: int) -> list[tuple[float, str]]:
    """The ``n`` top-level imports with the largest cumulative time (s) under -X importtime."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *cmd], capture_output=True, text=True, check=False
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2  # two spaces per level of nesting
        if depth <= 1:  # what the command imports, and what those import directly
            rows.append((int(cumulative) / 1e6, "  " * depth + name.strip()))
    return sorted(rows, key=lambda r: -r[0])[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=8, help="imports listed per command")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty"
        empty.mkdir()
        db = Path(tmp) / "catalog.duckdb"
        main_cmd = ["-c", "import sys; from curation.cli.main import main; sys.exit(main())"]
        cases = {
            "python -c pass (the interpreter alone)": ["-c", "pass"],
            "curation --help": [*main_cmd, "--help"],
            "curation crawl EMPTY --db DB": [*main_cmd, "crawl", str(empty), "--db", str(db), "-q"],
        }
        print(f"| {'command':<40} | {'best s':>7} | {'median s':>8} |")
        print(f"|{'-' * 42}|{'-' * 9}|{'-' * 10}|")
        for what, cmd in cases.items():
            times = [_timed([sys.executable, *cmd]) for _ in range(args.runs)]
            print(f"| {what:<40} | {min(times):>7.3f} | {statistics.median(times):>8.3f} |")
        for what, cmd in list(cases.items())[1:]:
            print(f"\nlargest imports of {what} (cumulative s, -X importtime):")
            for seconds, name in _top_imports(cmd, args.top):
                print(f"  {seconds:6.3f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
