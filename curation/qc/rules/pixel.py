"""Pixel: artifact checks over ``pixel_metrics`` and ``pixel_slices`` (written by ``curation pixels``).

Rules like the others, over tables another step writes: none reads pixels (``curation pixels``,
:mod:`curation.pixels.compute`, did that), and the runner skips them while those tables are absent. Thresholds combine two things:

* an **absolute sanity bound** (a parameter with a unit), below which nothing is flagged whatever
  the cohort looks like: a metric must be bad in absolute terms, not only unusual;
* an **adaptive fence** from the cohort's own distribution: ``median + k * 1.4826 * MAD`` (or
  minus, for metrics where low is bad) within the series' group, where the group is
  (Modality, protocol) when it has at least ``min_group`` measured series, else (Modality,
  sequence) (ScanningSequence/MRAcquisitionType: EPI, spin echo, 3D gradient echo...) when that
  has, else the Modality.
  A cohort of noisy low-dose CTs then does not flag all of its members, and one noisy outlier among
  clean series is still caught.

A finding names the series and, where the metric is per slice, its worst slice (SOPInstanceUID and
path). Messages carry numbers, never identifiers.
"""

from __future__ import annotations

from curation.qc.robust import log_robust_z
from curation.qc.rule import PRIVACY, Level, Param, Rule, Severity, register

_REQUIRES = ("pixel_metrics", "pixel_slices", "series")

#: Defaults of the shared ``min_group`` and ``k`` parameters (the report's series pages use them).
MIN_GROUP = 8
K = 5.0
_MIN_GROUP = Param(
    "min_group",
    MIN_GROUP,
    "count",
    "series a (Modality, protocol) group needs to get its own fence",
)
_K = Param("k", K, "MAD", "robust SDs (1.4826 x MAD) beyond the group median that are unusual")


#: The group whose distribution a series' pixel metric is compared with (a window expression over
#: ``pixel_metrics``; binds ``$min_group``): ``Modality|p|protocol`` when that group has at least
#: min_group measured series, else ``Modality|s|sequence`` when that has, else ``Modality``. The
#: report's series pages show a series against this same group.
GROUP_SQL = """CASE
        WHEN count(*) OVER (PARTITION BY Modality, protocol) >= $min_group
            THEN coalesce(Modality, '') || '|p|' || coalesce(protocol, '')
        WHEN count(*) OVER (PARTITION BY Modality, sequence) >= $min_group
            THEN coalesce(Modality, '') || '|s|' || coalesce(sequence, '')
        ELSE coalesce(Modality, '') END"""


def _query(
    metric: str, side: str, condition: str, value: str, message: str, worst: str = ""
) -> str:
    """SQL of an adaptive rule over ``pixel_metrics``.

    ``metric`` is the column the fence is computed on; ``side`` is ``high`` (flag above
    ``median + k*sd``) or ``low``; ``condition`` may use ``fence``, the metric's columns and
    parameters; ``worst`` is an ORDER BY over ``pixel_slices`` columns that picks the slice a
    finding names (empty: none).
    """
    sign = "+" if side == "high" else "-"
    worst_join = (
        f"""LEFT JOIN (
            SELECT SeriesInstanceUID, arg_min(SOPInstanceUID, {worst}) AS SOPInstanceUID,
                   arg_min(path, {worst}) AS path
            FROM pixel_slices WHERE reason IS NULL GROUP BY SeriesInstanceUID
        ) w USING (SeriesInstanceUID)"""
        if worst
        else "LEFT JOIN (SELECT NULL::VARCHAR AS SeriesInstanceUID, NULL::VARCHAR AS "
        "SOPInstanceUID, NULL::VARCHAR AS path) w ON false"
    )
    return f"""
WITH m AS (
    SELECT pm.*, {GROUP_SQL} AS grp
    FROM pixel_metrics pm WHERE status <> 'unreadable'
), f AS (
    SELECT grp, median({metric}) {sign} $k * 1.4826 * coalesce(mad({metric}), 0) AS fence
    FROM m GROUP BY grp
), hit AS (
    SELECT m.*, f.fence FROM m JOIN f USING (grp) WHERE {condition}
)
SELECT s.PatientID, s.StudyInstanceUID, hit.SeriesInstanceUID, w.SOPInstanceUID, w.path,
       {value} AS value, {message} AS message
FROM hit LEFT JOIN (SELECT SeriesInstanceUID, PatientID, StudyInstanceUID FROM series) s
    USING (SeriesInstanceUID) {worst_join}
"""


