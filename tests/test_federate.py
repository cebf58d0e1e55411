"""Site summaries and their federation, on three synthetic sites of the shipped sample.

The sample (sample_data/synthetic, written by ``curation sample``) holds six sites, each in its own
folder with its own institution, vendors and export habits; three of them are crawled here into
three site catalogs, and together into one pooled catalog.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from curation import catalog, crawl, qc
from curation.cli.main import main
from curation.deid import scan
from curation.federate import build_summary, write_summary
from curation.federate.bins import BY_NAME
from curation.federate.findings import (
    NOT_SHOWN,
    FederatedFinding,
    all_findings,
    parameter_locations,
    rare_values,
    site_shortcuts,
)
from curation.federate.format import SiteSummary, from_dict, load_summary, validate
from curation.federate.merge import Federation, federate, merge
from curation.federate.store import write_db
from curation.federate.suppress import protect, protect_count, protect_nested, protect_sequence
from curation.harmonize.vendors import normalize_vendor
from curation.qc.rule import Rule
from curation.qc.rules.heterogeneity import (
    NUMERIC,
    PARAMETER_LOCATIONS,
    RARE_CATEGORY,
    SITE_SHORTCUT,
)
from curation.qc.suite import from_mapping
from curation.synth.vendors import SITES as SYNTH_SITES

from .conftest import SAMPLE_DATA

SITES = ("riverside", "northbay", "lakeshore")
SYNTHETIC = SAMPLE_DATA / "synthetic"
SPEC = SAMPLE_DATA / "cohort_spec.yaml"


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three site catalogs (QC run, labels loaded; pixel metrics at the first) and the pooled one."""
    from curation import harmonize, pixels
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


def _site_identifiers(db: Path) -> list[tuple[str, str]]:
    """(keyword or label, value) of every identifying value the site's catalog holds: IDs, names,
    UIDs (but the standard's own), dates, paths and their folder names, free text, the site's own
    names; searched by the leak scanner (:func:`curation.deid.scan.needles_for`) in every spelling
    it knows (a name word by word, a date in each order), any case, as whole words."""
    from pydicom.uid import UID_dictionary

    with catalog.opened(db, read_only=True) as con:
        # every identifier keyword, nested and private elements too
        values = scan.identifier_values(con)
        # every UID, name, date and free text of any element (descriptions, protocol names, IDs)
        values += con.sql(
            "SELECT DISTINCT keyword, value FROM elements WHERE value IS NOT NULL AND "
            "(vr IN ('UI', 'PN', 'DA', 'DT', 'LO', 'SH') OR keyword = 'ImageComments')"
        ).fetchall()
        paths = [p for (p,) in con.sql("SELECT path FROM files").fetchall()]
    root = str(SYNTHETIC / "dicom")
    values += [("path", p) for p in paths]
    values += [("folder", part) for p in paths for part in Path(p[len(root) :]).parts]
    # the standard's UIDs (SOP classes, transfer syntaxes) identify nobody; LO/SH values that are
    # device or vendor vocabulary are what the summary is for (a model name shared by k series)
    return [(k, str(v)) for k, v in values if str(v) not in UID_dictionary]


def _leaks(values: list[tuple[str, str]], allowed: set[str], text: str) -> set[str]:
    """The spellings of ``values`` found in ``text``, but for the ``allowed`` ones."""
    needles = scan.needles_for((k, v) for k, v in values if v.strip() not in allowed)
    shown = {a.upper() for a in allowed}
    return {
        n.text.decode()
        for n, _ in scan.scan_bytes(text.encode(), needles)
        if n.text.decode() not in shown
    }


