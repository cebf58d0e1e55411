"""Site summaries and their federation, on three synthetic sites of the shipped sample.

The sample (sample_data/synthetic, written by ``curation sample``) holds six sites, each in its own
folder with its own institution, vendors and export habits; three of them are crawled here into
three site catalogs, and together into one pooled catalog.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

from curation import catalog, crawl
from curation.cli.main import main
from curation.federate import build_summary, write_summary
from curation.federate.format import load_summary, validate
from curation.federate.suppress import protect, protect_count, protect_sequence
from curation.qc.rules.heterogeneity import PARAMETER_LOCATIONS

from .conftest import SAMPLE_DATA
from .identifiers import identifier_values, leaked

SITES = ("riverside", "st_aldric", "northbay")
SYNTHETIC = SAMPLE_DATA / "synthetic"
SPEC = SAMPLE_DATA / "cohort_spec.yaml"


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three site catalogs (QC run, labels loaded; pixel metrics at the first) and the pooled one."""
    from curation import harmonize, pixels, qc
    from curation.cohort import load_labels, synthetic_report_labels

    folder = tmp_path_factory.mktemp("sites")
    labels = synthetic_report_labels(SYNTHETIC / "reports.parquet")
    dbs = {}
    for i, site in enumerate(SITES):
        db = folder / f"{site}.duckdb"
        crawl([SYNTHETIC / "dicom" / site], db, workers=1, progress=False)
        with catalog.opened(db) as con:
            if i == 0:
                pixels.compute(con, workers=1)
            qc.run(con)
            load_labels(con, labels)
            harmonize.build(con)
        dbs[site] = db
    pooled = folder / "pooled.duckdb"
    crawl([SYNTHETIC / "dicom" / s for s in SITES], pooled, workers=2, progress=False)
    dbs["pooled"] = pooled
    return dbs


def _summary(db: Path, site: str, k: int, **kw: Any) -> dict[str, Any]:
    with catalog.opened(db, read_only=True) as con:
        return build_summary(con, site=site, min_count=k, **kw)


def _site_identifiers(db: Path) -> set[str]:
    """Every identifying value the site's catalog holds: IDs, names, UIDs (but the standard's own),
    dates finer than the year, paths and their folder names, free text, the site's own names."""
    from pydicom.uid import UID_dictionary

    with catalog.opened(db, read_only=True) as con:
        values = identifier_values(
            con,
            (
                "PatientID",
                "PatientName",
                "AccessionNumber",
                "StudyID",
                "StudyInstanceUID",
                "SeriesInstanceUID",
                "SOPInstanceUID",
                "FrameOfReferenceUID",
                "DeviceSerialNumber",
                "InstitutionName",
                "StationName",
                "StudyDescription",
                "SeriesDescription",
                "ProtocolName",
                "ImageComments",
                "strftime(StudyDate, '%Y%m%d')",
                "strftime(StudyDate, '%Y-%m-%d')",
                "strftime(PatientBirthDate, '%Y%m%d')",
                "path",
            ),
        )
        # every UID, name, date and person in any element, nested and private ones too
        values |= identifier_values(
            con, ("value",), table="elements WHERE vr IN ('UI', 'PN', 'DA', 'DT', 'LO', 'SH')"
        )
        paths = [p for (p,) in con.sql("SELECT path FROM files").fetchall()]
    root = str(SYNTHETIC / "dicom")
    values |= {part for p in paths for part in Path(p[len(root) :]).parts if len(part) >= 4}
    # the standard's UIDs (SOP classes, transfer syntaxes) identify nobody; LO/SH values that are
    # device or vendor vocabulary are what the summary is for (a model name shared by k series)
    values -= set(UID_dictionary)
    return values


