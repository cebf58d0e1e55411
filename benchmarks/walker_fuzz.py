"""A long fuzz run of the compiled header walker against the pure-Python one, optionally under ASan.

The test suite runs ~3,000 mutants (tests/test_walker.py); this runs as many as asked, seed after
seed, and compares every outcome (rows, header facts, error and its message) of the two walkers.
With ``--asan`` it first builds the extension with ``-fsanitize=address`` into a temporary folder
and runs the fuzz in a child process with AddressSanitizer preloaded and Python's own allocator off
(``PYTHONMALLOC=malloc``), so that a read or write out of any buffer stops the run with a report.

    python benchmarks/walker_fuzz.py --mutants 50000 --asan
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _build_asan(tmp: Path) -> Path:
    env = {
        **os.environ,
        "CURATION_WALKER_CFLAGS": "-fsanitize=address -fno-omit-frame-pointer -g -O1",
    }
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp / "lib"),
         "--build-temp", str(tmp / "tmp")],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    return next((tmp / "lib").rglob("_walker*.so"))


def _load(so: str) -> None:
    """Make ``curation.crawler._walker`` the module at ``so`` (before the reader imports it)."""
    import curation.crawler

    spec = importlib.util.spec_from_file_location("curation.crawler._walker", so)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["curation.crawler._walker"] = module
    curation.crawler._walker = module  # type: ignore[attr-defined]


def fuzz(n: int, seed: int, chunk: int = 2000) -> int:
    """Run ``n`` mutants in chunks of fresh seeds; return the number of differing outcomes."""
    sys.path.insert(0, str(ROOT))
    import warnings

    warnings.simplefilter("ignore")  # pydicom warns about every undecodable mutant
    from curation.crawler import compiled
    from tests import fuzzing

    print(f"compiled walker: {compiled._compiled.__file__ if compiled._compiled else None}")
    # The compiled element columns' own operations, side by side with lists (under ASan: checked).
    from tests import test_element_columns as columns

    for kind in ("text", "int"):
        columns.test_columns_do_what_lists_do(kind)
    for column_seed in (1, 2, 3):
        columns.test_arrow_buffers_are_what_pyarrow_builds(column_seed)
    columns.test_columns_refuse_what_they_cannot_hold()
    kinds: collections.Counter[str] = collections.Counter()
    differ = 0
    seconds = {"python": 0.0, "compiled": 0.0}
    done = 0
    k = 0
    while done < n:
        cases = list(fuzzing.mutants(min(chunk, n - done), seed=seed + k))
        results = {}
        for name in ("python", "compiled"):
            compiled.select(name)
            t = time.perf_counter()
            results[name] = [fuzzing.outcome(d) for _, d in cases]
            results[name] += [fuzzing.outcome(d, complete=False) for _, d in cases[::7]]
            seconds[name] += time.perf_counter() - t
        for (kind, _), a in zip(cases, results["python"], strict=False):
            kinds[kind if a[0] != "error" else f"{kind}:{a[2] or a[1]}"] += 1
        bad = [
            i
            for i, (a, b) in enumerate(zip(results["python"], results["compiled"], strict=True))
            if a != b
        ]
        differ += len(bad)
        for i in bad[:3]:
            print(f"seed {seed + k}, case {i}: outcomes differ", file=sys.stderr)
        done += len(cases)
        k += 1
        print(f"{done} mutants, {differ} differences", file=sys.stderr)
    print(f"\n{done} mutants (seeds {seed}..{seed + k - 1}), outcomes that differ: {differ}")
    print(
        f"time: pure-Python walker {seconds['python']:.1f} s, compiled {seconds['compiled']:.1f} s"
    )
    for kind, count in sorted(kinds.items()):
        print(f"  {kind:<32} {count}")
    return differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mutants", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--asan", action="store_true", help="build and run under AddressSanitizer")
    parser.add_argument("--so", help=argparse.SUPPRESS)  # the child of --asan: the module to load
    args = parser.parse_args(argv)
    if args.so:
        _load(args.so)
    if not args.asan:
        return 1 if fuzz(args.mutants, args.seed) else 0
    with tempfile.TemporaryDirectory() as tmp:
        so = _build_asan(Path(tmp))
        libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                                 text=True, check=True).stdout.strip()  # fmt: skip
        env = {**os.environ, "LD_PRELOAD": libasan, "PYTHONMALLOC": "malloc",
               "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"}  # fmt: skip
        print(f"AddressSanitizer build: {so}")
        proc = subprocess.run(
            [sys.executable, __file__, "--mutants", str(args.mutants), "--seed", str(args.seed),
             "--so", str(so)],
            env=env, check=False,
        )  # fmt: skip
        print(f"fuzz under ASan exited with {proc.returncode}")
        return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
