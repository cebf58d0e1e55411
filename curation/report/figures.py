"""The report's figures: one function per figure, each a set-based query over a DuckDB connection.

Every function takes an open catalog connection and returns a :class:`plotly.graph_objects.Figure`, or
None when the catalog holds nothing to draw (no CT kernels in an MR-only archive, no findings). The
caller decides whether a figure's tables exist (see :mod:`curation.report.sections`); the functions
only aggregate, so the data that reaches the browser is counts and per-series values, never a patient
identifier. The site is ``InstitutionName`` (``(no site)`` where absent), the vendor the harmonized
vendor of ``Manufacturer`` (:func:`curation.harmonize.vendors.vendor_sql`, as the cohort names it).

Column names that come from outside the code (a cohort folder's files, which may have been handed
to the user by anyone) reach SQL only through :func:`curation.catalog.quote_ident`, and figure titles
show them HTML-escaped (plotly renders a subset of HTML in titles).
"""

from __future__ import annotations

import functools
import html
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from curation.catalog import quote_ident
from curation.harmonize.vendors import vendor_sql
from curation.qc.rule import Severity

#: SQL ORDER BY key of findings, worst first, in the one severity order (qc.rule.Severity), not a copy of it.
WORST_FIRST = (
    "CASE severity "
    + " ".join(f"WHEN '{s.value}' THEN {Severity.ERROR.rank - s.rank}" for s in Severity)
    + f" ELSE {Severity.ERROR.rank} END"
)

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import polars as pl
    from numpy.typing import NDArray

#: Site of a row of series/studies/instances.
SITE = "coalesce(InstitutionName, '(no site)')"
#: Vendor of a row of series/instances: the harmonized vendor (one name for SIEMENS and Siemens
#: Healthineers, as the cohort's), the raw Manufacturer strings shown on hover where a figure can.
VENDOR = f"coalesce({vendor_sql('Manufacturer')}, '(no vendor)')"
#: Severities from worst to mildest, with the colours they keep in every figure.
SEVERITY_COLORS = {"error": "#c0392b", "warning": "#e67e22", "info": "#2980b9"}

_HEIGHT = 420
#: Characters of a figure title per line: plotly never wraps a title, so a long one (a cohort
#: column name, a long label) would run off the figure; it is broken at spaces instead.
TITLE_WIDTH = 90

#: Plotly's ten default colours: figures with up to ten groups keep the colours people know.
_PLOTLY10 = (
    "#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A",
    "#19d3f3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52",
)  # fmt: skip


def _oklab(rgb: NDArray[np.float64]) -> NDArray[np.float64]:
    """sRGB colours (rows of 0-1 values) in OKLab (Björn Ottosson's matrices), where Euclidean
    distance follows how different two colours look."""
    import numpy as np

    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    lms = linear @ np.array(
        [[0.4122214708, 0.5363325363, 0.0514459929],
         [0.2119034982, 0.6806995451, 0.1073969566],
         [0.0883024619, 0.2817188376, 0.6299787005]]
    ).T  # fmt: skip
    return np.cbrt(lms) @ np.array(
        [[0.2104542553, 0.7936177850, -0.0040720468],
         [1.9779984951, -2.4285922050, 0.4505937099],
         [0.0259040371, 0.7827717662, -0.8086757660]]
    ).T  # fmt: skip


@functools.cache
def _palette(n: int) -> tuple[str, ...]:
    import numpy as np

    # candidates: a grid over the sRGB cube, neither too dark nor too pale on a white page
    steps = np.linspace(0.0, 1.0, 9)
    grid = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
    lab = _oklab(grid)
    keep = (lab[:, 0] > 0.45) & (lab[:, 0] < 0.88)
    grid, lab = grid[keep], lab[keep]
    seeds = np.array([[int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)] for c in _PLOTLY10])
    nearest = np.min(np.linalg.norm(lab[:, None, :] - _oklab(seeds)[None], axis=-1), axis=1)
    out = list(_PLOTLY10)
    while len(out) < n:  # farthest point first: the colour least like any chosen so far
        best = int(np.argmax(nearest))
        out.append("#{:02x}{:02x}{:02x}".format(*(round(255 * v) for v in grid[best])))
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[best], axis=1))
    return tuple(out[:n])


