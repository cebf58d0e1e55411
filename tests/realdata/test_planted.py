"""The rules on real pixels: every defect kind the rules claim to detect, planted into copies of real
series of ../shared/dicom (a CT and an MR), then crawl + pixels + QC, scored per kind and modality.

Small on purpose (a suite test): 10 CT slices and 16 MR slices, one copy per kind and two clean
copies per source. ``benchmarks/realdata_accuracy.py`` runs the larger version (more series, more
copies) and prints the table kept in the README and docs/qc.md. Kinds the rules miss on real data
are listed in ``KNOWN_MISSES`` with the reason (explained in docs/pixels.md); every other kind must be
found, and no rule may flag a clean copy of a series it did not flag before planting.
"""

from __future__ import annotations

import polars as pl
import pytest

from curation import catalog, crawl
from curation.pixels import compute
from curation.qc import run
from curation.qc.measure import score_series
from curation.synth.implant import REAL_KINDS, Source, already_present, plant_cohort, truth_frame

from ..conftest import SHARED_DICOM

#: (kind, modality) the rules miss on these real series, and why (docs/pixels.md, "Real data").
KNOWN_MISSES: dict[tuple[str, str], str] = {
    ("motion_blur", "CT"): "real CT texture is anisotropic (directional ratio 0.5-0.6 when sharp): "
    "a 5-11 px smear moves the ratio toward 1 and keeps a slice at ~0.8 of its neighbours' "
    "sharpness, far from the rule's 0.3",
    ("series_blur", "CT"): "a smooth-kernel CT resampled 3-4x down and up keeps 42-79 % of its "
    "sharpness, above the rule's 40 % (the MR copies of the same blurs fall to 2-39 %)",
    ("series_blur", "MR"): "this copy (16 slices of the 3D T1 upsampled 3x) falls to 39 % of its "
    "peers, 4.2 robust SDs below, short of k = 5; the benchmark's 6 MR copies are all found",
}


def _sources() -> list[Source]:
    return [
        Source.from_folder("philips_ct", SHARED_DICOM / "dcm_qa_ct" / "In" / "Philips", 10),
        Source.from_folder("siemens_t1", SHARED_DICOM / "dcm_qa_frag" / "In", 16),
    ]


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, dict[str, set[str]]]:
    if not SHARED_DICOM.is_dir():
        pytest.skip("../shared/dicom (the real multi-vendor corpus) is not here")
    out = tmp_path_factory.mktemp("realdata")
    planted = plant_cohort(_sources(), out / "copies", copies=1, clean=2, seed=19)
    db = out / "catalog.duckdb"
    crawl([out / "copies"], db, workers=1, progress=False)
    compute(db, workers=2, progress=False)
    with catalog.opened(db) as con:
        result = run(con)
        ignore = already_present(con, planted, result.run_id)
        table = score_series(con, truth_frame(planted), result.run_id, by="modality", ignore=ignore)
    print(table)  # with -s: the table
    return table, ignore


def test_every_kind_is_planted_and_scored(
    scored: tuple[pl.DataFrame, dict[str, set[str]]],
) -> None:
    table, ignore = scored
    got = {(r["kind"], r["modality"]) for r in table.iter_rows(named=True)}
    for kind, modalities in REAL_KINDS.items():
        for modality in modalities:
            # a kind whose rule already flags the clean copies cannot be scored on that source
            if (kind, modality) not in got:
                assert kind in ignore, f"{kind} in {modality} was planted but not scored"


def test_real_data_recall(scored: tuple[pl.DataFrame, dict[str, set[str]]]) -> None:
    table, _ = scored
    missed = {
        (r["kind"], r["modality"]): r["recall"]
        for r in table.iter_rows(named=True)
        if r["recall"] < 1.0 and (r["kind"], r["modality"]) not in KNOWN_MISSES
    }
    assert not missed, f"planted defects not found on real series: {missed}"


def test_no_false_alarm_on_clean_copies(
    scored: tuple[pl.DataFrame, dict[str, set[str]]],
) -> None:
    table, _ = scored
    # a rule may also fire on a copy carrying another defect (collateral: a clipped CT is less
    # sharp); never on a clean copy
    clean_fp = table.filter(pl.col("FP") > pl.col("collateral"))
    assert clean_fp.height == 0, clean_fp
