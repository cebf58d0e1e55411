"""The shipped rule suites, one module per concept; importing this package registers them all."""

from curation.qc.rules import completeness, geometry, heterogeneity, privacy

__all__ = ["completeness", "geometry", "heterogeneity", "privacy"]
