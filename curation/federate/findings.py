"""Cross-site heterogeneity from site summaries: the heterogeneity rules' logic on distributions.

Each function applies one rule of :mod:`curation.qc.rules.heterogeneity` to the federation, with
the rule's own parameters (its declared defaults unless given), where *site* is a summary:

* ``cohort.site_shortcut`` (:func:`site_shortcuts`): a site's series of a modality share a value
  (at least ``min_dominance`` of them) that at most ``max_elsewhere`` of the other sites' series
  have, both sides with at least ``min_series`` series. Exactly the rule's test, on the rule's
  values for categorical attributes and on the bins for numeric ones.
* ``series.rare_value`` (:func:`rare_values`): a value fewer than ``max_share`` of a modality's
  series (at least ``min_series``) share, pooled over the sites. The rule names every series; the
  federation names the value and the sites that have it.
* ``cohort.parameter_locations`` (:func:`parameter_locations`): one parameter stored in several
  places across the sites. Exact even under suppression (a suppressed count is still at least 1).

``series.outlier_value`` is not reproduced: it compares each series' value with the median and
the median absolute deviation of the log values of the pooled cohort, which binned counts do not
determine (a bin holds a range of values, and the MAD needs every value's distance to the median).

A suppressed count is an interval (:mod:`curation.federate.merge`), so each test is made twice: a
finding is **certain** when it holds for every count the summaries allow, **possible** when it
holds for some. With nothing suppressed (``min_count`` 1) every finding is certain and they are the
rule's findings on the sites' catalogs pooled into one (tests/test_federate.py). The bounds treat a
site's count of the value and its count of other values as independent, so a finding shown as
possible may in fact be certain, never the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from curation.federate.bins import BY_NAME, NOT_RECORDED
from curation.federate.merge import Federation, Interval, Site, add, meet
from curation.qc.rule import Rule
from curation.qc.rules.heterogeneity import RARE_CATEGORY, SITE_SHORTCUT

#: Federated-only check: label prevalence that differs between vendors or sites.
LABEL_SHORTCUT = "label.prevalence_shortcut"


@dataclass(frozen=True)
class FederatedFinding:
    """One cross-site finding.

    ``certainty`` is ``certain`` or ``possible`` (see the module docstring); ``site`` is None for
    findings about the federation as a whole.
    """

    rule_id: str
    certainty: str
    modality: str | None
    attribute: str
    value: str
    site: str | None
    message: str


def rule_params(rule: Rule, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The rule's declared defaults, overridden by ``given``."""
    params = {p.name: p.default for p in rule.params}
    params.update(given or {})
    return params


def _ratio_bounds(
    part: Interval, rest: Interval, whole: Interval | None = None
) -> tuple[float, float]:
    """Bounds of part / whole, where whole = part + rest is also known to lie in ``whole``
    (0 where nothing)."""
    lo_den = part[0] + rest[1]
    hi_den = part[1] + rest[0]
    lo = part[0] / lo_den if lo_den else 0.0
    hi = part[1] / hi_den if hi_den else 0.0
    if whole is not None:
        if whole[1]:
            lo = max(lo, part[0] / whole[1])
        if whole[0]:
            hi = min(hi, part[1] / whole[0])
    return lo, min(hi, 1.0)


def _candidates(fed: Federation, modality: str, attribute: str) -> list[str]:
    """The values of ``attribute`` a site may have: those named, and every bin where a site
    withheld its distribution (a closed vocabulary of bins: any of them may be there)."""
    bins = BY_NAME[attribute].bins if attribute in BY_NAME else None
    values: set[str] = set()
    for s in fed:
        d = s.dist(attribute, Modality=modality)
        if d is not None:
            values |= d.values()
            if d.withheld and bins is not None:
                values |= set(bins.labels)
    values.discard(NOT_RECORDED)
    return sorted(values)


def _modalities(fed: Federation) -> list[str]:
    return sorted(set().union(*(s.modalities() for s in fed)))


def _fmt(x: Interval) -> str:
    return str(x[0]) if x[0] == x[1] else f"{x[0]}-{x[1]}"


