"""The QC report: one self-contained HTML file that shows the catalog, the findings and the cohort.

- :mod:`curation.report.figures` — one function per figure, each a set-based query → plotly Figure
- :mod:`curation.report.sections` — the sections, each present only when its tables exist
- :mod:`curation.report.thumbnails` — middle slices of flagged series as embedded PNGs
- :mod:`curation.report.series` — a page per flagged series (header, findings, mosaic, metrics)
- :mod:`curation.report.html` — the :class:`Section` a page is made of, and assembling the file (plotly.js embedded once, images as data URIs)

Patients and series appear in the report only as pseudonyms; aggregates carry no identifier at all.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from curation import __version__, catalog, pseudonym
from curation.errors import CatalogError, InputError, writing
from curation.report.html import Section, render
from curation.report.labels import labels_section
from curation.report.sections import (
    cohort_section,
    findings_section,
    heterogeneity_section,
    overview_section,
    pixel_metrics_section,
    thumbnails_section,
)
from curation.report.series import SERIES_PAGES, select_series, series_section

__all__ = ["ReportResult", "Section", "build_report", "build_sections", "export_png"]

log = logging.getLogger("curation.report")


@dataclass(frozen=True)
class ReportResult:
    """What :func:`build_report` wrote."""

    path: Path
    sections: tuple[str, ...]
    n_figures: int
    n_thumbnails: int
    pngs: tuple[Path, ...] = ()
    n_series_pages: int = 0

    def __str__(self) -> str:
        return (
            f"report {self.path}: {len(self.sections)} sections ({', '.join(self.sections)}), "
            f"{self.n_figures} figures, {self.n_thumbnails} thumbnails, "
            f"{self.n_series_pages} series pages"
        )


def build_sections(
    con: duckdb.DuckDBPyConnection,
    cohort: str | Path | None = None,
    *,
    thumbnails: int = 12,
    date_precision: str = "year",
    series_pages: int = SERIES_PAGES,
) -> list[Section]:
    """Every section the catalog (and cohort folder) has the data for, in report order.

    ``con`` must carry the ``pseudonym`` macro (:func:`curation.pseudonym.install`); study dates
    are shown no finer than ``date_precision`` (year, month or day); the ``series_pages`` worst
    flagged series get a page (:mod:`curation.report.series`), linked from the findings table,
    the thumbnails and the points of the per-series plots.
    """
    selected = select_series(con, series_pages)
    linked = [uid for uid, _ in selected]  # queried with, never written out
    keys = {key for _, key in selected}
    built = [
        overview_section(con, date_precision),
        heterogeneity_section(con, linked),
        labels_section(con),
        findings_section(con, keys),
        pixel_metrics_section(con, linked),
        cohort_section(con, Path(cohort)) if cohort is not None else None,
        thumbnails_section(con, thumbnails, keys) if thumbnails > 0 else None,
        series_section(con, selected),
    ]
    return [s for s in built if s is not None]


def catalog_state(con: duckdb.DuckDBPyConnection) -> str:
    """SHA-256 over every cataloged file's id, size, mtime and status: changes when the data does."""
    rows = con.sql(
        """SELECT sha256(coalesce(string_agg(
               file_id || ':' || size || ':' || mtime_ns || ':' || status, ',' ORDER BY file_id), ''))
           FROM files"""
    ).fetchall()
    return str(rows[0][0])


def _provenance(
    con: duckdb.DuckDBPyConnection, db: str, cohort: str | Path | None, key_source: str
) -> list[tuple[str, str]]:
    have = catalog.table_names(con)
    out = [("curation version", __version__), ("catalog", db)]
    if "files" in have:
        out.append(("catalog state (sha256 of files)", catalog_state(con)))
    if "crawls" in have:
        last = con.sql(
            "SELECT max(crawl_id), max(finished_at)::VARCHAR, count(*) FROM crawls"
        ).fetchall()[0]
        out.append(("crawls", f"{last[2]} (latest: {last[0]}, finished {last[1]})"))
    if "qc_runs" in have:
        runs = con.sql(
            """SELECT string_agg(run_id || ' ' || suite_name || ' sha256:' || left(coalesce(suite_sha256, ''), 12),
                                 '; ' ORDER BY run_id)
               FROM qc_runs WHERE run_id IN (
                   SELECT max(run_id) FROM qc_runs WHERE finished_at IS NOT NULL GROUP BY suite_name)"""
        ).fetchall()[0][0]
        out.append(("QC runs shown", runs or "none"))
    out.append(("cohort", str(cohort) if cohort is not None else "none given"))
    out.append(("pseudonyms", f"HMAC-SHA256 (curation.pseudonym), key from {key_source}"))
    return out


def _store_key(db: str | Path, cohort: str | Path | None, key_file: str | Path | None) -> None:
    """The first report of a catalog without a key opens it once writable, to store its key."""
    with catalog.opened(db, read_only=True) as con:
        if pseudonym.catalog_key_is_available(con, cohort, key_file):
            return
    try:
        with catalog.opened(db) as con:
            pseudonym.catalog_key(con, cohort, key_file)
    except CatalogError as exc:
        # a read-only file or medium, or a catalog another process holds open for writing
        raise pseudonym.no_key_error(db, exc.__cause__ or exc) from exc