def test_a_summary_holds_no_identifier_of_its_catalog(sites: dict[str, Path]) -> None:
    db = sites["riverside"]
    values = _site_identifiers(db)
    creators = {c for _, c, _ in PARAMETER_LOCATIONS if c}
    # every UID, ID, name, date and folder of the site (381 files)
    assert len(scan.needles_for(values)) > 700
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
        leaks = _leaks(values, allowed, text)
        assert leaks == set(), sorted(leaks)[:10]
        # nothing that looks like a date finer than the year, or a path
        assert not re.search(r"(19|20)\d\d-?[01]\d-?[0-3]\d", text)
        assert "/" not in "".join(c["value"] for d in summary["distributions"] for c in d["cells"])
        # not vacuous: the summary does say what the site has
        assert {"GE MEDICAL SYSTEMS", "SIGNA Premier"} <= shown
        assert summary["cohort"]["steps"][0]["n_series"] == summary["totals"]["series"]
    # and the shown open values are device vocabulary, never one of the free-text columns
    with catalog.opened(db, read_only=True) as con:
        free = {
            str(v).strip()
            for (v,) in con.sql(
                "SELECT DISTINCT value FROM elements WHERE value IS NOT NULL AND keyword IN "
                "('SeriesDescription', 'StudyDescription', 'ProtocolName', 'InstitutionName')"
            ).fetchall()
        }
    assert not (shown & free)


def test_the_k1_counts_are_the_catalogs_and_suppression_only_hides(
    sites: dict[str, Path],
) -> None:
    db = sites["lakeshore"]
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


def _vendor(manufacturer: str) -> str:
    """The harmonized vendor of a Manufacturer cell, as any reader can work it out."""
    if manufacturer == "(not recorded)":
        return manufacturer
    return normalize_vendor(manufacturer) or manufacturer


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
    # vendor is a coarsening of Manufacturer: a reader maps every shown Manufacturer to its
    # vendor and differences the two; neither may give a hidden count away
    for d in summary["distributions"]:
        if d["what"] != "vendor":
            continue
        fine = next(
            x
            for x in summary["distributions"]
            if x["what"] == "Manufacturer" and x["group"] == d["group"]
        )
        shown = [x for x in fine["cells"] if x["n"] is not None]
        for c in d["cells"]:
            if c["n"] is None:
                continue
            left = c["n"] - sum(x["n"] for x in shown if _vendor(x["value"]) == c["value"])
            assert left == 0 or left >= k, (d, fine)
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
    # a coarsening (vendor) and the distribution it coarsens (Manufacturer), protected together:
    # alone, GE = 53 shown and "GE MEDICAL" = 50 shown would give "GE Healthcare" = 3 away
    fine = {"GE MEDICAL": 50, "GE Healthcare": 3, "SIEMENS": 40, "Siemens Healthineers": 12}
    of = {"GE MEDICAL": "GE", "GE Healthcare": "GE", "SIEMENS": "Siemens"}
    of["Siemens Healthineers"] = "Siemens"
    pf, pc = protect_nested(fine, of, 10, fine_closed=False, coarse_closed=True)
    assert protect({"GE": 53, "Siemens": 52}, 10, closed=True).visible == {"GE": 53, "Siemens": 52}
    for vendor, n in pc.visible.items():
        left = n - sum(c for v, c in pf.visible.items() if of[v] == vendor)
        assert left == 0 or left >= 10
    for vendor in pc.hidden:  # a hidden vendor is never the sum of shown Manufacturers
        assert any(of[v] == vendor and v not in pf.visible for v in fine)
    assert pf.visible  # not everything hidden
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


# -- federation ---------------------------------------------------------------------------------


def _federation(sites: dict[str, Path], k: int) -> Federation:
    return federate(_site_summaries(tuple(sites[s] for s in SITES), k))


@functools.cache
def _site_summaries(dbs: tuple[Path, ...], k: int) -> list[SiteSummary]:
    summaries = []
    for s, db in zip(SITES, dbs, strict=True):
        with catalog.opened(db, read_only=True) as con:
            summaries.append(from_dict(build_summary(con, site=s, min_count=k), f"{s}.json"))
    return summaries


