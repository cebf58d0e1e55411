"""Series pages: what a reader sees after clicking a flagged series, after MRIQC's individual reports.

A page holds a header summary (harmonized fields: modality, harmonized vendor, model, series type,
slice thickness and spacing, matrix, counts; patient, study and series as pseudonyms, never a name,
an ID or a UID, and no free text: descriptions and protocol names may hold what a privacy rule
looks for), the series' findings with what each rule checks and what it does not (the rule's own
declaration), a mosaic of slices evenly spaced over the series, and its pixel metrics against the
group the pixel rules compare it with (:data:`curation.qc.rules.pixel.GROUP_SQL`).

Pages are made for the worst flagged series (errors, then warnings, then infos), at most
``limit`` of them (:data:`SERIES_PAGES` by default): pixels are read for each page's mosaic, and
every page adds some 20-40 kB to the file. The other series have no page: their rows and points
carry no link, and a click on a plot point of one opens a note saying so. Pages live in the one
report file (see :mod:`curation.report.html`), so it stays a single offline document.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from curation.catalog import has_table, quote_ident, table_names
from curation.qc.rule import all_rules
from curation.qc.rules.pixel import GROUP_SQL, MIN_GROUP, K
from curation.report.figures import SITE, VENDOR, WORST_FIRST, pixel_metric_columns
from curation.report.html import Link, Section, esc, table
from curation.report.thumbnails import HIDDEN_SQL, privacy_rules

if TYPE_CHECKING:
    import duckdb
    import polars as pl

log = logging.getLogger("curation.report")

#: Series pages a report holds by default (``--series-pages``): the worst flagged series first.
SERIES_PAGES = 40
#: Slices in a page's mosaic (a 3 x 3 grid) and the side of each tile in pixels: enough to see
#: a missing slice, a streak or a wrong window, too small to read fine print.
MOSAIC_TILES = 9
MOSAIC_TILE_PX = 96

#: Latest finished run of each suite, as the rest of the report shows.
_LATEST = """SELECT max(run_id) AS run_id FROM qc_runs WHERE finished_at IS NOT NULL
              GROUP BY suite_name"""
#: A UID in a finding's text (messages should carry none; the page shows none whatever a rule says).
_UID_RE = r"\b[0-9]+(\.[0-9]+){3,}\b"


@dataclass(frozen=True)
class MetricRow:
    """One pixel metric of a series against its group (robust statistics of the group)."""

    metric: str
    value: float
    median: float
    q1: float
    q3: float
    low: float
    high: float
    n: int
    robust_z: float | None
    description: str = ""

    @property
    def unusual(self) -> bool:
        """More than the pixel rules' ``k`` robust SDs from the group median."""
        return self.robust_z is not None and abs(self.robust_z) > K


@dataclass(frozen=True)
class PageFinding:
    """The findings of one rule on one series: how many, one example, the rule's explanation."""

    rule_id: str
    severity: str
    n: int
    value: str | None
    message: str | None
    title: str
    description: str
    not_checked: str


@dataclass(frozen=True)
class SeriesPage:
    """Everything one series page shows; ``key`` is the series pseudonym (``S-…``)."""

    key: str
    header: tuple[tuple[str, str], ...]
    findings: tuple[PageFinding, ...]
    group: str | None
    metrics: tuple[MetricRow, ...] = ()
    mosaic: str | None = None
    mosaic_note: str = ""
    summary: dict[str, str] = field(default_factory=dict)


