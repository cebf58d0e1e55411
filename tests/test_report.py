"""The HTML report on a real crawled catalog of sample_data: sections, self-containment, pseudonyms."""

from __future__ import annotations

import html
import html as html_mod
import io
import re
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from curation import crawl
from curation import pseudonym as pseudonyms
from curation.cli.main import main
from curation.demo import find_sample_data
from curation.qc.rule import PRIVACY, tagged
from curation.report import ReportResult, build_report
from curation.report.thumbnails import flagged_series

COHORT_KEY = b"report-test-key-0123456789"
PLOTLY_JS_BANNER = re.compile(r"\* plotly\.js v\d")
_INLINE_PLOTLY = re.compile(r"<script type=\"text/javascript\">.*?</script>", re.S)


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A crawl-only catalog of sample_data (real subset and synthetic cohort)."""
    sample = find_sample_data()
    db = tmp_path_factory.mktemp("crawled") / "catalog.duckdb"
    crawl([sample / "real", sample / "synthetic" / "dicom"], db, workers=2, progress=False)
    return db


@pytest.fixture(scope="module")
def full_catalog(crawled: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The crawled catalog after QC and report labels, with a small stand-in ``pixel_metrics``."""
    import curation.qc as qc
    from curation.cohort import load_labels, synthetic_report_labels

    db = tmp_path_factory.mktemp("full") / "catalog.duckdb"
    shutil.copy(crawled, db)
    qc.run(db)
    con = duckdb.connect(str(db))
    load_labels(con, synthetic_report_labels(find_sample_data() / "synthetic" / "reports.parquet"))
    # Values stand in for `curation pixels` (10 s on this sample); the grouping columns are the
    # real ones the pixel rules and the series pages group by.
    con.execute(
        """CREATE TABLE pixel_metrics AS
           SELECT SeriesInstanceUID, Modality, coalesce(ProtocolName, SeriesDescription) AS protocol,
                  NULL::VARCHAR AS sequence, 'ok' AS status,
                  (0.5 * n_instances)::DOUBLE AS snr,
                  (coalesce(SliceThickness, 1) * 3)::DOUBLE AS noise_sd, 1.0::DOUBLE AS seconds
           FROM series"""
    )
    con.close()
    return db


