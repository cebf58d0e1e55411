"""Build a training cohort from a spec: inclusion-filtered, harmonized, split by patient, traceable.

Reads the catalog (building the harmonized tables if missing), applies the spec's criteria in order,
splits patients deterministically, and writes into --out:

  manifest.parquet, manifest.csv   one row per series: pseudonyms, split, harmonized attributes, labels, files
  datalist.json                    MONAI-style datalist (training / validation / test)
  attrition.csv                    patients/studies/series left after each criterion (also in the catalog)
  provenance.json                  curation version, spec and its hash, QC run, catalog fingerprint

  curation cohort sample_data/cohort_spec.yaml --db catalog.duckdb --out cohort/
  curation cohort spec.yaml --db catalog.duckdb --out cohort/ --volumes --spacing 1 1 1 --workers 2
  curation cohort spec.yaml --db catalog.duckdb --out cohort/ --volumes --ct-window -600 1500

The datalist's image is the NIfTI volume with --volumes, else the folder holding the series' DICOM
files alone (MONAI's LoadImaged reads it as one series); a series with no such image stays in the
manifest with excluded_reason and leaves the datalist. Volumes keep modality units (HU, rescaled MR)
unless --normalize, --ct-window or the spec's normalize: asks for [0, 1].

Pseudonyms are HMAC-SHA256 under the key in $CURATION_PSEUDONYM_KEY or --key-file; without either, a
key is generated into --out (and a warning says so).

The manifest's dicom_files are the archive's own paths unless --files link|copy asks for
pseudonymous ones; a warning says which identifiers (PatientID, AccessionNumber, StudyDate) the
archive's folder and file names put into them.

Exit code 0 on success, 3 for a bad spec or option (a spec is data: names in it reach SQL only after
they were found in the catalog, values are bound), 4 when the catalog cannot be opened or read or
lacks a table a criterion needs (QC findings, labels), 5 when --out cannot be written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from curation.errors import CatalogError, InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``curation cohort``."""
    parser.add_argument("spec", help="cohort spec (YAML)")
    parser.add_argument("--db", required=True, help="catalog DuckDB file")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--key-file", help="file holding the pseudonym key (default: $CURATION_PSEUDONYM_KEY)"
    )
    parser.add_argument(
        "--files",
        choices=("link", "copy"),
        help="list the DICOM files under pseudonymous names in --out/files/<series_key>/: symbolic "
        "links, or copies (hard links where possible); default: the archive's own paths, which "
        "may carry PatientID, AccessionNumber or StudyDate in their folder names",
    )
    parser.add_argument("--volumes", action="store_true", help="also export each series as NIfTI")
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="volume spacing in mm (default: keep)",
    )
    parser.add_argument(
        "--normalize",
        action="store_true",
        help="scale volumes to [0, 1]: CT by the window level 0 width 2000 HU (air to dense bone), "
        "other modalities by their 1st-99th percentiles (default: keep modality units)",
    )
    parser.add_argument(
        "--ct-window",
        type=float,
        nargs=2,
        metavar=("LEVEL", "WIDTH"),
        help="scale CT volumes to [0, 1] by this window in HU (e.g. -600 1500 for lung)",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes for volume export")


def run(args: argparse.Namespace) -> int:
    """Run ``curation cohort``."""
    from curation import catalog
    from curation.cohort import build_cohort

    if not Path(args.db).exists():
        raise CatalogError(f"{args.db}: no catalog here (run `curation crawl` first)")
    if not Path(args.spec).is_file():
        raise InputError(f"{args.spec}: no such spec file")
    if (args.normalize or args.ct_window) and not args.volumes:
        raise InputError("--normalize and --ct-window apply to volumes: add --volumes")
    with catalog.opened(args.db) as con:
        result = build_cohort(con, args.spec, args.out, key_file=args.key_file, files=args.files)
        if args.volumes:
            from curation.cohort.spec import DEFAULT_NORMALIZE
            from curation.cohort.volumes import VolumeOptions, export_volumes

            normalize = dict(DEFAULT_NORMALIZE) if args.normalize else dict(result.spec.normalize)
            if args.ct_window:
                normalize["CT"] = {"window": (args.ct_window[0], args.ct_window[1])}
            opts = VolumeOptions(
                spacing_mm=tuple(args.spacing) if args.spacing else None, normalize=normalize
            )
            export_volumes(con, result, Path(args.out), opts, workers=args.workers)
    print(f"cohort {result.spec.name!r} (build {result.cohort_id}) written to {args.out}")
    for row in result.attrition.iter_rows(named=True):
        print(
            f"  {row['step']:2d} {row['criterion'][:60]:60s} {row['n_patients']:7d} patients {row['n_series']:8d} series"
        )
    for row in result.split_counts.iter_rows(named=True):
        print(
            f"  split {row['split']:10s} {row['n_patients']:7d} patients {row['n_series']:8d} series"
        )
    sys.stdout.flush()
    return 0
