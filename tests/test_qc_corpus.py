"""The rules on real data: every series dicom2nifti rejects is flagged by the rule that matches its
reason, and the valid dcm_qa acquisitions raise no completeness/geometry error other than the ones
docs/qc.md explains as right. Also: the synthetic cohort's planted defects are found.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from curation.qc import measure, run

from .conftest import SHARED_DICOM, needs_shared

#: dicom2nifti's reason folder -> the rule that must flag every series in it
EXPECTED = {
    "sliceincrement": "series.missing_slices",
    "sliceorientation": "series.mixed_orientation",
    "slicecount": "series.too_few_slices",
    "notavolume": "series.too_few_slices",
    "gantrytilting": "series.gantry_tilt",
}

#: (dcm_qa folder, rule): error findings on valid acquisitions that are right (see docs/qc.md)
EXPLAINED_ERRORS = {
    # GE head CT: posterior fossa at 4 mm, cerebrum at 7 mm, in one series
    ("dcm_qa_ct/In/GE", "series.nonuniform_spacing"),
}

COMPLETENESS_GEOMETRY = ("instance.", "series.")
NOT_GEOMETRY = {"series.phi_in_header", "series.burned_in_annotation", "series.secondary_capture"}


@pytest.fixture(scope="module")
def qc_catalog(shared_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("qc_shared") / "catalog.duckdb"
    shutil.copy(shared_catalog, db)
    con = duckdb.connect(str(db))
    run(con)
    con.close()
    return db


def _findings(db: Path) -> list[tuple[str, str, str]]:
    """(series folder relative to the corpus, rule_id, severity) of every series finding."""
    con = duckdb.connect(str(db), read_only=True)
    rows = con.sql(
        "SELECT regexp_replace(min(i.path), '/[^/]+$', ''), f.rule_id, f.severity "
        "FROM qc_findings f JOIN instances i USING (SeriesInstanceUID) "
        "GROUP BY f.SeriesInstanceUID, f.rule_id, f.severity"
    ).fetchall()
    con.close()
    # The catalog keeps each path as the crawl was given it (../shared may be a symlink): compare
    # unresolved paths on both sides.
    root = str(SHARED_DICOM) + "/"
    return [(str(p).removeprefix(root), r, s) for p, r, s in rows]


@needs_shared
def test_every_failing_dicom2nifti_series_is_flagged_for_its_reason(qc_catalog: Path) -> None:
    found = _findings(qc_catalog)
    failing = SHARED_DICOM / "dicom2nifti" / "tests" / "data" / "failing"
    cases = sorted({p.parent for p in failing.rglob("*.dcm")})
    assert len(cases) >= 6
    for case in cases:
        rel = str(case).removeprefix(str(SHARED_DICOM) + "/")
        want = EXPECTED[case.parent.name]
        fired = {r for p, r, _ in found if p == rel}
        assert want in fired, (rel, fired)


@needs_shared
def test_valid_dcm_qa_series_raise_only_explained_errors(qc_catalog: Path) -> None:
    unexplained = [
        (p, r)
        for p, r, s in _findings(qc_catalog)
        if p.startswith("dcm_qa_")
        and s == "error"
        and r.startswith(COMPLETENESS_GEOMETRY)
        and r not in NOT_GEOMETRY
        and not any(p.startswith(folder) and r == rule for folder, rule in EXPLAINED_ERRORS)
    ]
    assert unexplained == []


@needs_shared
def test_multiframe_series_use_their_frames(qc_catalog: Path) -> None:
    con = duckdb.connect(str(qc_catalog))
    from curation.qc import views

    views.build(con)
    n_frames, n_sliced = con.sql(
        "SELECT (SELECT count(*) FROM frames), "
        "(SELECT count(*) FROM qc_slices WHERE frame_index IS NOT NULL)"
    ).fetchall()[0]
    con.close()
    assert n_frames == n_sliced > 0


def test_synthetic_cohort_precision_and_recall(tmp_path: Path) -> None:
    from curation import crawl
    from curation.demo import find_sample_data

    # The shipped synthetic cohort (36 patients, every header kind planted 3 times); a larger one
    # is measured by benchmarks/qc_accuracy.py.
    out = find_sample_data() / "synthetic"
    db = tmp_path / "catalog.duckdb"
    crawl(out / "dicom", db, workers=2, progress=False)
    con = duckdb.connect(str(db))
    result = run(con)
    assert not result.errors
    scores = {s.kind: s for s in measure.score(con, out / "ground_truth.parquet", result.run_id)}
    con.close()
    assert scores
    ran = {r.rule_id for r in result.rule_runs if r.status == "ok"}
    # Without pixel metrics the pixel rules are skipped, not failed, and so are the rules on
    # labels (no `curation labels` yet); every other rule ran.
    assert {r.rule_id for r in result.skipped} == {
        s.rule.id
        for s in result.suite.rules
        if s.rule.id.startswith("pixel.") or "labels" in s.rule.requires
    }
    for kind, s in scores.items():
        if s.n_truth == 0 or not set(s.rules) & ran:
            continue  # pixel kinds: their rules need `curation pixels` first (tests/test_pixels.py)
        # precision without the collateral of other planted defects (a zero-byte file in a stack
        # does leave a missing slice); see docs/qc.md for both numbers
        assert s.precision_clean >= 0.95, (kind, s)
        assert s.recall >= 0.95, (kind, s)


def test_heterogeneity_rules_find_what_the_synthetic_cohort_plants(tmp_path: Path) -> None:
    """Measured against the generator's own declarations (series.parquet), not hard-coded."""
    import polars as pl

    from curation import crawl
    from curation.demo import find_sample_data
    from curation.qc.suite import from_mapping

    out = find_sample_data() / "synthetic"
    db = tmp_path / "catalog.duckdb"
    crawl(out / "dicom", db, workers=2, progress=False)
    con = duckdb.connect(str(db))
    suite = from_mapping({"include": ["cohort.site_shortcut", "cohort.parameter_locations"]})
    result = run(con, suite)
    found = con.sql(
        f"SELECT rule_id, value FROM qc_findings WHERE run_id = {result.run_id}"
    ).fetchall()
    con.close()
    truth = pl.read_parquet(out / "series.parquet")
    # A site whose Manufacturer (per modality) no other site uses: a model can learn the site
    # from the vendor string. Every such site with enough series (the rule's min_series) is
    # flagged, and only those.
    from curation.qc.rule import all_rules

    min_series = next(
        p.default for p in all_rules()["cohort.site_shortcut"].params if p.name == "min_series"
    )
    big = truth.group_by("Modality", "InstitutionName").len().filter(pl.col("len") >= min_series)
    every = truth.select("Modality", "Manufacturer", "InstitutionName").unique()
    per = every.join(big.select("Modality", "InstitutionName"), on=["Modality", "InstitutionName"])
    sites_of = every.group_by("Modality", "Manufacturer").agg(pl.col("InstitutionName").n_unique())
    vendors_of = per.group_by("Modality", "InstitutionName").agg(pl.col("Manufacturer").n_unique())
    expected = {
        f"{m} Manufacturer={v} @ {s}"
        for m, v, s in per.join(
            sites_of.rename({"InstitutionName": "n_sites"}), on=["Modality", "Manufacturer"]
        )
        .join(vendors_of.rename({"Manufacturer": "n_vendors"}), on=["Modality", "InstitutionName"])
        .filter((pl.col("n_sites") == 1) & (pl.col("n_vendors") == 1))
        .select("Modality", "Manufacturer", "InstitutionName")
        .iter_rows()
    }
    flagged = {v for r, v in found if r == "cohort.site_shortcut" and " Manufacturer=" in v}
    assert expected and flagged == expected
    # The generator writes the diffusion b-value where each vendor does: one finding naming them.
    (locations,) = [v for r, v in found if r == "cohort.parameter_locations" and "b-value" in v]
    assert locations == "diffusion b-value"
