"""Reading a series' pixels: every transfer syntax, multi-frame objects, rescale, errors as data.

A slice is one frame of one file (:class:`SliceRef`). :func:`read_slices` returns, per slice, a 2D
``float32`` array in modality units (HU for CT: ``stored * RescaleSlope + RescaleIntercept``) or a
stable reason code saying why the pixels could not be read (:data:`PIXEL_ERROR_REASONS`): unreadable
pixels are a finding, never an exception that stops a run.

Two decoders:

* **raw**: native (uncompressed) little-endian pixel data whose byte offset the catalog already
  knows (file size minus the pixel data length). The pixel data element's tag and length are checked
  in the bytes just before that offset, then the frame is read with one ``numpy.fromfile``: about 8x
  cheaper than pydicom, which must parse the header again (0.24 vs 1.9 ms per 512x512 CT slice).
* **pydicom**: everything else (JPEG lossless, JPEG-LS, JPEG 2000, RLE through the pylibjpeg
  plugins or pydicom's own RLE decoder, big endian, deflate, gzip-wrapped files, and raw slices
  whose check failed), one file at a time, only the frames asked for.

:func:`series_image` reads a whole series as a :class:`SimpleITK.Image` with its geometry
(:func:`slices_image` the same from a slice table the caller has already filtered).
"""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from curation.catalog import os_path
from curation.errors import CurationError

if TYPE_CHECKING:
    import duckdb
    import SimpleITK as sitk  # noqa: N813  (the name everyone uses)

log = logging.getLogger("curation.pixels")

FloatImage = NDArray[np.float32]

#: Stable reason codes for pixels that could not be read (``pixel_metrics.error_reason``).
PIXEL_ERROR_REASONS: dict[str, str] = {
    "missing_file": "the file is gone or cannot be opened",
    "bad_gzip": "a gzip-wrapped file does not decompress",
    "no_pixel_data": "the dataset has no Pixel Data (or Float/Double Float Pixel Data)",
    "truncated": "the pixel data ends before the frames its header announces",
    "no_decoder": "no installed decoder handles the transfer syntax (see the pixels extra)",
    "decode_error": "the decoder failed on the bytes (corrupt or non-conformant encoding)",
    "unsupported": "a pixel layout the metrics do not handle (e.g. colour without RGB/YBR)",
}

# Transfer syntaxes whose pixel data is stored native, little endian: the raw decoder's domain.
_NATIVE_LE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})
_PIXEL_TAG = b"\xe0\x7f\x10\x00"