#: Each synthetic site's InstitutionName: the rule's site in the pooled catalog.
INSTITUTION = {s.InstitutionName: s.key for s in SYNTH_SITES}


def _as_bin(attribute: str, value: str) -> str:
    """The rule's value of ``attribute`` as a summary counts it."""
    from pydicom.uid import UID_dictionary

    b = BY_NAME[attribute].bins
    if b is not None:
        return b.label_of(float(value))
    if attribute == "TransferSyntaxUID":
        return UID_dictionary[value][0] if value in UID_dictionary else "(other)"
    return value


def _rule_findings(
    db: Path, rule: Rule, params: dict[str, Any], attributes: list[str]
) -> set[tuple[str, ...]]:
    """The rule's findings on the pooled catalog ``db`` as (modality, attribute, value, site)."""
    suite = from_mapping(
        {
            "include": [rule.id],
            "rules": {rule.id: {"params": {**params, "attributes": attributes}}},
        }
    )
    with catalog.opened(db) as con:
        run = qc.run(con, suite).run_id
        if rule is SITE_SHORTCUT:
            rows = con.sql(f"SELECT value FROM qc_findings WHERE run_id = {run}").fetchall()
            out = set()
            for (value,) in rows:
                head, site = value.rsplit(" @ ", 1)
                modality, rest = head.split(" ", 1)
                attribute, val = rest.split("=", 1)
                out.add((modality, attribute, _as_bin(attribute, val), INSTITUTION[site]))
            return out
        rows = con.sql(
            f"""SELECT DISTINCT s.Modality, f.value FROM qc_findings f JOIN series s
            USING (SeriesInstanceUID) WHERE run_id = {run}"""
        ).fetchall()
    return {(m, v.split("=", 1)[0], _as_bin(*v.split("=", 1)), "") for m, v in rows}


def _federated(found: list[FederatedFinding], certainty: str | None = None) -> set[tuple[str, ...]]:
    return {
        (f.modality or "", f.attribute, f.value, f.site or "")
        for f in found
        if certainty is None or f.certainty == certainty
    }