def palette(n: int) -> list[str]:
    """``n`` colours that stay apart however many sites, vendors or labels a figure has.

    The first ten are plotly's defaults (the colours people know); each further one is, of a
    grid of sRGB colours of medium lightness, the one farthest in OKLab (a perceptually even
    space) from every colour chosen before it. Plotly's own cycle would repeat after ten (sites 1
    and 11 the same blue).
    """
    return list(_palette(n))


def _wrap(title: str) -> str:
    return "<br>".join(textwrap.wrap(title, TITLE_WIDTH, break_long_words=False)) or title


def _layout(fig: go.Figure, title: str, **kwargs: object) -> go.Figure:
    text = _wrap(title)
    fig.update_layout(
        title={"text": text, "x": 0.01},
        template="plotly_white",
        height=_HEIGHT,
        margin={"l": 60, "r": 20, "t": 42 + 18 * (text.count("<br>") + 1), "b": 60},
        legend={"orientation": "v"},
        # traces without a colour of their own take theirs from here: distinct past ten
        colorway=palette(max(len(fig.data), 1)),
        **kwargs,
    )
    return fig


def _frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object] | None = None
) -> pl.DataFrame:
    return con.sql(sql, params=params).pl()


def _stacked_bars(
    frame: pl.DataFrame, x: str, color: str, y: str, *, horizontal: bool = False
) -> go.Figure:
    """Bars of ``y`` per ``x``, one trace per value of ``color``, stacked.

    Severities keep their colours; other groups (sites, modalities, labels) take one colour each
    from :func:`palette`.
    """
    fig = go.Figure()
    keys = frame[color].unique(maintain_order=True).to_list()
    for key, fallback in zip(keys, palette(len(keys)), strict=True):
        part = frame.filter(frame[color] == key)
        xs, ys = part[x].to_list(), part[y].to_list()
        fig.add_trace(
            go.Bar(
                x=ys if horizontal else xs,
                y=xs if horizontal else ys,
                name=str(key),
                orientation="h" if horizontal else "v",
                marker_color=SEVERITY_COLORS.get(str(key), fallback),
            )
        )
    fig.update_layout(barmode="stack")
    return fig


#: A (site, vendor) group with fewer series than this is drawn as its points alone: a box of one
#: to four values draws quartiles that are not there (or, for one value, an empty box).
MIN_BOX = 5
#: A trace with at most this many values shows every series as a point (MRIQC's strip plots: each
#: point can be clicked); above it only the outliers, since the browser draws each point as an
#: SVG node.
MAX_POINTS = 2000


def _key_sql(uid: str, linked: Sequence[str]) -> str:
    """SQL of a row's series page key: ``S-<pseudonym>`` for a series in ``linked`` (bound as
    ``$linked``), '' for the rest, so that only series with a page carry one."""
    if not linked:
        return "''"
    return f"CASE WHEN list_contains($linked, {uid}) THEN 'S-' || pseudonym({uid}) ELSE '' END"