class PixelReadError(CurationError):
    """Pixels of a file could not be read; ``reason`` is a key of :data:`PIXEL_ERROR_REASONS`."""

    def __init__(self, reason: str, message: str, path: str | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


@dataclass(frozen=True)
class SliceRef:
    """One 2D slice to read: a frame of a file, with what is needed to decode and rescale it.

    ``pixel_offset`` is the byte offset of the pixel data value in a native little-endian file
    (``None``: decode with pydicom). ``slope``/``intercept`` map stored values to modality units.
    ``path`` is the catalog's text; ``path_bytes`` the exact name where it is not UTF-8 (the
    file is opened by it, see :func:`curation.catalog.os_path`).
    """

    path: str
    frame: int = 0
    gzip: bool = False
    transfer_syntax: str = ""
    rows: int = 0
    columns: int = 0
    bits_allocated: int = 16
    pixel_representation: int = 0
    samples_per_pixel: int = 1
    n_frames: int = 1
    slope: float = 1.0
    intercept: float = 0.0
    pixel_offset: int | None = None
    path_bytes: bytes | None = None


@dataclass
class SliceResult:
    """What reading one slice gave: the image, or the reason it could not be read."""

    ref: SliceRef
    image: FloatImage | None
    reason: str | None = None
    message: str | None = None
    decoder: str = ""


def _raw_dtype(ref: SliceRef) -> np.dtype[Any] | None:
    if ref.samples_per_pixel != 1 or ref.bits_allocated not in (8, 16, 32):
        return None
    kind = "i" if ref.pixel_representation == 1 else "u"
    return np.dtype(f"<{kind}{ref.bits_allocated // 8}")


def _read_raw(ref: SliceRef) -> FloatImage | None:
    """Read one frame of a native little-endian file, or None when the layout check fails."""
    dtype = _raw_dtype(ref)
    if (
        dtype is None
        or ref.pixel_offset is None
        or ref.gzip
        or ref.transfer_syntax not in _NATIVE_LE
        or ref.rows <= 0
        or ref.columns <= 0
    ):
        return None
    frame_bytes = ref.rows * ref.columns * dtype.itemsize
    total = frame_bytes * max(ref.n_frames, 1)
    try:
        with open(os_path(ref.path, ref.path_bytes), "rb") as f:
            f.seek(ref.pixel_offset - 12)
            head = f.read(12)
            # explicit VR: tag, VR, 2 reserved bytes, 4-byte length; implicit VR: tag, 4-byte length
            explicit = head[:4] == _PIXEL_TAG and head[4:6] in (b"OW", b"OB")
            implicit = head[4:8] == _PIXEL_TAG
            if not (explicit or implicit):
                return None
            length = int.from_bytes(head[8:12], "little")
            if length not in (total, total + 1):  # odd lengths are padded to even
                return None
            f.seek(ref.pixel_offset + ref.frame * frame_bytes)
            arr = np.fromfile(f, dtype=dtype, count=ref.rows * ref.columns)
    except OSError:
        return None
    if arr.size != ref.rows * ref.columns:
        return None
    out = arr.reshape(ref.rows, ref.columns).astype(np.float32)
    if ref.slope != 1.0:
        out *= np.float32(ref.slope)
    if ref.intercept != 0.0:
        out += np.float32(ref.intercept)
    return out


def _open(path: str, gz: bool, path_bytes: bytes | None = None) -> BinaryIO:
    name = os_path(path, path_bytes)  # messages name ``path``, the catalog's text
    try:
        if gz:
            with gzip.open(name, "rb") as f:
                return io.BytesIO(f.read())
        return open(name, "rb")
    except FileNotFoundError as exc:
        raise PixelReadError("missing_file", "no such file", path) from exc
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise PixelReadError("bad_gzip", f"not valid gzip: {exc}", path) from exc
    except OSError as exc:
        raise PixelReadError("missing_file", f"cannot open: {exc.strerror}", path) from exc


def _classify(exc: Exception) -> str:
    """A reason code for a decoder exception, from its type and message."""
    text = str(exc).lower()
    if (
        isinstance(exc, NotImplementedError)
        or "no pixel data decoders" in text
        or ("plugin" in text and "missing" in text)
    ):
        return "no_decoder"
    short = ("truncat", "shorter than", "end of the file", "not enough", "less than expected",
             "cannot reshape", "ran out")  # fmt: skip
    if isinstance(exc, EOFError) or any(s in text for s in short):
        return "truncated"
    if isinstance(exc, AttributeError | KeyError) and "pixel" in text:
        return "no_pixel_data"
    return "decode_error"


def _read_pydicom(path: str, refs: Sequence[SliceRef]) -> list[SliceResult]:
    """Decode the frames ``refs`` of one file with pydicom (only those frames)."""
    from pydicom import Dataset
    from pydicom.pixels import iter_pixels

    gz = refs[0].gzip
    try:
        src = _open(path, gz, refs[0].path_bytes)
    except PixelReadError as exc:
        return [SliceResult(r, None, exc.reason, str(exc), "pydicom") for r in refs]
    out: list[SliceResult] = []
    by_frame = {r.frame: r for r in refs}
    got: Generator[Any, None, None] | None = None
    try:
        ds = Dataset()
        frames = sorted(by_frame)
        it: Generator[Any, None, None] = iter_pixels(src, ds_out=ds, indices=frames)  # type: ignore[assignment]
        got = it
        for frame in frames:
            ref = by_frame[frame]
            arr = next(it)
            if arr.ndim == 3:
                if str(ds.get("PhotometricInterpretation", "")).startswith(("RGB", "YBR")):
                    # colour (screen captures, ultrasound): luminance is what the metrics need
                    arr = arr[..., :3].astype(np.float32) @ np.array(
                        [0.299, 0.587, 0.114], dtype=np.float32
                    )
                else:
                    out.append(SliceResult(ref, None, "unsupported", f"{path}: shape {arr.shape}"))
                    continue
            # rescale from the catalog (top level, else the frame's functional groups), the same
            # values the raw decoder applies
            img = arr.astype(np.float32)
            if ref.slope != 1.0:
                img *= np.float32(ref.slope)
            if ref.intercept != 0.0:
                img += np.float32(ref.intercept)
            out.append(SliceResult(ref, img, decoder="pydicom"))
    except Exception as exc:  # any decoder failure is data about this file, not a crash
        reason = _classify(exc)
        done = {r.ref.frame for r in out}
        msg = f"{path}: {type(exc).__name__}: {str(exc)[:300]}"
        out += [SliceResult(r, None, reason, msg, "pydicom") for r in refs if r.frame not in done]
    finally:
        if got is not None:
            got.close()  # before the file: a suspended generator would seek a closed file
        src.close()
    return out


def read_slices(refs: Sequence[SliceRef]) -> list[SliceResult]:
    """Read ``refs`` (in order): raw where the catalog allows, pydicom for the rest.

    Parameters
    ----------
    refs
        The slices to read; frames of the same file are decoded in one pass.

    Returns
    -------
    list of SliceResult
        One per ref, in the order given; ``image`` is None and ``reason`` set when unreadable.
    """
    results: dict[int, SliceResult] = {}
    pending: dict[str, list[tuple[int, SliceRef]]] = {}
    for i, ref in enumerate(refs):
        img = _read_raw(ref)
        if img is not None:
            results[i] = SliceResult(ref, img, decoder="raw")
        else:
            pending.setdefault(ref.path, []).append((i, ref))
    for path, items in pending.items():
        decoded = _read_pydicom(path, [r for _, r in items])
        by_frame = {d.ref.frame: d for d in decoded}
        for i, ref in items:
            results[i] = by_frame[ref.frame]
    return [results[i] for i in range(len(refs))]


# -- whole series as a SimpleITK image ----------------------------------------------------------


def series_image(con: duckdb.DuckDBPyConnection, series_instance_uid: str) -> sitk.Image:
    """The series ``series_instance_uid`` as a 3D SimpleITK image in modality units (HU for CT).

    Slices (frames of multi-frame objects included) are ordered along the slice normal; origin,
    spacing and direction come from the catalog's geometry (the first slice's position, the
    orientation cosines, PixelSpacing and the median step between positions).

    Raises
    ------
    PixelReadError
        When a slice cannot be read (the reason code says why).
    CatalogError
        When the series is not in the catalog or has no image geometry.
    """
    from curation.errors import CatalogError
    from curation.pixels.sample import slice_table

    table = slice_table(con, [series_instance_uid], order="position")
    if table.height == 0:
        raise CatalogError(f"series {series_instance_uid} has no image slices in the catalog")
    return slices_image(table)


def slices_image(table: Any) -> sitk.Image:
    """The slices of ``table`` (rows of :func:`curation.pixels.sample.slice_table`) as a 3D image.

    The rows are stacked in the order given (callers order them along the slice normal and may
    have dropped some, e.g. all but one volume of a 4D series); geometry as in
    :func:`series_image`.

    Raises
    ------
    PixelReadError
        When a slice cannot be read (the reason code says why).
    """
    import SimpleITK as sitk  # noqa: N813  (the name everyone uses)

    refs = refs_from_table(table)
    images = []
    for res in read_slices(refs):
        if res.image is None:
            raise PixelReadError(res.reason or "decode_error", res.message or "", res.ref.path)
        images.append(res.image)
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise PixelReadError("unsupported", f"slices of different sizes {sorted(shapes)}")
    volume = np.stack(images)
    img = sitk.GetImageFromArray(volume)
    iop = table.get_column("ImageOrientationPatient")[0]
    ps = table.get_column("PixelSpacing")[0]
    positions = table.get_column("ImagePositionPatient").to_list()
    if iop is not None and ps is not None and all(p is not None for p in positions):
        row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
        normal = np.cross(row, col)
        pos = np.asarray(positions, float)
        steps = np.diff(pos @ normal)
        dz = float(np.median(np.abs(steps))) if steps.size else 1.0
        img.SetOrigin(tuple(float(v) for v in pos[0]))
        img.SetSpacing((float(ps[1]), float(ps[0]), dz if dz > 0 else 1.0))
        img.SetDirection(tuple(np.column_stack([row, col, normal]).ravel().tolist()))
    return img


def refs_from_table(table: Any) -> list[SliceRef]:
    """:class:`SliceRef` objects from a :func:`curation.pixels.sample.slice_table` frame."""
    cols = [
        "path", "frame", "gzip", "TransferSyntaxUID", "Rows", "Columns", "BitsAllocated",
        "PixelRepresentation", "SamplesPerPixel", "n_frames", "slope", "intercept", "pixel_offset",
    ]  # fmt: skip
    # A frame of an older slice_table (or of a task's columns) may lack path_bytes.
    has_bytes = "path_bytes" in table.columns
    if has_bytes:
        cols.append("path_bytes")
    return [
        SliceRef(
            path=r[0],
            frame=int(r[1]),
            gzip=bool(r[2]),
            transfer_syntax=r[3] or "",
            rows=int(r[4] or 0),
            columns=int(r[5] or 0),
            bits_allocated=int(r[6] or 16),
            pixel_representation=int(r[7] or 0),
            samples_per_pixel=int(r[8] or 1),
            n_frames=int(r[9] or 1),
            slope=float(r[10]),
            intercept=float(r[11]),
            pixel_offset=None if r[12] is None else int(r[12]),
            path_bytes=r[13] if has_bytes else None,
        )
        for r in table.select(cols).iter_rows()
    ]
