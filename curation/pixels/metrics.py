"""Pixel metrics of one 2D slice, each a small function of a ``float32`` image in modality units.

Two kinds, by cost:

* :func:`slice_profile` is cheap (~1 ms for 512x512) and runs on every profiled slice: intensity
  statistics on a subset of rows, directional gradient energies (sharpness, motion), the fraction
  of pixels piled at the maximum, metal pixels (CT).
* the full-resolution metrics run on the sampled slices only: :func:`noise_sd`,
  :func:`foreground_threshold`, :func:`text_glyphs`, :func:`clipped_fraction`; and, over the
  sampled CT pixels of a series, :func:`hu_landmarks`.

Every function documents what it measures and why that measure; none reads files or the catalog.
Where scikit-image has the measure, it is used (Otsu's threshold); the noise estimator, the
sharpness and motion measures and the text-component labelling stay hand-written or on
``scipy.ndimage`` because they beat scikit-image's on real CT, measured by
``benchmarks/pixel_metrics_vs_skimage.py`` (figures in docs/pixels.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

FloatImage = NDArray[np.float32]

#: HU above which a CT pixel is metal: cortical bone stays below ~2000 HU, metal saturates above.
METAL_HU = 2500.0


@dataclass(frozen=True)
class SliceProfile:
    """Cheap statistics of one slice (see :func:`slice_profile`)."""

    mean: float
    std: float
    min: float
    max: float
    grad_h: float
    grad_v: float
    grad_d1: float
    grad_d2: float
    frac_at_max: float
    n_metal: int

    @property
    def blank(self) -> bool:
        """True when the slice holds a single value (no anatomy, no noise)."""
        return self.max == self.min

    @property
    def degenerate(self) -> bool:
        """True when some direction has no gradient at all (stripes, a broadcast projection).

        Such a slice is not a tomographic image of anatomy; it is not rated for sharpness.
        """
        return not self.blank and min(self.grad_h, self.grad_v, self.grad_d1, self.grad_d2) == 0

    @property
    def sharpness(self) -> float:
        """Mean squared horizontal and vertical pixel difference over the intensity variance.

        Scale-free, so slices of different contrast compare; it falls when edges spread (blur).
        NaN for a blank slice.
        """
        var = self.std**2
        if var <= 0 or self.degenerate:
            return float("nan")
        return (self.grad_h + self.grad_v) / (2 * var)

    @property
    def directional_ratio(self) -> float:
        """Smallest ratio of gradient energies of two orthogonal directions (h/v and the diagonals).

        About 1 for a sharp image (anatomy and noise have edges in every direction); motion
        smears edges along the motion, dividing that direction's energy by the blur length
        (a 5-pixel motion gives ~0.2). NaN for a blank slice.
        """
        if self.degenerate:
            return float("nan")
        pairs = ((self.grad_h, self.grad_v), (self.grad_d1, self.grad_d2))
        ratios = [min(a, b) / max(a, b) for a, b in pairs if max(a, b) > 0]
        return min(ratios) if ratios else float("nan")


def slice_profile(
    img: FloatImage, *, row_stride: int = 4, metal_hu: float | None = None
) -> SliceProfile:
    """Cheap statistics of ``img``, from pairs of adjacent rows every ``row_stride`` rows.

    Parameters
    ----------
    img
        The slice, modality units.
    row_stride
        One pair of adjacent rows (r, r+1) is used every ``row_stride`` rows: horizontal
        differences along row r, vertical and diagonal ones between r and r+1. 4 reads a quarter
        of the pairs, enough for a stable mean over 64k differences on a 512x512 slice.
    metal_hu
        Count pixels at or above this value as metal candidates (CT); None to skip.
    """
    a = img[0 : img.shape[0] - 1 : row_stride]
    b = img[1::row_stride][: a.shape[0]]
    lo, hi = float(img.min()), float(img.max())
    if a.size == 0 or a.shape[1] < 2:
        return SliceProfile(float(img.mean()), float(img.std()), lo, hi, 0, 0, 0, 0, 1.0, 0)
    dh = np.diff(a, axis=1)
    dv = b - a
    d1 = b[:, 1:] - a[:, :-1]
    d2 = b[:, :-1] - a[:, 1:]
    frac_at_max = float(np.count_nonzero(img == hi)) / img.size
    n_metal = int(np.count_nonzero(img >= metal_hu)) if metal_hu is not None else 0
    return SliceProfile(
        mean=float(a.mean()),
        std=float(a.std()),
        min=lo,
        max=hi,
        grad_h=float(np.mean(dh * dh)),
        grad_v=float(np.mean(dv * dv)),
        grad_d1=float(np.mean(d1 * d1)),
        grad_d2=float(np.mean(d2 * d2)),
        frac_at_max=frac_at_max,
        n_metal=n_metal,
    )


def fill_padding(img: FloatImage, padding: float | None) -> NDArray[np.bool_] | None:
    """Replace PixelPaddingValue pixels (in place) by the lowest real value; return their mask.

    Padding marks pixels outside the reconstructed field (GE writes -2000 outside the CT
    circle). Left in, its sharp circular edge dominates every gradient measure and hides blur,
    and a blank slice would not look blank. None when nothing is padding.
    """
    if padding is None:
        return None
    mask = img == np.float32(padding)
    if not mask.any():
        return None
    if mask.all():
        return mask
    img[mask] = np.min(img, where=~mask, initial=np.inf)  # no copy of the non-padding pixels
    return mask


def metal_pixels(img: FloatImage, *, metal_hu: float = METAL_HU) -> int:
    """Number of pixels at or above ``metal_hu`` that are not burned-in text.

    Burned-in annotations are drawn at the top of the scale too; pixels on a text line found by
    :func:`text_glyphs` do not count. Only called for slices that have such pixels at all.
    """
    mask = img >= metal_hu
    if not mask.any():
        return 0
    return int(np.count_nonzero(mask & ~text_glyphs(img).mask))


def noise_sd(img: FloatImage, exclude: float | None = None) -> float:
    """Noise standard deviation by Immerkær's Laplacian-difference estimator, made robust.

    The 3x3 kernel [[1,-2,1],[-2,4,-2],[1,-2,1]] cancels constant and linear intensity, so on
    anatomy its response is noise (std 6 sigma for white noise) except at edges; the median
    absolute response (x 1.4826 / 6) ignores the edges. Pixels whose 3x3 window touches the
    value ``exclude`` (padding, zero background outside the body) are left out, as they carry
    no noise. A noiseless piecewise-constant image gives 0.
    """
    if img.shape[0] < 3 or img.shape[1] < 3:
        return float("nan")
    c = img[1:-1, 1:-1]
    r = (
        img[:-2, :-2] + img[:-2, 2:] + img[2:, :-2] + img[2:, 2:]
        - 2 * (img[:-2, 1:-1] + img[2:, 1:-1] + img[1:-1, :-2] + img[1:-1, 2:])
        + 4 * c
    )  # fmt: skip
    if exclude is not None:
        keep = ndimage.minimum_filter(img, size=3)[1:-1, 1:-1] > exclude
        r = r[keep]
    if r.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(r)) / 6.0)


def foreground_threshold(values: NDArray[np.float32], *, bins: int = 256) -> float:
    """Otsu's threshold between background (air) and foreground (the body).

    ``values`` is an image or the pixel values left after removing padding. Used to split signal
    from background for SNR/CNR. scikit-image's ``threshold_otsu`` on an evenly strided subsample
    of at most ~65k values (the histogram of a 512x512 slice does not need every pixel).
    """
    if values.size == 0:
        return float("nan")
    flat = values.ravel()
    sample = flat[:: max(flat.size // 65536, 1)]
    lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:
        return lo
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(sample, nbins=bins))


@dataclass(frozen=True)
class TextGlyphs:
    """Bright, glyph-sized components near the image border, and how many share a text line.

    ``mask`` marks the pixels of glyphs on a line of three or more.
    """

    n_glyphs: int
    n_aligned: int
    mask: NDArray[np.bool_]


def text_glyphs(img: FloatImage, *, border_fraction: float = 0.3) -> TextGlyphs:
    """Burned-in text likelihood: bright glyph-sized components aligned on a text line.

    Annotations are drawn at (or near) the top of the scale, as small components, in the border
    band of the image (corners and edges, where the anatomy is not), with the letters of a line
    sharing their top and bottom rows. Anatomy (bone, vessels, fat) makes bright components too,
    but they rarely line up: ``n_aligned``, the largest number of components whose top and bottom
    rows agree within a pixel, is the text signal (a line of 5+ characters gives 5+).

    Parameters
    ----------
    img
        The slice.
    border_fraction
        Width of the border band searched, as a fraction of each dimension.
    """
    rows, cols = img.shape
    lo, hi = float(np.median(img)), float(img.max())
    empty = np.zeros(img.shape, dtype=bool)
    if hi <= lo:
        return TextGlyphs(0, 0, empty)
    bright = img >= lo + 0.9 * (hi - lo)
    br, bc = max(int(rows * border_fraction), 1), max(int(cols * border_fraction), 1)
    band = np.zeros(img.shape, dtype=bool)
    band[:br], band[-br:], band[:, :bc], band[:, -bc:] = True, True, True, True
    labels, n = ndimage.label(bright & band, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return TextGlyphs(0, 0, empty)
    boxes = ndimage.find_objects(labels)
    top = np.array([b[0].start for b in boxes])
    bottom = np.array([b[0].stop for b in boxes])
    height = bottom - top
    width = np.array([b[1].stop - b[1].start for b in boxes])
    glyph = (height >= 5) & (height <= max(0.08 * rows, 6)) & (width <= 1.5 * height)
    idx = np.nonzero(glyph)[0]
    if idx.size == 0:
        return TextGlyphs(0, 0, empty)
    t, bt = top[idx], bottom[idx]
    same_line = (np.abs(t[:, None] - t[None, :]) <= 1) & (np.abs(bt[:, None] - bt[None, :]) <= 1)
    line_size = same_line.sum(axis=1)
    # the mask covers glyphs on lines of 3+ characters: lone bright blobs (metal, bone) stay out
    on_line = idx[line_size >= 3]
    mask = np.isin(labels, on_line + 1) if on_line.size else empty
    return TextGlyphs(int(idx.size), int(line_size.max()), mask)


def clipped_fraction(
    img: FloatImage, foreground: float, exclude: NDArray[np.bool_] | None = None
) -> float:
    """Fraction of foreground pixels sitting exactly at the slice's highest value.

    A windowed export or a saturated detector piles every value above the window onto the
    maximum; a native image reaches its maximum in a few pixels. Pixels in ``exclude`` (burned-in
    text, drawn at the top of the scale) are left out before the maximum is taken.
    """
    values = img[~exclude] if exclude is not None and exclude.any() else img.ravel()
    fg = values[values > foreground]
    if fg.size == 0:
        return 0.0
    return float(np.count_nonzero(fg == fg.max())) / fg.size


@dataclass(frozen=True)
class HULandmarks:
    """Where air, soft tissue and bone sit in the HU distribution of a CT series."""

    air_hu: float
    soft_tissue_hu: float
    bone_hu: float


def hu_landmarks(values: NDArray[np.float32]) -> HULandmarks:
    """Air, soft-tissue and bone landmarks of pooled CT values (padding already removed).

    ``air_hu`` is the 1st percentile (air around and inside the body: about -1000 HU);
    ``soft_tissue_hu`` the median of values 500-1300 HU above air (fat, water, muscle, brain:
    -100..80 HU when the rescale is right); ``bone_hu`` the 99.5th percentile (bone, 300 HU and
    more where the slices cross bone). A wrong RescaleIntercept shifts them all; a wrong slope
    stretches them; a windowed export squeezes air and bone into the window.
    """
    if values.size == 0:
        nan = float("nan")
        return HULandmarks(nan, nan, nan)
    air, bone = (float(v) for v in np.percentile(values, [1.0, 99.5]))
    body = values[(values > air + 500) & (values < air + 1300)]
    soft = float(np.median(body)) if body.size else float("nan")
    return HULandmarks(air, soft, bone)
