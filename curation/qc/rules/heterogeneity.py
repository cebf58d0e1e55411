"""Heterogeneity: values that are rare or extreme in the cohort, and site-level shortcuts.

A model learns whatever separates its training data. When one site scans 5 mm slices and the others
1 mm, or stores the b-value in a private tag no other vendor uses, the site (and whatever label is
correlated with it) can be read off the acquisition instead of the anatomy. These rules compare each
series with the cohort and each site with the other sites, per modality, on the ``series`` table.

The site of a series is its InstitutionName, else its StationName, else its Manufacturer + model.
"""

from __future__ import annotations

from curation.qc.robust import log_robust_z
from curation.qc.rule import Level, Param, Rule, Severity, register

SITE = "coalesce(InstitutionName, StationName, Manufacturer || ' ' || ManufacturerModelName, '?')"

#: Categorical attributes compared across the cohort (series table columns), as text.
CATEGORICAL = {
    "Manufacturer": "Manufacturer",
    "ManufacturerModelName": "ManufacturerModelName",
    "SoftwareVersions": "SoftwareVersions",
    "ConvolutionKernel": "ConvolutionKernel",
    "ContrastBolusAgent": "CASE WHEN ContrastBolusAgent IS NULL THEN 'none' ELSE 'given' END",
    "TransferSyntaxUID": "TransferSyntaxUID",
}
#: Numeric attributes, rounded so that float noise does not make categories.
NUMERIC = {
    "SliceThickness": "round(SliceThickness, 2)",
    "PixelSpacing": "round(PixelSpacing[1], 2)",
    "KVP": "round(KVP, 0)",
    "MagneticFieldStrength": "round(MagneticFieldStrength, 1)",
    "RepetitionTime": "round(RepetitionTime, 0)",
    "EchoTime": "round(EchoTime, 1)",
}


def _long_sql(attributes: str) -> str:
    """series as (series, modality, site, attribute, value) rows for the ``$attributes`` chosen."""
    parts = [
        f"SELECT PatientID, StudyInstanceUID, SeriesInstanceUID, Modality, {SITE} AS site, "
        f"'{name}' AS attribute, ({expr})::VARCHAR AS val FROM series"
        for name, expr in {**CATEGORICAL, **NUMERIC}.items()
    ]
    return f"""
        SELECT * FROM ({" UNION ALL ".join(parts)})
        WHERE val IS NOT NULL AND Modality IS NOT NULL AND list_contains({attributes}, attribute)
    """


RARE_CATEGORY = register(
    Rule(
        id="series.rare_value",
        level=Level.SERIES,
        severity=Severity.INFO,
        title="rare acquisition value",
        description="Within its modality, the series has a value (manufacturer, model, software, "
        "kernel, contrast, transfer syntax, rounded thickness, spacing, kVp, field strength, TR, TE) "
        "that fewer than max_share of the modality's series share: too few examples for a model to "
        "learn from, and a candidate for exclusion or harmonization.",
        not_checked="Modalities with fewer than min_series series (nothing is rare in a handful); "
        "whether the value is wrong (a rare value can be right).",
        query=f"""
            WITH long AS ({_long_sql("$attributes")}),
            counted AS (
                SELECT *, count(*) OVER (PARTITION BY Modality, attribute, val) AS n_val,
                    count(*) OVER (PARTITION BY Modality, attribute) AS n_all
                FROM long
            )
            SELECT PatientID, StudyInstanceUID, SeriesInstanceUID, NULL::VARCHAR, NULL::VARCHAR,
                attribute || '=' || val,
                attribute || ' ' || val || ' is shared by ' || n_val || ' of ' || n_all || ' '
                    || Modality || ' series (' || round(100.0 * n_val / n_all, 2) || ' %)'
            FROM counted
            WHERE n_all >= $min_series AND n_val::DOUBLE / n_all < $max_share
        """,
        params=(
            Param("max_share", 0.01, "fraction", "values held by fewer series are rare"),
            Param("min_series", 100, "count", "modalities with fewer series are not checked"),
            Param(
                "attributes",
                [
                    "Manufacturer",
                    "ManufacturerModelName",
                    "ConvolutionKernel",
                    "ContrastBolusAgent",
                    "SliceThickness",
                    "PixelSpacing",
                    "KVP",
                    "MagneticFieldStrength",
                ],
                "",
                f"attributes compared, among {', '.join([*CATEGORICAL, *NUMERIC])}",
            ),
        ),
        requires=("series",),
    )
)


