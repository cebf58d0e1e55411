"""The catalog tables the pixel step writes: ``pixel_metrics`` (per series), ``pixel_slices``."""

from __future__ import annotations

from curation.schema import Table, col

PIXEL_METRICS = Table(
    "pixel_metrics",
    "series whose pixels were measured",
    "Pixel-level quality metrics of a series, from every profiled slice (cheap statistics) "
    "and a sample of slices (full-resolution metrics); written by `curation pixels`, read by "
    "the pixel.* QC rules. Values are in modality units (HU for CT).",
    (
        col("SeriesInstanceUID", "VARCHAR", "Series Instance UID"),
        col("Modality", "VARCHAR", "Modality of the series (the most common, if members differ)"),
        col(
            "protocol",
            "VARCHAR",
            "ProtocolName, else SeriesDescription: the group adaptive thresholds compare within",
        ),
        col(
            "sequence",
            "VARCHAR",
            "ScanningSequence/MRAcquisitionType (e.g. EP/2D): the fallback group for small protocols",
        ),
        col("Rows", "BIGINT", "Rows of the first slice"),
        col("Columns", "BIGINT", "Columns of the first slice"),
        col("n_slices", "BIGINT", "Slices in the series (frames of multi-frame objects count)"),
        col("n_profiled", "BIGINT", "Slices read for the cheap per-slice profile"),
        col("n_sampled", "BIGINT", "Slices given the full-resolution metrics"),
        col("n_unreadable", "BIGINT", "Slices whose pixels could not be read"),
        col(
            "status",
            "VARCHAR",
            "ok, partial (some slices unreadable) or unreadable (none read)",
        ),
        col(
            "error_reason",
            "VARCHAR",
            "Reason code of the first unreadable slice (curation.pixels.read.PIXEL_ERROR_REASONS)",
        ),
        col("error_message", "VARCHAR", "What the decoder said about the first unreadable slice"),
        col("decoder", "VARCHAR", "raw (numpy, native pixel data), pydicom, or mixed"),
        col(
            "sharpness_median",
            "DOUBLE",
            "Median over slices of mean squared neighbour difference / intensity variance",
        ),
        col(
            "sharpness_min_rel",
            "DOUBLE",
            "Least sharp slice's sharpness / the series' 90th percentile (NULL under 3 slices)",
        ),
        col(
            "directional_ratio_median",
            "DOUBLE",
            "Median over slices of the smallest orthogonal gradient-energy ratio (1 = isotropic)",
        ),
        col(
            "directional_ratio_min",
            "DOUBLE",
            "Smallest per-slice directional ratio: low where motion smears edges one way",
        ),
        col(
            "directional_ratio_min_rel",
            "DOUBLE",
            "directional_ratio_min / directional_ratio_median: a run of blurred slices in a sharp series",
        ),
        col(
            "noise_sd",
            "DOUBLE",
            "Median over sampled slices of the robust noise SD (Immerkær), modality units",
        ),
        col(
            "snr",
            "DOUBLE",
            "Median foreground signal / noise_sd (CT: signal above air, -1000 HU); NULL when noiseless",
        ),
        col(
            "cnr",
            "DOUBLE",
            "(median foreground - median background) / noise_sd; NULL when noiseless",
        ),
        col(
            "noise_rel",
            "DOUBLE",
            "noise_sd / (median foreground - median background): noise relative to the image contrast",
        ),
        col(
            "clipped_fraction",
            "DOUBLE",
            "Median over sampled slices of the fraction of foreground pixels at the slice maximum",
        ),
        col(
            "dynamic_range",
            "DOUBLE",
            "Median over sampled slices of max - min (text excluded), modality units",
        ),
        col("n_blank_slices", "BIGINT", "Profiled slices holding a single value"),
        col("blank_fraction", "DOUBLE", "n_blank_slices / n_profiled"),
        col(
            "air_hu",
            "DOUBLE",
            "CT: 1st percentile of the sampled HU (air, about -1000 when the rescale is right)",
        ),
        col(
            "soft_tissue_hu",
            "DOUBLE",
            "CT: median HU 500-1300 above air_hu (fat to muscle: -100..80)",
        ),
        col(
            "bone_hu",
            "DOUBLE",
            "CT: 99.5th percentile of the sampled HU (bone, 300+ where bone is in view)",
        ),
        col(
            "metal_fraction",
            "DOUBLE",
            "CT: largest per-slice fraction of pixels >= 2500 HU inside tissue",
        ),
        col("n_metal_slices", "BIGINT", "CT: profiled slices with metal pixels inside tissue"),
        col(
            "intensity_drift",
            "DOUBLE",
            "Largest deviation of the 5-slice running median of slice means from their median, "
            "in units of the median within-slice SD",
        ),
        col(
            "text_aligned",
            "DOUBLE",
            "Median over sampled slices of the most bright glyph-sized border components on one text line",
        ),
        col(
            "text_glyphs",
            "DOUBLE",
            "Median over sampled slices of bright glyph-sized border components",
        ),
        col("sample", "BIGINT", "The sample size asked for (slices with full metrics)"),
        col("profile_step", "BIGINT", "Every how many slices the profile read"),
        col("seconds", "DOUBLE", "Wall-clock seconds spent on the series, reading included"),
        col("computed_at", "TIMESTAMP", "When the metrics were computed"),
        col("curation_version", "VARCHAR", "curation version that computed them"),
    ),
)

PIXEL_SLICES = Table(
    "pixel_slices",
    "slice (frame) read by the pixel step",
    "Per-slice statistics behind pixel_metrics: the profile of every profiled slice and, for "
    "sampled slices, the full-resolution metrics (NULL otherwise). Lets a rule or a notebook "
    "name the worst slice of a series.",
    (
        col("SeriesInstanceUID", "VARCHAR", "Series Instance UID"),
        col("SOPInstanceUID", "VARCHAR", "Instance holding the slice"),
        col("frame", "INTEGER", "0-based frame in the instance (0 for single-frame)"),
        col("slice_index", "INTEGER", "0-based place in the series (InstanceNumber, then frame)"),
        col("path", "VARCHAR", "File of the instance"),
        col("sampled", "BOOLEAN", "True when the slice got the full-resolution metrics"),
        col("reason", "VARCHAR", "Why the pixels could not be read (NULL when read)"),
        col("mean", "DOUBLE", "Mean intensity (profile rows), modality units"),
        col("std", "DOUBLE", "Intensity SD (profile rows), modality units"),
        col("min", "DOUBLE", "Minimum, modality units"),
        col("max", "DOUBLE", "Maximum, modality units"),
        col("blank", "BOOLEAN", "True when the slice holds a single value"),
        col("sharpness", "DOUBLE", "Mean squared neighbour difference / variance"),
        col("directional_ratio", "DOUBLE", "Smallest orthogonal gradient-energy ratio"),
        col("frac_at_max", "DOUBLE", "Fraction of pixels at the maximum"),
        col("metal_px", "BIGINT", "CT: pixels >= 2500 HU inside tissue"),
        col("noise_sd", "DOUBLE", "Robust noise SD (sampled slices)"),
        col(
            "clipped_fraction",
            "DOUBLE",
            "Foreground fraction at the maximum, text excluded (sampled)",
        ),
        col("text_aligned", "BIGINT", "Glyph components on the fullest text line (sampled)"),
    ),
)

PIXEL_TABLES = (PIXEL_METRICS, PIXEL_SLICES)