def select_series(
    con: duckdb.DuckDBPyConnection, limit: int = SERIES_PAGES
) -> list[tuple[str, str]]:
    """The ``limit`` worst flagged series as ``(SeriesInstanceUID, key)``, worst first.

    Worst: most errors, then warnings, then infos, in the latest run of each suite (the order of
    the findings section's table, so every series listed there has a page). ``con`` needs the
    ``pseudonym`` macro. The UIDs stay in memory to query with; only keys reach the page.
    """
    if limit <= 0 or not {"qc_findings", "qc_runs", "series"} <= table_names(con):
        return []
    rows = con.sql(
        f"""SELECT SeriesInstanceUID, 'S-' || pseudonym(SeriesInstanceUID)
            FROM qc_findings
            WHERE run_id IN ({_LATEST}) AND SeriesInstanceUID IS NOT NULL
                AND SeriesInstanceUID IN (SELECT SeriesInstanceUID FROM series)
            GROUP BY SeriesInstanceUID
            ORDER BY count(*) FILTER (WHERE severity = 'error') DESC,
                count(*) FILTER (WHERE severity = 'warning') DESC,
                count(*) FILTER (WHERE severity = 'info') DESC, SeriesInstanceUID
            LIMIT {int(limit)}"""
    ).fetchall()
    return [(str(u), str(k)) for u, k in rows]


def _fmt(v: object, unit: str = "") -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        text = f"{v:.4g}"
    elif isinstance(v, list | tuple):
        text = " x ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in v)
    else:
        text = str(v)
    return f"{text} {unit}".strip()


def _headers(
    con: duckdb.DuckDBPyConnection, uids: list[str], spacing: dict[str, float]
) -> dict[str, list[tuple[str, str]]]:
    """Header rows of each series: one query for every page, harmonized fields where built."""
    harmonized = has_table(con, "harmonized_series")
    h_cols = (
        "h.series_type, h.body_part, h.contrast_phase, h.kernel_class"
        if harmonized
        else "NULL, NULL, NULL, NULL"
    )
    h_join = "LEFT JOIN harmonized_series h USING (SeriesInstanceUID)" if harmonized else ""
    rows = con.sql(
        # site and vendor are computed before the join: harmonized_series has columns of the
        # same names
        f"""WITH s AS (
                SELECT *, {SITE} AS site_, {VENDOR} AS vendor_ FROM series
                WHERE SeriesInstanceUID IN (SELECT unnest($uids))
            )
            SELECT s.SeriesInstanceUID, 'P-' || pseudonym(s.PatientID),
                'T-' || pseudonym(s.StudyInstanceUID), s.site_, s.Modality, s.vendor_,
                s.Manufacturer, s.ManufacturerModelName, {h_cols}, s.SliceThickness,
                CASE WHEN s.n_distinct_pixel_spacing > 1 THEN NULL ELSE s.PixelSpacing END,
                s.n_distinct_pixel_spacing, s.Rows, s.Columns, s.n_distinct_matrix, s.n_instances,
                s.ConvolutionKernel, s.MagneticFieldStrength, s.RepetitionTime, s.EchoTime
            FROM s {h_join}""",
        params={"uids": uids},
    ).fetchall()
    out: dict[str, list[tuple[str, str]]] = {}
    for r in rows:  # one per page (bounded by the cap), not per catalog row
        (uid, patient, study, site, modality, vendor, raw_vendor, model, series_type, body,
         phase, kernel_class, thick, px, n_px, n_rows, n_cols, n_matrix, n_inst, kernel, field_t,
         tr, te) = r  # fmt: skip
        matrix = f"{n_rows} x {n_cols}" if n_rows and n_cols and (n_matrix or 1) <= 1 else ""
        fields = [
            ("patient", patient),
            ("study", study),
            ("site", site),
            ("modality", modality),
            ("vendor (harmonized)", f"{vendor} (Manufacturer: {raw_vendor or 'none'})"),
            ("model", model),
            ("series type (harmonized)", series_type),
            ("body part (harmonized)", body),
            ("contrast phase", phase),
            ("CT kernel", f"{kernel} ({kernel_class})" if kernel and kernel_class else kernel),
            ("field strength", _fmt(field_t, "T")),
            ("TR / TE", f"{_fmt(tr)} / {_fmt(te)} ms" if tr is not None else ""),
            ("slice thickness", _fmt(thick, "mm")),
            ("slice spacing (median gap)", _fmt(spacing.get(uid), "mm")),
            ("pixel spacing", _fmt(px, "mm") or (f"varies ({n_px} values)" if n_px else "")),
            ("matrix", matrix or (f"varies ({n_matrix} matrices)" if n_matrix else "")),
            ("instances", _fmt(n_inst)),
        ]
        out[uid] = [(k, str(v)) for k, v in fields if v not in (None, "")]
    return out