#: Numeric attributes series.outlier_value compares, as SQL over ``series``.
OUTLIER_ATTRIBUTES = {
    "SliceThickness": "SliceThickness",
    "PixelSpacing": "PixelSpacing[1]",
    "KVP": "KVP",
    "RepetitionTime": "RepetitionTime",
    "EchoTime": "EchoTime",
}
# One row per series and attribute; values are rounded for messages with ties to even (round_even),
# the IEEE default, so that 1.40625 mm reads 1.4062 as it did when this rule was computed in polars.
_OUTLIER_LONG = " UNION ALL ".join(
    f"SELECT PatientID, StudyInstanceUID, SeriesInstanceUID, Modality, '{name}' AS attribute, "
    f"({expr})::DOUBLE AS x FROM series WHERE Modality IS NOT NULL"
    for name, expr in OUTLIER_ATTRIBUTES.items()
)


OUTLIER_VALUE = register(
    Rule(
        id="series.outlier_value",
        level=Level.SERIES,
        severity=Severity.INFO,
        title="outlying acquisition value",
        description="Within its modality, a numeric acquisition value (slice thickness, pixel "
        "spacing, kVp, TR, TE) is more than max_z robust standard deviations (1.4826 x MAD, of log "
        "values) from the median, the spread floored at min_relative_deviation of the median "
        "(the fence of pixel.series_blur, curation.qc.robust).",
        not_checked="Modalities with fewer than min_series series; multimodal distributions "
        "(MR sequences differ by design: TR/TE are off by default); values <= 0.",
        query=f"""
WITH long AS (SELECT * FROM ({_OUTLIER_LONG}) WHERE list_contains($attributes, attribute)),
z AS ({log_robust_z("long", "x", "Modality, attribute", "$min_relative_deviation")})
SELECT PatientID, StudyInstanceUID, SeriesInstanceUID, NULL::VARCHAR, NULL::VARCHAR,
    attribute || '=' || round_even(x, 4)::VARCHAR,
    attribute || ' ' || round_even(x, 4)::VARCHAR || ' is ' || round_even(abs(z), 1)::VARCHAR
        || ' robust SDs from the ' || Modality || ' median ' || round_even(exp(med), 4)::VARCHAR
FROM z
WHERE n >= $min_series AND abs(z) > $max_z
""",
        params=(
            Param("max_z", 5.0, "robust SD", "larger distances are outliers"),
            Param("min_series", 30, "count", "smaller groups are not checked"),
            Param(
                "min_relative_deviation",
                0.25,
                "fraction",
                "floor of the spread: values within this fraction of the median are never outliers",
            ),
            Param(
                "attributes",
                ["SliceThickness", "PixelSpacing", "KVP"],
                "",
                f"attributes compared, among {', '.join(OUTLIER_ATTRIBUTES)}",
            ),
        ),
        requires=("series",),
    )
)

