"""The ground-truth tables a generated cohort ships with, and their column descriptions.

- ``ground_truth.parquet``: one row per planted defect occurrence (see :mod:`curation.synth.defects`
  for the kinds and their levels).
- ``series.parquet``: one row per generated series, clean or not: what it truly is.
- ``reports.parquet``: one row per study: the report text and the labels of its findings.

Every column has a description here; ``docs/synthetic.md`` renders the same descriptions and a test
fails when a column lacks one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

GROUND_TRUTH_COLUMNS: dict[str, tuple[Any, str]] = {
    "level": (pl.Utf8, "where the defect lives: instance, series, study or file"),
    "kind": (pl.Utf8, "stable snake_case defect code (see docs/synthetic.md, 'Defect kinds')"),
    "PatientID": (pl.Utf8, "PatientID of the affected data"),
    "StudyInstanceUID": (pl.Utf8, "StudyInstanceUID of the affected data"),
    "SeriesInstanceUID": (pl.Utf8, "SeriesInstanceUID of the affected series"),
    "SOPInstanceUID": (
        pl.Utf8,
        "the affected instance (instance and file level; for a file the UID it would carry); "
        "null at series level and for not_dicom junk",
    ),
    "path": (
        pl.Utf8,
        "file path relative to the cohort root (file level; instance level: the instance's file)",
    ),
    "params": (
        pl.Utf8,
        "JSON object with the parameters of the defect (indices, degrees, tags...)",
    ),
}

SERIES_COLUMNS: dict[str, tuple[Any, str]] = {
    "site": (
        pl.Utf8,
        "site key (riverside, st_aldric, ...); InstitutionName names it in the files",
    ),
    "InstitutionName": (pl.Utf8, "InstitutionName written in the files"),
    "StationName": (pl.Utf8, "StationName written in the files"),
    "vendor": (pl.Utf8, "vendor key: ge, siemens, philips, canon"),
    "Manufacturer": (pl.Utf8, "Manufacturer written in the files"),
    "ManufacturerModelName": (pl.Utf8, "ManufacturerModelName written in the files"),
    "SoftwareVersions": (
        pl.Utf8,
        "SoftwareVersions written in the files (multi-values joined by \\)",
    ),
    "PatientID": (pl.Utf8, "PatientID"),
    "StudyInstanceUID": (pl.Utf8, "StudyInstanceUID"),
    "SeriesInstanceUID": (pl.Utf8, "SeriesInstanceUID"),
    "Modality": (pl.Utf8, "CT or MR"),
    "study_type": (pl.Utf8, "ct_chest, ct_head or mr_brain"),
    "body_part": (pl.Utf8, "true anatomy: chest or head"),
    "BodyPartExamined": (
        pl.Utf8,
        "BodyPartExamined written in the files (vendors differ: CHEST, HEAD, BRAIN)",
    ),
    "series_type": (
        pl.Utf8,
        "true series type: ct_localizer, ct_axial, mr_localizer, mr_t1, mr_t2, mr_flair, mr_dwi",
    ),
    "contrast_phase": (
        pl.Utf8,
        "CT: non_contrast, arterial, portal_venous, delayed; MR T1: non_contrast or post_contrast; "
        "else null",
    ),
    "kernel_class": (
        pl.Utf8,
        "CT reconstruction kernel class: soft, lung, bone, brain; null for MR",
    ),
    "ConvolutionKernel": (
        pl.Utf8,
        "ConvolutionKernel as written (vendor specific names, \\-joined)",
    ),
    "SeriesNumber": (pl.Int64, "SeriesNumber"),
    "SeriesDescription": (pl.Utf8, "SeriesDescription as written (before any planted PHI)"),
    "orientation": (pl.Utf8, "planned stack orientation: axial, sagittal or coronal"),
    "SliceThickness": (pl.Float64, "SliceThickness in mm"),
    "slice_spacing_mm": (pl.Float64, "planned distance between adjacent slice positions, mm"),
    "pixel_spacing_mm": (pl.Float64, "planned in-plane pixel spacing, mm (square pixels)"),
    "Rows": (pl.Int64, "planned Rows"),
    "Columns": (pl.Int64, "planned Columns"),
    "b_values": (
        pl.List(pl.Float64),
        "DWI: the b-values in s/mm2 (each repeats every position); else null",
    ),
    "n_positions_planned": (pl.Int64, "slice positions planned before any defect"),
    "n_files": (pl.Int64, "files written for the series (including empty or truncated ones)"),
    "n_instances_readable": (pl.Int64, "files of the series that are complete DICOM instances"),
    "TransferSyntaxUID": (pl.Utf8, "transfer syntax of the series' files"),
    "file_format": (pl.Utf8, "dcm (.dcm), noext (no extension) or dcm.gz (gzip-wrapped)"),
    "series_dir": (pl.Utf8, "folder of the series, relative to the cohort root"),
    "defect": (pl.Utf8, "the defect kind planted in this series, null when the series is clean"),
}

REPORT_COLUMNS: dict[str, tuple[Any, str]] = {
    "PatientID": (pl.Utf8, "PatientID"),
    "StudyInstanceUID": (pl.Utf8, "StudyInstanceUID the report belongs to"),
    "AccessionNumber": (pl.Utf8, "AccessionNumber of the study (also in the files)"),
    "study_type": (pl.Utf8, "ct_chest, ct_head or mr_brain"),
    "report_path": (pl.Utf8, "the report as a text file, relative to the cohort root"),
    "report_text": (pl.Utf8, "the full report text"),
    "findings": (
        pl.List(
            pl.Struct(
                {"finding": pl.Utf8, "label": pl.Utf8, "sentence": pl.Utf8, "section": pl.Utf8}
            )
        ),
        "mentioned findings: finding code, label (positive/negated/uncertain/historical), the "
        "sentence stating it and its section (FINDINGS or IMPRESSION)",
    ),
}


def _frame(rows: Sequence[dict[str, Any]], columns: dict[str, tuple[Any, str]]) -> pl.DataFrame:
    schema = {name: dtype for name, (dtype, _) in columns.items()}
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema, orient="row")


def truth_row(
    *,
    level: str,
    kind: str,
    PatientID: str | None,
    StudyInstanceUID: str | None,
    SeriesInstanceUID: str | None,
    SOPInstanceUID: str | None = None,
    path: str | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``ground_truth.parquet`` row (``params`` is stored as sorted-key JSON)."""
    return {
        "level": level,
        "kind": kind,
        "PatientID": PatientID,
        "StudyInstanceUID": StudyInstanceUID,
        "SeriesInstanceUID": SeriesInstanceUID,
        "SOPInstanceUID": SOPInstanceUID,
        "path": path,
        "params": json.dumps(params or {}, sort_keys=True),
    }


def write_tables(
    out: Path,
    truth: Sequence[dict[str, Any]],
    series: Sequence[dict[str, Any]],
    reports: Sequence[dict[str, Any]],
) -> dict[str, Path]:
    """Write the three tables under ``out``; returns their paths by table name."""
    paths = {
        "ground_truth": out / "ground_truth.parquet",
        "series": out / "series.parquet",
        "reports": out / "reports.parquet",
    }
    # statistics=False keeps the bytes free of anything but the data
    for name, rows, cols in (
        ("ground_truth", truth, GROUND_TRUTH_COLUMNS),
        ("series", series, SERIES_COLUMNS),
        ("reports", reports, REPORT_COLUMNS),
    ):
        _frame(rows, cols).write_parquet(paths[name], compression="zstd", statistics=False)
    return paths