def _findings(con: duckdb.DuckDBPyConnection, uids: list[str]) -> dict[str, list[PageFinding]]:
    """Findings per series and rule (count, one example), each rule explained by its declaration."""
    rules = all_rules()
    rows = con.sql(
        f"""SELECT SeriesInstanceUID, rule_id, severity, count(*) AS n,
                regexp_replace(min(value), '{_UID_RE}', '(UID)', 'g'),
                regexp_replace(min(message), '{_UID_RE}', '(UID)', 'g')
            FROM qc_findings
            WHERE run_id IN ({_LATEST}) AND SeriesInstanceUID IN (SELECT unnest($uids))
            GROUP BY SeriesInstanceUID, rule_id, severity
            ORDER BY SeriesInstanceUID, {WORST_FIRST}, rule_id""",
        params={"uids": uids},
    ).fetchall()
    out: dict[str, list[PageFinding]] = {}
    for uid, rule_id, severity, n, value, message in rows:
        rule = rules.get(rule_id)
        out.setdefault(uid, []).append(
            PageFinding(
                rule_id,
                severity,
                n,
                value,
                message,
                rule.title if rule else "",
                rule.description
                if rule
                else "A check of an expectation suite (expectations/; docs/report.md).",
                rule.not_checked if rule else "",
            )
        )
    return out


def _metrics(
    con: duckdb.DuckDBPyConnection, uids: list[str]
) -> tuple[dict[str, str], dict[str, list[MetricRow]]]:
    """Each page series' group (in words) and its pixel metrics against that group."""
    need = {"SeriesInstanceUID", "Modality", "protocol", "sequence", "status"}
    if not has_table(con, "pixel_metrics"):
        return {}, {}
    have = {r[0] for r in con.sql("DESCRIBE pixel_metrics").fetchall()}
    metrics = pixel_metric_columns(con)
    if not need <= have or not metrics:
        return {}, {}
    from curation.pixels.tables import PIXEL_METRICS

    described = {c.name: c.description for c in PIXEL_METRICS.columns}
    casts = ", ".join(f"CAST({quote_ident(m)} AS DOUBLE) AS {quote_ident(m)}" for m in metrics)
    names = ", ".join(quote_ident(m) for m in metrics)
    # One pass: the rules' groups, every metric unpivoted, robust statistics per group and metric.
    sql = f"""
        WITH m AS (
            SELECT pm.*, {GROUP_SQL} AS grp FROM pixel_metrics pm WHERE status <> 'unreadable'
        ), sizes AS (
            SELECT grp, count(*) AS n_series, any_value(Modality) AS modality FROM m GROUP BY grp
        ), long AS (
            UNPIVOT (SELECT SeriesInstanceUID, grp, {casts} FROM m)
            ON {names} INTO NAME metric VALUE v
        ), ok AS (SELECT * FROM long WHERE isfinite(v)),
        stats AS (
            SELECT grp, metric, count(*) AS n, quantile_cont(v, 0.25) AS q1, median(v) AS med,
                quantile_cont(v, 0.75) AS q3, min(v) AS lo, max(v) AS hi, mad(v) AS mad
            FROM ok GROUP BY grp, metric
        )
        SELECT o.SeriesInstanceUID, o.metric, o.v, st.med, st.q1, st.q3, st.lo, st.hi, st.n,
            CASE WHEN st.mad > 0 THEN (o.v - st.med) / (1.4826 * st.mad) END AS z,
            coalesce(sz.modality, '?') || CASE
                WHEN contains(o.grp, '|p|') THEN ', same protocol'
                WHEN contains(o.grp, '|s|') THEN ', sequence ' || split_part(o.grp, '|s|', 2)
                ELSE ', every measured series of the modality' END
                || ' (' || sz.n_series || ' series)' AS grp_text
        FROM ok o JOIN stats st USING (grp, metric) JOIN sizes sz USING (grp)
        WHERE o.SeriesInstanceUID IN (SELECT unnest($uids))
        ORDER BY o.SeriesInstanceUID, abs(coalesce(z, 0)) DESC, o.metric"""
    rows = con.sql(sql, params={"uids": uids, "min_group": MIN_GROUP}).fetchall()
    groups: dict[str, str] = {}
    out: dict[str, list[MetricRow]] = {}
    for uid, metric, v, med, q1, q3, lo, hi, n, z, grp_text in rows:
        groups[uid] = grp_text
        out.setdefault(uid, []).append(
            MetricRow(metric, v, med, q1, q3, lo, hi, n, z, described.get(metric, ""))
        )
    return groups, out