SITE_SHORTCUT = register(
    Rule(
        id="cohort.site_shortcut",
        level=Level.COHORT,
        severity=Severity.WARNING,
        title="site-specific acquisition value",
        description="One site's series of a modality share a value (at least min_dominance of "
        "them) that at most max_elsewhere of the other sites' series have: e.g. a site that "
        "scans only 5 mm while the rest scan 1 mm, or the only site with a given vendor or "
        "kernel. A model can learn the site from that value, and any label correlated with the "
        "site with it. One finding per site, modality and attribute.",
        not_checked="Correlation with labels (the cohort step knows them); sites or remaining "
        "cohorts with fewer than min_series series of the modality.",
        query=f"""
            WITH long AS ({_long_sql("$attributes")}),
            per_site AS (
                SELECT Modality, attribute, site, val, count(*) AS n,
                    sum(count(*)) OVER (PARTITION BY Modality, attribute, site) AS n_site,
                    sum(count(*)) OVER (PARTITION BY Modality, attribute, val) AS n_val,
                    sum(count(*)) OVER (PARTITION BY Modality, attribute) AS n_all
                FROM long GROUP BY Modality, attribute, site, val
            )
            SELECT NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR,
                Modality || ' ' || attribute || '=' || val || ' @ ' || site,
                'site ' || site || ': ' || attribute || ' ' || val || ' in '
                    || round(100.0 * n / n_site) || ' % of its ' || n_site || ' ' || Modality
                    || ' series, ' || round(100.0 * (n_val - n) / (n_all - n_site), 1)
                    || ' % of the other sites'' ' || (n_all - n_site)
            FROM per_site
            WHERE n_site >= $min_series AND n_all - n_site >= $min_series
                AND n::DOUBLE / n_site >= $min_dominance
                AND (n_val - n)::DOUBLE / (n_all - n_site) <= $max_elsewhere
        """,
        params=(
            Param("min_dominance", 0.9, "fraction", "share of the site's series with the value"),
            Param("max_elsewhere", 0.1, "fraction", "largest share of other sites' series"),
            Param("min_series", 10, "count", "fewest series on either side"),
            Param(
                "attributes",
                [
                    "Manufacturer",
                    "ManufacturerModelName",
                    "ConvolutionKernel",
                    "ContrastBolusAgent",
                    "TransferSyntaxUID",
                    "SliceThickness",
                    "PixelSpacing",
                    "KVP",
                    "MagneticFieldStrength",
                ],
                "",
                f"attributes compared, among {', '.join([*CATEGORICAL, *NUMERIC])}",
            ),
        ),
        requires=("series",),
    )
)

#: Where vendors store one acquisition parameter: (parameter, public tag or private creator,
#: tag or creator-relative element). Element rows are matched on creator + offset, never on the raw
#: group/element a vendor happened to reserve.
PARAMETER_LOCATIONS: tuple[tuple[str, str | None, str], ...] = (
    ("diffusion b-value", None, "00189087"),
    ("diffusion b-value", "GEMS_PARM_01", "0043xx39"),
    ("diffusion b-value", "SIEMENS MR HEADER", "0019xx0C"),
    ("diffusion b-value", "Philips Imaging DD 001", "2001xx03"),
    ("diffusion b-value", "Image Private Header", "0065xx09"),
    ("diffusion gradient direction", None, "00189089"),
    ("diffusion gradient direction", "GEMS_ACQU_01", "0019xxBB"),
    ("diffusion gradient direction", "SIEMENS MR HEADER", "0019xx0E"),
    ("diffusion gradient direction", "Philips MR Imaging DD 001", "2005xxB0"),
    ("slice timing", "SIEMENS MR HEADER", "0019xx29"),
    ("slice timing", None, "00189095"),
)


def _locations_values() -> str:
    rows = [
        f"('{p}', {('NULL' if c is None else repr(c))}, '{t}')" for p, c, t in PARAMETER_LOCATIONS
    ]
    return ", ".join(rows)


PARAMETER_LOCATIONS_RULE = register(
    Rule(
        id="cohort.parameter_locations",
        level=Level.COHORT,
        severity=Severity.WARNING,
        title="one parameter, several tags",
        description="The cohort stores one acquisition parameter (b-value, gradient direction, "
        "slice timing) in different places: the public tag for some series, a vendor's private "
        "tag for others. A harmonization step must read every location, or the parameter is "
        "silently missing for some vendors (and the gap is vendor- and thus site-specific). Known "
        "locations are declared in PARAMETER_LOCATIONS.",
        not_checked="Private locations not declared in PARAMETER_LOCATIONS; whether the values "
        "agree where several locations are present in one instance; encodings (GE's 1e9 offset).",
        query=f"""
            WITH loc(parameter, creator, element) AS (VALUES {_locations_values()}),
            -- two equi-joins rather than one OR-join: elements is the largest table
            hits AS (
                SELECT l.parameter, 'public ' || l.element AS location, e.file_id
                FROM elements e JOIN loc l ON e.tag = l.element
                WHERE l.creator IS NULL AND e.private_creator IS NULL AND e.value IS NOT NULL
                UNION ALL
                SELECT l.parameter, l.creator || ' ' || l.element, e.file_id
                FROM elements e JOIN loc l
                    ON e.private_creator = l.creator AND e.private_element = l.element
                WHERE e.value IS NOT NULL
            ),
            found AS (
                SELECT parameter, location, count(DISTINCT file_id) AS n_instances
                FROM hits GROUP BY ALL
            )
            SELECT NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR,
                parameter,
                parameter || ' is stored in ' || count(*) || ' places: '
                    || string_agg(location || ' (' || n_instances || ' instances)', '; '
                                  ORDER BY n_instances DESC)
            FROM found GROUP BY parameter HAVING count(*) > 1
        """,
        requires=("elements",),
    )
)