def test_a_summary_holds_no_identifier_of_its_catalog(sites: dict[str, Path]) -> None:
    db = sites["riverside"]
    values = _site_identifiers(db)
    creators = {c for _, c, _ in PARAMETER_LOCATIONS if c}
    assert len(values) > 700  # every UID, ID, name, date and folder of the site (381 files)
    # k=1 shows every count and every open value: the most a summary can say
    for k in (1, 10):
        summary = _summary(db, "site-a", k, cohort=SPEC)
        text = json.dumps(summary, ensure_ascii=False)
        # LO/SH elements hold vendor vocabulary too (Manufacturer, model, kernel): those may
        # appear; every other value of the catalog may not
        shown = {
            c["value"]
            for d in summary["distributions"]
            if d["vocabulary"] == "open"
            for c in d["cells"]
        }
        # and the private creators whose tags the summary counts (a declared vocabulary)
        allowed = shown | {w for v in shown for w in v.split()} | creators
        leaks = leaked(values - allowed, text)
        assert leaks == set(), sorted(leaks)[:10]
        # nothing that looks like a date finer than the year, or a path
        assert not re.search(r"(19|20)\d\d-?[01]\d-?[0-3]\d", text)
        assert "/" not in "".join(c["value"] for d in summary["distributions"] for c in d["cells"])
        # not vacuous: the summary does say what the site has
        assert {"GE MEDICAL SYSTEMS", "SIGNA Premier"} <= shown
        assert summary["cohort"]["steps"][0]["n_series"] == summary["totals"]["series"]
    # and the shown open values are device vocabulary, never one of the free-text columns
    with catalog.opened(db, read_only=True) as con:
        free = identifier_values(
            con,
            ("SeriesDescription", "StudyDescription", "ProtocolName", "InstitutionName"),
            min_len=1,
        )
    assert not (shown & free)


def test_the_k1_counts_are_the_catalogs_and_suppression_only_hides(
    sites: dict[str, Path],
) -> None:
    db = sites["st_aldric"]
    full = _summary(db, "s", 1)
    hidden = _summary(db, "s", 10)
    assert not [c for d in full["distributions"] for c in d["cells"] if c.get("suppressed")]
    with catalog.opened(db, read_only=True) as con:
        truth = dict(con.sql("SELECT Modality, count(*) FROM series GROUP BY 1").fetchall())
        ct_models = dict(
            con.sql(
                "SELECT ManufacturerModelName, count(*) FROM series WHERE Modality = 'CT' "
                "AND ManufacturerModelName IS NOT NULL GROUP BY 1"
            ).fetchall()
        )
    got = {c["value"]: c["n"] for c in full["distributions"][0]["cells"]}
    assert got == truth
    models = next(
        d
        for d in full["distributions"]
        if d["what"] == "ManufacturerModelName" and d["group"] == {"Modality": "CT"}
    )
    assert {c["value"]: c["n"] for c in models["cells"] if c["value"] != "(not recorded)"} == (
        ct_models
    )
    # the k=10 summary shows a subset of the same cells, with the same counts
    exact = {
        (json.dumps(d["group"]), d["what"], c["value"]): c["n"]
        for d in full["distributions"]
        for c in d["cells"]
    }
    n_suppressed = 0
    for d in hidden["distributions"]:
        for c in d["cells"]:
            if c.get("suppressed"):
                n_suppressed += 1
            else:
                assert exact[(json.dumps(d["group"]), d["what"], c["value"])] == c["n"]
    assert n_suppressed > 20


def _check_protected(summary: dict[str, Any]) -> int:
    """Assert what a reader of ``summary`` can work out about its suppressed cells; returns how
    many distributions hid something."""
    k = summary["min_count"]
    hid = 0
    for d in summary["distributions"]:
        visible = [c["n"] for c in d["cells"] if not c.get("suppressed")]
        assert all(n == 0 or n >= k for n in visible), d
        assert d["n"] == sum(visible) + d["n_hidden"], d
        if d.get("withheld"):
            assert d["cells"] == [] and d["n_hidden"] == d["n"]
            continue
        if d["n_hidden"]:
            hid += 1
            # total minus visible cells is the hidden cells' sum; each holds at least 1, so the
            # most one of them can hold is that sum minus the others' one each: never under k
            m = (
                sum(1 for c in d["cells"] if c.get("suppressed"))
                if d["vocabulary"] == "closed"
                else 1
            )
            assert m >= 1 and d["n_hidden"] - (m - 1) >= k, d
    for n in summary["totals"].values():
        assert n is None or n == 0 or n >= k
    if summary["cohort"] is not None:
        shown = [s["n_series"] for s in summary["cohort"]["steps"] if s["n_series"] is not None]
        assert all(n == 0 or n >= k for n in shown)
        assert all(a - b == 0 or a - b >= k for a, b in itertools.pairwise(shown))
    return hid


