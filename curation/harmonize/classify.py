"""Series type from headers: CT localizer/axial/reformat, contrast phase, kernel class, body part; MR
localizer/T1/T2/FLAIR/DWI/ADC/derived.

Each classification is a declaration: an ordered tuple of ``(label, SQL condition)``; the first
condition that holds gives the label (a SQL ``CASE``). Conditions read the columns of the per-series
row of ``harmonized_series``' select (:mod:`curation.harmonize.tables`) (series attributes, the first image's acquisition
parameters, harmonized b-values, and ``localizer_fraction``: the share of instances whose ImageType
says LOCALIZER, so that one embedded localizer slice does not turn an axial series into a localizer).
Acquisition parameters come first; descriptions are the fallback, because sites name series freely.
"""

from __future__ import annotations

# Text the description rules search: SeriesDescription and ProtocolName, upper case.
_DESC = "upper(coalesce(\"SeriesDescription\", '') || ' ' || coalesce(\"ProtocolName\", ''))"


def _desc(regex: str) -> str:
    return f"regexp_matches({_DESC}, '{regex}')"


_LOCALIZER = "localizer_fraction > 0.5 OR " + _desc(
    r"SCOUT|TOPOGRAM|SURVIEW|SCANOGRAM|LOCALI[SZ]ER|LOCATOR|SURVEY|3.?PLANE.?LOC|\bLOC\b"
)

#: MR series type, first match wins.
MR_SERIES_TYPES: tuple[tuple[str, str], ...] = (
    ("mr_localizer", _LOCALIZER),
    ("mr_adc", "list_contains(image_type, 'ADC') OR " + _desc(r"\bADC\b|APPARENT DIFF")),
    (
        "mr_dwi",
        "max_b_value_s_mm2 > 0 OR list_contains(image_type, 'DIFFUSION') OR "
        + _desc(r"DWI|DIFF|DTI|TRACE|TENSOR"),
    ),
    ("mr_derived", "image_type[1] = 'DERIVED'"),
    # FLAIR: long inversion (fluid nulling) with a long TR; T1-FLAIR/MPRAGE invert at 300-1500 ms.
    (
        "mr_flair",
        "(inversion_time_ms >= 1500 AND repetition_time_ms >= 4000) OR ("
        + _desc(r"FLAIR|DARK.?FLUID|TIRM")
        + " AND NOT "
        + _desc(r"T1")
        + ")",
    ),
    (
        "mr_t1",
        "(repetition_time_ms < 1000 AND echo_time_ms < 30) "
        "OR (inversion_time_ms BETWEEN 300 AND 1500 AND echo_time_ms < 30) "
        "OR (repetition_time_ms IS NULL AND " + _desc(r"T1|MPRAGE|SPGR|TFE|BRAVO|MP.?RAGE") + ")",
    ),
    (
        "mr_t2",
        "(repetition_time_ms >= 2000 AND echo_time_ms >= 60) "
        "OR (repetition_time_ms IS NULL AND " + _desc(r"T2") + ")",
    ),
)

#: CT series type, first match wins.
CT_SERIES_TYPES: tuple[tuple[str, str], ...] = (
    ("ct_localizer", _LOCALIZER),
    # Slice normal mostly along z (or unknown: mixed orientations keep the axial default).
    (
        "ct_axial",
        '"ImageOrientationPatient" IS NULL OR abs("ImageOrientationPatient"[1] * "ImageOrientationPatient"[5]'
        ' - "ImageOrientationPatient"[2] * "ImageOrientationPatient"[4]) > 0.7',
    ),
    ("ct_reformat", "true"),
)

_AGENT = "nullif(trim(coalesce(\"ContrastBolusAgent\", '')), '') IS NOT NULL"