UNREADABLE = register(
    Rule(
        id="pixel.unreadable",
        level=Level.SERIES,
        severity=Severity.ERROR,
        title="pixels cannot be decoded",
        description="Flags series with slices whose pixel data could not be read or decoded: a "
        "missing decoder for the transfer syntax, pixel data cut short, a corrupt stream, a bad "
        "gzip wrapper. value is the reason code of the first such slice "
        "(curation.pixels.read.PIXEL_ERROR_REASONS); a training job would crash or skip them.",
        not_checked="Headers that cannot be read at all (the crawl's crawl_errors and the file-level "
        "rules cover those); series that were never measured (run `curation pixels`).",
        query="""
SELECT s.PatientID, s.StudyInstanceUID, pm.SeriesInstanceUID, sl.SOPInstanceUID, sl.path,
       pm.error_reason AS value,
       pm.n_unreadable || ' of ' || pm.n_profiled + pm.n_unreadable || ' slices read are unreadable ('
           || pm.error_reason || ')' AS message
FROM pixel_metrics pm LEFT JOIN series s USING (SeriesInstanceUID)
LEFT JOIN (SELECT SeriesInstanceUID, min(SOPInstanceUID) AS SOPInstanceUID, min(path) AS path
           FROM pixel_slices WHERE reason IS NOT NULL GROUP BY ALL) sl USING (SeriesInstanceUID)
WHERE pm.status <> 'ok'
""",
        requires=_REQUIRES,
        detects=(),
    )
)

MOTION = register(
    Rule(
        id="pixel.motion_blur",
        level=Level.SERIES,
        severity=Severity.WARNING,
        title="motion blur in slices",
        description="Flags series with blurred slices (patient motion, ghosting): a slice whose "
        "edges are smeared in one direction (directional ratio, the smallest ratio of gradient "
        "energies of two orthogonal directions, ~1 when sharp, below max_ratio); or a slice "
        "whose sharpness (gradient energy / variance) is below max_sharpness_rel of the series' "
        "90th percentile and below the group fence (a run of blurred slices in a sharp series). "
        "Every slice is profiled, so a run of 3 blurred slices is not missed by sampling.",
        not_checked="Blur of a whole series in every direction alike (a smooth kernel, a "
        "low-resolution reconstruction: no sharp slice to compare with); series of fewer than "
        "min_slices slices (no within-series baseline, e.g. localizers); slices constant along an "
        "axis (projections, stripes), which are not rated.",
        query=_query(
            "sharpness_min_rel",
            "low",
            "n_slices >= $min_slices AND (directional_ratio_min < $max_ratio OR "
            "(sharpness_min_rel < $max_sharpness_rel AND sharpness_min_rel < fence))",
            "round(least(directional_ratio_min, sharpness_min_rel), 3)::VARCHAR",
            "'least sharp slice at ' || round(100 * sharpness_min_rel) || '% of the series '' "
            "sharpness (group fence ' || round(100 * fence) || '%), directional gradient ratio ' "
            "|| round(directional_ratio_min, 2) || ' (series median ' || "
            "round(directional_ratio_median, 2) || ')'",
            worst="sharpness",
        ),
        params=(
            Param("max_ratio", 0.35, "ratio", "flag a slice ratio below this whatever the cohort"),
            Param(
                "max_sharpness_rel",
                0.3,
                "fraction",
                "flag a slice below this fraction of the series' 90th-percentile sharpness",
            ),
            Param("min_slices", 3, "count", "series with fewer slices are not checked"),
            _MIN_GROUP,
            _K,
        ),
        requires=_REQUIRES,
        detects=("motion_blur",),
    )
)