def _slices(con: duckdb.DuckDBPyConnection, uids: list[str]) -> pl.DataFrame | None:
    """Every slice of the page series (:func:`curation.pixels.sample.slice_table`), or None."""
    from curation.pixels.sample import slice_table

    try:
        return slice_table(con, uids)
    except Exception as exc:  # a catalog without the elements a slice listing needs: say so
        log.info("series pages: no slice listing: %s", exc)
        return None


def _mosaics(
    con: duckdb.DuckDBPyConnection, uids: list[str], slices: pl.DataFrame | None, tiles: int
) -> dict[str, tuple[str, str]]:
    """Mosaic data URI (or why none) of each series."""
    from curation.pixels.draw import mosaic

    hidden = dict(
        con.sql(
            f"SELECT SeriesInstanceUID, min(why) FROM ({HIDDEN_SQL}) "
            "WHERE SeriesInstanceUID IN (SELECT unnest($uids)) GROUP BY ALL",
            params={"privacy_rules": privacy_rules(), "uids": uids},
        ).fetchall()
    )
    out: dict[str, tuple[str, str]] = {
        u: ("", f"pixels not shown: {why}") for u, why in hidden.items()
    }
    if slices is None:
        return {u: out.get(u, ("", "pixels not shown: no slice listing")) for u in uids}
    by_series = slices.partition_by("SeriesInstanceUID", as_dict=True) if slices.height else {}
    for uid in uids:  # one mosaic per page (bounded by the cap)
        if uid in out or tiles <= 0:
            continue
        part = by_series.get((uid,))
        if part is None:
            out[uid] = ("", "pixels not shown: the series has no image slices")
            continue
        try:
            jpeg, shown = mosaic(part, tiles=tiles, size=MOSAIC_TILE_PX)
        except Exception as exc:  # any reader or decoder failure: say so on the page, go on
            out[uid] = ("", f"pixels not shown: {getattr(exc, 'reason', type(exc).__name__)}")
            continue
        uri = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        out[uid] = (uri, f"{shown} of {part.height} slices, evenly spaced, one window (1st-99th "
                    "percentile of the tiles)")  # fmt: skip
    return out


def _spacing(slices: pl.DataFrame | None) -> dict[str, float]:
    """Median gap between adjacent distinct slice positions (along the normal) of each series."""
    import polars as pl

    if slices is None or slices.is_empty() or "z_mm" not in slices.columns:
        return {}
    gaps = (
        slices.filter(pl.col("z_mm").is_not_null())
        .group_by("SeriesInstanceUID")
        .agg(pl.col("z_mm").round(3).unique().sort().diff().median().alias("gap"))
        .filter(pl.col("gap").is_not_null())
    )
    return {u: round(float(g), 3) for u, g in gaps.iter_rows()}


