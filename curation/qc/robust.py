"""The robust outlier fence in SQL: how far a value lies from its group, in robust SDs of logs.

Rules that compare a series with its peers in the cohort (``series.outlier_value`` on acquisition
values, ``pixel.series_blur`` on sharpness) ask the same question and must answer it the same way:

* on a **log scale**, because these values are ratios: 0.5 mm among 5 mm slices is as unusual as
  50 mm, and a series at a tenth of its peers' sharpness as one at ten times it;
* in **robust SDs**, 1.4826 x the median absolute deviation (the SD for normal data, and blind to
  the few outliers being looked for, unlike the SD itself);
* with the spread **floored** at ``log(1 + min_relative_deviation)``: where nearly every series has
  the same value the MAD is ~0, and a 2 % difference would otherwise be any number of SDs away.

:func:`log_robust_z` writes that once, as SQL a rule's query embeds; each rule keeps its own
grouping, side (both, or low only) and threshold.
"""

from __future__ import annotations

#: 1.4826 x MAD estimates the standard deviation of normally distributed values.
MAD_TO_SD = 1.4826


def log_robust_z(relation: str, value: str, partition: str, floor: str) -> str:
    """SQL selecting the rows of ``relation`` whose ``value`` is positive, each with its group's
    ``n`` (rows), ``med`` (median of ``ln(value)``), ``sd`` (robust SD of ``ln(value)``, floored)
    and its own ``z = (ln(value) - med) / sd`` (signed: negative below the median).

    Parameters
    ----------
    relation
        A table, view or CTE name the query can see.
    value
        SQL expression of the compared value (non-positive and NULL values are left out, of the
        result and of their group's statistics: a log needs a positive number).
    partition
        ``PARTITION BY`` list of the group (``Modality, attribute``).
    floor
        SQL expression (usually a bound parameter, ``$min_relative_deviation``) of the smallest
        spread as a fraction of the median: the SD is at least ``ln(1 + floor)``.
    """
    return f"""
SELECT *, (ln({value}) - med) / sd AS z FROM (
    SELECT *, count(*) OVER grp_ AS n, median(ln({value})) OVER grp_ AS med,
           greatest({MAD_TO_SD} * coalesce(mad(ln({value})) OVER grp_, 0), ln(1 + {floor})) AS sd
    FROM {relation} WHERE {value} > 0
    WINDOW grp_ AS (PARTITION BY {partition})
)"""
