"""Assembling the report: one self-contained HTML file, plotly.js embedded once, no network.

Figures are written as ``<div>`` + ``<script>`` fragments without their own copy of plotly.js; the
library itself is inlined once in ``<head>``. Images are ``data:`` URIs. Nothing is fetched when the
file is opened: it works from an e-mail attachment, a CI artifact or an air-gapped laptop.

Series pages (:mod:`curation.report.series`) are ``<article>`` elements of the same file, each with
the id ``series/<key>``: the address ``report.html#series/S-…`` shows that page alone (CSS
``:target``, so a link works without script), and a short script sends a click on a plotly point
whose ``customdata`` is a series key to its page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs


@dataclass
class Section:
    """One section of the report: a title, a sentence saying what it shows, and its blocks.

    A block is a plotly figure or an HTML fragment (already escaped).
    """

    id: str
    title: str
    intro: str
    blocks: list[go.Figure | str] = field(default_factory=list)

    @property
    def figures(self) -> list[go.Figure]:
        """The section's plotly figures."""
        return [b for b in self.blocks if isinstance(b, go.Figure)]


@dataclass(frozen=True)
class Link:
    """A table cell that links within the report (``#series/S-…``), both parts escaped."""

    href: str
    text: str

    def __str__(self) -> str:
        return f'<a href="{esc(self.href)}">{esc(self.text)}</a>'


#: Plotly config of every figure: no logo, no link out to plotly's cloud.
PLOTLY_CONFIG = {"displaylogo": False, "showLink": False, "responsive": True}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222;
       background: #fafafa; }
header { background: #1f3b57; color: white; padding: 16px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header p { margin: 0; opacity: .85; font-size: 13px; }
nav { padding: 8px 32px; background: #eef2f6; font-size: 14px; }
nav a { margin-right: 16px; color: #1f3b57; }
main { padding: 8px 32px 48px 32px; max-width: 1400px; }
section { background: white; border: 1px solid #e3e7eb; border-radius: 6px; margin: 20px 0;
          padding: 8px 20px 20px 20px; }
section > p.intro { color: #555; max-width: 900px; }
.figure { margin: 12px 0; }
table.data { border-collapse: collapse; font-size: 13px; margin: 12px 0; }
table.data th, table.data td { border-bottom: 1px solid #e3e7eb; padding: 4px 10px; text-align: left; }
table.data th { background: #f3f5f7; }
table.data td.num { text-align: right; font-variant-numeric: tabular-nums; }
.thumbs { display: flex; flex-wrap: wrap; gap: 14px; }
.thumbs figure { margin: 0; width: 180px; font-size: 12px; }
.thumbs img { width: 160px; height: auto; background: black; display: block; }
.missing { color: #888; font-style: italic; }
footer { color: #777; font-size: 12px; padding: 0 32px 32px 32px; }
/* Long rule ids, rule lists and labels wrap inside their box instead of running out of it. */
figcaption, td, th, section > p.intro, h2, h3 { overflow-wrap: anywhere; }
/* Series pages: hidden until the address names one (#series/S-...); then it alone is shown. */
article.series-page { display: none; }
article.series-page:target { display: block; }
body:has(article.series-page:target) main > section:not(#series) { display: none; }
body:has(article.series-page:target) #series > :not(article) { display: none; }
.crumbs { font-size: 13px; }
.crumbs a { margin-right: 14px; color: #1f3b57; }
.series-head { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
figure.mosaic { margin: 12px 0; max-width: 300px; font-size: 12px; color: #555; }
figure.mosaic img { width: 288px; height: auto; background: black; display: block; }
.sev-error { color: #c0392b; font-weight: 600; }
.sev-warning { color: #b9580b; font-weight: 600; }
.sev-info { color: #2471a3; }
table.data td details { color: #444; max-width: 640px; }
tr.outside td { background: #fdecea; }
svg.glyph { display: block; }
"""

#: Plotly points whose customdata is a series key open that series' page; a key of '' (a series
#: without a page) opens the note saying why there is none. Other customdata (the vendor chart's
#: Manufacturer strings) is left alone.
_SCRIPT = """
(function () {
  var KEY = /^S-[0-9a-f]+$/;
  function open(key) {
    if (key && document.getElementById('series/' + key)) { location.hash = 'series/' + key; return; }
    var note = document.getElementById('series/none');
    if (note) { location.hash = 'series/none'; }
  }
  function keyOf(p) {
    var k = p.customdata;
    if (k === undefined && p.data && p.data.customdata) { k = p.data.customdata[p.pointNumber]; }
    return k;
  }
  function wire(gd) {
    if (typeof gd.on !== 'function' || gd.dataset.seriesLinks) { return; }
    gd.dataset.seriesLinks = '1';
    gd.on('plotly_click', function (ev) {
      var p = ev && ev.points && ev.points[0];
      if (!p) { return; }
      var k = keyOf(p);
      if (typeof k === 'string' && (KEY.test(k) || (k === '' && p.data.type === 'box'))) { open(k); }
    });
  }
  window.addEventListener('load', function () {
    document.querySelectorAll('.js-plotly-plot').forEach(wire);
  });
})();
"""


def esc(value: object) -> str:
    """``value`` as HTML text (None as an empty cell)."""
    return "" if value is None else html.escape(str(value))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A small HTML table; numbers are right-aligned, :class:`Link` cells are links."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{v:,}</td>'
            if isinstance(v, int | float) and not isinstance(v, bool)
            else f"<td>{v}</td>"
            if isinstance(v, Link)
            else f"<td>{esc(v)}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def render(
    sections: Sequence[Section], *, title: str, subtitle: str, provenance: Sequence[tuple[str, str]]
) -> str:
    """The whole report as one HTML document."""
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    parts = []
    n = 0
    for s in sections:
        parts.append(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>')
        parts.append(f'<p class="intro">{esc(s.intro)}</p>')
        for block in s.blocks:
            if isinstance(block, str):
                parts.append(block)
                continue
            n += 1
            div = pio.to_html(
                block,
                include_plotlyjs=False,
                full_html=False,
                div_id=f"fig-{s.id}-{n}",
                config=PLOTLY_CONFIG,
            )
            parts.append(f'<div class="figure">{div}</div>')
        parts.append("</section>")
    prov = table(["", ""], provenance)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="curation report">
<title>{esc(title)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head>
<body>
<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>
<nav>{nav}<a href="#provenance">Provenance</a></nav>
<main>
{"".join(parts)}
<section id="provenance"><h2>Provenance</h2>
<p class="intro">What this report was made from, so that it can be reproduced.</p>{prov}</section>
</main>
<footer>Written {esc(datetime.now().isoformat(timespec="seconds"))} by curation. Patients and
series appear only as keyed-hash pseudonyms.</footer>
<script type="text/javascript">{_SCRIPT}</script>
</body>
</html>
"""
