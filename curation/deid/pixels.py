"""Burned-in text: which files are inspected, OCR with Tesseract, masking, re-encoding.

A file is inspected when it declares ``BurnedInAnnotation YES``, when its modality or SOP class is
one the profile calls risky (ultrasound, secondary capture, screen saves...), or when its series
was flagged by one of the profile's QC rules (``series.burned_in_annotation``,
``pixel.burned_in_text``...). An inspected image is rendered to 8 bits (all frames' maximum: text
burned into a cine loop stays put), read by Tesseract (Debian's ``tesseract-ocr`` language data,
through the ``tesserocr`` binding: one engine kept per process, ~10x faster than starting the
``tesseract`` program per image as ``pytesseract`` does, measured in ``docs/deid.md``), and each
word found is masked, with ``pad_px`` around it, in every frame, with the image's background
value. The masked image is read again; text still found means the file is quarantined. The
profile's fixed regions are masked whatever OCR reads.

Masked pixels are written uncompressed (explicit VR little endian, pydicom's
:meth:`~pydicom.dataset.Dataset.set_pixel_data`): a compressed source is decoded, its photometric
interpretation is what the decoder returned (YBR JPEG comes back as RGB).
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from curation.deid.profile import Profile, Region

log = logging.getLogger("curation.deid")

#: Smallest rendered side OCR reads well; smaller images are enlarged (nearest neighbour).
MIN_OCR_SIDE = 512
#: Alphanumeric characters a word needs to be taken for text (single glyphs are edges, not words).
MIN_WORD_CHARS = 2
#: Top fraction of the value range taken as "brightest" (see :func:`bright_level`).
BRIGHT_FRACTION = 0.02
#: OCR confidence a word needs on the binarized page: any word there is masked, since only the
#: brightest pixels are on it (measured on the synthetic burned-in text: 100% of text pixels
#: covered at 0, 26-41% at 20, as Tesseract is unsure of small bitmap fonts it still finds).
BRIGHT_MIN_CONFIDENCE = 0.0
#: OCR confidence of a word still read after masking that quarantines the file.
LEFTOVER_CONFIDENCE = 50.0


class PixelError(Exception):
    """The pixels cannot be read, masked or rewritten: the file is quarantined with ``reason``."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Word:
    """A word OCR found: its text is never stored, only its box (in image pixels) and confidence."""

    top: int
    left: int
    bottom: int
    right: int
    confidence: float


def tessdata() -> str | None:
    """The folder of Tesseract's language data (``TESSDATA_PREFIX`` or Debian's), if any."""
    env = os.environ.get("TESSDATA_PREFIX")
    # A folder the user names is the only one looked at: an override, not a hint.
    candidates = (
        [env]
        if env
        else [
            *sorted(glob.glob("/usr/share/tesseract-ocr/*/tessdata"), reverse=True),
            "/usr/share/tessdata",
        ]
    )
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "eng.traineddata")):
            return c
    return None


def ocr_unavailable() -> str | None:
    """Why OCR cannot run here (no binding, no language data), or None when it can."""
    try:
        import tesserocr  # noqa: F401
    except ImportError:
        return "the tesserocr binding is not installed (pip install 'curation[deid]')"
    if tessdata() is None:
        return (
            "no Tesseract language data (eng.traineddata): install Debian's tesseract-ocr "
            "or set TESSDATA_PREFIX"
        )
    return None


def ocr_version() -> str | None:
    """The Tesseract version OCR runs with, or None when OCR is unavailable."""
    if ocr_unavailable() is not None:
        return None
    import tesserocr

    return str(tesserocr.tesseract_version().splitlines()[0])


@cache
def _api() -> Any:
    """One Tesseract engine per process (loading the language data is the slow part)."""
    import tesserocr

    return tesserocr.PyTessBaseAPI(path=tessdata(), psm=tesserocr.PSM.SPARSE_TEXT)


