"""The catalog tables the pixel step writes: ``pixel_metrics`` (per series), ``pixel_slices``."""

from __future__ import annotations

from curation.schema import Column, Table, register


def _c(name: str, sql_type: str, description: str) -> Column:
    return Column(name, sql_type, description)


PIXEL_METRICS = register(
    Table(
        "pixel_metrics",
        "series whose pixels were measured",
        "Pixel-level quality metrics of a series, from every profiled slice (cheap statistics) "
        "and a sample of slices (full-resolution metrics); written by `curation pixels`, read by "
        "the pixel.* QC rules. Values are in modality units (HU for CT).",
        (
            _c("SeriesInstanceUID", "VARCHAR", "Series Instance UID"),
            _c(
                "Modality", "VARCHAR", "Modality of the series (the most common, if members differ)"
            ),
            _c(
                "protocol",
                "VARCHAR",
                "ProtocolName, else SeriesDescription: the group adaptive thresholds compare within",
            ),
            _c(
                "sequence",
                "VARCHAR",
                "ScanningSequence/MRAcquisitionType (e.g. EP/2D): the fallback group for small protocols",
            ),
            _c("Rows", "BIGINT", "Rows of the first slice"),
            _c("Columns", "BIGINT", "Columns of the first slice"),
            _c("n_slices", "BIGINT", "Slices in the series (frames of multi-frame objects count)"),
            _c("n_profiled", "BIGINT", "Slices read for the cheap per-slice profile"),
            _c("n_sampled", "BIGINT", "Slices given the full-resolution metrics"),
            _c("n_unreadable", "BIGINT", "Slices whose pixels could not be read"),
            _c(
                "status",
                "VARCHAR",
                "ok, partial (some slices unreadable) or unreadable (none read)",
            ),
            _c(
                "error_reason",
                "VARCHAR",
                "Reason code of the first unreadable slice (curation.pixels.read.PIXEL_ERROR_REASONS)",
            ),
            _c(
                "error_message", "VARCHAR", "What the decoder said about the first unreadable slice"
            ),
            _c("decoder", "VARCHAR", "raw (numpy, native pixel data), pydicom, or mixed"),
            _c(
                "sharpness_median",
                "DOUBLE",
                "Median over slices of mean squared neighbour difference / intensity variance",
            ),
            _c(
                "sharpness_min_rel",
                "DOUBLE",
                "Least sharp slice's sharpness / the series' 90th percentile (NULL under 3 slices)",
            ),
            _c(
                "directional_ratio_median",
                "DOUBLE",
                "Median over slices of the smallest orthogonal gradient-energy ratio (1 = isotropic)",
            ),
            _c(
                "directional_ratio_min",
                "DOUBLE",
                "Smallest per-slice directional ratio: low where motion smears edges one way",
            ),
            _c(
                "directional_ratio_min_rel",
                "DOUBLE",
                "directional_ratio_min / directional_ratio_median: a run of blurred slices in a sharp series",
            ),
            _c(
                "noise_sd",
                "DOUBLE",
                "Median over sampled slices of the robust noise SD (Immerkær), modality units",
            ),
            _c(
                "snr",
                "DOUBLE",
                "Median foreground signal / noise_sd (CT: signal above air, -1000 HU); NULL when noiseless",
            ),
            _c(
                "cnr",
                "DOUBLE",
                "(median foreground - median background) / noise_sd; NULL when noiseless",
            ),
            _c(
                "noise_rel",
                "DOUBLE",
                "noise_sd / (median foreground - median background): noise relative to the image contrast",
            ),
            _c(
                "clipped_fraction",
                "DOUBLE",
                "Median over sampled slices of the fraction of foreground pixels at the slice maximum",
            ),
            _c(
                "dynamic_range",
                "DOUBLE",
                "Median over sampled slices of max - min (text excluded), modality units",
            ),
            _c("n_blank_slices", "BIGINT", "Profiled slices holding a single value"),
            _c("blank_fraction", "DOUBLE", "n_blank_slices / n_profiled"),
            _c(
                "air_hu",
                "DOUBLE",
                "CT: 1st percentile of the sampled HU (air, about -1000 when the rescale is right)",
            ),
            _c(
                "soft_tissue_hu",
                "DOUBLE",
                "CT: median HU 500-1300 above air_hu (fat to muscle: -100..80)",
            ),
            _c(
                "bone_hu",
                "DOUBLE",
                "CT: 99.5th percentile of the sampled HU (bone, 300+ where bone is in view)",
            ),
            _c(
                "metal_fraction",
                "DOUBLE",
                "CT: largest per-slice fraction of pixels >= 2500 HU inside tissue",
            ),
            _c("n_metal_slices", "BIGINT", "CT: profiled slices with metal pixels inside tissue"),
            _c(
                "intensity_drift",
                "DOUBLE",
                "Largest deviation of the 5-slice running median of slice means from their median, "
                "in units of the median within-slice SD",
            ),
            _c(
                "text_aligned",
                "DOUBLE",
                "Median over sampled slices of the most bright glyph-sized border components on one text line",
            ),
            _c(
                "text_glyphs",
                "DOUBLE",
                "Median over sampled slices of bright glyph-sized border components",
            ),
            _c("sample", "BIGINT", "The sample size asked for (slices with full metrics)"),
            _c("profile_step", "BIGINT", "Every how many slices the profile read"),
            _c("seconds", "DOUBLE", "Wall-clock seconds spent on the series, reading included"),
            _c("computed_at", "TIMESTAMP", "When the metrics were computed"),
            _c("curation_version", "VARCHAR", "curation version that computed them"),
        ),
    )
)

PIXEL_SLICES = register(
    Table(
        "pixel_slices",
        "slice (frame) read by the pixel step",
        "Per-slice statistics behind pixel_metrics: the profile of every profiled slice and, for "
        "sampled slices, the full-resolution metrics (NULL otherwise). Lets a rule or a notebook "
        "name the worst slice of a series.",
        (
            _c("SeriesInstanceUID", "VARCHAR", "Series Instance UID"),
            _c("SOPInstanceUID", "VARCHAR", "Instance holding the slice"),
            _c("frame", "INTEGER", "0-based frame in the instance (0 for single-frame)"),
            _c(
                "slice_index", "INTEGER", "0-based place in the series (InstanceNumber, then frame)"
            ),
            _c("path", "VARCHAR", "File of the instance"),
            _c("sampled", "BOOLEAN", "True when the slice got the full-resolution metrics"),
            _c("reason", "VARCHAR", "Why the pixels could not be read (NULL when read)"),
            _c("mean", "DOUBLE", "Mean intensity (profile rows), modality units"),
            _c("std", "DOUBLE", "Intensity SD (profile rows), modality units"),
            _c("min", "DOUBLE", "Minimum, modality units"),
            _c("max", "DOUBLE", "Maximum, modality units"),
            _c("blank", "BOOLEAN", "True when the slice holds a single value"),
            _c("sharpness", "DOUBLE", "Mean squared neighbour difference / variance"),
            _c("directional_ratio", "DOUBLE", "Smallest orthogonal gradient-energy ratio"),
            _c("frac_at_max", "DOUBLE", "Fraction of pixels at the maximum"),
            _c("metal_px", "BIGINT", "CT: pixels >= 2500 HU inside tissue"),
            _c("noise_sd", "DOUBLE", "Robust noise SD (sampled slices)"),
            _c(
                "clipped_fraction",
                "DOUBLE",
                "Foreground fraction at the maximum, text excluded (sampled)",
            ),
            _c("text_aligned", "BIGINT", "Glyph components on the fullest text line (sampled)"),
        ),
    )
)
