"""Drawing a series' slices as PNG thumbnails and JPEG mosaics, for the QC report and notebooks.

A thumbnail is one slice, windowed to its 1st-99th percentile (so noise, clipping and streaks
stay visible whatever the modality), downsampled to ``size`` pixels on its long side. Thumbnails
carry no text and no identifiers; burned-in text in the pixels shows as it is (the catalog and the
report stay local). A mosaic (:func:`mosaic`) tiles slices evenly spaced over a series, under one
window, for the report's series pages.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np

from curation.pixels.read import PixelReadError, read_slices, refs_from_table
from curation.pixels.sample import sample_indices, slice_table

if TYPE_CHECKING:
    import duckdb
    import polars as pl
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


def mosaic(
    slices: pl.DataFrame, *, tiles: int = 9, size: int = 96, quality: int = 80
) -> tuple[bytes, int]:
    """A JPEG mosaic of ``tiles`` slices evenly spaced over one series, and how many it shows.

    ``slices`` are the series' rows of :func:`curation.pixels.sample.slice_table` (any order;
    ``slice_index`` orders them). One window for every tile (the 1st-99th percentile of all of
    them pooled), so that a slice darker or brighter than its neighbours stays visible as such;
    each tile fits ``size`` pixels, on a grid of ``ceil(sqrt(tiles))`` columns. Unreadable slices
    leave a black tile; JPEG because a noisy grey mosaic is a third of its PNG size.

    Raises
    ------
    PixelReadError
        When no slice of the series can be read (the first slice's reason).
    """
    from PIL import Image

    ordered = slices.sort("slice_index")
    picked = ordered[sample_indices(ordered.height, tiles)]
    if picked.height == 0:
        raise PixelReadError("no_pixel_data", "the series has no image slices")
    results = read_slices(refs_from_table(picked))
    images = [
        # the reader gives colour as luminance already; a multi-channel array left is averaged
        None if r.image is None else (r.image if r.image.ndim == 2 else r.image.mean(axis=-1))
        for r in results
    ]
    shown = [im for im in images if im is not None]
    if not shown:
        first = results[0]
        raise PixelReadError(first.reason or "decode_error", first.message or "", first.ref.path)
    pooled = np.concatenate([im[::4, ::4].ravel() for im in shown])  # every 16th pixel is plenty
    lo, hi = (float(v) for v in np.percentile(pooled, [1.0, 99.0]))
    if hi <= lo:
        lo, hi = float(pooled.min()), float(pooled.max()) + 1.0
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    sheet = Image.new("L", (cols * size, rows * size))
    for i, im in enumerate(images):
        if im is None:
            continue
        grey = np.clip((im - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
        tile = Image.fromarray(grey)
        tile.thumbnail((size, size), Image.Resampling.LANCZOS)
        x = (i % cols) * size + (size - tile.size[0]) // 2
        y = (i // cols) * size + (size - tile.size[1]) // 2
        sheet.paste(tile, (x, y))
    buf = io.BytesIO()
    sheet.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue(), len(shown)