#: Contrast phase (CT) or enhancement (MR), first match wins.
CT_CONTRAST_PHASES: tuple[tuple[str, str], ...] = (
    ("arterial", _desc(r"ARTERIAL|\bART\b|\bCTA\b|ANGIO")),
    ("portal_venous", _desc(r"PORTAL|VENOUS|\bVEN\b|\bPV\b")),
    ("delayed", _desc(r"DELAY|\bDEL\b|\bLATE\b")),
    ("non_contrast", f"NOT ({_AGENT}) OR " + _desc(r"NON.?CON|\bNAT\b|PLAIN|\bNC\b")),
    ("contrast_unknown_phase", "true"),
)
MR_CONTRAST_PHASES: tuple[tuple[str, str], ...] = (
    ("post_contrast", f"{_AGENT} OR " + _desc(r"\+C\b|POST|_CE\b|\bCE\b|GAD|\bKM\b|_KM\b|\+GD")),
    ("non_contrast", "true"),
)

# Kernel classes from vendor naming conventions (the kernel's first value, upper case):
# Siemens letter + sharpness (B/Br/I/Q body, H/Hr head, Bl lung); GE names; Philips letters;
# Canon FC numbers.
KERNEL_CLASSES: tuple[tuple[str, str], ...] = (
    (
        "lung",
        r"regexp_matches(kernel, '^(LUNG|L|LA|LB|FC5[0-9]|FC8[0-9]|BL[0-9].*|I7[0-9].*|B7[0-9].*|BR6[0-9].*)$')",
    ),
    (
        "bone",
        r"regexp_matches(kernel, '^(BONE|BONEPLUS|EDGE|YC|YD|D|E|FC3[0-9]|H6[0-9].*|H7[0-9].*|HR6[0-9].*|BR7[0-9].*|I8[0-9].*)$')",
    ),
    (
        "brain",
        r"regexp_matches(kernel, '^(UB|UC|FC2[0-9]|H[0-5][0-9].*|HR[0-5][0-9].*)$')",
    ),
    ("soft", "kernel IS NOT NULL"),
)

#: Body part, from BodyPartExamined, then the descriptions (series and study).
BODY_PARTS: tuple[tuple[str, str], ...] = (
    ("head", r"regexp_matches(body_text, 'HEAD|BRAIN|SKULL|CRANI|NEURO')"),
    ("chest", r"regexp_matches(body_text, 'CHEST|THORAX|LUNG|PULM')"),
    ("abdomen", r"regexp_matches(body_text, 'ABD|LIVER|PELVIS|KIDNEY')"),
    ("spine", r"regexp_matches(body_text, 'SPINE|LSPINE|CSPINE|TSPINE')"),
    ("knee", r"regexp_matches(body_text, 'KNEE')"),
)


def case_sql(rules: tuple[tuple[str, str], ...], default: str = "NULL") -> str:
    """A SQL CASE giving the label of the first rule whose condition holds."""
    whens = " ".join(f"WHEN {cond} THEN '{label}'" for label, cond in rules)
    return f"CASE {whens} ELSE {default} END"


def classification_sql() -> dict[str, str]:
    """Column name -> SQL expression of each classification, over the per-series row."""
    kernel_class = case_sql(KERNEL_CLASSES)
    mr_type = case_sql(MR_SERIES_TYPES, "'mr_other'")
    return {
        "series_type": (
            f"CASE WHEN \"Modality\" = 'MR' THEN {mr_type} "
            f"WHEN \"Modality\" = 'CT' THEN {case_sql(CT_SERIES_TYPES)} END"
        ),
        "contrast_phase": (
            f"CASE WHEN \"Modality\" = 'CT' THEN {case_sql(CT_CONTRAST_PHASES)} "
            f"WHEN \"Modality\" = 'MR' THEN {case_sql(MR_CONTRAST_PHASES)} END"
        ),
        # A soft-tissue kernel reconstructed for a head is a brain kernel.
        "kernel_class": (
            f"CASE WHEN \"Modality\" <> 'CT' THEN NULL "
            f"WHEN ({kernel_class}) = 'soft' AND body_part = 'head' THEN 'brain' ELSE {kernel_class} END"
        ),
    }


def body_part_sql() -> str:
    """SQL of ``body_part``: BodyPartExamined first, then the series and study descriptions."""
    first = case_sql(BODY_PARTS).replace("body_text", "upper(coalesce(\"BodyPartExamined\", ''))")
    second = case_sql(BODY_PARTS).replace(
        "body_text",
        "upper(coalesce(\"SeriesDescription\", '') || ' ' || coalesce(\"StudyDescription\", ''))",
    )
    return f"coalesce({first}, {second})"
