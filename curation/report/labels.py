"""The report's label section: how often each report label is positive per site and per vendor.

A label whose prevalence differs by site is a shortcut risk: a model can learn the site (its
vendor, kernel, burned-in text) instead of the finding. The section draws the prevalence per site
and per vendor (the site as the QC rules name it: InstitutionName, else StationName, else the scanner
model) and lists what the QC rule ``cohort.label_site_shortcut`` flags, with its default
parameters. Only counts reach the page: no study, report key or evidence sentence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go

from curation.catalog import table_names
from curation.qc.rules.heterogeneity import LABEL_SITE_SHORTCUT, SITE, label_prevalence_sql
from curation.report.figures import VENDOR, _layout
from curation.report.html import Section, table

if TYPE_CHECKING:
    import duckdb


def label_prevalence(con: duckdb.DuckDBPyConnection, by: str, group: str) -> go.Figure | None:
    """Heatmap of the share of labeled studies with each label positive, per ``group``."""
    frame = con.sql(
        f"SELECT label, grp, n_studies, n_positive FROM ({label_prevalence_sql(group)}) "
        "ORDER BY label, grp"
    ).pl()
    if frame.is_empty():
        return None
    labels = sorted(set(frame["label"]))
    groups = sorted(set(frame["grp"]))
    cell = {(r[0], r[1]): (r[2], r[3]) for r in frame.iter_rows()}
    z = [[100 * cell[(lab, g)][1] / cell[(lab, g)][0] if (lab, g) in cell else None for g in groups]
         for lab in labels]  # fmt: skip
    text = [[f"{cell[(lab, g)][1]}/{cell[(lab, g)][0]}" if (lab, g) in cell else "" for g in groups]
            for lab in labels]  # fmt: skip
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=groups,
            y=labels,
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            colorbar={"title": "% positive"},
            hovertemplate=f"%{{y}} @ %{{x}}: %{{z:.1f}} %% positive (%{{text}} labeled studies)"
            f"<extra>{by}</extra>",
        )
    )
    _layout(fig, f"Label prevalence per {by} (positive / labeled studies)")
    fig.update_layout(height=max(320, 80 + 26 * len(labels)))
    return fig


def labels_section(con: duckdb.DuckDBPyConnection) -> Section | None:
    """Label prevalence per site and vendor, and the labels whose prevalence differs by site."""
    if not {"labels", "series"} <= table_names(con):
        return None
    s = Section(
        "labels",
        "Labels across sites and vendors",
        "How often each label (from reports or another source) is positive among the labeled "
        "studies of each site and vendor. A label much more common at one site is a shortcut "
        "risk: a model can learn the site instead of the finding. The QC rule "
        "cohort.label_site_shortcut flags those (`curation qc --explain "
        "cohort.label_site_shortcut`).",
    )
    for fig in (label_prevalence(con, "site", SITE), label_prevalence(con, "vendor", VENDOR)):
        if fig is not None:
            s.blocks.append(fig)
    params = {p.name: p.default for p in LABEL_SITE_SHORTCUT.params}
    query = LABEL_SITE_SHORTCUT.query
    assert isinstance(query, str)
    flagged = con.execute(query, params).fetchall()
    if flagged:
        s.blocks.append("<h3>Labels whose prevalence differs by site</h3>")
        s.blocks.append(table(["label @ site", "why"], [(r[5], r[6]) for r in flagged]))
    else:
        s.blocks.append(
            '<p class="missing">No label differs by site beyond the rule\'s thresholds '
            f"(difference >= {params['min_difference']}, |z| >= {params['min_z']}, "
            f">= {params['min_studies']} labeled studies on each side).</p>"
        )
    return s