def series_pages(
    con: duckdb.DuckDBPyConnection,
    selected: Sequence[tuple[str, str]],
    *,
    tiles: int = MOSAIC_TILES,
) -> list[SeriesPage]:
    """The pages of ``selected`` (:func:`select_series`), in that order.

    Each part is one query over every page at once; pixels are read only for the mosaics (``tiles``
    slices per series, 0: none), never for a series :data:`~curation.report.thumbnails.HIDDEN_SQL`
    lists. ``con`` needs the ``pseudonym`` macro.
    """
    if not selected:
        return []
    uids = [u for u, _ in selected]
    slices = _slices(con, uids)
    mosaics = _mosaics(con, uids, slices, tiles) if tiles > 0 else {}
    headers = _headers(con, uids, _spacing(slices))
    findings = _findings(con, uids)
    groups, metrics = _metrics(con, uids)
    pages = []
    for uid, key in selected:
        uri, note = mosaics.get(uid, ("", "no mosaic asked for (tiles=0)"))
        found = findings.get(uid, [])
        pages.append(
            SeriesPage(
                key=key,
                header=tuple(headers.get(uid, [])),
                findings=tuple(found),
                group=groups.get(uid),
                metrics=tuple(metrics.get(uid, [])),
                mosaic=uri or None,
                mosaic_note=note,
                summary={
                    "modality": next((v for k, v in headers.get(uid, []) if k == "modality"), ""),
                    "site": next((v for k, v in headers.get(uid, []) if k == "site"), ""),
                    "worst": found[0].severity if found else "",
                    "rules": ", ".join(f.rule_id for f in found),
                },
            )
        )
    return pages


# -- HTML ---------------------------------------------------------------------------------------


def glyph(row: MetricRow, width: int = 160, height: int = 16) -> str:
    """An inline SVG box plot of the group (range, quartiles, median) with the series as a dot."""
    lo, hi = min(row.low, row.value), max(row.high, row.value)
    span = hi - lo or abs(hi) or 1.0
    pad = 4

    def x(v: float) -> float:
        return round(pad + (v - lo) / span * (width - 2 * pad), 1)

    mid = height / 2
    dot = "#c0392b" if row.unusual else "#1f3b57"
    return (
        f'<svg class="glyph" width="{width}" height="{height}" role="img" '
        f'aria-label="{esc(row.metric)}: series against its group">'
        f'<line x1="{x(row.low)}" x2="{x(row.high)}" y1="{mid}" y2="{mid}" stroke="#bbb"/>'
        f'<rect x="{x(row.q1)}" y="3" width="{max(1.0, x(row.q3) - x(row.q1))}" '
        f'height="{height - 6}" fill="#dde6ee" stroke="#7f96ab"/>'
        f'<line x1="{x(row.median)}" x2="{x(row.median)}" y1="2" y2="{height - 2}" '
        f'stroke="#1f3b57"/><circle cx="{x(row.value)}" cy="{mid}" r="3.5" fill="{dot}"/></svg>'
    )


