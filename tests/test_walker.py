"""The compiled header walker against the pure-Python one: the same catalog, file by file.

The pure-Python walker (``reader._Walker.walk``) is the reference; pydicom is the oracle of both
(tests/test_reader.py runs with the walker the crawl uses). Here the two walkers read the same bytes
and must produce the same rows, header facts and errors: on every real file we have, on a crawl
(``elements``, ``instances``, ``crawl_errors``), and on thousands of damaged files, where the
compiled one must also not crash or hang.
"""

from __future__ import annotations

import faulthandler
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from curation.crawler import compiled
from curation.crawler.reader import ElementColumns, read_header

from . import fuzz_cases, fuzzing
from .conftest import (
    SAMPLE_DATA,
    needs_shared,
    pydicom_test_files,
    shared_corpus_files,
)

pytestmark = pytest.mark.skipif(
    not compiled.AVAILABLE, reason="the compiled walker is not built (no C compiler at install)"
)


@pytest.fixture
def walkers() -> Iterator[None]:
    """Restore the default walker after a test that switched."""
    before = compiled.in_use()
    yield
    compiled.select(before)


def _file_outcome(path: Path) -> tuple[object, ...]:
    out = ElementColumns()
    try:
        header, gz = read_header(str(path), out)
    except Exception as exc:
        return ("error", type(exc).__name__, getattr(exc, "reason", None), str(exc))
    columns = tuple(tuple(getattr(out, f)) for f in fuzzing._FIELDS)
    return (columns, header.transfer_syntax, header.sop_instance_uid,
            header.media_storage_sop_class, header.pixel_data_offset, header.pixel_data_length,
            header.encapsulated_offset, tuple(header.caveats), gz)  # fmt: skip


def _both(paths: list[Path]) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    compiled.select("python")
    reference = [_file_outcome(p) for p in paths]
    compiled.select("compiled")
    return reference, [_file_outcome(p) for p in paths]


def _assert_same(paths: list[Path], reference: list, candidate: list) -> None:
    differ = [str(p) for p, a, b in zip(paths, reference, candidate, strict=True) if a != b]
    assert not differ, f"{len(differ)} files read differently, e.g. {differ[:5]}"


def test_select_switches_the_walker(walkers: None) -> None:
    assert compiled.select("python") == "python"
    assert compiled.in_use() == "python"
    assert "pure-Python" in compiled.describe()
    assert compiled.select("compiled") == "compiled"
    assert compiled.in_use() == "compiled"
    assert compiled.describe() == ""
    with pytest.raises(ValueError, match="CURATION_WALKER"):
        compiled.select("fast")


@needs_shared
def test_walkers_agree_on_shared_corpus(walkers: None) -> None:
    paths = shared_corpus_files()
    assert len(paths) > 2000
    reference, candidate = _both(paths)
    _assert_same(paths, reference, candidate)
    # Not a vacuous comparison: nearly every file is read, with its elements.
    assert sum(r[0] != "error" for r in reference) > 0.95 * len(paths)


def test_walkers_agree_on_pydicom_test_files(walkers: None) -> None:
    paths = pydicom_test_files()
    reference, candidate = _both(paths)
    _assert_same(paths, reference, candidate)
    outcomes = {r[0] == "error" and r[1] for r in reference}
    # Both kinds occur: files read, files left to pydicom (Unsupported), files refused.
    assert {False, "Unsupported", "DicomReadError"} <= outcomes


def _catalog_rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {
            table: con.sql(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            for table in ("elements", "instances", "crawl_errors", "files")
        }


def test_crawls_with_either_walker_make_the_same_catalog(walkers: None, tmp_path: Path) -> None:
    from curation import crawl

    roots = [SAMPLE_DATA / "real", *sorted((SAMPLE_DATA / "synthetic").iterdir())[:3]]
    rows = {}
    for name in ("python", "compiled"):
        compiled.select(name)
        crawl(roots, tmp_path / f"{name}.duckdb", workers=1, progress=False)
        rows[name] = _catalog_rows(tmp_path / f"{name}.duckdb")
    assert len(rows["python"]["elements"]) > 10_000
    assert rows["python"]["crawl_errors"], "the synthetic cohort plants broken files"
    for table in rows["python"]:
        assert rows["python"][table] == rows["compiled"][table], table


def test_fuzz_compiled_walker_against_python(walkers: None) -> None:
    # A hang would otherwise stall the suite silently: dump the stack and stop after 5 minutes.
    faulthandler.dump_traceback_later(300, exit=True)
    try:
        cases = list(fuzzing.mutants(3000))
        compiled.select("python")
        reference = [fuzzing.outcome(data) for _, data in cases]
        partial = [fuzzing.outcome(data, complete=False) for _, data in cases[::10]]
        compiled.select("compiled")
        candidate = [fuzzing.outcome(data) for _, data in cases]
        partial_c = [fuzzing.outcome(data, complete=False) for _, data in cases[::10]]
    finally:
        faulthandler.cancel_dump_traceback_later()
    differ = [
        (kind, a, b) for (kind, _), a, b in zip(cases, reference, candidate, strict=True) if a != b
    ]
    assert not differ, (
        f"{len(differ)} mutants read differently, first: {differ[0][0]} {differ[0][1][:5]} vs {differ[0][2][:5]}"
    )
    assert partial == partial_c
    # The damage is real: many mutants fail, many still read, with several reasons.
    errors = {r[2] for r in reference if r[0] == "error"}
    assert sum(r[0] == "error" for r in reference) > 300
    assert sum(r[0] != "error" for r in reference) > 300
    assert {"truncated", "bad_length"} <= errors


def test_hostile_cases_read_alike(walkers: None, tmp_path: Path) -> None:
    # The crawler's own hostile cases (tests/fuzz_cases.py): mutants, gzip-wrapped ones among them,
    # read from files (so in several reads, the walk continued where it stopped), and the small
    # bombs: zeros after the meta, a flood of elements, a length of almost 4 GB, deep nesting.
    seeds = fuzz_cases.seeds()
    cases = [
        *fuzz_cases.mutants(600),
        ("zeros.dcm", fuzz_cases.zero_bomb(1 << 20, seeds["CT_small.dcm"])),
        ("flood.dcm", fuzz_cases.element_bomb(30_000)),
        ("huge.dcm", fuzz_cases.huge_length(seeds["CT_small.dcm"])),
        ("deep_40.dcm", fuzz_cases.deep_sequence(40)),
        ("deep_600.dcm", fuzz_cases.deep_sequence(600)),
    ]
    paths = []
    for name, payload in cases:
        paths.append(tmp_path / name)
        paths[-1].write_bytes(payload)
    reference, candidate = _both(paths)
    _assert_same(paths, reference, candidate)
    reasons = {r[2] for r in reference if r[0] == "error"}
    assert {"too_deep", "zero_padding", "truncated"} <= reasons, reasons