# The protocol group of a series for cohort comparisons of whole-series sharpness: modality, the
# first word of Manufacturer (GE MEDICAL SYSTEMS and GE Healthcare are one vendor), the CT kernel
# (else, for MR, ScanningSequence/MRAcquisitionType), and the pixel spacing in steps of 2^(1/4)
# (19 %): sharpness per pixel falls as pixels get finer, and differs between kernels and sequences.
# Groups too small fall back to (modality, vendor, spacing), then (modality, spacing).
_VENDOR = "coalesce(upper(regexp_extract(trim(s.Manufacturer), '^[A-Za-z]+')), '?')"
_KERNEL = (
    "coalesce(nullif(upper(trim(split_part(s.ConvolutionKernel, '\\', 1))), ''), pm.sequence, '')"
)
_SPACING = "coalesce(round(4 * log2(s.PixelSpacing[1]))::VARCHAR, '?')"
# MR contrast weighting from TR/TE (T1-like short TR; T2-like long TE): T1, T2 and FLAIR series of
# one sequence family differ in sharpness by design, so they are never peers.
_CONTRAST = (
    "CASE WHEN pm.Modality = 'MR' THEN "
    "coalesce(CASE WHEN s.RepetitionTime < 1000 THEN 'shortTR' ELSE 'longTR' END, '?TR') || "
    "coalesce(CASE WHEN s.EchoTime >= 60 THEN 'longTE' ELSE 'shortTE' END, '?TE') ELSE '' END"
)

SERIES_BLUR = register(
    Rule(
        id="pixel.series_blur",
        level=Level.SERIES,
        severity=Severity.WARNING,
        title="series far less sharp than its peers",
        description="Compares each series with the other series of its protocol group in the "
        "cohort and flags one whose sharpest slices are far less sharp than theirs: a series "
        "blurred as a whole, by a wrong (too smooth) reconstruction or an upsampled "
        "low-resolution acquisition, which pixel.motion_blur cannot see because no slice of it "
        "is sharp. Sharpness is the 90th percentile over the series' slices of gradient energy / "
        "intensity variance (pixel_slices.sharpness: a blurred run of slices or a "
        "b=1000 half of a DWI series leaves it unchanged). The group is (modality, vendor, CT "
        "kernel or MR sequence, MR contrast from TR/TE, pixel spacing within 2^(1/4)) when it has "
        "min_group measured series, else (modality, vendor, contrast, spacing), else (modality, "
        "contrast, spacing). Flagged: more than "
        "k robust SDs below the group's median (log values; 1.4826 x MAD floored at log(1 + "
        "min_relative_deviation), the fence of series.outlier_value) and below max_ratio of it.",
        not_checked="Groups with fewer than min_group measured series (no peers to compare "
        "with); a protocol blurred as a whole (its median is the reference); series under "
        "min_slices slices (localizers); blur within a series (pixel.motion_blur).",
        query=f"""
WITH sharp AS (
    SELECT SeriesInstanceUID, quantile_cont(sharpness, 0.9) AS p90,
           arg_min(SOPInstanceUID, sharpness) AS SOPInstanceUID, arg_min(path, sharpness) AS path
    FROM pixel_slices WHERE reason IS NULL AND sharpness > 0 GROUP BY SeriesInstanceUID
), m0 AS (
    SELECT s.PatientID, s.StudyInstanceUID, pm.SeriesInstanceUID, sh.SOPInstanceUID, sh.path,
           sh.p90 AS sharp,
           pm.Modality || '|' || {_VENDOR} || '|' || {_KERNEL} || '|' || {_CONTRAST} || '|'
               || {_SPACING} AS g1,
           pm.Modality || '|' || {_VENDOR} || '|' || {_CONTRAST} || '|' || {_SPACING} AS g2,
           pm.Modality || '|' || {_CONTRAST} || '|' || {_SPACING} AS g3
    FROM pixel_metrics pm JOIN series s USING (SeriesInstanceUID) JOIN sharp sh USING (SeriesInstanceUID)
    WHERE pm.status <> 'unreadable' AND pm.n_slices >= $min_slices AND pm.Modality IS NOT NULL
), m AS (
    SELECT *, CASE WHEN count(*) OVER (PARTITION BY g1) >= $min_group THEN g1
                   WHEN count(*) OVER (PARTITION BY g2) >= $min_group THEN g2 ELSE g3 END AS grp
    FROM m0
), z AS ({log_robust_z("m", "sharp", "grp", "$min_relative_deviation")})
SELECT PatientID, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, path,
       round(sharp / exp(med), 3)::VARCHAR AS value,
       'sharpness ' || round(100 * sharp / exp(med)) || '% of the median of its '
           || n || ' peers (' || grp || '), ' || round(-z, 1) || ' robust SDs below' AS message
FROM z
WHERE n >= $min_group AND -z > $k AND sharp < $max_ratio * exp(med)
""",
        params=(
            Param(
                "max_ratio",
                0.4,
                "fraction",
                "flag only below this fraction of the group's median sharpness",
            ),
            Param("k", 5.0, "robust SD", "distance below the group median that is unusual"),
            Param(
                "min_relative_deviation",
                0.25,
                "fraction",
                "floor of the spread: series within this fraction of the median are never outliers",
            ),
            Param("min_group", 5, "count", "measured series a group needs"),
            Param("min_slices", 3, "count", "series with fewer slices are not compared"),
        ),
        requires=_REQUIRES,
        detects=("series_blur",),
    )
)