@pytest.fixture(scope="module")
def cohort_dir(full_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cohort built by curation.cohort from its shipped CT chest example, key file beside it."""
    import curation.cohort as cohort

    out = tmp_path_factory.mktemp("cohort") / "ct_chest"
    spec = Path(cohort.__file__).parent / "examples" / "ct_chest.yaml"
    cohort.build_cohort(full_catalog, spec, out, key=COHORT_KEY)
    (out / "pseudonym.key").write_bytes(COHORT_KEY + b"\n")  # as build_cohort generates it
    return out


@pytest.fixture(scope="module")
def report(
    full_catalog: Path, cohort_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> ReportResult:
    """The full report: catalog after QC, pixel metrics, cohort."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    return build_report(full_catalog, out, cohort_dir)


@pytest.fixture(scope="module")
def report_html(report: ReportResult) -> Path:
    return report.path


def _data_part(html: str) -> str:
    """The report without the inlined plotly.js library (which holds no data)."""
    return _INLINE_PLOTLY.sub("", html, count=1)


def test_crawl_only_catalog_gets_overview_and_heterogeneity(crawled: Path, tmp_path: Path) -> None:
    result = build_report(crawled, tmp_path / "r.html")
    assert result.sections == ("overview", "heterogeneity")
    assert result.n_figures >= 5
    html = result.path.read_text()
    assert len(PLOTLY_JS_BANNER.findall(html)) == 1, "plotly.js embedded exactly once"
    assert html.count('class="plotly-graph-div"') == result.n_figures
    assert "<script src" not in html and "<link" not in html, "nothing loaded from elsewhere"
    assert "Catalog overview" in html and "QC findings" not in html


def test_full_report_has_every_section(report: ReportResult) -> None:
    assert report.sections == (
        "overview",
        "heterogeneity",
        "labels",
        "findings",
        "pixels",
        "cohort",
        "thumbnails",
        "series",
    )
    html = report.path.read_text()
    assert html.count('class="plotly-graph-div"') == report.n_figures
    assert len(PLOTLY_JS_BANNER.findall(html)) == 1
    assert report.n_thumbnails >= 1
    assert html.count('src="data:image/png;base64,') == report.n_thumbnails
    for text in (
        "Cohort attrition",
        "Split balance",
        "Pixel metrics per series",
        "QC findings per rule",
    ):
        assert text in html
    assert "series.missing_slices" in html  # a rule the synthetic cohort trips


def test_report_holds_no_patient_identifiers(
    full_catalog: Path, cohort_dir: Path, report: ReportResult
) -> None:
    con = duckdb.connect(str(full_catalog), read_only=True)
    values = {
        v
        for (pid, name) in con.sql(
            "SELECT DISTINCT PatientID, PatientName FROM instances"
        ).fetchall()
        for v in (pid, name)
        if v and v.strip()
    }
    uids = {
        v
        for row in con.sql(
            "SELECT DISTINCT StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID FROM instances"
        ).fetchall()
        for v in row
        if v
    }
    key, source = pseudonyms.catalog_key(con, cohort_dir)
    assert key == COHORT_KEY and source.endswith("pseudonym.key")
    flagged = con.sql(
        "SELECT DISTINCT PatientID FROM qc_findings WHERE SeriesInstanceUID IS NOT NULL"
    ).fetchall()
    con.close()
    assert len(values) > 40
    html = _data_part(report.path.read_text())
    # Whole tokens: a real-subset PatientID "dicom" is also part of the rule id instance.not_dicom.
    leaked = sorted(
        v for v in values if re.search(rf"(?<![\w^]){re.escape(v.strip())}(?![\w^])", html)
    )
    assert leaked == []
    # Nor an original UID (the series pages are reached by pseudonym): every dotted number of the
    # page against the catalog's thousands of UIDs, as a set
    assert len(uids) > 1000
    assert uids.isdisjoint(re.findall(r"[0-9]+(?:\.[0-9]+)+", html))
    # Not vacuous: flagged patients are in the report, under their pseudonyms, and so are the
    # series pages (whose headers name patient, study and series).
    shown = [p for (p,) in flagged if p and pseudonyms.pseudonym(p, key, "P-") in html]
    assert shown
    assert report.n_series_pages > 0
    assert html.count('<article class="series-page" id="series/S-') == report.n_series_pages


def test_pseudonyms_are_the_cohort_hmac_sha256() -> None:
    con = duckdb.connect()
    values = ["5176139", "GARCIA^MARK^A", "Ünïcödé^名前", "", "x" * 200]
    for key in (b"a key of 16 bytes", b"k" * 100):  # keys longer than a block are hashed first
        pseudonyms.install(con, key)
        got = con.execute("SELECT v, pseudonym(v) FROM unnest($vals) t(v)", {"vals": values})
        assert dict(got.fetchall()) == {v: pseudonyms.pseudonym(v, key, "") for v in values}
    assert con.sql("SELECT 'P-' || pseudonym(NULL)").fetchall() == [(None,)]


def test_report_pseudonyms_match_the_manifest(full_catalog: Path, cohort_dir: Path) -> None:
    manifest = duckdb.sql(f"SELECT patient_key FROM '{cohort_dir / 'manifest.parquet'}'")
    keys = {k for (k,) in manifest.fetchall()}
    con = duckdb.connect(str(full_catalog), read_only=True)
    key, _ = pseudonyms.catalog_key(con, cohort_dir)
    ids = [p for (p,) in con.sql("SELECT DISTINCT PatientID FROM instances").fetchall() if p]
    con.close()
    assert keys and keys <= {pseudonyms.pseudonym(p, key, "") for p in ids}


def test_pseudonym_key_is_stored_once_and_env_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(pseudonyms.ENV_VAR, raising=False)
    con = duckdb.connect(str(tmp_path / "c.duckdb"))
    assert not pseudonyms.catalog_key_is_available(con)
    first, source = pseudonyms.catalog_key(con)
    assert source == "catalog settings" and pseudonyms.catalog_key_is_available(con)
    assert pseudonyms.catalog_key(con)[0] == first and len(first) == 64
    assert con.sql("SELECT count(*) FROM settings").fetchall() == [(1,)]
    monkeypatch.setenv(pseudonyms.ENV_VAR, "a team key, shared")
    assert pseudonyms.catalog_key(con) == (b"a team key, shared", "env")


def test_thumbnails_never_show_privacy_flagged_series(full_catalog: Path) -> None:
    con = duckdb.connect(str(full_catalog), read_only=True)
    pseudonyms.install(con, COHORT_KEY)
    privacy = {
        s
        for (s,) in con.sql(
            """SELECT DISTINCT 'S-' || pseudonym(SeriesInstanceUID) FROM qc_findings
               WHERE list_contains($privacy, rule_id)""",
            params={"privacy": [r.id for r in tagged(PRIVACY)]},
        ).fetchall()
    }
    thumbs = flagged_series(con, limit=1000)  # every flagged series is a candidate
    con.close()
    assert privacy, "the synthetic cohort plants privacy findings"
    assert thumbs and all(t.data_uri or t.problem for t in thumbs)
    assert not privacy & {t.series_pseudonym for t in thumbs}


def test_empty_cohort_folder_says_so(crawled: Path, tmp_path: Path) -> None:
    (tmp_path / "cohort").mkdir()
    result = build_report(crawled, tmp_path / "r.html", tmp_path / "cohort", thumbnails=0)
    assert "cohort" in result.sections
    html = result.path.read_text()
    assert "holds no manifest or attrition table" in html
    assert "cohort folder cohort/" in html and "cohort cohort" not in html


def test_a_report_from_a_connection_names_the_catalog_file(crawled: Path, tmp_path: Path) -> None:
    # The demo passes its open connection; the subtitle once read "catalog (connection)".
    con = duckdb.connect(str(crawled), read_only=True)
    try:
        html = build_report(con, tmp_path / "r.html", thumbnails=0, series_pages=0).path.read_text()
    finally:
        con.close()
    assert f"catalog {crawled.name}" in html and "(connection)" not in html


def test_cli_report_and_its_exit_codes(full_catalog: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "r.html"
    assert main(["report", "--db", str(full_catalog), "--out", str(out), "--thumbnails", "0"]) == 0
    assert out.stat().st_size > 1_000_000
    assert main(["report", "--db", str(tmp_path / "none.duckdb"), "--out", str(out)]) == 4
    bad_cohort = ["--cohort", str(tmp_path / "nope")]
    assert main(["report", "--db", str(full_catalog), "--out", str(out), *bad_cohort]) == 3


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH for kaleido")
def test_png_export(full_catalog: Path, tmp_path: Path) -> None:
    pytest.importorskip("kaleido", reason="kaleido (PNG export) is not installed")
    from PIL import Image

    result = build_report(full_catalog, tmp_path / "r.html", thumbnails=0, png_dir=tmp_path / "png")
    assert len(result.pngs) == result.n_figures
    for png in result.pngs:
        img = Image.open(png).convert("RGB")
        assert img.size == (1000, 450)
        assert len(img.getcolors(maxcolors=1 << 20) or []) > 10, f"{png.name} is blank"


def test_study_dates_are_shown_at_the_chosen_precision(crawled: Path, tmp_path: Path) -> None:
    con = duckdb.connect(str(crawled), read_only=True)
    days = {
        d.strftime(f)
        for (d,) in con.sql(
            "SELECT DISTINCT StudyDate FROM studies WHERE StudyDate IS NOT NULL"
        ).fetchall()
        for f in ("%Y-%m-%d", "%Y%m%d")
    }
    con.close()
    assert days
    html = _data_part(
        build_report(crawled, tmp_path / "y.html", thumbnails=0, key_file=None).path.read_text()
    )
    assert not [d for d in days if d in html]  # no day, by default (year)
    assert "Studies per year" in html
    fine = build_report(crawled, tmp_path / "d.html", thumbnails=0, date_precision="day")
    assert [d for d in days if d in _data_part(fine.path.read_text())]  # and the test can fail


def test_one_vendor_naming_with_the_raw_strings_on_hover(crawled: Path) -> None:
    from curation import catalog
    from curation.harmonize.vendors import normalize_vendor
    from curation.report import figures

    with catalog.opened(crawled, read_only=True) as con:
        raw = {r[0] for r in con.sql("SELECT DISTINCT Manufacturer FROM series").fetchall()}
        fig = figures.series_by_modality_vendor(con)
    assert fig is not None
    want = {normalize_vendor(m) or "(no vendor)" for m in raw}
    shown = {x for t in fig.data for x in t.x}
    # sample_data holds SIEMENS and Siemens Healthineers, Philips and Philips Medical Systems, ...
    assert shown == want and len(shown) < len(raw), (shown, raw)
    hover = " ".join(str(c) for t in fig.data for c in t.customdata)
    assert all(html.escape(m) in hover for m in raw if m), hover


# -- series pages ------------------------------------------------------------------------------


def _articles(html: str) -> dict[str, str]:
    """Series page key -> its article's HTML."""
    return dict(
        re.findall(
            r'<article class="series-page" id="series/(S-[0-9a-f]+)">(.*?)</article>', html, re.S
        )
    )


def test_series_pages_of_the_worst_flagged_series(
    full_catalog: Path, cohort_dir: Path, report: ReportResult
) -> None:
    from curation.qc.rule import all_rules
    from curation.report.series import SERIES_PAGES

    con = duckdb.connect(str(full_catalog), read_only=True)
    key, _ = pseudonyms.catalog_key(con, cohort_dir)
    latest = "SELECT max(run_id) FROM qc_runs WHERE finished_at IS NOT NULL GROUP BY suite_name"
    per_series = con.sql(
        f"""SELECT SeriesInstanceUID, list(DISTINCT rule_id ORDER BY rule_id),
                count(*) FILTER (WHERE severity = 'error') AS e
            FROM qc_findings WHERE run_id IN ({latest}) AND SeriesInstanceUID IS NOT NULL
            GROUP BY ALL"""
    ).fetchall()
    privacy = {
        u
        for (u,) in con.sql(
            f"""SELECT DISTINCT SeriesInstanceUID FROM qc_findings
                WHERE run_id IN ({latest}) AND list_contains($p, rule_id)""",
            params={"p": [r.id for r in tagged(PRIVACY)]},
        ).fetchall()
    }
    con.close()
    html = report.path.read_text()
    pages = _articles(html)
    assert len(pages) == report.n_series_pages == min(SERIES_PAGES, len(per_series))
    rules = all_rules()
    by_key = {pseudonyms.pseudonym(u, key, "S-"): (u, r, e) for u, r, e in per_series}
    worst = max(e for _, _, e in per_series)
    assert any(by_key[k][2] == worst for k in pages), "the worst series has a page"
    drawn = 0
    for k, page in pages.items():
        uid, rule_ids, _ = by_key[k]  # every page is a flagged series of this catalog
        assert "<td>modality</td>" in page and "<td>vendor (harmonized)</td>" in page
        # every rule that flagged the series is listed, with its own declaration's description
        for rule_id in rule_ids:
            assert f"<b>{rule_id}</b>" in page
            if rule_id in rules:
                assert html_mod.escape(rules[rule_id].description) in page
        if uid in privacy:
            assert "<img" not in page and "pixels not shown: a privacy rule flagged it" in page
        elif "<img" in page:
            drawn += 1
            assert 'src="data:image/jpeg;base64,' in page
        assert "Pixel metrics against its group" in page and "Group: " in page
    assert drawn >= 1
    # the findings table links each series with a page to it
    for k in re.findall(r'<td><a href="#series/(S-[0-9a-f]+)">', html):
        assert k in pages


def test_series_pages_cap_and_none(full_catalog: Path, tmp_path: Path) -> None:
    three = build_report(full_catalog, tmp_path / "3.html", thumbnails=0, series_pages=3)
    assert three.n_series_pages == 3 and len(_articles(three.path.read_text())) == 3
    none = build_report(full_catalog, tmp_path / "0.html", thumbnails=0, series_pages=0)
    html = none.path.read_text()
    assert none.n_series_pages == 0 and "series" not in none.sections
    assert 'href="#series/' not in html
    assert main(["report", "--db", str(full_catalog), "--out", str(tmp_path / "c.html"),
                 "--thumbnails", "0", "--series-pages", "-1"]) == 3  # fmt: skip


def test_mosaic_tiles_slices_of_a_real_series(full_catalog: Path) -> None:
    from PIL import Image

    from curation.pixels.draw import mosaic
    from curation.pixels.read import PixelReadError
    from curation.pixels.sample import slice_table

    con = duckdb.connect(str(full_catalog), read_only=True)
    [(uid,)] = con.sql(
        "SELECT SeriesInstanceUID FROM series WHERE Modality = 'CT' AND n_instances >= 12 "
        "ORDER BY SeriesInstanceUID LIMIT 1"
    ).fetchall()
    slices = slice_table(con, [uid])
    con.close()
    jpeg, shown = mosaic(slices, tiles=9, size=64)
    img = Image.open(io.BytesIO(jpeg))
    assert img.format == "JPEG" and img.size == (192, 192) and shown == 9
    tiles = [
        img.crop((x * 64, y * 64, x * 64 + 64, y * 64 + 64)) for y in range(3) for x in range(3)
    ]
    assert all(t.getextrema()[1] > 50 for t in tiles), "every tile shows a slice"
    assert len({t.tobytes() for t in tiles}) == 9, "nine different slices"
    broken = slices.with_columns(path=pl.lit("/nonexistent/file.dcm"), path_bytes=None)
    with pytest.raises(PixelReadError):
        mosaic(broken, tiles=4)


# -- figures: links, sparse groups, colours, titles ---------------------------------------------


def test_plot_points_carry_the_page_keys_of_linked_series_only(crawled: Path) -> None:
    from curation.report import figures

    con = duckdb.connect(str(crawled), read_only=True)
    pseudonyms.install(con, COHORT_KEY)
    linked = [
        u
        for (u,) in con.sql(
            "SELECT SeriesInstanceUID FROM series WHERE SliceThickness > 0 "
            "ORDER BY SeriesInstanceUID LIMIT 2"
        ).fetchall()
    ]
    fig = figures.slice_thickness(con, linked)
    plain = figures.slice_thickness(con)
    con.close()
    assert fig is not None and plain is not None
    keys = [k for t in fig.data for k in t.customdata]
    assert sorted(k for k in keys if k) == sorted(
        pseudonyms.pseudonym(u, COHORT_KEY, "S-") for u in linked
    )
    assert len(keys) > 10 and not any(k for t in plain.data for k in t.customdata)


def test_sparse_groups_are_points_not_boxes(crawled: Path) -> None:
    from curation.report import figures

    con = duckdb.connect(str(crawled), read_only=True)
    fig = figures.slice_thickness(con)
    # counted independently of the figure: series with a thickness per (vendor, site)
    sizes = {
        (v, s): n
        for v, s, n in con.sql(
            f"""SELECT {figures.VENDOR}, {figures.SITE}, count(*) FROM series
                WHERE SeriesInstanceUID IN (
                    SELECT SeriesInstanceUID FROM instances WHERE SliceThickness > 0)
                GROUP BY ALL"""
        ).fetchall()
    }
    con.close()
    assert fig is not None
    sparse = {k for k, n in sizes.items() if n < figures.MIN_BOX}
    dense = {k for k, n in sizes.items() if n >= figures.MIN_BOX}
    assert sparse and dense, sizes  # the sample has both, so both branches are tested
    drawn_as_points, drawn_as_boxes = set(), set()
    for t in fig.data:
        groups = {(html.unescape(t.name), x) for x in t.x}
        if t.hoveron == "points":  # a points-only trace: its box is invisible
            assert t.boxpoints == "all" and t.line.color == "rgba(0,0,0,0)"
            drawn_as_points |= groups
        else:
            assert t.line.color != "rgba(0,0,0,0)"
            drawn_as_boxes |= groups
    assert drawn_as_points == sparse and drawn_as_boxes == dense


def _min_delta_e(colors: list[str]) -> float:
    import numpy as np
    from skimage.color import deltaE_ciede2000, rgb2lab

    rgb = np.array([[int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)] for c in colors])
    lab = rgb2lab(rgb[None, :, :])[0]
    n = len(colors)
    return min(float(deltaE_ciede2000(lab[i], lab[j])) for i in range(n) for j in range(i + 1, n))


def test_twenty_sites_get_twenty_distinct_colours(crawled: Path, tmp_path: Path) -> None:
    from curation.report import figures

    db = tmp_path / "sites.duckdb"
    shutil.copy(crawled, db)
    con = duckdb.connect(str(db))
    # the sample's studies spread over 20 sites (a multi-site archive)
    con.execute("UPDATE studies SET InstitutionName = 'Site ' || (hash(StudyInstanceUID) % 20 + 1)")
    n_sites = con.sql("SELECT count(DISTINCT InstitutionName) FROM studies").fetchall()[0]
    fig = figures.studies_over_time(con)
    con.close()
    assert fig is not None and n_sites == (20,)
    colours = [t.marker.color for t in fig.data]
    assert len(colours) == 20 and len(set(colours)) == 20
    assert _min_delta_e(colours) > 10, "no two sites may look alike (CIEDE2000)"
    # plotly's own cycle repeats after ten: the figure would have shown site 1 and 11 alike
    assert figures.palette(10) == figures.palette(40)[:10] and _min_delta_e(figures.palette(40)) > 5


def test_long_titles_wrap() -> None:
    import plotly.graph_objects as go

    from curation.report.figures import TITLE_WIDTH, _layout

    title = "Split balance: manifest rows per split, by " + "label_" * 30 + " and more words"
    fig = _layout(go.Figure(), title)
    lines = fig.layout.title.text.split("<br>")
    assert len(lines) > 1 and " ".join(lines) == title
    assert all(len(line) <= TITLE_WIDTH for line in lines if " " in line)
