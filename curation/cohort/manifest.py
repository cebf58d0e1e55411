"""Writing a cohort: ``manifest.parquet`` (+ ``manifest.csv``, MONAI ``datalist.json``), the attrition
table and a provenance sidecar, so that a training run can say which data it saw.

The manifest holds pseudonyms (keyed hashes), never PatientID or PatientName. File paths point at
the source DICOM files (and the NIfTI volumes when exported); where an archive's folder names carry
identifiers, the paths carry them too: the build warns, naming which (PatientID, AccessionNumber,
StudyDate), unless it was asked for :func:`pseudonymous_files` (links or copies named by pseudonym).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from curation.errors import writing

#: harmonized_series columns copied into the manifest (those present). InstitutionName becomes
#: ``site``, a keyed label (``site-`` and 8 hex digits, :func:`curation.pseudonym.site_sql`): an
#: institution's name is not shipped with a training set.
MANIFEST_ATTRIBUTES: tuple[str, ...] = (
    "Modality",
    "vendor",
    "ManufacturerModelName",
    "InstitutionName",
    "series_type",
    "contrast_phase",
    "kernel_class",
    "body_part",
    "field_strength_t",
    "echo_time_ms",
    "repetition_time_ms",
    "inversion_time_ms",
    "flip_angle_deg",
    "slice_thickness_mm",
    "pixel_spacing_mm",
    "phase_encoding_direction",
    "total_readout_time_s",
    "b_values_s_mm2",
    "n_instances",
)

#: How :func:`pseudonymous_files` makes each file: a symbolic link, or a copy.
FILE_MODES: tuple[str, ...] = ("link", "copy")

#: MONAI datalist section of each split name.
DATALIST_SECTIONS: dict[str, str] = {"train": "training", "val": "validation", "test": "test"}


def _csv_ready(frame: pl.DataFrame) -> pl.DataFrame:
    """Nested columns as ';'-joined text, so that the CSV has one value per cell."""
    out = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Array):
            out.append(pl.col(name).arr.eval(pl.element().cast(pl.String)).arr.join(";"))
        elif isinstance(dtype, pl.List):
            out.append(pl.col(name).list.eval(pl.element().cast(pl.String)).list.join(";"))
        else:
            out.append(pl.col(name))
    return frame.select(out)


def pseudonymous_files(manifest: pl.DataFrame, out_dir: Path, mode: str) -> pl.DataFrame:
    """``manifest`` with ``dicom_files`` pointing at ``out_dir/files/<series_key>/<n>.dcm``.

    ``mode`` ``link`` makes symbolic links to the archive's files (nothing copied; the link's
    target, readable with ``readlink``, still is the archive's path: ship the folder with the
    links followed); ``copy`` makes hard links where ``out_dir`` is on the archive's file system
    and copies elsewhere. Only the paths are pseudonymous: the DICOM headers keep whatever
    identifiers they hold.

    Raises
    ------
    InputError
        ``mode`` is not one of :data:`FILE_MODES`.
    OutputError
        A link or copy cannot be made.
    """
    import os
    import shutil

    from curation.errors import InputError

    if mode not in FILE_MODES:
        raise InputError(f"files: {mode!r} is not one of {', '.join(FILE_MODES)}")
    root = out_dir / "files"
    lists = []
    with writing(root):
        for series_key, sources in zip(
            manifest["series_key"].to_list(), manifest["dicom_files"].to_list(), strict=True
        ):
            folder = root / series_key
            folder.mkdir(parents=True, exist_ok=True)
            made = []
            for i, src in enumerate(sources, 1):
                dst = folder / f"{i:05d}.dcm"
                if dst.is_symlink() or dst.exists():
                    dst.unlink()
                if mode == "link":
                    dst.symlink_to(src)
                else:
                    try:
                        os.link(src, dst)
                    except OSError:
                        shutil.copy2(src, dst)
                made.append(str(dst))
            lists.append(made)
    return manifest.with_columns(pl.Series("dicom_files", lists, dtype=pl.List(pl.String)))


def split_order(names: list[str]) -> list[str]:
    """Split names in the one order every product shows them: train, val, test, then others."""
    known = list(DATALIST_SECTIONS)
    return sorted(names, key=lambda n: (known.index(n) if n in known else len(known), n))


def datalist_json(manifest: pl.DataFrame, splits: list[str] | None = None) -> str:
    """The MONAI datalist of ``manifest``: a section per split, an entry per loadable series.

    An entry is ``{"image": ..., "series_key", "patient_key", <label>: <number>...}``; ``image``
    is the NIfTI volume when exported, else the folder holding the series' DICOM files alone
    (MONAI's ``LoadImaged`` reads a folder as one series). Series whose ``excluded_reason`` is
    set are left out (the manifest keeps them, with the reason). Every split of ``splits`` gets
    a section, an empty one where no series landed in it.
    """
    if "excluded_reason" in manifest.columns:
        manifest = manifest.filter(pl.col("excluded_reason").is_null())
    targets = [c for c in manifest.columns if c.startswith("target_")]
    # Rows are rendered by polars (row-oriented JSON), sections joined here.
    sections = []
    for split in split_order(sorted({*manifest["split"].unique().to_list(), *(splits or [])})):
        rows = manifest.filter(pl.col("split") == split).select(
            "image", "series_key", "patient_key", *(pl.col(c).alias(c[7:]) for c in targets)
        )
        name = DATALIST_SECTIONS.get(split, split)
        sections.append(f"{json.dumps(name)}: {rows.write_json()}")
    return "{" + ",\n".join(sections) + "}\n"


def write(
    out_dir: Path,
    manifest: pl.DataFrame,
    attrition: pl.DataFrame,
    provenance: dict[str, Any],
) -> dict[str, Path]:
    """Write the manifest files, attrition and provenance into ``out_dir``; return their paths.

    Raises
    ------
    OutputError
        ``out_dir`` cannot be written (read-only, disk full, a file where a folder should be).
    """
    with writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    with writing(out_dir, pl.exceptions.PolarsError):
        paths = {
            "manifest": out_dir / "manifest.parquet",
            "csv": out_dir / "manifest.csv",
            "datalist": out_dir / "datalist.json",
            "attrition": out_dir / "attrition.csv",
            "provenance": out_dir / "provenance.json",
        }
        manifest.write_parquet(paths["manifest"])
        _csv_ready(manifest).write_csv(paths["csv"])
        attrition.write_csv(paths["attrition"])
        split = provenance.get("spec", {}).get("split", {})
        paths["datalist"].write_text(
            datalist_json(manifest, list(split.get("ratios") or split.get("counts") or ()))
        )
        paths["provenance"].write_text(json.dumps(provenance, indent=1, default=str))
    return paths