HIGH_NOISE = register(
    Rule(
        id="pixel.high_noise",
        level=Level.SERIES,
        severity=Severity.WARNING,
        title="noise too high",
        description="Flags series whose robust noise estimate (Immerkær, median over the sampled "
        "slices) is too high: for CT, noise_sd in HU above ct_noise_hu and the group fence; "
        "otherwise noise relative to the foreground-background contrast (noise_rel = 1/CNR) "
        "above max_noise_rel and the group fence. Low-dose CT, low-SNR MR, a failed coil.",
        not_checked="Structured noise (streaks, stripes, zippers) that the Laplacian estimate "
        "does not see as noise; MR SNR against a reference: noise_rel compares within the cohort.",
        query=_query(
            "CASE WHEN Modality = 'CT' THEN noise_sd ELSE noise_rel END",
            "high",
            "CASE WHEN Modality = 'CT' THEN noise_sd > $ct_noise_hu AND noise_sd > fence "
            "ELSE noise_rel > $max_noise_rel AND noise_rel > fence END",
            "CASE WHEN Modality = 'CT' THEN round(noise_sd, 1)::VARCHAR "
            "ELSE round(noise_rel, 3)::VARCHAR END",
            "CASE WHEN Modality = 'CT' THEN 'noise SD ' || round(noise_sd, 1) || ' HU' "
            "ELSE 'noise ' || round(100 * noise_rel, 1) || '% of the image contrast' END || "
            "' (group fence ' || round(fence, 3) || ')'",
        ),
        params=(
            Param("ct_noise_hu", 40.0, "HU", "CT noise SD above this can be flagged"),
            Param(
                "max_noise_rel",
                0.08,
                "fraction",
                "non-CT noise / contrast above this can be flagged (CNR below 12.5)",
            ),
            _MIN_GROUP,
            _K,
        ),
        requires=_REQUIRES,
        detects=("high_noise",),
    )
)

CLIPPING = register(
    Rule(
        id="pixel.clipping",
        level=Level.SERIES,
        severity=Severity.WARNING,
        title="intensities clipped",
        description="Flags series whose intensities were clipped (a windowed export, a saturated "
        "detector): the median fraction of foreground pixels piled at the slice maximum is above "
        "min_fraction and the group fence; or, for CT, air and bone are squeezed into a window "
        "narrower than ct_min_window_hu (bone_hu - air_hu) with values piled at the maximum.",
        not_checked="Clipping at the low end only (air piles at its minimum in every CT); metal "
        "saturating a few pixels (see pixel.metal); a rescale that is wrong but not clipped "
        "(pixel.hu_implausible).",
        query=_query(
            "clipped_fraction",
            "high",
            "(clipped_fraction > $min_fraction AND clipped_fraction > fence) OR "
            "(Modality = 'CT' AND bone_hu - air_hu < $ct_min_window_hu "
            "AND clipped_fraction > $ct_min_pile)",
            "round(clipped_fraction, 3)::VARCHAR",
            "round(100 * clipped_fraction, 1) || '% of foreground pixels at the maximum' || "
            "CASE WHEN Modality = 'CT' THEN ', HU from ' || round(air_hu) || ' to ' || "
            "round(bone_hu) ELSE '' END",
        ),
        params=(
            Param("min_fraction", 0.5, "fraction", "pile at the maximum above this can be flagged"),
            Param(
                "ct_min_window_hu", 600.0, "HU", "CT whose air-to-bone span is narrower is clipped"
            ),
            Param(
                "ct_min_pile", 0.01, "fraction", "CT pile at the maximum needed with a narrow span"
            ),
            _MIN_GROUP,
            _K,
        ),
        requires=_REQUIRES,
        detects=("clipping",),
    )
)