def label_prevalence_sql(group: str = SITE) -> str:
    """Per label and group of studies (``group``: an expression over ``series``, the site by
    default), the studies with any label row and those with the label ``positive``.

    A study's group is the most common one of its series. A label counts when it has report-style
    values (positive, negative, uncertain; older rows: negated); numeric labels are left out.
    """
    return f"""
        WITH study_group AS (
            SELECT StudyInstanceUID, mode({group}) AS grp FROM series GROUP BY StudyInstanceUID
        ), labeled AS (
            SELECT DISTINCT StudyInstanceUID FROM labels WHERE StudyInstanceUID IS NOT NULL
        ), names AS (
            SELECT DISTINCT label FROM labels
            WHERE value IN ('positive', 'negative', 'uncertain', 'negated')
        ), positive AS (
            SELECT DISTINCT label, StudyInstanceUID FROM labels
            WHERE value = 'positive' AND StudyInstanceUID IS NOT NULL
        )
        SELECT n.label, g.grp, count(*) AS n_studies, count(p.StudyInstanceUID) AS n_positive
        FROM study_group g JOIN labeled USING (StudyInstanceUID) CROSS JOIN names n
        LEFT JOIN positive p ON p.label = n.label AND p.StudyInstanceUID = g.StudyInstanceUID
        GROUP BY n.label, g.grp
    """


LABEL_SITE_SHORTCUT = register(
    Rule(
        id="cohort.label_site_shortcut",
        level=Level.COHORT,
        severity=Severity.WARNING,
        title="label prevalence differs by site",
        description="A label (a finding from the labels table, e.g. the report labeler's) is "
        "positive in a share of one site's labeled studies that differs from the other sites' "
        "share by at least min_difference, and significantly (two-proportion z-test, |z| >= "
        "min_z): a model can learn the label from whatever marks the site (vendor, kernel, "
        "burned-in text) instead of from the anatomy. One finding per label and site.",
        not_checked="Sites or remaining cohorts with fewer than min_studies labeled studies; "
        "uncertain labels (counted as not positive); whether the difference is real (a referral "
        "centre sees more disease), comes from the case mix (a site with more chest studies has "
        "more chest findings: select a cohort first) or from how sites word their reports; "
        "numeric labels.",
        query=f"""
            WITH per AS ({label_prevalence_sql()}),
            t AS (
                SELECT *, sum(n_studies) OVER (PARTITION BY label) AS n_all,
                    sum(n_positive) OVER (PARTITION BY label) AS pos_all
                FROM per
            ), z AS (
                SELECT *, n_positive / n_studies AS p_site,
                    (pos_all - n_positive) / (n_all - n_studies) AS p_rest,
                    pos_all / n_all AS p_pool
                FROM t WHERE n_studies >= $min_studies AND n_all - n_studies >= $min_studies
            )
            SELECT NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR,
                label || ' @ ' || grp,
                'site ' || grp || ': ' || label || ' positive in ' || round(100 * p_site, 1)
                    || ' % of its ' || n_studies || ' labeled studies, '
                    || round(100 * p_rest, 1) || ' % of the other sites'' ' || (n_all - n_studies)
                    || ' (z = ' || round((p_site - p_rest) / sqrt(p_pool * (1 - p_pool)
                        * (1 / n_studies + 1 / (n_all - n_studies))), 1) || ')'
            FROM z
            WHERE p_pool > 0 AND p_pool < 1 AND abs(p_site - p_rest) >= $min_difference
                AND abs(p_site - p_rest) / sqrt(p_pool * (1 - p_pool)
                    * (1 / n_studies + 1 / (n_all - n_studies))) >= $min_z
        """,
        params=(
            Param("min_difference", 0.15, "fraction", "smallest difference of positive shares"),
            Param("min_z", 3.0, "SD", "smallest two-proportion z statistic"),
            Param("min_studies", 20, "count", "fewest labeled studies on either side"),
        ),
        requires=("labels", "series"),
    )
)