def _findings_html(found: Sequence[PageFinding]) -> str:
    if not found:
        return '<p class="missing">No finding on this series in the latest runs.</p>'
    rows = []
    for f in found:
        explain = esc(f.description) + (
            f"<br><i>Not checked:</i> {esc(f.not_checked)}" if f.not_checked else ""
        )
        rows.append(
            f'<tr><td class="sev-{esc(f.severity)}">{esc(f.severity)}</td>'
            f"<td><b>{esc(f.rule_id)}</b>{'<br>' + esc(f.title) if f.title else ''}"
            f"<details><summary>what it checks</summary>{explain}</details></td>"
            f'<td class="num">{f.n:,}</td><td>{esc(f.value)}</td><td>{esc(f.message)}</td></tr>'
        )
    head = "".join(
        f"<th>{h}</th>" for h in ("severity", "rule", "findings", "value", "example message")
    )
    return (
        f'<table class="data findings"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _metrics_html(page: SeriesPage) -> str:
    if not page.metrics:
        return '<p class="missing">No pixel metrics for this series (run `curation pixels`).</p>'
    rows = []
    for m in page.metrics:
        z = "" if m.robust_z is None else f"{m.robust_z:+.1f}"
        rows.append(
            f"<tr{' class=outside' if m.unusual else ''}>"
            f'<td title="{esc(m.description)}">{esc(m.metric)}</td>'
            f'<td class="num">{m.value:.4g}</td><td class="num">{m.median:.4g}</td>'
            f'<td class="num">{m.q1:.4g} – {m.q3:.4g}</td><td class="num">{z}</td>'
            f'<td class="num">{m.n}</td><td>{glyph(m)}</td></tr>'
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("metric", "value", "group median", "group IQR", "robust z", "n", "")
    )
    return (
        f"<p>Group: {esc(page.group)}. Robust z is (value − median) / (1.4826 × MAD); beyond "
        f"±{K:g} (shaded) is what the pixel rules call unusual. The bar: the group's range, "
        "quartiles and median, the dot this series.</p>"
        f'<table class="data metrics"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def page_html(page: SeriesPage, previous: str | None, following: str | None) -> str:
    """One series page as an ``<article id="series/<key>">``."""
    crumbs = ['<a href="#findings">↑ QC findings</a>', '<a href="#series">all series pages</a>']
    if previous:
        crumbs.append(f'<a href="#series/{esc(previous)}">← previous</a>')
    if following:
        crumbs.append(f'<a href="#series/{esc(following)}">next →</a>')
    img = (
        f'<img class="mosaic" alt="slices of {esc(page.key)}" src="{page.mosaic}">'
        if page.mosaic
        else ""
    )
    note = f"<figcaption{'' if page.mosaic else ' class=missing'}>{esc(page.mosaic_note)}"
    return (
        f'<article class="series-page" id="series/{esc(page.key)}">'
        f'<p class="crumbs">{"".join(crumbs)}</p><h2>Series {esc(page.key)}</h2>'
        f'<div class="series-head">{table(["", ""], page.header)}'
        f'<figure class="mosaic">{img}{note}</figcaption></figure></div>'
        f"<h3>Findings</h3>{_findings_html(page.findings)}"
        f"<h3>Pixel metrics against its group</h3>{_metrics_html(page)}</article>"
    )


def series_section(
    con: duckdb.DuckDBPyConnection,
    selected: Sequence[tuple[str, str]],
    *,
    tiles: int = MOSAIC_TILES,
) -> Section | None:
    """The index of the series pages, and the pages themselves (shown one at a time)."""
    pages = series_pages(con, selected, tiles=tiles)
    if not pages:
        return None
    s = Section(
        "series",
        "Series pages",
        f"One page for each of the {len(pages)} worst flagged series (errors first): its "
        "harmonized header, its findings with what each rule checks, a mosaic of its slices and "
        "its pixel metrics against its group. Click a series here, in the findings table or a "
        "point in a plot. Other series have no page (`curation report --series-pages N`).",
    )
    s.blocks.append(
        table(
            ["series", "modality", "site", "worst", "rules"],
            [
                (
                    Link(f"#series/{p.key}", p.key),
                    p.summary["modality"],
                    p.summary["site"],
                    p.summary["worst"],
                    p.summary["rules"],
                )
                for p in pages
            ],
        )
    )
    keys = [p.key for p in pages]
    for i, p in enumerate(pages):
        s.blocks.append(
            page_html(p, keys[i - 1] if i else None, keys[i + 1] if i + 1 < len(keys) else None)
        )
    s.blocks.append(
        '<article class="series-page" id="series/none"><p class="crumbs">'
        '<a href="#findings">↑ QC findings</a><a href="#series">all series pages</a></p>'
        "<h2>No page for this series</h2><p>Pages are made for the "
        f"{len(pages)} worst flagged series only (`--series-pages` raises the cap); this one "
        "is not among them. Its values are in the plots and in the catalog.</p></article>"
    )
    return s