BLANK = register(
    Rule(
        id="pixel.blank_slices",
        level=Level.SERIES,
        severity=Severity.WARNING,
        title="blank slices",
        description="Flags series with at least min_blank profiled slices that hold a single "
        "value (padding excluded): no anatomy and no noise, a slice lost in reconstruction or "
        "export. Every slice is profiled by default, so one blank slice is found.",
        not_checked="Slices that are nearly blank (pure noise, no anatomy); slices outside the "
        "profile when `curation pixels --profile-step` > 1.",
        query=_query(
            "n_blank_slices",
            "high",
            "n_blank_slices >= $min_blank",
            "n_blank_slices::VARCHAR",
            "n_blank_slices || ' of ' || n_profiled || ' slices hold a single value'",
            worst="CASE WHEN blank THEN slice_index ELSE 1e9 + slice_index END",
        ),
        params=(Param("min_blank", 1, "count", "blank slices needed to flag"), _MIN_GROUP, _K),
        requires=_REQUIRES,
        detects=("blank_slices",),
    )
)

HU = register(
    Rule(
        id="pixel.hu_implausible",
        level=Level.SERIES,
        severity=Severity.ERROR,
        title="CT values are not HU",
        description="Flags CT series whose air is not where HU put it: air_hu (1st percentile of "
        "the sampled values, padding excluded) outside [min_air_hu, max_air_hu], or bone_hu (the "
        "99.5th percentile) above max_bone_hu, while the values still span at least "
        "ct_min_window_hu (so the image is not merely clipped). A wrong "
        "RescaleIntercept shifts every value, a wrong RescaleSlope stretches them; models "
        "trained on HU then see nonsense.",
        not_checked="Fields of view with no air at all (a reconstruction cropped inside the "
        "body) would be flagged falsely; water/soft tissue is reported (soft_tissue_hu) but not "
        "checked; non-CT modalities.",
        query=_query(
            "air_hu",
            "low",
            "Modality = 'CT' AND air_hu IS NOT NULL AND "
            "(air_hu < $min_air_hu OR air_hu > $max_air_hu OR bone_hu > $max_bone_hu) "
            "AND bone_hu - air_hu >= $ct_min_window_hu",
            "round(air_hu)::VARCHAR",
            "'air at ' || round(air_hu) || ' HU (expected about -1000), soft tissue at ' || "
            "coalesce(round(soft_tissue_hu)::VARCHAR, '?') || ' HU, bone (99.5th percentile) at ' || "
            "round(bone_hu) || ' HU: RescaleSlope/Intercept wrong?'",
        ),
        params=(
            Param("min_air_hu", -1250.0, "HU", "air below this is implausible"),
            Param("max_air_hu", -850.0, "HU", "air above this is implausible"),
            Param(
                "max_bone_hu",
                5000.0,
                "HU",
                "a 99.5th percentile above this is implausible (a slope error where stored air "
                "is 0 leaves air right and multiplies everything else)",
            ),
            Param("ct_min_window_hu", 600.0, "HU", "narrower spans are left to pixel.clipping"),
            _MIN_GROUP,
            _K,
        ),
        requires=_REQUIRES,
        detects=("wrong_rescale",),
    )
)

