"""Start-up time of the ``curation`` command: ``--help``, and a crawl of an empty folder.

Each is run several times in a fresh process (best and median wall time printed), then once under
``python -X importtime`` to list the imports that cost the most. Target: under 0.3 s each.

The empty crawl is timed twice: into a catalog that exists, and into a new one (a new file each
run). A crawl with nothing to read neither imports pydicom, nor fills ``dicom_dictionary`` from
pydicom's dictionaries, nor builds Arrow arrays from Python values (pyarrow imports pandas for
that); the baseline row does all three after the same crawl, as every empty crawl did before, so
the ratio is measured in one run.

    python benchmarks/startup.py --runs 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# As a user runs it: Python caches compiled modules. With PYTHONDONTWRITEBYTECODE set (as on some
# CI machines) every run compiles the package's modules again, ~0.05 s of "start-up" that no
# installed copy pays; a first untimed run of each command writes the caches.
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=_ENV)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-1000:]}")
    return seconds


def _top_imports(cmd: list[str], n: int) -> list[tuple[float, str]]:
    """The ``n`` top-level imports with the largest cumulative time (s) under -X importtime."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *cmd],
        capture_output=True,
        text=True,
        check=False,
        env=_ENV,
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
            "curation crawl EMPTY --db NEW": [*main_cmd, "crawl", str(empty), "--db", "NEW", "-q"],
            "baseline: NEW, dictionary filled": [
                "-c",
                "import sys; from curation.cli.main import main; from curation import catalog; "
                "main(['crawl', sys.argv[1], '--db', sys.argv[2], '-q']); "
                "catalog.ensure_dictionary(catalog.connect(sys.argv[2]))",
                str(empty),
                "NEW",
            ],
        }
        print(f"| {'command':<40} | {'best s':>7} | {'median s':>8} |")
        print(f"|{'-' * 42}|{'-' * 9}|{'-' * 10}|")
        best: dict[str, float] = {}
        for what, cmd in cases.items():
            times = []
            _timed(
                [
                    sys.executable,
                    *(str(Path(tmp) / "warm.duckdb") if a == "NEW" else a for a in cmd),
                ]
            )
            for i in range(args.runs):
                new_db = str(Path(tmp) / f"new-{what[:4]}-{i}.duckdb")  # a new catalog each run
                times.append(_timed([sys.executable, *(new_db if a == "NEW" else a for a in cmd)]))
            best[what] = min(times)
            print(f"| {what:<40} | {min(times):>7.3f} | {statistics.median(times):>8.3f} |")
        ratio = best["baseline: NEW, dictionary filled"] / best["curation crawl EMPTY --db NEW"]
        print(
            f"\nempty crawl into a new catalog: {ratio:.1f}x faster than the baseline (best of each)"
        )
        for what, cmd in list(cases.items())[1:3]:
            print(f"\nlargest imports of {what} (cumulative s, -X importtime):")
            for seconds, name in _top_imports(cmd, args.top):
                print(f"  {seconds:6.3f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