def strip_boxes(frame: pl.DataFrame, x: str, by: str, *, hover: str = "%{y}") -> list[go.Box]:
    """Box traces of ``v`` per ``x``, one colour per value of ``by``, every series a point.

    ``frame`` has the columns ``x``, ``by``, ``v`` and ``key`` (the series page key, '' when the
    series has none): each point carries its key as ``customdata``, which the report's script
    follows on a click. Groups of ``(by, x)`` with fewer than :data:`MIN_BOX` values are drawn as
    points only (a second trace of the same legend group and offset, its box transparent).
    """
    import polars as pl

    traces: list[go.Box] = []
    names = frame[by].unique(maintain_order=True).to_list()
    counted = frame.with_columns(pl.len().over(by, x).alias("n_group"))
    for name, color in zip(names, palette(len(names)), strict=True):
        part = counted.filter(pl.col(by) == name)
        label = html.escape(str(name)[:80])
        common: dict[str, object] = {
            "name": label,
            "legendgroup": label,
            "offsetgroup": label,
            "alignmentgroup": "all",
            "marker": {"color": color, "size": 5, "opacity": 0.8},
            "jitter": 0.5,
            "pointpos": 0,
            "hovertemplate": f"%{{x}}: {hover}<br>%{{customdata}}<extra>{label}</extra>",
        }
        dense = part.filter(pl.col("n_group") >= MIN_BOX)
        sparse = part.filter(pl.col("n_group") < MIN_BOX)
        if dense.height:
            traces.append(
                go.Box(
                    x=dense[x].to_list(),
                    y=dense["v"].to_list(),
                    customdata=dense["key"].to_list(),
                    boxpoints="all" if dense.height <= MAX_POINTS else "outliers",
                    line={"color": color},
                    **common,
                )
            )
        if sparse.height:
            traces.append(
                go.Box(
                    x=sparse[x].to_list(),
                    y=sparse["v"].to_list(),
                    customdata=sparse["key"].to_list(),
                    boxpoints="all",
                    fillcolor="rgba(0,0,0,0)",
                    line={"color": "rgba(0,0,0,0)"},
                    hoveron="points",
                    showlegend=not dense.height,
                    **common,
                )
            )
    return traces


# -- catalog overview ---------------------------------------------------------------------------