METAL = register(
    Rule(
        id="pixel.metal",
        level=Level.SERIES,
        severity=Severity.WARNING,
        title="metal (streak artifacts)",
        description="Flags CT series with metal: in some profiled slice, more than "
        "min_metal_fraction of the pixels are at or above 2500 HU (cortical bone stays below "
        "~2000), burned-in text excluded, in a series whose air is plausible HU (air_hu within "
        "[min_air_hu, max_air_hu], the values a suite gives pixel.hu_implausible). Metal implants "
        "cause dark and bright streaks that corrupt the surrounding anatomy.",
        not_checked="Streaks without saturated metal in view (photon starvation); MR "
        "susceptibility artifacts; series with implausible HU (pixel.hu_implausible first).",
        query=_query(
            "metal_fraction",
            "high",
            "Modality = 'CT' AND metal_fraction > $min_metal_fraction "
            "AND air_hu BETWEEN $min_air_hu AND $max_air_hu "
            "AND coalesce(text_aligned, 0) < 5",
            "round(metal_fraction, 5)::VARCHAR",
            "'metal (>= 2500 HU) in ' || n_metal_slices || ' slice(s), up to ' || "
            "round(100 * metal_fraction, 3) || '% of a slice'",
            worst="-metal_px",
        ),
        params=(
            Param("min_metal_fraction", 1e-4, "fraction", "metal pixels per slice needed to flag"),
            HU.param("min_air_hu"),
            HU.param("max_air_hu"),
            _MIN_GROUP,
            _K,
        ),
        requires=_REQUIRES,
        detects=("metal_streaks",),
        follows=HU.id,
    )
)

TEXT = register(
    Rule(
        id="pixel.burned_in_text",
        level=Level.SERIES,
        severity=Severity.ERROR,
        title="burned-in text",
        description="Flags series whose sampled slices show text burned into the pixels: at "
        "least min_aligned bright glyph-sized components in the border band sharing a text line "
        "(median over the sampled slices), and above the group fence. Burned-in annotations can "
        "carry patient identifiers that header de-identification does not remove.",
        not_checked="What the text says (no OCR); text inside the anatomy or dark text on a "
        "bright background; the BurnedInAnnotation header flag (a header rule checks it).",
        query=_query(
            "text_aligned",
            "high",
            "text_aligned >= $min_aligned AND text_aligned > fence",
            "text_aligned::INTEGER::VARCHAR",
            "text_aligned::INTEGER || ' glyph-like components on one line near the border'",
            worst="-text_aligned",
        ),
        params=(
            Param("min_aligned", 5, "count", "characters on one line needed to flag"),
            _MIN_GROUP,
            _K,
        ),
        requires=_REQUIRES,
        detects=("burned_in_text",),
        tags=(PRIVACY,),
    )
)

DRIFT = register(
    Rule(
        id="pixel.intensity_drift",
        level=Level.SERIES,
        severity=Severity.INFO,
        title="intensity drifts along the series",
        description="Flags non-CT series whose slice mean intensity (5-slice running median) "
        "strays from the series median by more than min_drift within-slice SDs and beyond the "
        "group fence: receiver gain changes, coil failure mid-series, signal drift in long "
        "acquisitions.",
        not_checked="CT (the mean changes with the anatomy along the body); slow drift smaller "
        "than the anatomy's own variation; not measured against planted defects (the synthetic "
        "cohort has none), hence severity info.",
        query=_query(
            "intensity_drift",
            "high",
            "Modality <> 'CT' AND intensity_drift > $min_drift AND intensity_drift > fence",
            "round(intensity_drift, 2)::VARCHAR",
            "'slice means drift by ' || round(intensity_drift, 1) || ' within-slice SDs'",
        ),
        params=(
            Param("min_drift", 2.0, "SD", "drift below this is never flagged"),
            _MIN_GROUP,
            _K,
        ),
        requires=_REQUIRES,
        detects=(),
    )
)

#: The pixel rules, in the order they are documented.
PIXEL_RULES: tuple[Rule, ...] = (
    UNREADABLE,
    MOTION,
    SERIES_BLUR,
    HIGH_NOISE,
    CLIPPING,
    BLANK,
    HU,
    METAL,
    TEXT,
    DRIFT,
)
