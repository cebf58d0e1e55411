"""De-identify a cohort: its DICOM files rewritten under a PS3.15 profile, with an audit trail.

Reads the cohort folder `curation cohort` wrote (--cohort) and the catalog it was built from, and
writes into --out:

  dicom/<patient_key>/<study_key>/<series_key>/<instance_key>.dcm   the de-identified files
  manifest.parquet, manifest.csv, datalist.json                      pointing at them
  attrition.csv, provenance.json                                     the cohort's, plus the run
  quarantine.csv                                                     files not written, and why
  volumes/<series_key>.nii.gz, volumes.csv                           with --volumes

  curation deid --db catalog.duckdb --cohort cohort/ --out cohort-deid/ --key-file cohort.key
  curation deid --db catalog.duckdb --cohort cohort/ --out out/ --profile research --workers 2

--profile is a shipped profile (basic: the PS3.15 Basic Profile; research: plus modified dates,
patient characteristics, device identity, safe private tags, clean descriptors) or a YAML file
(copy a shipped one from curation/deid/profiles/). The key is the cohort's: --key-file, else
$CURATION_PSEUDONYM_KEY, else the cohort folder's pseudonym.key; it must be the one the cohort
was built with, and is never written to the output. Burned-in text is masked by Tesseract OCR
(Debian's tesseract-ocr and the tesserocr binding); without it, files that need inspection are
quarantined. The run is recorded in the catalog (deid_runs, deid_files).

Exit code 0 when every file was written, 1 when some were quarantined, 3 for a bad profile, key or
cohort folder, 4 when the catalog lacks the cohort's build, 5 when --out cannot be written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from curation.errors import CatalogError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``curation deid``."""
    parser.add_argument("--db", required=True, help="catalog DuckDB file the cohort was built from")
    parser.add_argument("--cohort", required=True, help="cohort folder written by curation cohort")
    parser.add_argument("--out", required=True, help="output folder for the de-identified cohort")
    parser.add_argument(
        "--key-file", help="the cohort's pseudonym key file (default: env or the cohort's)"
    )
    parser.add_argument(
        "--profile", default="basic", help="basic, research, or a YAML profile file"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes de-identifying files")
    parser.add_argument(
        "--volumes",
        action="store_true",
        help="also write NIfTI volumes read from the de-identified files (the cohort's options)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``curation deid``."""
    from curation import catalog
    from curation.deid import deidentify

    if not Path(args.db).exists():
        raise CatalogError(f"{args.db}: no catalog here (run `curation crawl` first)")
    with catalog.opened(args.db) as con:
        result = deidentify(
            con,
            args.cohort,
            args.out,
            key_file=args.key_file,
            profile=args.profile,
            workers=args.workers,
            volumes=args.volumes,
            progress=not args.quiet,
        )
    print(result)
    for row in result.quarantined.group_by("reason").len().sort("reason").iter_rows():
        print(f"  quarantined {row[0]:20s} {row[1]:6d} file(s)")
    sys.stdout.flush()
    return 1 if result.quarantined.height else 0