def series_by_modality_vendor(con: duckdb.DuckDBPyConnection) -> go.Figure | None:
    """Series per harmonized vendor, stacked by modality (``series``); the Manufacturer strings
    each vendor stands for on hover."""
    frame = _frame(
        con,
        f"""SELECT {VENDOR} AS vendor, coalesce(Modality, '?') AS modality, count(*) AS n,
                string_agg(DISTINCT coalesce(Manufacturer, '(none)'), ' | '
                           ORDER BY coalesce(Manufacturer, '(none)')) AS raw
            FROM series GROUP BY ALL ORDER BY modality, n DESC""",
    )
    if frame.is_empty():
        return None
    fig = go.Figure()
    for modality in frame["modality"].unique(maintain_order=True).to_list():
        part = frame.filter(frame["modality"] == modality)
        fig.add_trace(
            go.Bar(
                x=part["vendor"].to_list(),
                y=part["n"].to_list(),
                name=html.escape(str(modality)[:40]),
                # raw header text: escaped for plotly's HTML subset
                customdata=[html.escape(str(r)[:300]) for r in part["raw"].to_list()],
                hovertemplate="%{x}: %{y} series<br>Manufacturer: %{customdata}<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_layout(barmode="stack")
    return _layout(fig, "Series per vendor (harmonized) and modality", yaxis_title="series")


def series_by_site(con: duckdb.DuckDBPyConnection) -> go.Figure | None:
    """Series per site, stacked by modality (``series``)."""
    frame = _frame(
        con,
        f"""SELECT {SITE} AS site, coalesce(Modality, '?') AS modality, count(*) AS n
            FROM series GROUP BY ALL ORDER BY modality, site DESC""",
    )
    if frame.is_empty():
        return None
    fig = _stacked_bars(frame, "site", "modality", "n", horizontal=True)
    return _layout(fig, "Series per site and modality", xaxis_title="series")


#: strftime format of each date precision the report may show (``--date-precision``).
DATE_FORMATS: dict[str, str] = {"year": "%Y", "month": "%Y-%m", "day": "%Y-%m-%d"}


def studies_over_time(con: duckdb.DuckDBPyConnection, precision: str = "year") -> go.Figure | None:
    """Studies per year (or month, day: ``precision``) of StudyDate, stacked by site (``studies``).

    Dates are identifying: the report shows them no finer than the user chose (year by default).
    """
    fmt = DATE_FORMATS[precision]
    frame = _frame(
        con,
        f"""SELECT strftime(date_trunc('{precision}', StudyDate), '{fmt}') AS period,
                   {SITE} AS site, count(*) AS n
            FROM studies WHERE StudyDate IS NOT NULL GROUP BY ALL ORDER BY site, period""",
    )
    if frame.is_empty():
        return None
    fig = _stacked_bars(frame, "period", "site", "n")
    fig.update_xaxes(type="category", categoryorder="category ascending")
    return _layout(fig, f"Studies per {precision} (StudyDate), by site", yaxis_title="studies")


# -- heterogeneity ------------------------------------------------------------------------------


def _per_series_value(
    con: duckdb.DuckDBPyConnection, value_sql: str, where: str, linked: Sequence[str]
) -> pl.DataFrame:
    """One value per series (the series' own, else the median over its instances), with
    site, vendor and series page key."""
    return _frame(
        con,
        f"""WITH per_series AS (
                SELECT SeriesInstanceUID, median({value_sql}) AS v
                FROM instances WHERE {where} GROUP BY SeriesInstanceUID
            )
            SELECT {SITE} AS site, {VENDOR} AS vendor, p.v AS v,
                {_key_sql("p.SeriesInstanceUID", linked)} AS key
            FROM per_series p JOIN series s USING (SeriesInstanceUID)
            WHERE p.v IS NOT NULL ORDER BY vendor, site""",
        {"linked": list(linked)} if linked else None,
    )


def _boxes(frame: pl.DataFrame, title: str, unit: str) -> go.Figure | None:
    if frame.is_empty():
        return None
    fig = go.Figure(strip_boxes(frame, "site", "vendor", hover=f"%{{y}} {unit.split()[-1]}"))
    fig.update_layout(boxmode="group")
    return _layout(fig, title, yaxis_title=unit)


def slice_thickness(con: duckdb.DuckDBPyConnection, linked: Sequence[str] = ()) -> go.Figure | None:
    """Slice thickness per series by site and vendor (``instances`` joined to ``series``).

    Points of the series in ``linked`` (SeriesInstanceUIDs of the report's series pages; ``con``
    then needs the ``pseudonym`` macro) carry their page key.
    """
    frame = _per_series_value(con, "SliceThickness", "SliceThickness > 0", linked)
    return _boxes(frame, "Slice thickness per series, by site and vendor", "SliceThickness (mm)")


def pixel_spacing(con: duckdb.DuckDBPyConnection, linked: Sequence[str] = ()) -> go.Figure | None:
    """In-plane pixel spacing (column spacing) per series by site and vendor; ``linked`` as
    :func:`slice_thickness`."""
    frame = _per_series_value(con, "PixelSpacing[2]", "PixelSpacing[2] > 0", linked)
    return _boxes(frame, "Pixel spacing per series, by site and vendor", "PixelSpacing (mm)")


def _heatmap(frame: pl.DataFrame, x: str, y: str, z: str, title: str) -> go.Figure | None:
    if frame.is_empty():
        return None
    wide = frame.pivot(on=x, index=y, values=z, aggregate_function="sum").fill_null(0)
    cols = [c for c in wide.columns if c != y]
    fig = go.Figure(
        go.Heatmap(
            z=wide.select(cols).to_numpy().tolist(),
            x=cols,
            y=wide[y].to_list(),
            colorscale="Blues",
            hovertemplate=f"{x}: %{{x}}<br>{y}: %{{y}}<br>series: %{{z}}<extra></extra>",
        )
    )
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return _layout(fig, title)


def ct_kernels(con: duckdb.DuckDBPyConnection) -> go.Figure | None:
    """CT series per convolution kernel and site (``series``)."""
    frame = _frame(
        con,
        f"""SELECT ConvolutionKernel AS kernel, {SITE} || ' / ' || {VENDOR} AS site_vendor,
                   count(*) AS n
            FROM series WHERE Modality = 'CT' AND ConvolutionKernel IS NOT NULL
            GROUP BY ALL ORDER BY kernel, site_vendor""",
    )
    return _heatmap(frame, "kernel", "site_vendor", "n", "CT series per kernel, by site and vendor")


def mr_field_strength(con: duckdb.DuckDBPyConnection) -> go.Figure | None:
    """MR series per magnetic field strength and site (``series``)."""
    frame = _frame(
        con,
        f"""SELECT printf('%.1f T', MagneticFieldStrength) AS field, {SITE} || ' / ' || {VENDOR}
                   AS site_vendor, count(*) AS n
            FROM series WHERE Modality = 'MR' AND MagneticFieldStrength > 0
            GROUP BY ALL ORDER BY field, site_vendor""",
    )
    return _heatmap(
        frame, "field", "site_vendor", "n", "MR series per field strength, by site and vendor"
    )


# -- QC findings --------------------------------------------------------------------------------

#: The findings of the latest finished run of every suite (QC suites and expectation suites), each
#: with the site of the series, study or instance it concerns.
FINDINGS_SQL = """
    WITH latest AS (
        SELECT suite_name, max(run_id) AS run_id FROM qc_runs
        WHERE finished_at IS NOT NULL GROUP BY suite_name
    ), instance_site AS (
        SELECT SOPInstanceUID, any_value(InstitutionName) AS InstitutionName
        FROM instances GROUP BY SOPInstanceUID
    )
    SELECT f.run_id, l.suite_name, f.rule_id, f.severity, f.level, f.PatientID,
        f.StudyInstanceUID, f.SeriesInstanceUID, f.SOPInstanceUID,
        coalesce(s.InstitutionName, st.InstitutionName, i.InstitutionName,
                 CASE WHEN f.level = 'cohort' THEN '(cohort)' ELSE '(no site)' END) AS site
    FROM qc_findings f JOIN latest l USING (run_id)
    LEFT JOIN series s ON s.SeriesInstanceUID = f.SeriesInstanceUID
    LEFT JOIN studies st ON st.StudyInstanceUID = f.StudyInstanceUID
    LEFT JOIN instance_site i ON i.SOPInstanceUID = f.SOPInstanceUID
"""


def findings_by_rule(con: duckdb.DuckDBPyConnection) -> go.Figure | None:
    """Findings per rule, coloured by severity (latest run of each suite)."""
    frame = _frame(
        con,
        f"""SELECT rule_id, severity, count(*) AS n FROM ({FINDINGS_SQL})
            GROUP BY rule_id, severity
            ORDER BY {WORST_FIRST}, n""",
    )
    if frame.is_empty():
        return None
    fig = _stacked_bars(frame, "rule_id", "severity", "n", horizontal=True)
    _layout(fig, "QC findings per rule and severity", xaxis_title="findings")
    fig.update_layout(height=max(_HEIGHT, 120 + 22 * frame["rule_id"].n_unique()))
    return fig


def findings_by_site(con: duckdb.DuckDBPyConnection) -> go.Figure | None:
    """Findings per site, stacked by severity (latest run of each suite)."""
    frame = _frame(
        con,
        f"""SELECT site, severity, count(*) AS n FROM ({FINDINGS_SQL})
            GROUP BY site, severity
            ORDER BY {WORST_FIRST}, site DESC""",
    )
    if frame.is_empty():
        return None
    fig = _stacked_bars(frame, "site", "severity", "n", horizontal=True)
    return _layout(fig, "QC findings per site and severity", xaxis_title="findings")


# -- pixel metrics ------------------------------------------------------------------------------

#: Floating-point columns of ``pixel_metrics`` that are bookkeeping, not metrics.
_NOT_METRICS = {"seconds"}


def pixel_metric_columns(con: duckdb.DuckDBPyConnection, table: str = "pixel_metrics") -> list[str]:
    """The metric columns of ``table``: its floating-point columns but bookkeeping ones."""
    return [
        name
        for name, sql_type, *_ in con.sql(f"DESCRIBE {quote_ident(table)}").fetchall()
        if str(sql_type).upper() in ("DOUBLE", "FLOAT", "REAL") and name not in _NOT_METRICS
    ]


def pixel_metrics(
    con: duckdb.DuckDBPyConnection,
    metrics: Sequence[str],
    table: str = "pixel_metrics",
    linked: Sequence[str] = (),
) -> go.Figure | None:
    """Distributions of the pixel metrics per site: one figure, a menu picks the metric.

    Rows are joined to ``series`` on ``SeriesInstanceUID`` for their site. One UNPIVOT query reads
    every metric at once. Points of the series in ``linked`` carry their page key (as
    :func:`slice_thickness`).
    """
    if not metrics:
        return None
    cols = ", ".join(f"CAST(m.{quote_ident(c)} AS DOUBLE) AS {quote_ident(c)}" for c in metrics)
    frame = _frame(
        con,
        f"""UNPIVOT (
                SELECT coalesce(s.InstitutionName, '(no site)') AS site,
                    {_key_sql("m.SeriesInstanceUID", linked)} AS key, {cols}
                FROM {table} m LEFT JOIN series s USING (SeriesInstanceUID)
            ) ON {", ".join(quote_ident(c) for c in metrics)} INTO NAME metric VALUE v
            ORDER BY metric, site""",
        {"linked": list(linked)} if linked else None,
    )
    frame = frame.filter(frame["v"].is_not_null() & frame["v"].is_finite())
    present = [m for m in metrics if m in set(frame["metric"].to_list())]
    if not present:
        return None
    fig = go.Figure()
    owner: list[int] = []  # which metric each trace draws (a sparse group adds a second trace)
    for i, metric in enumerate(present):
        for trace in strip_boxes(frame.filter(frame["metric"] == metric), "site", "metric"):
            trace.visible = i == 0
            fig.add_trace(trace)
            owner.append(i)
    buttons = [
        {
            "label": metric,
            "method": "update",
            "args": [{"visible": [j == i for j in owner]}, {"yaxis.title": metric}],
        }
        for i, metric in enumerate(present)
    ]
    fig.update_layout(
        updatemenus=[{"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.15}],
        showlegend=False,
    )
    return _layout(
        fig, "Pixel metrics per series, by site (pick the metric)", yaxis_title=present[0]
    )


# -- cohort -------------------------------------------------------------------------------------


def attrition_funnel(
    con: duckdb.DuckDBPyConnection, relation: str, step: str, count: str
) -> go.Figure | None:
    """The cohort's attrition funnel: what remains after each inclusion step, in file order.

    ``relation`` is SQL the caller built (a table, or ``read_csv`` of a quoted path); ``step`` and
    ``count`` are column names, quoted here.
    """
    frame = _frame(
        con,
        f"SELECT CAST({quote_ident(step)} AS VARCHAR) AS step, {quote_ident(count)} AS n "
        f"FROM {relation}",
    )
    if frame.is_empty():
        return None
    # Step names are text from the cohort folder: shown as text, never as plotly's HTML subset.
    steps = [html.escape(str(s)[:120]) for s in frame["step"].to_list()]
    fig = go.Figure(go.Funnel(y=steps, x=frame["n"].to_list()))
    return _layout(fig, "Cohort attrition: what remains after each step")


def split_balance(
    con: duckdb.DuckDBPyConnection, relation: str, by: str, split: str = "split"
) -> go.Figure | None:
    """Manifest rows per split, stacked by ``by`` (site, vendor or label); names quoted here."""
    frame = _frame(
        con,
        f"""SELECT CAST({quote_ident(split)} AS VARCHAR) AS split,
                   coalesce(CAST({quote_ident(by)} AS VARCHAR), '(none)') AS grp, count(*) AS n
            FROM {relation} GROUP BY ALL ORDER BY grp, split""",
    )
    if frame.is_empty():
        return None
    # Split and group names are text from the cohort folder: escaped for plotly's HTML subset.
    frame = frame.with_columns(
        frame["split"].map_elements(
            lambda v: html.escape(v[:80]), return_dtype=frame["split"].dtype
        ),
        frame["grp"].map_elements(lambda v: html.escape(v[:80]), return_dtype=frame["grp"].dtype),
    )
    fig = _stacked_bars(frame, "split", "grp", "n")
    from curation.cohort.manifest import split_order

    # one split order everywhere (train, val, test), as the datalist and the manifest tables
    order = split_order(frame["split"].unique().to_list())
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    return _layout(
        fig,
        f"Split balance: manifest rows per split, by {html.escape(by[:80])}",
        yaxis_title="rows",
    )