def build_report(
    db: str | Path | duckdb.DuckDBPyConnection,
    out: str | Path,
    cohort: str | Path | None = None,
    *,
    thumbnails: int = 12,
    png_dir: str | Path | None = None,
    title: str = "Curation QC report",
    key_file: str | Path | None = None,
    date_precision: str = "year",
    series_pages: int = SERIES_PAGES,
) -> ReportResult:
    """Write the self-contained HTML report of catalog ``db`` to ``out``.

    Parameters
    ----------
    db
        The catalog: a DuckDB file path (opened read-only) or an open connection (left open; it
        must be writable the first time, when the catalog's pseudonym key is created).
    out
        The HTML file to write (its folder is created).
    cohort
        A cohort folder written by ``curation cohort`` (manifest, attrition, provenance); optional.
    thumbnails
        How many flagged series to show as middle-slice thumbnails (0: none, no pixels read).
    png_dir
        Also write every figure as a PNG into this folder (needs kaleido and a Chromium).
    title
        The report's title.
    key_file
        File holding the pseudonym key; default: ``CURATION_PSEUDONYM_KEY``, the cohort folder's
        ``pseudonym.key``, else the catalog's own key (see :mod:`curation.pseudonym`).
    date_precision
        The finest study dates the report shows: ``year`` (default), ``month`` or ``day``
        (dates are identifying; the overview's range and the studies-over-time figure use it).
    series_pages
        How many flagged series get a page of their own, worst first (0: none; default
        :data:`curation.report.series.SERIES_PAGES`). Each page reads a few slices for its
        mosaic; series without a page are in the plots but link nowhere.

    Returns
    -------
    ReportResult
        The path written and what it holds.

    Raises
    ------
    CatalogError
        The catalog cannot be opened or holds no crawl (no ``instances`` table), or no key is
        given and the catalog, holding none, cannot be written to store one.
    OutputError
        ``out`` cannot be written.
    InputError
        ``cohort`` is not a folder, or PNG export was asked for without kaleido.
    """
    from curation.report.figures import DATE_FORMATS

    if date_precision not in DATE_FORMATS:
        raise InputError(f"date precision {date_precision!r}: one of {', '.join(DATE_FORMATS)}")
    if cohort is not None and not Path(cohort).is_dir():
        raise InputError(f"{cohort}: no cohort folder here (run `curation cohort` first)")
    name = "(connection)"
    if isinstance(db, str | Path):
        name = str(db)
        _store_key(db, cohort, key_file)
    with catalog.opened(db, read_only=True) as con:
        if not isinstance(db, str | Path):  # a connection: the file it has open, when it has one
            name = _database_file(con) or name
        if not catalog.has_table(con, "instances"):
            raise CatalogError(f"{name}: the catalog has no table 'instances'; crawl first")
        key, key_source = pseudonym.catalog_key(con, cohort, key_file)
        pseudonym.install(con, key)
        sections = build_sections(
            con,
            cohort,
            thumbnails=thumbnails,
            date_precision=date_precision,
            series_pages=series_pages,
        )
        provenance = _provenance(con, name, cohort, key_source)
    subtitle = f"catalog {Path(name).name if name != '(connection)' else name}" + (
        # a folder named cohort would read "cohort cohort"
        f", cohort folder {Path(cohort).name}/" if cohort is not None else ""
    )
    path = Path(out)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            render(sections, title=title, subtitle=subtitle, provenance=provenance),
            encoding="utf-8",
        )
    figs = [f for s in sections for f in s.figures]
    n_thumbs = sum(
        b.count("<img")
        for s in sections
        if s.id == "thumbnails"
        for b in s.blocks
        if isinstance(b, str)
    )
    pngs = tuple(export_png(sections, png_dir)) if png_dir is not None else ()
    n_pages = sum(
        b.count('<article class="series-page" id="series/S-')
        for s in sections
        if s.id == "series"
        for b in s.blocks
        if isinstance(b, str)
    )
    result = ReportResult(path, tuple(s.id for s in sections), len(figs), n_thumbs, pngs, n_pages)
    log.debug("%s", result)  # the caller prints it (the CLI on stdout)
    return result


def export_png(sections: Sequence[Section], folder: str | Path) -> list[Path]:
    """Write every figure of ``sections`` as ``<section>-<n>.png`` into ``folder`` with kaleido.

    kaleido drives a Chromium (``chromium`` on PATH, or ``BROWSER_PATH``); one browser serves all
    figures.
    """
    try:
        import kaleido
    except ImportError as exc:
        raise InputError(
            "PNG export needs kaleido (pip install 'kaleido>=1,<2') and a Chromium"
        ) from exc
    import plotly.io as pio

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    figs, paths = [], []
    for s in sections:
        for i, fig in enumerate(s.figures, 1):
            figs.append(fig)
            paths.append(out / f"{s.id}-{i}.png")
    if not figs:
        return []
    # One browser for the whole batch (kaleido otherwise starts Chromium per call, ~2 s each).
    kaleido.start_sync_server(silence_warnings=True)
    try:
        with warnings.catch_warnings():
            # plotly passes its kaleido options even when a server already holds them.
            warnings.filterwarnings("ignore", "The kopts argument is ignored", UserWarning)
            pio.write_images(figs, paths, format="png", width=1000, height=450)
    finally:
        kaleido.stop_sync_server(silence_warnings=True)
    return paths


def _database_file(con: duckdb.DuckDBPyConnection) -> str | None:
    """The file of ``con``'s current database; None in memory."""
    rows = con.sql(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()
    return str(rows[0][0]) if rows and rows[0][0] else None