def composite(pixels: NDArray[Any], photometric: str) -> NDArray[np.float32]:
    """One grey image of ``pixels`` (frames, rows, columns[, samples]), text bright.

    Frames are reduced to their maximum and colour to its brightest channel, so text on any
    frame and in any colour shows; MONOCHROME1 is inverted.
    """
    a = np.asarray(pixels, dtype=np.float32)
    if a.ndim == 4:
        a = a.max(axis=3)
    if a.ndim == 3:
        a = a.max(axis=0)
    if photometric == "MONOCHROME1":
        a = a.max() - a
    return a


def bright_level(image: NDArray[np.float32]) -> float:
    """The value from which a pixel counts as "brightest": within :data:`BRIGHT_FRACTION` of
    the range from the top. Burned-in text is drawn at the display's full white, above anatomy."""
    lo, hi = float(image.min()), float(image.max())
    return hi - BRIGHT_FRACTION * (hi - lo)


def renderings(image: NDArray[np.float32], level: float) -> list[tuple[NDArray[np.uint8], bool]]:
    """The 8-bit pages OCR reads, dark text on light (Tesseract's habit), each with whether it is
    the binarized one: the brightest pixels alone (text drawn at full white, whatever the anatomy
    does), and the whole range stretched (text of another grey)."""
    binary = np.where(image >= level, 0, 255).astype(np.uint8)
    lo, hi = float(image.min()), float(image.max())
    scaled = (image - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(image)
    return [(binary, True), ((255 - scaled).astype(np.uint8), False)]


def find_words(image: NDArray[np.uint8], min_confidence: float) -> list[Word]:
    """Words Tesseract finds in ``image`` with at least ``min_confidence`` (0-100)."""
    import tesserocr
    from PIL import Image

    rows, cols = image.shape
    factor = max(1, int(np.ceil(MIN_OCR_SIDE / max(1, min(rows, cols)))))
    pil = Image.fromarray(image)
    if factor > 1:
        pil = pil.resize((cols * factor, rows * factor), Image.Resampling.NEAREST)
    api = _api()
    api.SetImage(pil)
    api.Recognize()
    level = tesserocr.RIL.WORD
    words = []
    for r in tesserocr.iterate_level(api.GetIterator(), level):
        try:
            text = r.GetUTF8Text(level) or ""
        except RuntimeError:  # tesserocr's way of saying "an empty word"
            continue
        conf = float(r.Confidence(level))
        box = r.BoundingBox(level)
        if box is None or sum(ch.isalnum() for ch in text) < MIN_WORD_CHARS:
            continue
        if conf < min_confidence:
            continue
        x0, y0, x1, y1 = box
        words.append(
            Word(
                y0 // factor,
                x0 // factor,
                -(-y1 // factor),
                -(-x1 // factor),
                conf,
            )
        )
    return words


def regions_for(ds: Dataset, profile: Profile) -> list[tuple[int, int, int, int]]:
    """The profile's fixed boxes for this file's manufacturer, model and size."""
    found: list[tuple[int, int, int, int]] = []
    region: Region
    for region in profile.burned_in.regions:
        if region.applies(
            str(ds.get("Manufacturer", "") or ""),
            str(ds.get("ManufacturerModelName", "") or ""),
            int(ds.get("Rows", 0) or 0),
            int(ds.get("Columns", 0) or 0),
        ):
            found.extend(region.boxes)
    return found


def inspection_reason(
    ds: Dataset, profile: Profile, flagged_series: frozenset[str] | set[str]
) -> str | None:
    """Why this file's pixels must be inspected for burned-in text, or None."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return None
    bi = profile.burned_in
    if str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        return "BurnedInAnnotation YES"
    if str(ds.get("Modality", "") or "") in bi.ocr_modalities:
        return f"modality {ds.get('Modality')}"
    if str(ds.get("SOPClassUID", "") or "") in bi.ocr_sop_classes:
        return "secondary capture"
    image_type = ds.get("ImageType") or []
    if "SCREEN SAVE" in [str(x).upper() for x in image_type]:
        return "screen save"
    if str(ds.get("SeriesInstanceUID", "") or "") in flagged_series:
        return "series flagged by a burned-in text rule"
    return None


def decode_frames(ds: Dataset) -> NDArray[Any]:
    try:
        arr = ds.pixel_array
    except Exception as exc:  # decoders raise many kinds; all mean "cannot decode"
        raise PixelError(
            "pixel_decode", f"pixel data cannot be decoded: {type(exc).__name__}"
        ) from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames == 1:
        arr = arr[np.newaxis]
    if spp == 1 and arr.ndim == 4:
        raise PixelError("pixel_decode", f"unexpected pixel array shape {arr.shape}")
    # a writable copy in native byte order (a big-endian source decodes to '>u2')
    return np.array(arr, dtype=arr.dtype.newbyteorder("="))


def mask(ds: Dataset, profile: Profile, *, run_ocr: bool) -> tuple[int, bool]:
    """Mask burned-in text (OCR when ``run_ocr``) and the profile's fixed regions in ``ds``.

    Returns (boxes masked, whether OCR ran). Raises :class:`PixelError` when the pixels cannot
    be decoded or rewritten, or when text is still found after masking.
    """
    boxes = regions_for(ds, profile)
    if not boxes and not run_ocr:
        return 0, False
    frames = decode_frames(ds)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    bi = profile.burned_in
    pad = bi.pad_px
    level = 0.0
    if run_ocr:
        image = composite(frames, photometric)
        level = bright_level(image)
        for page, binary in renderings(image, level):
            conf = BRIGHT_MIN_CONFIDENCE if binary else bi.min_confidence
            boxes += [
                (w.top - pad, w.left - pad, w.bottom + pad, w.right + pad)
                for w in find_words(page, conf)
            ]
    if not boxes:
        return 0, run_ocr
    rows, cols = frames.shape[1], frames.shape[2]
    fill = frames.max() if photometric == "MONOCHROME1" else frames.min()
    for top, left, bottom, right in boxes:
        t, lft = max(0, top), max(0, left)
        b, rgt = min(rows, bottom), min(cols, right)
        if b > t and rgt > lft:
            frames[:, t:b, lft:rgt, ...] = fill
    if run_ocr:
        # Read again, binarized at the first reading's "brightest" level: text left over at full
        # white is found there (the stretched page of a masked image reads the anatomy's edges
        # as words too often to be a fair judge, and costs another OCR)
        page = renderings(composite(frames, photometric), level)[0][0]
        left_over = find_words(page, LEFTOVER_CONFIDENCE)
        if left_over:
            raise PixelError(
                "ocr_text_remains",
                f"{len(left_over)} word(s) still read by OCR after masking",
            )
    write_pixels(ds, frames)
    return len(boxes), run_ocr


def write_pixels(ds: Dataset, frames: NDArray[Any]) -> None:
    """Store ``frames`` as ``ds``'s pixel data, uncompressed."""
    arr = frames[0] if int(ds.get("NumberOfFrames", 1) or 1) == 1 else frames
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric.startswith("YBR") and ds.file_meta.TransferSyntaxUID.is_compressed:
        photometric = "RGB"  # pydicom's decoders convert YBR JPEG to RGB by default
    if photometric.startswith("YBR") or (photometric == "PALETTE COLOR" and arr.ndim > 3):
        raise PixelError("pixel_encoding", f"cannot rewrite {photometric} pixel data")
    try:
        ds.set_pixel_data(
            arr,
            photometric,
            int(ds.get("BitsStored", arr.dtype.itemsize * 8)),
            generate_instance_uid=False,
        )
    except (ValueError, AttributeError, TypeError, NotImplementedError) as exc:
        raise PixelError("pixel_encoding", f"pixels cannot be written: {exc}") from None
