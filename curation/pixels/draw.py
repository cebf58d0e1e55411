"""Drawing a series' slices as PNG thumbnails, for the QC report (which chooses them) and notebooks.

A thumbnail is one slice, windowed to its 1st-99th percentile (so noise, clipping and streaks
stay visible whatever the modality), downsampled to ``size`` pixels on its long side. Thumbnails
carry no text and no identifiers; burned-in text in the pixels shows as it is (the catalog and the
report stay local).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from curation.pixels.read import PixelReadError, read_slices, refs_from_table
from curation.pixels.sample import slice_table

if TYPE_CHECKING:
    import duckdb
    from numpy.typing import NDArray


def to_png(image: NDArray[np.float32], size: int = 128) -> bytes:
    """``image`` windowed to its 1st-99th percentile, resized to ``size`` on the long side, as PNG."""
    from PIL import Image

    lo, hi = (float(v) for v in np.percentile(image, [1.0, 99.0]))
    if hi <= lo:
        lo, hi = float(image.min()), float(image.max()) + 1.0
    grey = np.clip((image - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
    pil = Image.fromarray(grey)
    scale = size / max(pil.size)
    pil = pil.resize(
        (max(1, round(pil.size[0] * scale)), max(1, round(pil.size[1] * scale))),
        Image.Resampling.LANCZOS,
    )
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def thumbnail(
    con: duckdb.DuckDBPyConnection,
    series_instance_uid: str,
    *,
    slice_index: int | None = None,
    size: int = 128,
) -> bytes:
    """A PNG thumbnail of one slice of a series: ``slice_index`` (acquisition order) or the middle.

    Raises
    ------
    PixelReadError
        When the series has no such slice or its pixels cannot be read.
    """
    table = slice_table(con, [series_instance_uid])
    if table.height == 0:
        raise PixelReadError("no_pixel_data", f"series {series_instance_uid} has no image slices")
    index = table.height // 2 if slice_index is None else slice_index
    if not 0 <= index < table.height:
        raise PixelReadError("no_pixel_data", f"slice {index} not in 0..{table.height - 1}")
    res = read_slices(refs_from_table(table[index : index + 1]))[0]
    if res.image is None:
        raise PixelReadError(res.reason or "decode_error", res.message or "", res.ref.path)
    return to_png(res.image, size)


def worst_slice_thumbnail(
    con: duckdb.DuckDBPyConnection, series_instance_uid: str, order_by: str, size: int = 128
) -> bytes:
    """Thumbnail of the slice of ``pixel_slices`` that sorts first by ``order_by`` (SQL).

    ``order_by`` is an expression over ``pixel_slices`` columns, e.g. ``sharpness`` (least
    sharp first) or ``-metal_px``; falls back to the middle slice when nothing was measured.
    """
    row = con.sql(
        f"SELECT slice_index FROM pixel_slices WHERE SeriesInstanceUID = $s AND reason IS NULL "
        f"ORDER BY {order_by} NULLS LAST LIMIT 1",
        params={"s": series_instance_uid},
    ).fetchall()
    return thumbnail(con, series_instance_uid, slice_index=row[0][0] if row else None, size=size)