def site_shortcuts(
    fed: Federation,
    params: Mapping[str, Any] | None = None,
    attributes: Sequence[str] | None = None,
) -> list[FederatedFinding]:
    """``cohort.site_shortcut`` over the federation (``attributes``: the rule's list by default)."""
    p = rule_params(SITE_SHORTCUT, params)
    names = list(attributes if attributes is not None else p["attributes"])
    min_series, dominance, elsewhere = p["min_series"], p["min_dominance"], p["max_elsewhere"]
    out = []
    for m in _modalities(fed):
        for a in names:
            sites = [s for s in fed if s.measures(a)]
            for v in _candidates(fed, m, a):
                counts = {s.name: s.value_count(m, a, v) for s in sites}
                recorded = {s.name: s.recorded(m, a) for s in sites}
                for s in sites:
                    n, rest = counts[s.name]
                    if n[1] == 0:
                        continue
                    o_v = add(*(counts[o.name][0] for o in sites if o is not s))
                    o_r = add(*(counts[o.name][1] for o in sites if o is not s))
                    n_site = meet(add(n, rest), recorded[s.name])
                    n_other = meet(
                        add(o_v, o_r), add(*(recorded[o.name] for o in sites if o is not s))
                    )
                    d_lo, d_hi = _ratio_bounds(n, rest, n_site)
                    e_lo, e_hi = _ratio_bounds(o_v, o_r, n_other)
                    certain = (
                        n_site[0] >= min_series
                        and n_other[0] >= min_series
                        and d_lo >= dominance
                        and e_hi <= elsewhere
                    )
                    possible = (
                        n_site[1] >= min_series
                        and n_other[1] >= min_series
                        and d_hi >= dominance
                        and e_lo <= elsewhere
                    )
                    if not possible:
                        continue
                    out.append(
                        FederatedFinding(
                            SITE_SHORTCUT.id,
                            "certain" if certain else "possible",
                            m,
                            a,
                            v,
                            s.name,
                            f"site {s.name}: {a} {v} in {_fmt(n)} of its {_fmt(n_site)} {m} "
                            f"series, {_fmt(o_v)} of the other sites' {_fmt(n_other)}",
                        )
                    )
    return out


def rare_values(
    fed: Federation,
    params: Mapping[str, Any] | None = None,
    attributes: Sequence[str] | None = None,
) -> list[FederatedFinding]:
    """``series.rare_value`` over the pooled federation: one finding per rare value."""
    p = rule_params(RARE_CATEGORY, params)
    names = list(attributes if attributes is not None else p["attributes"])
    out = []
    for m in _modalities(fed):
        for a in names:
            sites = [s for s in fed if s.measures(a)]
            for v in _candidates(fed, m, a):
                counts = {s.name: s.value_count(m, a, v) for s in sites}
                n_val = add(*(c[0] for c in counts.values()))
                rest = add(*(c[1] for c in counts.values()))
                n_all = meet(add(n_val, rest), add(*(s.recorded(m, a) for s in sites)))
                lo, hi = _ratio_bounds(n_val, rest, n_all)
                certain = n_all[0] >= p["min_series"] and n_val[0] > 0 and hi < p["max_share"]
                possible = n_all[1] >= p["min_series"] and n_val[1] > 0 and lo < p["max_share"]
                if not possible:
                    continue
                where = ", ".join(f"{k} {_fmt(c[0])}" for k, c in counts.items() if c[0][1] > 0)
                out.append(
                    FederatedFinding(
                        RARE_CATEGORY.id,
                        "certain" if certain else "possible",
                        m,
                        a,
                        v,
                        None,
                        f"{a} {v} is shared by {_fmt(n_val)} of {_fmt(n_all)} {m} series ({where})",
                    )
                )
            out.extend(_unnamed_rare(fed, sites, m, a, p["min_series"]))
    return out


#: Value of a finding about values a site suppressed and an open vocabulary does not name.
NOT_SHOWN = "(values not shown)"


def _unnamed_rare(
    fed: Federation, sites: list[Site], modality: str, attribute: str, min_series: int
) -> list[FederatedFinding]:
    """A rare value is a small count, so under suppression it is hidden, and an open vocabulary
    (a model, a kernel) or a withheld distribution does not even name it: say how many series
    hold such values, and where."""
    if BY_NAME[attribute].bins is not None:
        return []  # every bin can be named (see _candidates)
    hidden = {}
    for s in sites:
        d = s.dist(attribute, Modality=modality)
        if d is not None and d.n_hidden and (not d.closed or d.withheld):
            hidden[s.name] = d.n_hidden
    n_all = add(*(s.recorded(modality, attribute) for s in sites))
    if not hidden or n_all[1] < min_series:
        return []
    where = ", ".join(f"{k} {n}" for k, n in hidden.items())
    return [
        FederatedFinding(
            RARE_CATEGORY.id,
            "possible",
            modality,
            attribute,
            NOT_SHOWN,
            None,
            f"{attribute}: {sum(hidden.values())} {modality} series hold values their site "
            f"suppressed ({where}); rare values among them cannot be named",
        )
    ]


