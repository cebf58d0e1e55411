"""The harmonized tables: ``harmonized_images`` and ``harmonized_series``, built set-based in DuckDB.

:func:`build` pivots the elements the field declarations read (:data:`fields.RAW`) out of
``elements`` in one grouped scan, reads the few Siemens CSA items from the files that need them
(:mod:`curation.harmonize.csa`), and evaluates every declared field and classification as SQL. No
Python loop runs over catalog rows.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import duckdb

from curation import schema
from curation.errors import CatalogError
from curation.harmonize import classify, csa
from curation.harmonize.fields import FIELDS, RAW, field_sql
from curation.harmonize.vendors import vendor_sql
from curation.schema import Column, Table

log = logging.getLogger("curation.harmonize")


def _c(name: str, sql_type: str, description: str) -> Column:
    return Column(name, sql_type, description)


_IMAGE_FIELDS = [f for f in FIELDS if f.level == "image"]
_SERIES_FIELDS = [f for f in FIELDS if f.level == "series"]


def _field_column(f: object) -> Column:
    from curation.harmonize.fields import Field

    assert isinstance(f, Field)
    vendors = ", ".join(s.vendor for s in f.sources if s.vendor != "*")
    where = f" (vendor-specific: {vendors}; see docs/harmonize.md)" if vendors else ""
    return _c(f.name, f.sql_type, f"{f.description}, in {f.unit}{where}")


HARMONIZED_IMAGES = schema.register(
    Table(
        "harmonized_images",
        "MR image (an instance, or a frame of an enhanced multi-frame instance)",
        "Image-level harmonized fields of MR series: the diffusion weighting and direction each "
        "vendor stores in its own tags, decoded into one pair of columns.",
        (
            _c("file_id", "UBIGINT", "The file of the instance (files.file_id)"),
            _c("SOPInstanceUID", "VARCHAR", "The instance"),
            _c("SeriesInstanceUID", "VARCHAR", "Series of the instance"),
            _c("InstanceNumber", "BIGINT", "Instance Number (0020,0013)"),
            _c(
                "frame_index",
                "INTEGER",
                "0-based frame of a multi-frame instance; 0 for single-frame",
            ),
            _c("position_mm", "DOUBLE[3]", "Image position (patient) of the image, mm"),
            _c("vendor", "VARCHAR", "Harmonized vendor name (see curation.harmonize.vendors)"),
            *(_field_column(f) for f in _IMAGE_FIELDS),
        ),
    )
)

HARMONIZED_SERIES = schema.register(
    Table(
        "harmonized_series",
        "series",
        "Vendor-neutral attributes of every series: normalized vendor, units in the column name, "
        "fields decoded from private tags, and the series type classified from the headers.",
        (
            _c("SeriesInstanceUID", "VARCHAR", "Series Instance UID"),
            _c("StudyInstanceUID", "VARCHAR", "Study of the series"),
            _c(
                "PatientID",
                "VARCHAR",
                "Patient of the series (an identifier: stays inside the catalog)",
            ),
            _c("Modality", "VARCHAR", "Modality (0008,0060)"),
            _c(
                "vendor",
                "VARCHAR",
                "Harmonized vendor: GE, Siemens, Philips, Canon, UIH, Hitachi, ... or other",
            ),
            _c("Manufacturer", "VARCHAR", "Manufacturer as written by the device"),
            _c("ManufacturerModelName", "VARCHAR", "Model name as written"),
            _c("InstitutionName", "VARCHAR", "Institution (the site)"),
            _c("StationName", "VARCHAR", "Station name (the scanner)"),
            _c("BodyPartExamined", "VARCHAR", "Body Part Examined as written"),
            _c("SeriesDescription", "VARCHAR", "Series description as written"),
            _c("ProtocolName", "VARCHAR", "Protocol name as written"),
            _c("SeriesNumber", "BIGINT", "Series number"),
            _c("n_instances", "BIGINT", "Instances in the series"),
            _c("slice_thickness_mm", "DOUBLE", "Slice thickness, mm (first instance)"),
            _c("pixel_spacing_mm", "DOUBLE[2]", "Pixel spacing [row, column], mm (first instance)"),
            _c(
                "kernel",
                "VARCHAR",
                "CT reconstruction kernel: first value of ConvolutionKernel, upper case",
            ),
            *(_field_column(f) for f in _SERIES_FIELDS),
            _c(
                "b_values_s_mm2",
                "DOUBLE[]",
                "Diffusion series: b-value of each volume in acquisition order (the images at the "
                "first image's position); NULL when no image has b > 0",
            ),
            _c(
                "diffusion_gradients",
                "DOUBLE[3][]",
                "Diffusion series: gradient direction of each volume, as the vendor states it",
            ),
            _c(
                "n_volumes",
                "BIGINT",
                "Images at the first image's position (volumes of a 4D series)",
            ),
            _c("max_b_value_s_mm2", "DOUBLE", "Largest b-value of any image of the series, s/mm2"),
            _c(
                "series_type",
                "VARCHAR",
                "ct_localizer, ct_axial, ct_reformat; mr_localizer, mr_adc, mr_dwi, mr_derived, "
                "mr_flair, mr_t1, mr_t2, mr_other (see curation.harmonize.classify)",
            ),
            _c(
                "contrast_phase",
                "VARCHAR",
                "CT: non_contrast, arterial, portal_venous, delayed, contrast_unknown_phase; MR: "
                "non_contrast or post_contrast",
            ),
            _c(
                "kernel_class",
                "VARCHAR",
                "CT kernel class: soft, lung, bone, brain; NULL for other modalities",
            ),
            _c("body_part", "VARCHAR", "head, chest, abdomen, spine, knee; NULL when unknown"),
            _c("localizer_fraction", "DOUBLE", "Share of instances whose ImageType says LOCALIZER"),
        ),
    )
)


def _raw_aggregates() -> tuple[str, str]:
    """(aggregate list, element prefilter) for pivoting :data:`RAW` out of elements."""
    aggs, public, private = [], set(), set()
    for r in RAW:
        depth = "" if r.nested else " AND seq_path = ''"
        if r.creator is None:
            cond = f"tag = '{r.tag}' AND private_creator IS NULL{depth}"
            public.add(r.tag)
        else:
            cond = f"private_creator = '{r.creator}' AND private_element = '{r.tag}'{depth}"
            private.add(r.tag)
        aggs.append(f'arg_min(value, seq_path) FILTER (WHERE {cond}) AS "{r.name}"')
    pre = (
        f"(tag IN ({', '.join(repr(t) for t in sorted(public))}) "
        f"OR private_element IN ({', '.join(repr(t) for t in sorted(private))}))"
    )
    return ", ".join(aggs), pre


def _exec(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    con.execute(sql)


def build(db: str | Path | duckdb.DuckDBPyConnection, *, read_csa: bool = True) -> dict[str, float]:
    """(Re)build ``harmonized_images`` and ``harmonized_series`` in the catalog.

    Parameters
    ----------
    db
        The catalog: a path or an open connection (left open).
    read_csa
        Read the Siemens CSA image header from the files of Siemens MR series that need it
        (phase-encoding polarity, b-values missing from public tags). False keeps to the catalog.

    Returns
    -------
    dict
        Seconds per step, for the curious.

    Raises
    ------
    CatalogError
        The catalog lacks the crawl's tables.
    """
    if not isinstance(db, duckdb.DuckDBPyConnection):
        from curation import catalog

        con = catalog.connect(db)
        try:
            return build(con, read_csa=read_csa)
        finally:
            con.close()
    con = db
    from curation import catalog

    catalog.require(con, "instances", "elements", "series", "frames")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t0
        t1 = time.perf_counter()
        timings[name] = t1 - t0
        t0 = t1

    _exec(
        con,
        """CREATE OR REPLACE TEMP TABLE _h_first AS
        SELECT SeriesInstanceUID,
            arg_min(file_id, struct_pack(n := coalesce(InstanceNumber, 0), p := path)) AS file_id,
            avg(CASE WHEN list_contains(ImageType, 'LOCALIZER') THEN 1.0 ELSE 0.0 END) AS localizer_fraction
        FROM instances WHERE SeriesInstanceUID IS NOT NULL GROUP BY SeriesInstanceUID""",
    )
    aggs, pre = _raw_aggregates()
    _exec(
        con,
        f"""CREATE OR REPLACE TEMP TABLE _h_raw AS
        SELECT file_id, {aggs}
        FROM elements
        WHERE file_id IN (SELECT file_id FROM instances WHERE Modality = 'MR') AND {pre}
        GROUP BY file_id""",
    )
    lap("pivot")
    _exec(
        con,
        r"""CREATE OR REPLACE TEMP TABLE _h_frame_grad AS
        SELECT file_id,
            CAST(regexp_extract(seq_path, '^52009230\[(\d+)\]', 1) AS INTEGER) AS frame_index,
            arg_min(value, seq_path) AS diffusion_grad
        FROM elements
        WHERE tag = '00189089' AND starts_with(seq_path, '52009230[')
        GROUP BY ALL""",
    )
    # Acquisition times of the items of the first object of each series: per-frame times of
    # Siemens XA objects, per-slice times of UIH mosaics.
    _exec(
        con,
        r"""CREATE OR REPLACE TEMP TABLE _h_times AS
        WITH x AS (
            SELECT file_id,
                CAST(regexp_extract(seq_path, '^[0-9A-F]{8}\[(\d+)\]', 1) AS INTEGER) AS idx,
                min(epoch_us(coalesce(try_strptime(trim(value), '%Y%m%d%H%M%S.%f'),
                                      try_strptime(trim(value), '%Y%m%d%H%M%S')))) / 1e6 AS t
            FROM elements
            WHERE file_id IN (SELECT file_id FROM _h_first)
              AND ((tag = '00189074' AND regexp_matches(seq_path, '^52009230\[\d+\]/00209111\[0\]$'))
                OR (tag = '0008002A' AND regexp_matches(seq_path, '^00651051\[\d+\]$')))
            GROUP BY ALL
        )
        SELECT file_id, list(round(t - m, 6) ORDER BY idx) AS item_times_s
        FROM x JOIN (SELECT file_id, min(t) AS m FROM x GROUP BY file_id) USING (file_id)
        GROUP BY file_id HAVING count(*) > 1""",
    )
    lap("frames")
    _read_csa(con, read_csa)
    lap("csa")

    vendor = vendor_sql('i."Manufacturer"')
    image_fields = ", ".join(f'{field_sql(f)} AS "{f.name}"' for f in _IMAGE_FIELDS)
    raw_cols = ", ".join(
        f'r."{r.name}"' for r in RAW if r.name not in ("diffusion_b", "diffusion_grad")
    )
    _exec(con, "DROP TABLE IF EXISTS harmonized_images")
    _exec(con, HARMONIZED_IMAGES.ddl())
    cols = ", ".join(f'"{c}"' for c in HARMONIZED_IMAGES.column_names)
    _exec(
        con,
        f"""INSERT INTO harmonized_images ({cols})
        WITH img AS (
            SELECT i.file_id, i.SOPInstanceUID, i.SeriesInstanceUID, i.InstanceNumber,
                coalesce(f.frame_index, 0) AS frame_index,
                coalesce(f.ImagePositionPatient, i.ImagePositionPatient) AS position_mm,
                {vendor} AS vendor, {raw_cols},
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
        )
        SELECT file_id, SOPInstanceUID, SeriesInstanceUID, InstanceNumber, frame_index, position_mm,
            vendor, {image_fields}
        FROM img""",
    )
    lap("images")
    _exec(
        con,
        """CREATE OR REPLACE TEMP TABLE _h_diff AS
        WITH ref AS (
            SELECT SeriesInstanceUID,
                arg_min(position_mm, struct_pack(n := coalesce(InstanceNumber, 0), f := frame_index)) AS ref_pos,
                max(b_value_s_mm2) AS max_b
            FROM harmonized_images GROUP BY SeriesInstanceUID
        )
        SELECT h.SeriesInstanceUID, any_value(ref.max_b) AS max_b_value_s_mm2, count(*) AS n_volumes,
            list(h.b_value_s_mm2 ORDER BY h.InstanceNumber, h.frame_index) AS b_values,
            list(h.diffusion_gradient ORDER BY h.InstanceNumber, h.frame_index) AS gradients
        FROM harmonized_images h JOIN ref USING (SeriesInstanceUID)
        WHERE h.position_mm IS NOT DISTINCT FROM ref.ref_pos
        GROUP BY h.SeriesInstanceUID""",
    )
    series_fields = ", ".join(f'{field_sql(f)} AS "{f.name}"' for f in _SERIES_FIELDS)
    cls = classify.classification_sql()
    _exec(con, "DROP TABLE IF EXISTS harmonized_series")
    _exec(con, HARMONIZED_SERIES.ddl())
    cols = ", ".join(f'"{c}"' for c in HARMONIZED_SERIES.column_names)
    _exec(
        con,
        f"""INSERT INTO harmonized_series ({cols})
        WITH row0 AS (
            SELECT s.SeriesInstanceUID, s.StudyInstanceUID, s.PatientID, s.n_instances,
                i.* EXCLUDE (SeriesInstanceUID, StudyInstanceUID, PatientID, file_id, path, crawl_id),
                {vendor} AS vendor, fi.localizer_fraction, {raw_cols}, r.diffusion_b, r.diffusion_grad,
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
            ProtocolName, SeriesNumber, n_instances, SliceThickness, PixelSpacing, kernel,
            {", ".join(f'"{f.name}"' for f in _SERIES_FIELDS)},
            b_values_s_mm2, diffusion_gradients, n_volumes, max_b_value_s_mm2,
            {cls["series_type"]}, {cls["contrast_phase"]}, {cls["kernel_class"]}, body_part,
            localizer_fraction
        FROM row1""",
    )
    lap("series")
    for t in ("_h_first", "_h_raw", "_h_frame_grad", "_h_times", "_h_csa", "_h_diff"):
        _exec(con, f"DROP TABLE IF EXISTS {t}")
    log.info("harmonized tables built: %s", {k: round(v, 2) for k, v in timings.items()})
    return timings


def _read_csa(con: duckdb.DuckDBPyConnection, enabled: bool) -> None:
    """Fill ``_h_csa`` with the CSA items of the Siemens MR files that need them."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _h_csa (file_id UBIGINT, csa_pe_positive BIGINT,
        csa_b_value DOUBLE, csa_gradient DOUBLE[3])"""
    )
    if not enabled:
        return
    with_csa = """SELECT DISTINCT e.file_id FROM elements e
        WHERE e.private_creator = 'SIEMENS CSA HEADER' AND e.private_element = '0029xx10'
          AND e.seq_path = ''"""
    firsts = f"""SELECT f.file_id, i.path FROM _h_first f JOIN instances i USING (file_id)
        WHERE i.Modality = 'MR' AND f.file_id IN ({with_csa})"""
    try:
        table = csa.read_csa(con, firsts)
    except duckdb.Error as exc:
        raise CatalogError(
            f"cannot list the Siemens files to read CSA headers from: {exc}"
        ) from exc
    con.register("_h_csa_part", table)
    con.execute("INSERT INTO _h_csa SELECT * FROM _h_csa_part")
    con.unregister("_h_csa_part")
    # Diffusion series whose b-values are only in CSA: read every instance.
    rest = f"""SELECT i.file_id, i.path FROM instances i
        JOIN _h_first f USING (SeriesInstanceUID)
        JOIN _h_csa c ON c.file_id = f.file_id
        LEFT JOIN _h_raw r ON r.file_id = i.file_id
        WHERE c.csa_b_value IS NOT NULL AND r.sie_b IS NULL AND i.file_id <> f.file_id
          AND i.file_id IN ({with_csa})"""
    table = csa.read_csa(con, rest)
    if table.num_rows:
        con.register("_h_csa_part", table)
        con.execute("INSERT INTO _h_csa SELECT * FROM _h_csa_part")
        con.unregister("_h_csa_part")
