"""Generate a synthetic multi-site DICOM cohort with planted defects and its ground truth.

Writes DICOM files of several sites and vendors (CT chest/head with localizers, MR brain T1/T2/FLAIR/DWI)
under OUT/dicom, a report text per study under OUT/reports, and the truth tables
OUT/ground_truth.parquet (every planted defect), OUT/series.parquet (what every series truly is) and
OUT/reports.parquet (report texts and finding labels). The same seed gives the same bytes.

Profiles: small (256x256 CT, 128x128 MR, short stacks, mostly RLE; about 20 MB for 36 patients) and
bench (512x512 CT with full coverage, mostly uncompressed; about 500 files per patient).
See docs/synthetic.md.
"""

from __future__ import annotations

import argparse
import logging

from curation.synth import PROFILES, generate_cohort

log = logging.getLogger("curation.synth")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``curation sample``."""
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="empty or new directory to write"
    )
    parser.add_argument(
        "--patients", type=int, default=None, metavar="N", help="patients (default: the profile's)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default="small", help="cohort size profile"
    )
    parser.add_argument(
        "--defect-rate",
        type=float,
        default=0.3,
        metavar="F",
        help="fraction of eligible series given a defect (default 0.3; each kind at least 3 times, "
        "clean series always the majority)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="writer processes (default 1)"
    )


def run(args: argparse.Namespace) -> int:
    """Generate the cohort; 0 on success."""
    summary = generate_cohort(
        args.out,
        patients=args.patients,
        seed=args.seed,
        profile=args.profile,
        defect_rate=args.defect_rate,
        workers=args.workers,
    )
    print(
        f"{summary.n_files} files ({summary.n_bytes / 1e6:.1f} MB), {summary.n_series} series "
        f"({summary.n_defective_series} with a defect), {summary.n_studies} studies, "
        f"{summary.n_patients} patients in {summary.elapsed_s:.1f} s "
        f"({summary.files_per_s:.0f} files/s)"
    )
    print(f"DICOM files:   {summary.dicom_dir}")
    print(f"ground truth:  {summary.ground_truth}")
    print(f"series truth:  {summary.series_table}")
    print(f"reports:       {summary.reports_table}")
    return 0