def parameter_locations(fed: Federation) -> list[FederatedFinding]:
    """``cohort.parameter_locations``: parameters stored in more than one place across the sites."""
    found: dict[str, dict[str, list[str]]] = {}
    for s in fed:
        for row in s.summary.data["parameter_locations"]:
            if row["n_instances"] == 0:
                continue
            found.setdefault(row["parameter"], {}).setdefault(row["location"], []).append(s.name)
    return [
        FederatedFinding(
            "cohort.parameter_locations",
            "certain",
            None,
            parameter,
            parameter,
            None,
            f"{parameter} is stored in {len(locs)} places: "
            + "; ".join(f"{loc} ({', '.join(sites)})" for loc, sites in sorted(locs.items())),
        )
        for parameter, locs in sorted(found.items())
        if len(locs) > 1
    ]


def prevalence(fed: Federation, label: str, by: str) -> dict[str, tuple[Interval, Interval]]:
    """Positive and labelled series of ``label`` per vendor (``by="vendor"``) or per site."""
    out: dict[str, list[tuple[Interval, Interval]]] = {}
    for s in fed:
        total = s.dist("label_vendor", label=label)
        if total is None:
            continue
        for vendor in sorted(total.visible):
            d = s.dist("label", label=label, vendor=vendor)
            if d is None:
                continue
            key = vendor if by == "vendor" else s.name
            out.setdefault(key, []).append((d.count("positive"), (d.n, d.n)))
        if by == "site" and total.n_hidden:
            # vendor groups too small to show: their series are labelled, their values unknown
            out.setdefault(s.name, []).append(((0, total.n_hidden), (total.n_hidden,) * 2))
    return {k: (add(*(x[0] for x in v)), add(*(x[1] for x in v))) for k, v in sorted(out.items())}


def _share(pos: Interval, n: Interval) -> tuple[float, float]:
    return (pos[0] / n[1] if n[1] else 0.0, min(1.0, pos[1] / n[0]) if n[0] else 1.0)


def label_shortcuts(
    fed: Federation, min_difference: float = 0.3, min_series: int = 10
) -> list[FederatedFinding]:
    """Labels whose positive share in one vendor's (or site's) series differs from the others' by
    at least ``min_difference``, both sides with at least ``min_series`` labelled series: a model
    can then predict the label from the vendor or site."""
    labels = sorted(
        {s_d.group["label"] for s in fed for s_d in s.dists.values() if s_d.what == "label_vendor"}
    )
    out = []
    for label in labels:
        for by in ("vendor", "site"):
            groups = prevalence(fed, label, by)
            for key, (pos, n) in groups.items():
                o_pos = add(*(g[0] for k, g in groups.items() if k != key))
                o_n = add(*(g[1] for k, g in groups.items() if k != key))
                if n[0] < min_series or o_n[0] < min_series:
                    continue
                a, b = _share(pos, n), _share(o_pos, o_n)
                low = max(a[0] - b[1], b[0] - a[1])  # smallest possible |difference|
                high = max(a[1] - b[0], b[1] - a[0])
                if high < min_difference:
                    continue
                out.append(
                    FederatedFinding(
                        LABEL_SHORTCUT,
                        "certain" if low >= min_difference else "possible",
                        None,
                        f"label {label} by {by}",
                        key,
                        key if by == "site" else None,
                        f"{label}: positive in {a[0]:.0%}-{a[1]:.0%} of {by} {key}'s {_fmt(n)} "
                        f"labelled series, {b[0]:.0%}-{b[1]:.0%} of the others' {_fmt(o_n)}",
                    )
                )
    return out


def all_findings(fed: Federation) -> list[FederatedFinding]:
    """Every federated check with its defaults; site shortcuts and rare values over every
    distribution a summary holds (the rules' own attributes and the harmonized ones)."""
    every = list(BY_NAME)
    return [
        *site_shortcuts(fed, attributes=every),
        *rare_values(fed, attributes=every),
        *parameter_locations(fed),
        *label_shortcuts(fed),
    ]
