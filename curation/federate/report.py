"""The federated report: the sites side by side, from their summaries alone (one offline HTML file).

Built with the QC report's blocks (:mod:`curation.report.html`: sections, tables, plotly.js inlined
once). Sections: the sites; where they differ (the federated heterogeneity findings); their
distributions side by side; label prevalence by site and by vendor; the cohort each would
contribute; a harmonization suggestion. A suppressed count is shown as what is known of it (``<k``,
or an interval), never guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from curation import __version__
from curation.errors import writing
from curation.federate.bins import BY_NAME, NOT_RECORDED
from curation.federate.findings import FederatedFinding, label_shortcuts, prevalence
from curation.federate.merge import Federation, Interval

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from curation.report.html import Section

#: Attributes drawn side by side, per modality, in this order (those no site has are left out).
DRAWN = (
    "vendor",
    "ManufacturerModelName",
    "series_type",
    "body_part",
    "year",
    "SliceThickness",
    "PixelSpacing",
    "matrix",
    "KVP",
    "ConvolutionKernel",
    "MagneticFieldStrength",
    "RepetitionTime",
    "EchoTime",
    "max_b_value",
    "TransferSyntaxUID",
    "snr",
    "noise_rel",
)


def _fmt(x: Interval) -> str:
    return f"{x[0]:,}" if x[0] == x[1] else f"{x[0]:,}–{x[1]:,}"


def _count(n: int | None, k: int) -> str:
    return f"<{k}" if n is None else f"{n:,}"


def _sites_section(fed: Federation) -> Section:
    import plotly.graph_objects as go

    from curation.report.html import Section, table

    rows = []
    for s in fed:
        t = s.summary.data["totals"]
        rows.append(
            (
                s.name,
                s.k,
                *(_count(t[x], s.k) for x in ("patients", "studies", "series", "instances")),
                s.summary.data["curation_version"],
            )
        )
    sec = Section(
        "sites",
        "Sites",
        "The site summaries federated here. Counts under a site's k are suppressed at the site "
        "and shown as <k; nothing else about them ever left the site.",
        [table(["site", "k", "patients", "studies", "series", "instances", "curation"], rows)],
    )
    fig = go.Figure()
    for s in fed:
        d = s.dist("Modality")
        if d is None:
            continue
        mods = sorted(d.values() - {NOT_RECORDED})
        fig.add_bar(
            name=s.name,
            x=mods,
            y=[d.visible.get(m, 0) for m in mods],
            hovertext=["suppressed" if m in d.hidden else "" for m in mods],
        )
    fig.update_layout(
        title={"text": "Series by modality and site (suppressed cells drawn at 0)", "x": 0.01},
        barmode="group",
        template="plotly_white",
        height=380,
    )
    sec.blocks.append(fig)
    return sec


def _findings_section(findings: list[FederatedFinding]) -> Section:
    from curation.report.html import Section, table

    def rows(certainty: str) -> list[tuple[str, ...]]:
        return [
            (f.rule_id, f.modality or "", f.attribute, f.value, f.site or "", f.message)
            for f in sorted(findings, key=lambda f: (f.rule_id, f.attribute, f.value))
            if f.certainty == certainty
        ]

    headers = ["rule", "modality", "attribute", "value", "site", "what"]
    certain, possible = rows("certain"), rows("possible")
    intro = (
        "Where the sites differ: the heterogeneity rules' logic (cohort.site_shortcut, "
        "series.rare_value, cohort.parameter_locations; see docs/qc.md) applied to the sites' "
        "distributions, and labels whose prevalence differs by vendor or site. Certain: holds "
        "whatever the suppressed counts are; possible: holds for some of them."
    )
    blocks = [
        table(headers, certain)
        if certain
        else '<p class="missing">No certain cross-site difference beyond the rules\' thresholds.</p>'
    ]
    if possible:
        blocks.append(
            f"<details><summary>{len(possible)} possible findings (they hold for some of the "
            "counts the sites suppressed)</summary>" + table(headers, possible) + "</details>"
        )
    return Section("heterogeneity", "Where the sites differ", intro, blocks)


def _distribution_figure(fed: Federation, modality: str, attribute: str) -> go.Figure | None:
    import plotly.graph_objects as go

    a = BY_NAME[attribute]
    present = [(s, s.dist(attribute, Modality=modality)) for s in fed]
    dists = [(s, d) for s, d in present if d is not None]
    if len(dists) < 2:
        return None
    values: set[str] = set().union(*(d.values() for _, d in dists))
    order = list(a.bins.labels) if a.bins is not None else sorted(values - {NOT_RECORDED})
    xs = [v for v in order if v in values] + ([NOT_RECORDED] if NOT_RECORDED in values else [])
    fig = go.Figure()
    for s, d in dists:
        fig.add_bar(
            name=s.name,
            x=xs,
            y=[d.visible.get(v, 0) / d.n if d.n else 0 for v in xs],
            customdata=[_fmt(d.count(v)) for v in xs],
            hovertemplate="%{x}: %{customdata} series<extra>" + s.name + "</extra>",
        )
    unit = f" ({a.bins.unit})" if a.bins is not None else ""
    fig.update_layout(
        title={"text": f"{modality}: {attribute}{unit}, share of each site's series", "x": 0.01},
        barmode="group",
        template="plotly_white",
        height=360,
        yaxis={"tickformat": ".0%"},
    )
    return fig


def _distributions_section(fed: Federation) -> Section:
    from curation.report.html import Section

    modalities = sorted(set().union(*(s.modalities() for s in fed)))
    sec = Section(
        "distributions",
        "Distributions side by side",
        "Each site's series of a modality by attribute, numeric ones on the fixed bins of "
        "docs/federated.md. Bars are shares of the site's series; a suppressed cell is drawn at "
        "0 and its hover text says what is known of it.",
    )
    for m in modalities:
        for attribute in DRAWN:
            fig = _distribution_figure(fed, m, attribute)
            if fig is not None:
                sec.blocks.append(fig)
    return sec


def _labels_section(fed: Federation) -> Section | None:
    from curation.report.html import Section, table

    labels = sorted(
        {d.group["label"] for s in fed for d in s.dists.values() if d.what == "label_vendor"}
    )
    if not labels:
        return None
    rows = []
    for label in labels:
        for by in ("site", "vendor"):
            for key, (pos, n) in prevalence(fed, label, by).items():
                share = (pos[0] / n[1] if n[1] else 0, pos[1] / n[0] if n[0] else 1)
                shown = f"{share[0]:.0%}" if pos[0] == pos[1] else f"{share[0]:.0%}–{share[1]:.0%}"
                rows.append((label, by, key, _fmt(pos), _fmt(n), shown))
    risks = label_shortcuts(fed)
    intro = (
        "Positive share of each label's labelled series, by site and by vendor (pooled over "
        "sites). A label much more often positive at one vendor or site can be learned from the "
        "scanner instead of the anatomy: "
        + (
            f"{len(risks)} such differences found (see 'Where the sites differ')."
            if risks
            else "no such difference found."
        )
    )
    return Section(
        "labels",
        "Label prevalence",
        intro,
        [table(["label", "by", "group", "positive", "labelled", "positive share"], rows)],
    )


def _cohort_section(fed: Federation) -> Section | None:
    from curation.report.html import Section, table

    have = [(s, s.summary.data["cohort"]) for s in fed if s.summary.data["cohort"] is not None]
    if not have:
        return None
    specs = {c["spec_sha256"] for _, c in have}
    steps = max(len(c["steps"]) for _, c in have)
    rows = []
    for i in range(steps):
        row: list[object] = [i]
        for s, c in have:
            st = c["steps"][i] if i < len(c["steps"]) else None
            row.append("" if st is None else _count(st["n_series"], s.k))
        rows.append(row)
    final = [
        (s.name, _count(c["steps"][-1]["n_series"], s.k), _count(c["steps"][-1]["n_patients"], s.k))
        for s, c in have
    ]
    note = (
        "Every site ran the same spec."
        if len(specs) == 1
        else f"The sites ran {len(specs)} different specs (their SHA-256 differ): the counts do "
        "not compare."
    )
    return Section(
        "cohort",
        "The cohort each site would contribute",
        "Series left after each criterion of the cohort spec, at each site (step 0: every series). "
        + note,
        [
            table(["site", "series", "patients"], final),
            table(["step", *(s.name for s, _ in have)], rows),
        ],
    )


def _harmonization_section(fed: Federation) -> Section:
    from curation.report.html import Section, table

    rows = []
    for m in sorted(set().union(*(s.modalities() for s in fed))):
        for attribute in ("PixelSpacing", "SliceThickness"):
            b = BY_NAME[attribute].bins
            assert b is not None
            medians = []
            for s in fed:
                d = s.dist(attribute, Modality=m)
                if d is None or not d.visible:
                    continue
                cells = [(lab, d.visible.get(lab, 0)) for lab in b.labels]
                half, run = sum(n for _, n in cells) / 2, 0
                for lab, n in cells:
                    run += n
                    if run >= half:
                        medians.append((b.labels.index(lab), s.name))
                        break
            if medians:
                coarsest = max(medians)
                target = b.representatives()[b.labels[coarsest[0]]]
                rows.append(
                    (
                        m,
                        attribute,
                        ", ".join(
                            f"{n}: {b.labels[i]}" for i, n in sorted(medians, key=lambda x: x[1])
                        ),
                        f"{target:g} {b.unit} (the coarsest site's typical bin, {coarsest[1]})",
                    )
                )
        common = None
        for s in fed:
            d = s.dist("series_type", Modality=m)
            types = set() if d is None else d.values() - {NOT_RECORDED}
            common = types if common is None else common & types
        rows.append(
            (m, "series types at every site", "", ", ".join(sorted(common or [])) or "none")
        )
    return Section(
        "harmonization",
        "Harmonization suggestion",
        "A common spacing target per modality: the lower edge of the coarsest of the sites' "
        "median bins (of the shown cells), so that no site is resampled finer than it typically "
        "scans; and the series types every site has (a cohort restricted to them is available "
        "everywhere).",
        [table(["modality", "what", "per site", "suggestion"], rows)],
    )


def build_sections(fed: Federation, findings: list[FederatedFinding]) -> list[Section]:
    """The report's sections, in order."""
    parts = [
        _sites_section(fed),
        _findings_section(findings),
        _distributions_section(fed),
        _labels_section(fed),
        _cohort_section(fed),
        _harmonization_section(fed),
    ]
    return [p for p in parts if p is not None]


def write_report(fed: Federation, findings: list[FederatedFinding], out: str | Path) -> Path:
    """Write the federated report to ``out`` (one self-contained HTML file)."""
    from curation.report.html import render

    sections = build_sections(fed, findings)
    html = render(
        sections,
        title="curation federated report",
        subtitle=f"{len(fed.sites)} sites: {', '.join(s.name for s in fed)}",
        provenance=[
            ("curation version", __version__),
            *((f"site {s.name}", Path(s.summary.source).name) for s in fed),
        ],
    )
    path = Path(out)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
    return path
