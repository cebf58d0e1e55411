"""Pixel-level artifact QC: read a series' pixels and measure them; the ``pixel.*`` rules over the
measures are QC rules like the others (:mod:`curation.qc.rules.pixel`).

- :mod:`curation.pixels.read` — slices to ``float32`` images (every transfer syntax, multi-frame,
  rescale to HU), errors as reason codes; a whole series as a SimpleITK image
- :mod:`curation.pixels.sample` — which slices are read, in which order
- :mod:`curation.pixels.metrics` — the metric functions, one per measure
- :mod:`curation.pixels.compute` — :func:`compute`: series in parallel into ``pixel_metrics``
- :mod:`curation.pixels.tables` — the ``pixel_metrics`` and ``pixel_slices`` tables
- :mod:`curation.pixels.draw` — drawing a slice as a PNG thumbnail (the report chooses which)

See ``docs/pixels.md``.
"""

from __future__ import annotations

from curation.pixels.compute import ComputeSummary, compute
from curation.pixels.read import (
    PIXEL_ERROR_REASONS,
    PixelReadError,
    SliceRef,
    read_slices,
    series_image,
)
from curation.pixels.sample import DEFAULT_SAMPLE, sample_indices, slice_table

__all__ = [
    "DEFAULT_SAMPLE",
    "PIXEL_ERROR_REASONS",
    "ComputeSummary",
    "PixelReadError",
    "SliceRef",
    "compute",
    "read_slices",
    "sample_indices",
    "series_image",
    "slice_table",
]
