"""What a site summary counts: every distribution declared once, with its fixed bins.

A site summary (:mod:`curation.federate.summary`) is a set of distributions of series over the
values of one attribute, within one modality. Numeric attributes are counted on the fixed bins
declared here, never on the values themselves, so that the distributions of any two sites have the
same cells and can be added up; categorical attributes are counted on their values.

Every attribute says whether its values come from a **closed** vocabulary (bins, the harmonized
vendor names, series types, body parts, the contrast flag, transfer syntax names, years): the label
of a suppressed cell may then be shown, since it can only be one of the declared values; or from
an **open** one (Manufacturer, model, software version, kernel as the devices write them): the
label of a suppressed cell is never shown, as a string written by a person or a device at one site
may say more than a count.

The categorical value expressions of the cross-site heterogeneity rule (``cohort.site_shortcut``,
:mod:`curation.qc.rules.heterogeneity`) are reused unchanged, so that a federated finding on a
categorical attribute is the rule's finding; numeric attributes are the rule's rounded values put
into these bins (see docs/federated.md for what that changes).

Bins are part of the summary's format: changing an edge is a new :data:`BINS_VERSION`, and
``curation federate`` refuses to add up summaries whose bins differ.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from curation.qc.rules.heterogeneity import CATEGORICAL, NUMERIC

#: Version of the bin declarations below; part of every summary.
BINS_VERSION = 1

#: Label of the cell of series that do not record the attribute.
NOT_RECORDED = "(not recorded)"


@dataclass(frozen=True)
class Bins:
    """Fixed bins of one numeric attribute: ``[e0, e1)``, ``[e1, e2)``, ... plus the two open ends.

    Parameters
    ----------
    unit
        Unit of the values (``mm``, ``kV``, ``ms``, ``T``, ``s/mm2``, ``pixels``, ``ratio``).
    edges
        Ascending bin edges. A value below the first edge falls in ``< e0``, at or above the last
        in ``>= en``.
    """

    unit: str
    edges: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.edges or list(self.edges) != sorted(set(self.edges)):
            raise ValueError(f"bin edges must be strictly ascending: {self.edges}")

    @property
    def labels(self) -> tuple[str, ...]:
        """The cell labels, lowest first."""
        e = [f"{x:g}" for x in self.edges]
        inner = [f"[{a}, {b})" for a, b in itertools.pairwise(e)]
        return (f"< {e[0]}", *inner, f">= {e[-1]}")

    def case_sql(self, expr: str) -> str:
        """SQL mapping the numeric ``expr`` to its cell label (NULL stays NULL)."""
        labels = self.labels
        whens = [f"WHEN ({expr}) < {self.edges[0]!r} THEN '{labels[0]}'"]
        whens += [
            f"WHEN ({expr}) < {hi!r} THEN '{labels[i + 1]}'" for i, hi in enumerate(self.edges[1:])
        ]
        return f"CASE WHEN ({expr}) IS NULL THEN NULL {' '.join(whens)} ELSE '{labels[-1]}' END"

    def label_of(self, x: float) -> str:
        """The label of the cell ``x`` falls in (what :meth:`case_sql` gives in SQL)."""
        i = sum(1 for e in self.edges if x >= e)
        return self.labels[i]

    def representatives(self) -> dict[str, float]:
        """A value inside each cell (its lower edge; half the first edge for the first cell)."""
        return dict(zip(self.labels, (self.edges[0] / 2, *self.edges), strict=True))

    def to_json(self) -> dict[str, object]:
        """The bins as the summary writes them (``unit``, ``edges``)."""
        return {"unit": self.unit, "edges": list(self.edges)}


@dataclass(frozen=True)
class Attribute:
    """One distribution a summary holds per modality.

    Parameters
    ----------
    name
        The attribute's name in the summary: a DICOM keyword where the value is that attribute
        (rounded as the heterogeneity rules round it), else snake_case with the unit.
    sql
        SQL over the summary's per-series view (``series`` joined with ``harmonized_series``,
        ``pixel_metrics`` and the study's date); for binned attributes the numeric value.
    description
        One line: what is counted.
    bins
        Fixed bins for a numeric attribute; None for a categorical one.
    closed
        True when every value comes from a declared vocabulary (see the module docstring).
    needs
        Catalog table the value comes from besides ``series`` (None: series, harmonized_series).
    """

    name: str
    sql: str
    description: str
    bins: Bins | None = None
    closed: bool = False
    needs: str | None = None

    def value_sql(self) -> str:
        """SQL of the cell label of one series (NULL when not recorded)."""
        if self.bins is not None:
            return self.bins.case_sql(self.sql)
        return f"CAST(({self.sql}) AS VARCHAR)"


def transfer_syntax_sql(expr: str) -> str:
    """SQL naming the transfer syntax UID ``expr`` as the standard does (pydicom's dictionary);
    a UID the standard does not define (a private one) is ``(other)``: a summary holds no UID."""
    from pydicom.uid import UID_dictionary

    whens = " ".join(
        f"WHEN ({expr}) = '{uid}' THEN '{name.replace(chr(39), chr(39) * 2)}'"
        for uid, (name, kind, *_rest) in sorted(UID_dictionary.items())
        if kind == "Transfer Syntax"
    )
    return f"CASE WHEN ({expr}) IS NULL THEN NULL {whens} ELSE '(other)' END"


#: The heterogeneity rule's categorical values, as a summary counts them: its contrast flag is a
#: closed vocabulary; its transfer syntax UID is counted by the syntax's name.
_RULE_CATEGORICAL: dict[str, tuple[str, bool]] = {
    name: (
        transfer_syntax_sql(expr) if name == "TransferSyntaxUID" else expr,
        name in ("ContrastBolusAgent", "TransferSyntaxUID"),
    )
    for name, expr in CATEGORICAL.items()
}

# Bins: edges between the values scanners commonly write, so that a common value keeps a cell of
# its own (1 mm and 1.25 mm slices, 0.7 and 0.8 mm pixels, 1.5 T and 3 T) and sites can be compared
# on them; the ends are open so that nothing falls outside.
SLICE_THICKNESS = Bins(
    "mm", (0.55, 0.7, 0.9, 1.1, 1.4, 1.75, 2.25, 2.75, 3.5, 4.5, 5.5, 7.0, 9.0, 12.0)
)
PIXEL_SPACING = Bins(
    "mm", (0.3, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95, 1.1, 1.3, 1.6, 2.0, 2.5, 3.5, 5.0)
)
MATRIX = Bins("pixels", (96, 160, 224, 288, 352, 448, 576, 800, 1200, 2400))
KVP = Bins("kV", (75, 90, 105, 115, 125, 130, 135, 145))
FIELD_STRENGTH = Bins("T", (0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 8.0))
REPETITION_TIME = Bins("ms", (10, 100, 300, 600, 1000, 2000, 3500, 5000, 8000, 12000))
ECHO_TIME = Bins("ms", (3, 6, 10, 20, 40, 70, 100, 130, 200))
B_VALUE = Bins("s/mm2", (1, 150, 350, 600, 850, 1100, 1600, 2200, 3500))
N_SLICES = Bins("slices", (2, 10, 30, 60, 120, 250, 500, 1000))
SNR = Bins("ratio", (1, 2, 5, 10, 20, 40, 80, 160))
NOISE_REL = Bins("fraction", (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5))
FRACTION = Bins("fraction", (0.001, 0.01, 0.05, 0.1, 0.25, 0.5))


def _rule_numeric(name: str) -> str:
    """The heterogeneity rule's rounded value of ``name``, over the summary's view."""
    return NUMERIC[name]


#: Every distribution of a summary, per modality, in the order the summary lists them.
ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(
        "vendor", "vendor", "harmonized vendor name (curation/harmonize/vendors.py)", closed=True
    ),
    *(
        Attribute(name, expr, f"{name} as the heterogeneity rule compares it", closed=closed)
        for name, (expr, closed) in _RULE_CATEGORICAL.items()
    ),
    Attribute("series_type", "series_type", "harmonized series type", closed=True),
    Attribute("body_part", "body_part", "harmonized body part", closed=True),
    Attribute("year", "acquisition_year", "year of the series (else study) date", closed=True),
    Attribute(
        "SliceThickness", _rule_numeric("SliceThickness"), "slice thickness", SLICE_THICKNESS, True
    ),
    Attribute(
        "PixelSpacing", _rule_numeric("PixelSpacing"), "row pixel spacing", PIXEL_SPACING, True
    ),
    Attribute("matrix", "greatest(Rows, Columns)", "larger of Rows and Columns", MATRIX, True),
    Attribute("KVP", _rule_numeric("KVP"), "peak kilovoltage", KVP, True),
    Attribute(
        "MagneticFieldStrength",
        _rule_numeric("MagneticFieldStrength"),
        "magnetic field strength",
        FIELD_STRENGTH,
        True,
    ),
    Attribute("RepetitionTime", _rule_numeric("RepetitionTime"), "TR", REPETITION_TIME, True),
    Attribute("EchoTime", _rule_numeric("EchoTime"), "TE", ECHO_TIME, True),
    Attribute("max_b_value", "max_b_value_s_mm2", "largest diffusion b-value", B_VALUE, True),
    Attribute("n_instances", "n_instances", "instances (slices) of the series", N_SLICES, True),
    Attribute("snr", "snr", "pixel metric: signal-to-noise ratio", SNR, True, "pixel_metrics"),
    Attribute(
        "noise_rel", "noise_rel", "pixel metric: relative noise", NOISE_REL, True, "pixel_metrics"
    ),
    Attribute(
        "clipped_fraction",
        "clipped_fraction",
        "pixel metric: fraction of clipped pixels",
        FRACTION,
        True,
        "pixel_metrics",
    ),
    Attribute(
        "blank_fraction",
        "blank_fraction",
        "pixel metric: fraction of blank slices",
        FRACTION,
        True,
        "pixel_metrics",
    ),
)

BY_NAME: dict[str, Attribute] = {a.name: a for a in ATTRIBUTES}


def bins_json() -> dict[str, dict[str, object]]:
    """Every binned attribute's bins, as the summary records them."""
    return {a.name: a.bins.to_json() for a in ATTRIBUTES if a.bins is not None}


#: What a modality code may look like to leave a site (DICOM CS: upper case, digits, _, space).
_CS = re.compile(r"^[A-Z0-9_ ]{1,16}$")


def modality_sql(column: str = "Modality") -> str:
    """SQL of the modality label: the code when it is a well-formed DICOM CS value, else ``(invalid)``."""
    return (
        f"CASE WHEN {column} IS NULL THEN '{NOT_RECORDED}' "
        f"WHEN regexp_full_match({column}, '{_CS.pattern[1:-1]}') THEN {column} ELSE '(invalid)' END"
    )
