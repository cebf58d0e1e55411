"""The shipped rules, one module per concept; importing this package registers them all."""

from curation.qc.rules import completeness, geometry, heterogeneity, pixel, privacy

__all__ = ["completeness", "geometry", "heterogeneity", "pixel", "privacy"]
