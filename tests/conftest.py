"""Shared fixtures: where the real DICOM corpora are, and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Resolved: the catalog's paths are canonical (the crawl root as Path.resolve() gives it), and in a
# worktree ../shared is a symlink.
SHARED_DICOM = (ROOT.parent / "shared" / "dicom").resolve()
SAMPLE_DATA = ROOT / "sample_data"


def pydicom_test_files() -> list[Path]:
    """pydicom's bundled test and character-set files, and pydicom-data's, where installed."""
    import pydicom

    data = Path(pydicom.__file__).parent / "data"
    files = sorted((data / "test_files").rglob("*")) + sorted((data / "charset_files").rglob("*"))
    try:
        import data_store  # the pydicom-data package

        files += sorted(Path(data_store.__file__).parent.rglob("*"))
    except ImportError:
        pass
    return [
        f
        for f in files
        if f.is_file()
        and f.suffix not in (".py", ".pyc", ".json", ".txt", ".gz", ".bz2", ".zip", ".xz")
    ]


def shared_corpus_files() -> list[Path]:
    """Every DICOM file of ../shared/dicom, as listed by its _DICOM_FILES.tsv."""
    listing = SHARED_DICOM / "_DICOM_FILES.tsv"
    if not listing.exists():
        return []
    lines = listing.read_text().splitlines()[1:]
    return [SHARED_DICOM / line.split("\t")[0].split("/", 1)[1] for line in lines]


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads process state from /proc (Linux)"
)

needs_shared = pytest.mark.skipif(
    not SHARED_DICOM.is_dir(), reason="../shared/dicom (the real multi-vendor corpus) is not here"
)


@pytest.fixture(scope="session")
def shared_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog of the whole ../shared/dicom corpus, crawled once per session."""
    if not SHARED_DICOM.is_dir():
        pytest.skip("../shared/dicom (the real multi-vendor corpus) is not here")
    from curation import crawl

    db = tmp_path_factory.mktemp("shared") / "catalog.duckdb"
    crawl(SHARED_DICOM, db, workers=2, progress=False)
    return db


@pytest.fixture(scope="session")
def labelled_synthetic_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped synthetic cohort crawled, harmonized, QC'd and labelled, as the demo does.

    Read-only for its users: a test that writes copies it first.
    """
    from curation import catalog, crawl, harmonize, qc
    from curation.cohort import load_labels, synthetic_report_labels

    synth = SAMPLE_DATA / "synthetic"
    db = tmp_path_factory.mktemp("labelled_synthetic") / "catalog.duckdb"
    crawl(synth / "dicom", db, workers=1, progress=False)
    con = catalog.connect(db)
    try:
        harmonize.build(con)
        qc.run(con)
        load_labels(con, synthetic_report_labels(synth / "reports.parquet"))
    finally:
        con.close()
    return db