@pytest.fixture(scope="module")
def snapped(sites: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pooled catalog with every numeric value the rule compares moved to its bin's
    representative value: the rule then sees what the summaries count."""
    db = tmp_path_factory.mktemp("snapped") / "pooled.duckdb"
    shutil.copy(sites["pooled"], db)
    sets = []
    for name, expr in NUMERIC.items():
        b = BY_NAME[name].bins
        assert b is not None
        reps = " ".join(f"WHEN '{lab}' THEN {v!r}" for lab, v in b.representatives().items())
        value = f"CASE {b.case_sql(expr)} {reps} END"
        target = "PixelSpacing" if name == "PixelSpacing" else name
        sets.append(
            f"{target} = [{value}, PixelSpacing[2]]"
            if name == "PixelSpacing"
            else f"{target} = {value}"
        )
    with catalog.opened(db) as con:
        con.execute(f"UPDATE series SET {', '.join(sets)}")
    return db


SHORTCUT_PARAMS = [
    {},  # the rule's defaults
    {"min_dominance": 0.6, "max_elsewhere": 0.3, "min_series": 5},  # looser: more findings
]


@pytest.mark.parametrize("params", SHORTCUT_PARAMS)
def test_federated_site_shortcuts_are_the_rules_on_the_pooled_catalog(
    sites: dict[str, Path], snapped: Path, params: dict[str, Any]
) -> None:
    attributes = list(SITE_SHORTCUT.params[-1].default)  # type: ignore[arg-type]
    fed = _federation(sites, 1)
    got = _federated(site_shortcuts(fed, params, attributes))
    assert {f.certainty for f in site_shortcuts(fed, params, attributes)} == {"certain"}
    # on the rule's own values: equal for every attribute the bins keep apart in this cohort
    with catalog.opened(sites["pooled"], read_only=True) as con:
        apart = [
            a
            for a in attributes
            if BY_NAME[a].bins is None
            or con.sql(
                f"SELECT count(DISTINCT v) = count(DISTINCT {BY_NAME[a].bins.case_sql('v')}) "  # type: ignore[union-attr]
                f"FROM (SELECT Modality, {NUMERIC[a]} AS v FROM series) GROUP BY Modality"
            ).fetchall()
            == [(True,)] * 2
        ]
    assert {"Manufacturer", "KVP", "MagneticFieldStrength"} <= set(apart)
    pooled = _rule_findings(sites["pooled"], SITE_SHORTCUT, params, apart)
    assert pooled and {g for g in got if g[1] in apart} == pooled
    # on the bins (every numeric value moved into its bin): equal for every attribute
    assert got == _rule_findings(snapped, SITE_SHORTCUT, params, attributes)
    # suppression at k=10: what is certain holds on the pooled catalog, and nothing it finds is
    # missed (it is certain or possible)
    found = site_shortcuts(_federation(sites, 10), params, attributes)
    binned = _rule_findings(snapped, SITE_SHORTCUT, params, attributes)
    assert _federated(found, "certain") <= binned <= _federated(found)
    assert _federated(found, "certain")


def test_federated_rare_values_are_the_rules_on_the_pooled_catalog(
    sites: dict[str, Path], snapped: Path
) -> None:
    params = {"max_share": 0.1, "min_series": 20}
    attributes = list(RARE_CATEGORY.params[-1].default)  # type: ignore[arg-type]
    got = _federated(rare_values(_federation(sites, 1), params, attributes))
    want = _rule_findings(snapped, RARE_CATEGORY, params, attributes)
    assert want and got == want
    found = rare_values(_federation(sites, 10), params, attributes)
    assert _federated(found, "certain") <= want
    # a rare value is a small count: suppressed, and not even named in an open vocabulary (a
    # kernel, a model); the federation says that such values exist, and where
    named = {w for w in want if w not in _federated(found)}
    unnamed = {(m, a) for m, a, v, _ in _federated(found) if v == NOT_SHOWN}
    assert named and {(m, a) for m, a, _, _ in named} <= unnamed
    assert all(BY_NAME[a].bins is None for _, a in unnamed)


def test_federated_parameter_locations_are_the_rules_even_suppressed(
    sites: dict[str, Path],
) -> None:
    suite = from_mapping({"include": ["cohort.parameter_locations"]})
    with catalog.opened(sites["pooled"]) as con:
        run = qc.run(con, suite).run_id
        want = {
            v for (v,) in con.sql(f"SELECT value FROM qc_findings WHERE run_id = {run}").fetchall()
        }
    assert want
    for k in (1, 10, 50):
        assert {f.value for f in parameter_locations(_federation(sites, k))} == want


def test_adding_a_site_is_associative(sites: dict[str, Path], tmp_path: Path) -> None:
    a, b, c = (_federation(sites, 10).site(s).summary for s in SITES)
    left, right = merge(merge(a, b), c), merge(a, merge(b, c))
    other = merge(c, merge(b, a))
    assert all_findings(left) == all_findings(right) == all_findings(other)
    assert all_findings(left)
    for what, group in (("Modality", {}), ("SliceThickness", {"Modality": "CT"})):
        assert (
            left.pooled(what, **group) == right.pooled(what, **group) == other.pooled(what, **group)
        )
    # pooled counts add up the sites': CT series = the sum of the sites' (shown) CT counts
    ct = left.pooled("Modality")["CT"]
    assert ct[0] <= sum(s.modality_count("CT")[0] for s in left) and ct[0] > 0
    tables = []
    for i, fed in enumerate((left, right, other)):
        db = write_db(fed, all_findings(fed), tmp_path / f"{i}.duckdb")
        with duckdb.connect(str(db), read_only=True) as con:
            tables.append(
                [
                    sorted(con.sql(f"SELECT * EXCLUDE (source) FROM {t}").fetchall(), key=str)
                    if t == "federated_sites"
                    else sorted(con.sql(f"SELECT * FROM {t}").fetchall(), key=str)
                    for t in ("federated_sites", "federated_cells", "federated_findings")
                ]
            )
    assert tables[0] == tables[1] == tables[2]
    assert tables[0][1]


@pytest.fixture(scope="module")
def summary_files(sites: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("summaries")
    out = []
    for s in SITES:
        path = folder / f"{s}.json"
        assert (
            main(
                [
                    "-q",
                    "summary",
                    "--db",
                    str(sites[s]),
                    "--out",
                    str(path),
                    "--site",
                    s,
                    "--cohort",
                    str(SPEC),
                ]
            )
            == 0
        )
        out.append(path)
    return out


def test_curation_federate_writes_an_offline_report_and_tables(
    sites: dict[str, Path], summary_files: list[Path], tmp_path: Path
) -> None:
    out, db = tmp_path / "fed.html", tmp_path / "fed.duckdb"
    args = ["federate", *map(str, summary_files), "--out", str(out), "--db", str(db)]
    assert main(args) == 0
    html = out.read_text()
    data = html[html.index("</script>") :]  # after the inlined plotly.js
    assert "http://" not in data and "https://" not in data.replace("https://plotly.com", "")
    for text in (
        "Where the sites differ",
        "cohort.site_shortcut",
        "Label prevalence",
        "The cohort each site would contribute",
        "Harmonization suggestion",
        *SITES,
    ):
        assert text in data, text
    with duckdb.connect(str(db), read_only=True) as con:
        n_sites = con.sql("SELECT count(*) FROM federated_sites").fetchall()[0][0]
        certain = con.sql(
            "SELECT count(*) FROM federated_findings WHERE certainty = 'certain'"
        ).fetchall()[0][0]
    assert n_sites == 3 and certain > 0
    # the report holds nothing of the catalogs but what the summaries hold
    values = [v for s in SITES for v in _site_identifiers(sites[s])]
    texts = [json.loads(p.read_text()) for p in summary_files]
    shown = {
        c["value"]
        for t in texts
        for d in t["distributions"]
        if d["vocabulary"] == "open"
        for c in d["cells"]
    }
    creators = {c for _, c, _ in PARAMETER_LOCATIONS if c}
    allowed = shown | {w for v in shown for w in v.split()} | creators | set(SITES)
    assert _leaks(values, allowed, data) == set()


def _bad(path: Path, change: dict[str, Any]) -> Path:
    data = json.loads(path.read_text())
    data.update(change)
    out = path.with_name(f"bad-{'-'.join(change)}-{path.name}")
    out.write_text(json.dumps(data))
    return out


def test_bad_summaries_are_refused_naming_the_file(
    summary_files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, c = summary_files
    data = json.loads(a.read_text())
    edges = {**data["bins"], "SliceThickness": {"unit": "mm", "edges": [1.0, 5.0]}}
    not_json = tmp_path / "x.json"
    not_json.write_text("{")
    cases = {
        "schema version 2": _bad(a, {"schema_version": 2}),
        "given twice": _bad(b, {"site": "riverside"}),
        "bins of SliceThickness differ": _bad(c, {"bins": edges}),
        "not JSON": not_json,
        "not a valid site summary": _bad(a, {"totals": {"series": "many"}}),
        "no such file": tmp_path / "missing.json",
    }
    out = tmp_path / "fed.html"
    for reason, bad in cases.items():
        files = [a, bad] if reason == "given twice" else [bad, b]
        capsys.readouterr()
        assert main(["federate", *map(str, files), "--out", str(out)]) == 3, reason
        err = capsys.readouterr().err
        assert str(bad) in err and len(err.strip().splitlines()) == 1, err
        assert reason.split()[-1] in err or reason in err, err
        assert not out.exists()
