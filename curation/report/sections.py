"""The report's sections, each built only when the tables (or cohort files) it reads exist.

A crawl-only catalog gets the overview and heterogeneity sections; QC adds findings and thumbnails;
pixel metrics add their distributions; a cohort folder adds attrition and split balance. Each
``*_section`` function returns a :class:`Section` or None, never raises for a missing step.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from curation.catalog import quote_literal, table_names
from curation.errors import InputError
from curation.report import figures
from curation.report.html import Link, Section, esc, table
from curation.report.thumbnails import flagged_series

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("curation.report")

#: Worst series listed in the findings section.
WORST_SERIES = 15


def _add(section: Section, *figs: go.Figure | None) -> None:
    section.blocks.extend(f for f in figs if f is not None)


def overview_section(
    con: duckdb.DuckDBPyConnection, date_precision: str = "year"
) -> Section | None:
    """Catalog overview: counts, modality, vendor, site, dates, crawl problems.

    Study dates are shown no finer than ``date_precision`` (year, month or day).
    """
    fmt = figures.DATE_FORMATS[date_precision]
    if not {"instances", "series", "studies", "patients", "files"} <= table_names(con):
        return None
    s = Section(
        "overview",
        "Catalog overview",
        "What the archive holds: patients, studies, series and files; modality, vendor, site "
        "(InstitutionName) and study dates.",
    )
    counts = con.sql(
        f"""SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM studies),
                  (SELECT count(*) FROM series), (SELECT count(*) FROM instances),
                  (SELECT count(*) FROM files),
                  (SELECT count(*) FROM files WHERE status = 'error'),
                  (SELECT count(DISTINCT coalesce(InstitutionName, '')) FROM series),
                  (SELECT count(DISTINCT {figures.VENDOR}) || ' (' || count(DISTINCT Manufacturer)
                          || ' Manufacturer strings)' FROM series),
                  (SELECT strftime(min(StudyDate), $fmt) || ' to ' || strftime(max(StudyDate), $fmt)
                   FROM studies)""",
        params={"fmt": fmt},
    ).fetchall()[0]
    labels = [
        "patients",
        "studies",
        "series",
        "instances",
        "files seen",
        "unreadable files",
        "sites",
        "vendors",
        "study dates",
    ]
    s.blocks.append(table(["", "count"], zip(labels, counts, strict=True)))
    _add(
        s,
        figures.series_by_modality_vendor(con),
        figures.series_by_site(con),
        figures.studies_over_time(con, date_precision),
    )
    if "crawl_errors" in table_names(con):
        problems = con.sql(
            """SELECT reason, count(*) AS files, count(*) FILTER (WHERE cataloged) AS still_cataloged
               FROM crawl_errors GROUP BY reason ORDER BY files DESC, reason"""
        ).fetchall()
        if problems:
            s.blocks.append("<h3>Files with problems (crawl_errors)</h3>")
            s.blocks.append(table(["reason", "files", "header still cataloged"], problems))
    return s


def heterogeneity_section(
    con: duckdb.DuckDBPyConnection, linked: Sequence[str] = ()
) -> Section | None:
    """Heterogeneity of acquisition across sites and vendors; points of the series in ``linked``
    (those with a page) open their page when clicked."""
    if not {"instances", "series"} <= table_names(con):
        return None
    s = Section(
        "heterogeneity",
        "Heterogeneity across sites and vendors",
        "How acquisition differs between sites and vendors: slice thickness and pixel spacing per "
        "series (one point per series), CT reconstruction kernels and MR field strengths. A model "
        "trained on this data sees these differences; so should its authors.",
    )
    _add(
        s,
        figures.slice_thickness(con, linked),
        figures.pixel_spacing(con, linked),
        figures.ct_kernels(con),
        figures.mr_field_strength(con),
    )
    return s


def findings_section(con: duckdb.DuckDBPyConnection, pages: Collection[str] = ()) -> Section | None:
    """QC findings by rule, severity and site, with the worst series listed (pseudonyms); a
    series whose key is in ``pages`` links to its page."""
    if not {"qc_findings", "qc_runs", "series", "studies", "instances"} <= table_names(con):
        return None
    s = Section(
        "findings",
        "QC findings",
        "Findings of the latest run of every suite (QC rules and expectation suites): per rule and "
        "severity, per site, and the series with the most serious findings. `curation qc --explain "
        "RULE` says what a rule checks and what it does not.",
    )
    runs = con.sql(
        """SELECT run_id, suite_name, curation_version,
                  strftime(finished_at, '%Y-%m-%d %H:%M:%S'), n_rules, n_findings
           FROM qc_runs WHERE run_id IN (
               SELECT max(run_id) FROM qc_runs WHERE finished_at IS NOT NULL GROUP BY suite_name)
           ORDER BY run_id"""
    ).fetchall()
    if not runs:
        s.blocks.append('<p class="missing">No finished QC run in this catalog.</p>')
        return s
    s.blocks.append(table(["run", "suite", "version", "finished", "rules", "findings"], runs))
    _add(s, figures.findings_by_rule(con), figures.findings_by_site(con))
    worst = con.sql(
        f"""WITH f AS ({figures.FINDINGS_SQL})
            SELECT 'S-' || pseudonym(f.SeriesInstanceUID), 'P-' || pseudonym(any_value(f.PatientID)),
                any_value(f.site), any_value(s.Modality), any_value(s.Manufacturer),
                count(*) FILTER (WHERE severity = 'error') AS n_error,
                count(*) FILTER (WHERE severity = 'warning') AS n_warning,
                count(*) FILTER (WHERE severity = 'info') AS n_info,
                string_agg(DISTINCT rule_id, ', ' ORDER BY rule_id)
            FROM f LEFT JOIN series s USING (SeriesInstanceUID)
            WHERE f.SeriesInstanceUID IS NOT NULL
            GROUP BY f.SeriesInstanceUID
            ORDER BY n_error DESC, n_warning DESC, n_info DESC, f.SeriesInstanceUID
            LIMIT {WORST_SERIES}"""
    ).fetchall()
    if worst:
        # the first column is the series key: a link where the series has a page
        worst = [(Link(f"#series/{r[0]}", r[0]) if r[0] in pages else r[0], *r[1:]) for r in worst]
        s.blocks.append(f"<h3>The {len(worst)} series with the most serious findings</h3>")
        s.blocks.append(
            table(
                [
                    "series",
                    "patient",
                    "site",
                    "modality",
                    "vendor",
                    "errors",
                    "warnings",
                    "info",
                    "rules",
                ],
                worst,
            )
        )
    return s


def pixel_metrics_section(
    con: duckdb.DuckDBPyConnection, linked: Sequence[str] = ()
) -> Section | None:
    """Distributions of the pixel metrics per site, where the pixel step has run; points of the
    series in ``linked`` open their page when clicked."""
    if "pixel_metrics" not in table_names(con):
        return None
    metrics = figures.pixel_metric_columns(con)
    s = Section(
        "pixels",
        "Pixel metrics",
        "Distributions of the metrics computed from pixels (pixel_metrics, one value per series), "
        "per site; the menu at the top right picks the metric. docs/catalog.md says what each is.",
    )
    _add(s, figures.pixel_metrics(con, metrics, linked=linked))
    if not s.blocks:
        s.blocks.append('<p class="missing">pixel_metrics holds no metric values yet.</p>')
    return s


def _first(folder: Path, *patterns: str) -> Path | None:
    """The first file of ``folder`` matching one of ``patterns``, in pattern order.

    A cohort folder is data someone may have handed over: a match that is a link leading out of
    the folder (or not a regular file) is refused, so the report reads nothing outside it.
    """
    inside = folder.resolve()
    for pattern in patterns:
        for found in sorted(folder.glob(pattern)):
            real = found.resolve()
            if not real.is_relative_to(inside) or not real.is_file():
                raise InputError(
                    f"{found}: not a file inside the cohort folder (a link to {real}?); not read"
                )
            return found
    return None


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn DuckDB's failure to read a cohort file into an input error naming the file."""
    import duckdb

    try:
        yield
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot read this cohort file: {first}") from exc