@pytest.mark.parametrize("k", [5, 10, 20])
def test_cells_under_k_are_suppressed_and_differencing_cannot_recover_them(
    sites: dict[str, Path], k: int
) -> None:
    summary = _summary(sites["riverside"], "riverside", k, cohort=SPEC)
    assert _check_protected(summary) > 10
    validate(summary, "test")


def test_complementary_suppression() -> None:
    # one small cell: the next smallest is hidden with it, else total - visible = the small cell
    p = protect({"a": 3, "b": 50, "c": 60}, 10, closed=True)
    assert p.visible == {"c": 60} and p.hidden == ("a", "b") and p.n_hidden == 53
    # two small cells whose sum could pin each: 2 + 1 - 1 < 10, so a third is hidden
    p = protect({"a": 2, "b": 1, "c": 12, "d": 40}, 10, closed=True)
    assert p.visible == {"d": 40} and p.n_hidden == 15
    # an open vocabulary's hidden cells are one unlabelled bucket that must hold k
    p = protect({"x": 3, "y": 8, "z": 30}, 10, closed=False)
    assert p.visible == {"z": 30} and p.hidden == () and p.n_hidden == 11
    # nothing protects cells this small: withheld, only the total is known
    p = protect({"a": 2, "b": 3, "c": 4}, 10, closed=True)
    assert p.withheld and p.visible == {} and p.n_hidden == 9
    assert protect({"a": 0, "b": 10}, 10, closed=True).visible == {"b": 10}
    assert protect({"a": 3, "b": 4}, 1, closed=True).visible == {"a": 3, "b": 4}
    assert [protect_count(n, 10) for n in (0, 3, 10)] == [0, None, 10]
    # attrition: 100 -> 95 hides 95 (a drop of 5); 80 is 20 below the last shown, 78 is not
    assert protect_sequence([100, 95, 80, 78, 78, 0], 10) == [100, None, 80, None, None, 0]
    assert protect_sequence([8, 8, 0], 10) == [None, None, 0]


def test_curation_summary_writes_a_valid_file(
    sites: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    db = str(sites["northbay"])
    assert main(["summary", "--db", db, "--out", str(out), "--site", "northbay"]) == 0
    s = load_summary(out)
    assert s.site == "northbay" and s.data["min_count"] == 10
    assert len(out.read_text().splitlines()) < 1500  # small enough to read
    assert main(["summary", "--db", db, "--out", str(out), "--site", "a/b"]) == 3
    assert main(["summary", "--db", db, "--out", str(out), "--min-count", "0"]) == 3
    assert (
        main(["summary", "--db", db, "--out", str(out), "--cohort", str(tmp_path / "no.yaml")]) == 3
    )
    assert main(["summary", "--db", str(tmp_path / "none.duckdb"), "--out", str(out)]) == 4
    err = capsys.readouterr().err
    assert "a/b" in err and "no.yaml" in err and "none.duckdb" in err


def test_a_catalog_without_series_is_a_catalog_error(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    assert main(["summary", "--db", str(db), "--out", str(tmp_path / "x.json")]) == 4
    summary = {"format": "curation-site-summary", "schema_version": 1}
    with pytest.raises(Exception, match=r"x\.json"):
        validate(summary, "x.json")
    with pytest.raises(Exception, match="written"):
        write_summary({**summary, "site": "a"}, tmp_path / "y.json")
    assert not (tmp_path / "y.json").exists()
