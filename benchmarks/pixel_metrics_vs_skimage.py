"""The hand-written pixel metrics against scikit-image's, on real CT slices: accuracy and speed.

    .venv/bin/python benchmarks/pixel_metrics_vs_skimage.py [--repeat 3]

Slices: every slice of the real GE and Philips CTs of ../shared/dicom/dcm_qa_ct (HU, 512x512), plus
the same slices with known Gaussian noise added. Compared, each pair in the same run:

* noise: :func:`curation.pixels.metrics.noise_sd` (Immerkær's Laplacian, median of absolute
  responses) vs ``skimage.restoration.estimate_sigma`` (Donoho's wavelet MAD). Truth without a
  clean reference: noise variances add, so an estimator is right when
  ``est(img + n)^2 - est(img)^2`` equals ``sigma_added^2``; the error is the relative error of the
  root of that difference, median over slices.
* blur: the profile's sharpness (gradient energy / variance on a quarter of the row pairs) vs
  ``skimage.measure.blur_effect`` (Crété-Roffet). A slice blurred by a 5-pixel motion kernel along
  the rows must rate blurrier than the other, sharp slices of its series: the score is the AUC of
  blurred vs sharp slices (1.0 = every blurred slice below every sharp one).
* whole-series blur (``pixel.series_blur``): every slice of a real CT and MR blurred as the
  synthetic cohort plants it (Gaussian sigma 3 px; 3x/4x downsampled then upsampled): the ratio of
  the 90th-percentile slice sharpness blurred / sharp, and the AUC of blurred vs sharp slices.
* text components: ``scipy.ndimage.label`` + ``find_objects`` vs ``skimage.measure.label`` +
  ``regionprops`` (the boxes of the bright components).

``estimate_sigma`` needs PyWavelets, which curation does not install: ``pip install PyWavelets``
to run this script. (Otsu's threshold is scikit-image's in curation: nothing to compare.)

Times are per slice, best of --repeat, with the ratio library / hand-written.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from curation.pixels import metrics

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "dicom" / "dcm_qa_ct" / "In"
NOISE_SD_HU = (10.0, 30.0)


def _slices() -> list[tuple[str, NDArray[np.float32]]]:
    import pydicom
    from pydicom.pixels import apply_rescale

    out = []
    for vendor in ("GE", "Philips"):
        for p in sorted(q for q in (CORPUS / vendor).rglob("*") if q.is_file()):
            ds = pydicom.dcmread(p)
            if "PixelData" not in ds:
                continue  # the Philips folder's DICOMDIR
            img = apply_rescale(ds.pixel_array, ds).astype(np.float32)
            padding = getattr(ds, "PixelPaddingValue", None)
            if padding is not None:
                metrics.fill_padding(
                    img, float(padding) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                )
            out.append((vendor, img))
    return out


def _mr_slices() -> list[NDArray[np.float32]]:
    """The 3D T1 MR of dcm_qa_frag (Siemens, JPEG 2000), every slice."""
    import pydicom

    folder = CORPUS.parents[1] / "dcm_qa_frag" / "In"
    return [
        pydicom.dcmread(p).pixel_array.astype(np.float32)
        for p in sorted(q for q in folder.rglob("*") if q.is_file())
    ]


def _series_blur(img: NDArray[np.float32], params: dict[str, object]) -> NDArray[np.float32]:
    from curation.synth.defects import apply_pixel_defect

    out = apply_pixel_defect(
        "series_blur",
        dict(params),
        img.astype(np.float64),
        rng=np.random.default_rng(0),
        position=(0.0, 0.0, 0.0),
        pixel_spacing=(1.0, 1.0),
        modality="",
    )
    return out.astype(np.float32)


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _auc(low: list[float], high: list[float]) -> float:
    """P(a blurred value < a sharp value), ties half."""
    lo, hi = np.asarray(low)[:, None], np.asarray(high)[None, :]
    return float(np.mean((lo < hi) + 0.5 * (lo == hi)))


def _motion(img: NDArray[np.float32], axis: int, length: int = 5) -> NDArray[np.float32]:
    from scipy import ndimage

    return ndimage.uniform_filter1d(img, length, axis=axis).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from scipy import ndimage
    from skimage.measure import blur_effect, label, regionprops

    slices = _slices()
    print(f"{len(slices)} real CT slices from {CORPUS}")

    # -- noise
    def hand(img: NDArray[np.float32]) -> float:
        return metrics.noise_sd(img)

    def lib(img: NDArray[np.float32]) -> float:
        from skimage.restoration import estimate_sigma

        return float(estimate_sigma(img))

    try:
        import pywt  # noqa: F401  (estimate_sigma's wavelets)

        estimators = (("noise_sd (Immerkær)", hand), ("estimate_sigma (wavelet)", lib))
    except ImportError:
        print("noise  estimate_sigma skipped: it needs PyWavelets (pip install PyWavelets)")
        estimators = (("noise_sd (Immerkær)", hand),)
    for name, est in estimators:
        rng = np.random.default_rng(0)  # the same noise for every estimator
        errors: dict[float, list[float]] = {s: [] for s in NOISE_SD_HU}
        for _, img in slices:
            base = est(img)
            for s in NOISE_SD_HU:
                noisy = img + rng.normal(0, s, img.shape).astype(np.float32)
                diff = est(noisy) ** 2 - base**2
                errors[s].append(abs(np.sqrt(max(diff, 0.0)) - s) / s)
        t = _best(lambda e=est: [e(img) for _, img in slices], args.repeat) / len(slices)
        med = ", ".join(f"+{s:g} HU: {100 * np.median(v):.1f}%" for s, v in errors.items())
        print(f"noise  {name:28s} median error {med}; {1000 * t:.2f} ms/slice")
    if len(estimators) == 2:
        t_hand = _best(lambda: [hand(img) for _, img in slices], args.repeat)
        t_lib = _best(lambda: [lib(img) for _, img in slices], args.repeat)
        print(f"noise  time ratio estimate_sigma / noise_sd = {t_lib / t_hand:.2f}")

    # -- blur. Whole-slice blur (Gaussian, sigma 1.5 px): sharpness vs 1 - blur_effect. Motion
    # (5-pixel box along the rows, then along the columns): the profile's directional ratio vs
    # blur_effect's per-axis ratio. In both, the blurred copies must rate below the sharp slices of the same series.
    def sharp_hand(img: NDArray[np.float32]) -> float:
        return metrics.slice_profile(img).sharpness

    def sharp_lib(img: NDArray[np.float32]) -> float:
        return 1.0 - float(blur_effect(img))  # blur_effect: 0 sharp .. 1 blurred

    def direction_hand(img: NDArray[np.float32]) -> float:
        return metrics.slice_profile(img).directional_ratio

    def direction_lib(img: NDArray[np.float32]) -> float:
        per_axis = [1.0 - b for b in blur_effect(img, reduce_func=None)]
        return min(per_axis) / max(per_axis)

    def gauss(img: NDArray[np.float32]) -> NDArray[np.float32]:
        return ndimage.gaussian_filter(img, 1.5).astype(np.float32)

    motion_pair = ("directional ratio", direction_hand, "blur_effect axis ratio", direction_lib)
    cases = (
        ("gaussian", gauss, "profile sharpness", sharp_hand, "1 - blur_effect", sharp_lib),
        *(
            (f"motion-{ax}", partial(_motion, axis=k), *motion_pair)
            for k, ax in ((1, "x"), (0, "y"))
        ),
    )
    for blur_name, blur, hand_name, hand_fn, lib_name, lib_fn in cases:
        for name, fn in ((hand_name, hand_fn), (lib_name, lib_fn)):
            aucs = []
            for vendor in ("GE", "Philips"):
                imgs = [img for v, img in slices if v == vendor]
                aucs.append(_auc([fn(blur(i)) for i in imgs], [fn(i) for i in imgs]))
            t = _best(lambda f=fn: [f(img) for _, img in slices], args.repeat) / len(slices)
            print(
                f"blur   {blur_name:8s} {name:24s} AUC blurred-vs-sharp GE {aucs[0]:.3f}, "
                f"Philips {aucs[1]:.3f}; {1000 * t:.2f} ms/slice"
            )

    # -- whole-series blur (pixel.series_blur): every slice of a real series blurred alike, as the
    # synthetic cohort plants it (Gaussian sigma 3 px; a 3x or 4x block-averaged image upsampled
    # back). The rule compares a series' 90th-percentile slice sharpness with its peers', so what
    # counts is how far the blurred series falls below the sharp slices of its kind: the ratio of
    # the 90th percentiles (blurred / sharp; further below 1 is easier to flag) and the AUC of
    # blurred vs sharp slices, per real series (CT: GE, Philips; MR: the 3D T1 of dcm_qa_frag).
    series = {"GE CT": [i for v, i in slices if v == "GE"]}
    series["Philips CT"] = [i for v, i in slices if v == "Philips"]
    series["Siemens T1 MR"] = _mr_slices()
    blurs = {
        "gauss3": {"variant": "gaussian", "sigma_px": 3.0},
        "up3": {"variant": "upsampled", "factor": 3},
        "up4": {"variant": "upsampled", "factor": 4},
    }
    scores = {"profile sharpness": sharp_hand, "1 - blur_effect": sharp_lib}
    for name, fn in scores.items():
        for sname, imgs in series.items():
            clean = [fn(i) for i in imgs]
            cells = []
            for bname, params in blurs.items():
                blurred = [fn(_series_blur(i, params)) for i in imgs]
                ratio = np.percentile(blurred, 90) / np.percentile(clean, 90)
                cells.append(f"{bname} ratio {ratio:.2f} AUC {_auc(blurred, clean):.2f}")
            print(f"series {name:18s} {sname:14s} " + "; ".join(cells))
    t_hand = _best(lambda: [sharp_hand(img) for _, img in slices], args.repeat)
    t_lib = _best(lambda: [sharp_lib(img) for _, img in slices], args.repeat)
    print(
        f"series time per 512x512 slice: sharpness {1000 * t_hand / len(slices):.2f} ms, "
        f"blur_effect {1000 * t_lib / len(slices):.2f} ms, ratio {t_lib / t_hand:.1f}"
    )

    # -- connected components of the bright border band and their boxes (text_glyphs)
    masks = []
    for _, img in slices:
        lo, hi = float(np.median(img)), float(img.max())
        masks.append(img >= lo + 0.9 * (hi - lo))
    s3 = np.ones((3, 3), dtype=bool)

    def boxes_ndimage(mask: NDArray[np.bool_]) -> list[tuple[int, int, int, int]]:
        labels, _ = ndimage.label(mask, structure=s3)
        return [
            (b[0].start, b[1].start, b[0].stop, b[1].stop) for b in ndimage.find_objects(labels)
        ]

    def boxes_skimage(mask: NDArray[np.bool_]) -> list[tuple[int, int, int, int]]:
        return [tuple(r.bbox) for r in regionprops(label(mask, connectivity=2))]

    same = all(boxes_ndimage(m) == boxes_skimage(m) for m in masks)
    t_hand = _best(lambda: [boxes_ndimage(m) for m in masks], args.repeat)
    t_lib = _best(lambda: [boxes_skimage(m) for m in masks], args.repeat)
    print(
        f"glyphs ndimage label+find_objects vs skimage label+regionprops: same boxes {same}; "
        f"{1000 * t_hand / len(masks):.2f} vs {1000 * t_lib / len(masks):.2f} ms/slice, "
        f"ratio {t_lib / t_hand:.1f}"
    )


if __name__ == "__main__":
    main()