def _reader(path: Path) -> str:
    """SQL relation reading a cohort file (its path quoted: it is text from outside)."""
    quoted = quote_literal(str(path))
    return f"read_parquet({quoted})" if path.suffix == ".parquet" else f"read_csv({quoted})"


def _flatten(data: object, prefix: str = "") -> list[tuple[str, str]]:
    """Nested provenance as (dotted key, text) rows a reader can scan: ``spec.criteria.3`` says
    its criterion in words, lists of scalars are joined, nothing is JSON."""
    if isinstance(data, dict):
        if {"action", "kind", "target"} <= set(data):  # a criterion: its title, as attrition says
            op = f" {data.get('op')} {data.get('value')!r}" if data.get("op") else ""
            return [(prefix, str(data.get("name") or f"{data['action']} {data['target']}{op}"))]
        rows: list[tuple[str, str]] = []
        for k, v in data.items():
            rows += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    if isinstance(data, list):
        if all(not isinstance(v, dict | list) for v in data):
            return [(prefix, ", ".join(str(v) for v in data))]
        rows = []
        for i, v in enumerate(data):
            rows += _flatten(v, f"{prefix}.{i}")
        return rows
    return [(prefix, "" if data is None else str(data))]


def cohort_section(con: duckdb.DuckDBPyConnection, cohort: Path) -> Section | None:
    """Attrition funnel and split balance of a cohort folder written by ``curation cohort``.

    Reads ``manifest.parquet`` (``split``; ``site`` (or an older manifest's ``InstitutionName``), ``vendor``, ``label_*`` where
    present), ``attrition.csv`` (``criterion`` and ``n_series`` remaining after it) and
    ``provenance.json``, as :func:`curation.cohort.build_cohort` writes them. Only aggregates are
    shown, never a manifest row.
    """
    if not cohort.is_dir():
        return None
    s = Section(
        "cohort",
        "Cohort",
        f"The cohort in {cohort.name}/: what each inclusion step removed, and how the splits "
        "balance across sites, vendors and labels.",
    )
    attrition = _first(cohort, "attrition.parquet", "attrition.csv", "*attrition*.parquet")
    if attrition is not None:
        with _reading(attrition):
            cols = con.sql(f"DESCRIBE SELECT * FROM {_reader(attrition)}").fetchall()
            text = [c[0] for c in cols if str(c[1]).upper() == "VARCHAR"]
            nums = [c[0] for c in cols if str(c[1]).upper() in ("BIGINT", "INTEGER", "UBIGINT")]
            preferred = [c for c in ("n_series", "n_remaining", "n") if c in nums]
            step = [c for c in ("criterion", "step_name") if c in text] + text
            if step and nums:
                count = (preferred or nums)[0]
                _add(s, figures.attrition_funnel(con, _reader(attrition), step[0], count))
    manifest = _first(cohort, "manifest.parquet", "*manifest*.parquet")
    if manifest is not None:
        with _reading(manifest):
            names = {
                c[0] for c in con.sql(f"DESCRIBE SELECT * FROM {_reader(manifest)}").fetchall()
            }
            if "split" in names:
                labels = sorted(n for n in names if n.startswith("label_"))[:2]
                sites = [c for c in ("site", "InstitutionName") if c in names][:1]
                for by in (*sites, "vendor", *labels):
                    if by in names:
                        _add(s, figures.split_balance(con, _reader(manifest), by))
    provenance = _first(cohort, "*provenance*.json")
    if provenance is not None:
        try:
            data = json.loads(provenance.read_text())
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable provenance sidecar: %s", provenance, exc)
        else:
            if isinstance(data, dict):
                flat = [(k[:80], v[:300]) for k, v in _flatten(data)[:60]]
                s.blocks.append("<h3>Cohort provenance</h3>")
                s.blocks.append(table(["", ""], flat))
    if not s.blocks:
        s.blocks.append(
            f'<p class="missing">{esc(cohort)} holds no manifest or attrition table.</p>'
        )
    return s


