"""Precision and recall of the QC rules on real pixels: defects planted into copies of real series.

    .venv/bin/python benchmarks/realdata_accuracy.py [--copies 2] [--work /tmp/realdata]

Every defect kind the rules claim to detect (:data:`curation.synth.implant.REAL_KINDS`) is planted
``--copies`` times (different parameters each) into copies of real CT and MR series of
../shared/dicom (never modified: copies go under --work), next to clean copies; then crawl, pixels
and the default QC suite run, and the findings are scored per kind and modality at the series level
(:func:`curation.qc.measure.score_series`). A kind whose rules already flag the clean copies of a
source (the GE head CT was acquired with a tilted gantry) is not scored on that source. The suite's
small version is tests/realdata/test_planted.py.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import polars as pl

from curation import catalog, crawl
from curation.pixels import compute
from curation.qc import run
from curation.qc.measure import score_series
from curation.synth.implant import Source, already_present, plant_cohort, truth_frame

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "dicom"

#: name -> (folder under the corpus, slices kept: the central ones of the first volume)
SOURCES = {
    "ge_head_ct": ("dcm_qa_ct/In/GE", 20),
    "philips_head_ct": ("dcm_qa_ct/In/Philips", 20),
    "siemens_3d_t1": ("dcm_qa_frag/In", 32),
    "canon_dwi_b0": ("dcm_qa_canon/In/9000_DTI_PA-ortho", 24),
    "ge_epi": ("dcm_qa_nih/In/20180918GE/mr_0004", 24),
}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--copies", type=int, default=2, help="copies per kind and source")
    ap.add_argument("--work", type=Path, default=Path("/tmp/realdata_accuracy"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    t0 = time.perf_counter()
    sources = [Source.from_folder(n, CORPUS / f, k) for n, (f, k) in SOURCES.items()]
    planted = plant_cohort(
        sources, args.work / "copies", copies=args.copies, clean=2, seed=args.seed
    )
    t1 = time.perf_counter()
    db = args.work / "catalog.duckdb"
    crawl([args.work / "copies"], db, workers=args.workers, progress=False)
    compute(db, workers=args.workers, progress=False)
    t2 = time.perf_counter()
    with catalog.opened(db) as con:
        result = run(con)
        ignore = already_present(con, planted, result.run_id)
        truth = truth_frame(planted)
        by_modality = score_series(con, truth, result.run_id, by="modality", ignore=ignore)
        by_source = score_series(con, truth, result.run_id, by="source", ignore=ignore)
    print(
        f"{len(planted)} copies of {len(sources)} real series ({', '.join(SOURCES)}); planting "
        f"{t1 - t0:.0f} s, crawl + pixels {t2 - t1:.0f} s"
    )
    for kind, uids in sorted(ignore.items()):
        srcs = sorted({p.source for p in planted if p.SeriesInstanceUID in uids})
        print(f"not scored: {kind} on {', '.join(srcs)} (its rule flags the clean copies)")
    with pl.Config(tbl_rows=80, tbl_width_chars=220, tbl_hide_dataframe_shape=True, tbl_cols=12):
        print(by_modality)
        print(by_source.filter(pl.col("recall") < 1).drop("rules"))
    print(
        "| kind | modality | rule(s) | planted | TP | FP (collateral) | FN | precision | recall |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in by_modality.iter_rows(named=True):
        print(
            f"| {r['kind']} | {r['modality']} | `{r['rules']}` | {r['planted']} | {r['TP']} | "
            f"{r['FP']} ({r['collateral']}) | {r['FN']} | {r['precision']:.3f} | {r['recall']:.3f} |"
        )


if __name__ == "__main__":
    main()
