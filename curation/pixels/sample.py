"""Which slices of a series are read, and in which order.

Every slice of a series (each frame of a multi-frame object is a slice) is listed by one DuckDB query
over the catalog (:func:`slice_table`), in acquisition order (InstanceNumber, then frame) or along the
slice normal. Metrics then use two samples (:func:`sample_indices`):

* the **profile**: every ``profile_step``-th slice (default every slice), for the cheap per-slice
  statistics that find defects confined to a few slices (a blank slice, a run of 3 blurred or
  metal-streaked slices), which an evenly spaced sample of a dozen slices would miss most of the
  time in a 300-slice CT;
* the **sample**: ``n`` slices evenly spaced over the series, ends included, for the expensive
  full-resolution metrics (noise, contrast, HU landmarks, burned-in text, clipping) whose defects
  affect the whole series, where a dozen slices already give a stable median.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from curation.catalog import has_table

if TYPE_CHECKING:
    import duckdb

#: Default number of slices per series that get the full-resolution metrics.
DEFAULT_SAMPLE = 12

# Normal of the slice plane from ImageOrientationPatient (row x column cosines), in SQL.
_NORMAL_DOT = """(
    pos[1] * (iop[2] * iop[6] - iop[3] * iop[5])
  + pos[2] * (iop[3] * iop[4] - iop[1] * iop[6])
  + pos[3] * (iop[1] * iop[5] - iop[2] * iop[4]))"""

_SLICES_SQL = """
WITH px AS (
    SELECT file_id, value_length FROM elements WHERE tag = '7FE00010' AND seq_path = ''
), pad AS (
    SELECT file_id, TRY_CAST(split_part(value, '\\', 1) AS DOUBLE) AS padding
    FROM elements WHERE tag = '00280120' AND seq_path = ''
), inst AS (
    SELECT i.*, f.size, f.gzip, f.path_bytes AS file_path_bytes, px.value_length, pad.padding
    FROM instances i JOIN files f USING (file_id) LEFT JOIN px USING (file_id)
    LEFT JOIN pad USING (file_id)
    WHERE i.Rows IS NOT NULL AND i.Columns IS NOT NULL AND i.SeriesInstanceUID IS NOT NULL
      {series_filter}
), expanded AS (
    SELECT inst.*, unnest(range(greatest(coalesce(inst.NumberOfFrames, 1), 1)::BIGINT)) AS frame
    FROM inst
), sl AS (
    SELECT e.SeriesInstanceUID, e.SOPInstanceUID, e.Modality, e.InstanceNumber,
        e.frame::INTEGER AS frame, e.path, e.file_path_bytes AS path_bytes,
        coalesce(e.gzip, false) AS gzip, e.TransferSyntaxUID,
        e.Rows, e.Columns, e.BitsAllocated, e.PixelRepresentation, e.SamplesPerPixel,
        greatest(coalesce(e.NumberOfFrames, 1), 1) AS n_frames,
        coalesce(fr.RescaleSlope, e.RescaleSlope, 1.0) AS slope,
        coalesce(fr.RescaleIntercept, e.RescaleIntercept, 0.0) AS intercept,
        -- PixelPaddingValue in modality units: pixels outside the reconstruction, not anatomy
        e.padding * coalesce(fr.RescaleSlope, e.RescaleSlope, 1.0)
            + coalesce(fr.RescaleIntercept, e.RescaleIntercept, 0.0) AS padding,
        CASE WHEN e.value_length IS NOT NULL
             AND e.TransferSyntaxUID IN ('1.2.840.10008.1.2', '1.2.840.10008.1.2.1')
             THEN e.size - e.value_length END AS pixel_offset,
        coalesce(fr.ImagePositionPatient, e.ImagePositionPatient) AS ImagePositionPatient,
        coalesce(fr.ImageOrientationPatient, e.ImageOrientationPatient) AS ImageOrientationPatient,
        coalesce(fr.PixelSpacing, e.PixelSpacing) AS PixelSpacing
    FROM expanded e
    LEFT JOIN frames fr ON fr.file_id = e.file_id AND fr.frame_index = e.frame
)
SELECT * FROM sl
"""


def slice_table(
    con: duckdb.DuckDBPyConnection,
    series: Sequence[str] | None = None,
    *,
    order: str = "acquisition",
) -> pl.DataFrame:
    """One row per slice (frame) of the image series in the catalog, with what decoding needs.

    Parameters
    ----------
    con
        The catalog.
    series
        SeriesInstanceUIDs to list; None for every series with pixel data.
    order
        ``acquisition`` (InstanceNumber, frame, path) or ``position`` (along the slice normal,
        then InstanceNumber): the order slices take within their series.

    Returns
    -------
    polars.DataFrame
        Columns SeriesInstanceUID, SOPInstanceUID, Modality, InstanceNumber, frame, path,
        path_bytes (the path's bytes where not UTF-8, see :func:`curation.catalog.os_path`), gzip,
        TransferSyntaxUID, Rows, Columns, BitsAllocated, PixelRepresentation, SamplesPerPixel,
        n_frames, slope, intercept, pixel_offset, padding (PixelPaddingValue in modality
        units), geometry (ImagePositionPatient,
        ImageOrientationPatient, PixelSpacing), ``z_mm`` (position along the normal) and
        ``slice_index`` (0-based place in the series in the requested order).
    """
    if order not in ("acquisition", "position"):
        raise ValueError(f"order must be 'acquisition' or 'position', not {order!r}")
    params: dict[str, object] = {}
    series_filter = ""
    if series is not None:
        series_filter = "AND i.SeriesInstanceUID IN (SELECT unnest($series))"
        params["series"] = list(series)
    has_frames = has_table(con, "frames")
    sql = _SLICES_SQL.format(series_filter=series_filter)
    if not has_frames:  # a catalog without multi-frame support: no per-frame geometry
        sql = sql.replace(
            "LEFT JOIN frames fr ON fr.file_id = e.file_id AND fr.frame_index = e.frame",
            "LEFT JOIN (SELECT NULL::UBIGINT AS file_id, NULL::INTEGER AS frame_index, "
            "NULL::DOUBLE AS RescaleSlope, NULL::DOUBLE AS RescaleIntercept, "
            "NULL::DOUBLE[3] AS ImagePositionPatient, NULL::DOUBLE[6] AS ImageOrientationPatient, "
            "NULL::DOUBLE[2] AS PixelSpacing) fr ON false",
        )
    z = _NORMAL_DOT.replace("pos", "ImagePositionPatient").replace("iop", "ImageOrientationPatient")
    key = (
        "z_mm NULLS LAST, InstanceNumber NULLS LAST, frame, path"
        if order == "position"
        else "InstanceNumber NULLS LAST, frame, path"
    )
    full = f"""
        SELECT *, {z} AS z_mm FROM ({sql})
    """
    return con.sql(
        f"""SELECT *, (row_number() OVER (PARTITION BY SeriesInstanceUID ORDER BY {key}) - 1)
                ::INTEGER AS slice_index
            FROM ({full}) ORDER BY SeriesInstanceUID, slice_index""",
        params=params or None,
    ).pl()


def sample_indices(n: int, k: int) -> list[int]:
    """``k`` indices evenly spaced over ``range(n)``, first and last included (all when k >= n).

    >>> sample_indices(10, 4)
    [0, 3, 6, 9]
    """
    if n <= 0 or k <= 0:
        return []
    if k >= n:
        return list(range(n))
    if k == 1:
        return [n // 2]
    return sorted({round(v) for v in np.linspace(0, n - 1, k)})