def thumbnails_section(
    con: duckdb.DuckDBPyConnection, limit: int = 12, pages: Collection[str] = ()
) -> Section | None:
    """Middle slices of the worst flagged series, embedded as images; each links to the series'
    page where its key is in ``pages``."""
    if not {"qc_findings", "qc_runs", "series", "instances"} <= table_names(con):
        return None
    thumbs = flagged_series(con, limit)
    if not thumbs:
        return None
    s = Section(
        "thumbnails",
        "Flagged series: middle slices",
        "The middle slice of each of the worst flagged series, windowed to its 1st-99th "
        "percentile. Series that may show identifying text in their pixels (burned-in "
        "annotation, secondary captures, privacy findings) are never drawn.",
    )
    items = []
    for t in thumbs:
        img = (
            f'<img alt="middle slice of {esc(t.series_pseudonym)}" src="{t.data_uri}">'
            if t.data_uri
            else f'<p class="missing">{esc(t.problem)}</p>'
        )
        if t.series_pseudonym in pages:
            img = f'<a href="#series/{esc(t.series_pseudonym)}">{img}</a>'
        items.append(
            f"<figure>{img}<figcaption><b>{esc(t.series_pseudonym)}</b> "
            f"{esc(t.modality)}, {esc(t.site)}<br>patient {esc(t.patient_pseudonym)}<br>"
            f"{esc(t.rules)}</figcaption></figure>"
        )
    s.blocks.append(f'<div class="thumbs">{"".join(items)}</div>')
    return s
