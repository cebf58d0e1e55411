"""The harmonized tables, ``harmonized_images`` and ``harmonized_series``: columns and selects.

Each table's ``select`` reads the catalog and the staging tables (``_h_*``) that
:func:`curation.harmonize.view.build` fills before it; the columns of a declared field come from
its declaration in :mod:`curation.harmonize.fields`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curation.harmonize import classify
from curation.harmonize.fields import FIELDS, RAW, Field, field_sql, inferred_b0_sql
from curation.harmonize.vendors import vendor_sql
from curation.schema import Column, Table, col

if TYPE_CHECKING:
    import duckdb

_IMAGE_FIELDS = [f for f in FIELDS if f.level == "image"]
_SERIES_FIELDS = [f for f in FIELDS if f.level == "series"]


def _field_column(f: Field) -> Column:
    vendors = ", ".join(s.vendor for s in f.sources if s.vendor != "*")
    where = f" (vendor-specific: {vendors}; see docs/harmonize.md)" if vendors else ""
    return col(f.name, f.sql_type, f"{f.description}, in {f.unit}{where}")


def _vendor() -> str:
    return vendor_sql('i."Manufacturer"')


def _raw_columns() -> str:
    """The pivoted raw elements a field reads, as ``r.<name>`` (diffusion ones are resolved apart)."""
    return ", ".join(
        f'r."{r.name}"' for r in RAW if r.name not in ("diffusion_b", "diffusion_grad")
    )


def _images_select(con: duckdb.DuckDBPyConnection) -> str:
    image_fields = ", ".join(f'{field_sql(f)} AS "{f.name}"' for f in _IMAGE_FIELDS)
    fields_out = ", ".join(
        "CASE WHEN b_value_inferred THEN 0.0 ELSE b_value_s_mm2 END AS b_value_s_mm2"
        if f.name == "b_value_s_mm2"
        else f'"{f.name}"'
        for f in _IMAGE_FIELDS
    )
    return f"""
        WITH img AS (
            SELECT i.file_id, i.SOPInstanceUID, i.SeriesInstanceUID, i.InstanceNumber,
                coalesce(f.frame_index, 0) AS frame_index,
                coalesce(f.ImagePositionPatient, i.ImagePositionPatient) AS position_mm,
                {_vendor()} AS vendor, {_raw_columns()},
                coalesce(CAST(f.DiffusionBValue AS VARCHAR), r.diffusion_b) AS diffusion_b,
                coalesce(fg.diffusion_grad, r.diffusion_grad) AS diffusion_grad,
                c.csa_b_value, c.csa_gradient
            FROM instances i
            LEFT JOIN _h_raw r USING (file_id)
            LEFT JOIN frames f ON f.file_id = i.file_id
            LEFT JOIN _h_frame_grad fg ON fg.file_id = i.file_id AND fg.frame_index = f.frame_index
            LEFT JOIN _h_csa c ON c.file_id = i.file_id
            WHERE i.Modality = 'MR'
            -- A SOP instance stored in several files (a copy of the series) is one image: the
            -- per-volume lists would otherwise count every copy (instance.duplicate_sop flags them).
            QUALIFY row_number() OVER (
                PARTITION BY i.SOPInstanceUID, coalesce(f.frame_index, 0) ORDER BY i.path) = 1
        ), decoded AS (
            SELECT *, {image_fields} FROM img
        ), judged AS (
            SELECT *, {inferred_b0_sql()} AS b_value_inferred
            FROM (SELECT *, max(b_value_s_mm2) OVER (PARTITION BY SeriesInstanceUID) AS series_max_b
                  FROM decoded)
        )
        SELECT file_id, SOPInstanceUID, SeriesInstanceUID, InstanceNumber, frame_index, position_mm,
            vendor, {fields_out}, b_value_inferred
        FROM judged"""


def _series_select(con: duckdb.DuckDBPyConnection) -> str:
    series_fields = ", ".join(f'{field_sql(f)} AS "{f.name}"' for f in _SERIES_FIELDS)
    cls = classify.classification_sql()
    return f"""
        WITH row0 AS (
            SELECT s.SeriesInstanceUID, s.StudyInstanceUID, s.PatientID, s.n_instances,
                i.* EXCLUDE (SeriesInstanceUID, StudyInstanceUID, PatientID, file_id, path, crawl_id),
                {_vendor()} AS vendor, fi.localizer_fraction, {_raw_columns()}, r.diffusion_b,
                r.diffusion_grad,
                nullif(replace(upper(trim(coalesce(i.InPlanePhaseEncodingDirection, r.pe_rc))), 'COLUMN', 'COL'), '') AS pe_rc_norm,
                coalesce(c.csa_pe_positive, TRY_CAST(trim(r.sie_xa_pe_positive) AS INTEGER)) AS pe_positive,
                t.item_times_s, d.max_b_value_s_mm2, d.n_volumes,
                CASE WHEN d.max_b_value_s_mm2 > 0 THEN d.b_values END AS b_values_s_mm2,
                CASE WHEN d.max_b_value_s_mm2 > 0 THEN d.gradients END AS diffusion_gradients,
                i.ImageType AS image_type,
                upper(trim(split_part(i.ConvolutionKernel, '\\', 1))) AS kernel
            FROM series s
            JOIN _h_first fi USING (SeriesInstanceUID)
            JOIN instances i ON i.file_id = fi.file_id
            LEFT JOIN _h_raw r ON r.file_id = fi.file_id
            LEFT JOIN _h_csa c ON c.file_id = fi.file_id
            LEFT JOIN _h_times t ON t.file_id = fi.file_id
            LEFT JOIN _h_diff d ON d.SeriesInstanceUID = s.SeriesInstanceUID
        ), row1 AS (
            SELECT *, {series_fields}, {classify.body_part_sql()} AS body_part FROM row0
        )
        SELECT SeriesInstanceUID, StudyInstanceUID, PatientID, Modality, vendor, Manufacturer,
            ManufacturerModelName, InstitutionName, StationName, BodyPartExamined, SeriesDescription,
            ProtocolName, SeriesNumber, n_instances, SliceThickness AS slice_thickness_mm,
            PixelSpacing AS pixel_spacing_mm, kernel,
            {", ".join(f'"{f.name}"' for f in _SERIES_FIELDS)},
            b_values_s_mm2, diffusion_gradients, n_volumes, max_b_value_s_mm2,
            {cls["series_type"]} AS series_type, {cls["contrast_phase"]} AS contrast_phase,
            {cls["kernel_class"]} AS kernel_class, body_part, localizer_fraction
        FROM row1"""


HARMONIZED_IMAGES = Table(
    "harmonized_images",
    "MR image (an instance, or a frame of an enhanced multi-frame instance)",
    "Image-level harmonized fields of MR series: the diffusion weighting and direction each "
    "vendor stores in its own tags, decoded into one pair of columns.",
    (
        col("file_id", "UBIGINT", "The file of the instance (files.file_id)"),
        col("SOPInstanceUID", "VARCHAR", "The instance"),
        col("SeriesInstanceUID", "VARCHAR", "Series of the instance"),
        col("InstanceNumber", "BIGINT", "Instance Number (0020,0013)"),
        col(
            "frame_index",
            "INTEGER",
            "0-based frame of a multi-frame instance; 0 for single-frame",
        ),
        col("position_mm", "DOUBLE[3]", "Image position (patient) of the image, mm"),
        col("vendor", "VARCHAR", "Harmonized vendor name (see curation.harmonize.vendors)"),
        *(_field_column(f) for f in _IMAGE_FIELDS),
        col(
            "b_value_inferred",
            "BOOLEAN",
            "True where b_value_s_mm2 is 0 by a b=0 inference (curation.harmonize.fields."
            "B0_INFERENCES: no b-value in a diffusion series; GE raw b=0 with a nominal b), not "
            "by a tag",
        ),
    ),
    select=_images_select,
)

HARMONIZED_SERIES = Table(
    "harmonized_series",
    "series",
    "Vendor-neutral attributes of every series: normalized vendor, units in the column name, "
    "fields decoded from private tags, and the series type classified from the headers.",
    (
        col("SeriesInstanceUID", "VARCHAR", "Series Instance UID"),
        col("StudyInstanceUID", "VARCHAR", "Study of the series"),
        col(
            "PatientID",
            "VARCHAR",
            "Patient of the series (an identifier: stays inside the catalog)",
        ),
        col("Modality", "VARCHAR", "Modality (0008,0060)"),
        col(
            "vendor",
            "VARCHAR",
            "Harmonized vendor: GE, Siemens, Philips, Canon, UIH, Hitachi, Fujifilm, ... or other",
        ),
        col("Manufacturer", "VARCHAR", "Manufacturer as written by the device"),
        col("ManufacturerModelName", "VARCHAR", "Model name as written"),
        col("InstitutionName", "VARCHAR", "Institution (the site)"),
        col("StationName", "VARCHAR", "Station name (the scanner)"),
        col("BodyPartExamined", "VARCHAR", "Body Part Examined as written"),
        col("SeriesDescription", "VARCHAR", "Series description as written"),
        col("ProtocolName", "VARCHAR", "Protocol name as written"),
        col("SeriesNumber", "BIGINT", "Series number"),
        col("n_instances", "BIGINT", "Instances in the series"),
        col("slice_thickness_mm", "DOUBLE", "Slice thickness, mm (first instance)"),
        col("pixel_spacing_mm", "DOUBLE[2]", "Pixel spacing [row, column], mm (first instance)"),
        col(
            "kernel",
            "VARCHAR",
            "CT reconstruction kernel: first value of ConvolutionKernel, upper case",
        ),
        *(_field_column(f) for f in _SERIES_FIELDS),
        col(
            "b_values_s_mm2",
            "DOUBLE[]",
            "Diffusion series: b-value of each volume in acquisition order (the images at the "
            "first image's position); NULL when no image has b > 0",
        ),
        col(
            "diffusion_gradients",
            "DOUBLE[3][]",
            "Diffusion series: gradient direction of each volume, as the vendor states it",
        ),
        col(
            "n_volumes",
            "BIGINT",
            "Images at the first image's position (volumes of a 4D series)",
        ),
        col("max_b_value_s_mm2", "DOUBLE", "Largest b-value of any image of the series, s/mm2"),
        col(
            "series_type",
            "VARCHAR",
            "ct_localizer, ct_axial, ct_reformat; mr_localizer, mr_adc, mr_dwi, mr_derived, "
            "mr_flair, mr_t1, mr_t2, mr_other (see curation.harmonize.classify)",
        ),
        col(
            "contrast_phase",
            "VARCHAR",
            "CT: non_contrast, arterial, portal_venous, delayed, contrast_unknown_phase; MR: "
            "non_contrast or post_contrast",
        ),
        col(
            "kernel_class",
            "VARCHAR",
            "CT kernel class: soft, lung, bone, brain; NULL for other modalities",
        ),
        col("body_part", "VARCHAR", "head, chest, abdomen, spine, knee; NULL when unknown"),
        col("localizer_fraction", "DOUBLE", "Share of instances whose ImageType says LOCALIZER"),
    ),
    select=_series_select,
)

HARMONIZE_TABLES = (HARMONIZED_IMAGES, HARMONIZED_SERIES)
