"""Weak labels from report text: ingestion, the labeler, the labels table, the CLI.

The labeler's quality is measured against gold files in ``test_labels_gold.py``; here the
synthetic cohort's own report truth checks the path end to end, on real DICOM crawled into a
real catalog.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from curation import catalog, harmonize
from curation.cli.main import main
from curation.cohort import build_cohort, load_labels, parse, synthetic_report_labels
from curation.errors import InputError
from curation.labels import default_lexicon, label_report, load_lexicon, load_reports

from .conftest import SAMPLE_DATA, pydicom_test_files

SYNTH = SAMPLE_DATA / "synthetic"
REPORTS = SYNTH / "reports.parquet"


@pytest.fixture(scope="module")
def base_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic cohort crawled and harmonized once per module."""
    from curation import crawl

    db = tmp_path_factory.mktemp("labels") / "catalog.duckdb"
    crawl(SYNTH / "dicom", db, workers=1, progress=False)
    con = catalog.connect(db)
    harmonize.build(con)
    con.close()
    return db


@pytest.fixture
def db(base_db: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "catalog.duckdb"
    shutil.copy(base_db, copy)
    return copy


def _truth() -> pl.DataFrame:
    """The synthetic truth per study and finding, in the labeler's finding names; the
    generator's 'historical' mentions (which mix present and past findings) left out."""
    lex = default_lexicon()
    truth = synthetic_report_labels(REPORTS).filter(pl.col("value") != "historical")
    return truth.with_columns(
        pl.col("label").map_elements(lex.finding_name, return_dtype=pl.String),
        pl.col("value").replace({"negated": "negative"}),
    ).filter(pl.col("label").is_not_null())


def test_cli_labels_synthetic_reports_match_their_truth(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["labels", "--db", str(db), "--reports", str(REPORTS), "-q"]) == 0
    out = capsys.readouterr().out
    assert "48 reports loaded, 48 resolved" in out
    # Nothing identifying is printed: no accession number, UID or patient id.
    reports = pl.read_parquet(REPORTS)
    for ident in (*reports["AccessionNumber"], *reports["StudyInstanceUID"], *reports["PatientID"]):
        assert ident not in out
    con = duckdb.connect(str(db), read_only=True)
    got = con.sql(
        "SELECT StudyInstanceUID, label, value, report_key, evidence, span_start, span_end, "
        "labeler_version FROM labels WHERE source = 'report labeler'"
    ).pl()
    texts = dict(con.sql("SELECT report_key, text FROM reports").fetchall())
    con.close()
    truth = _truth()
    assert truth.height > 100
    joined = truth.join(got, on=["StudyInstanceUID", "label"], how="left", suffix="_got")
    agree = (joined["value"] == joined["value_got"]).sum()
    # The truth's texts are plain generated sentences: every mention is labeled right.
    assert agree == truth.height, joined.filter(pl.col("value") != pl.col("value_got"))
    # Evidence: the span lies inside the evidence sentence, which is in the report.
    for row in got.iter_rows(named=True):
        text = texts[row["report_key"]]
        assert row["evidence"] in text
        start = text.index(row["evidence"])
        assert start <= row["span_start"] < row["span_end"] <= start + len(row["evidence"])
    assert got["labeler_version"].unique().to_list() == [default_lexicon().version]


def test_cohort_spec_label_criterion_runs_on_report_labels(db: Path, tmp_path: Path) -> None:
    assert main(["labels", "--db", str(db), "--reports", str(REPORTS), "-q"]) == 0
    spec = parse(
        {
            "name": "effusion",
            "include": [
                {"field": "Modality", "op": "=", "value": "CT"},
                {"label": "pleural_effusion", "op": "=", "value": "positive"},
            ],
            "labels": ["pleural_effusion"],
        }
    )
    con = catalog.connect(db)
    result = build_cohort(con, spec, tmp_path / "out", key=b"k" * 16)
    studies = set(con.sql("SELECT StudyInstanceUID FROM cohort_members").pl()["StudyInstanceUID"])
    con.close()
    truth = _truth().filter(
        (pl.col("label") == "pleural_effusion") & (pl.col("value") == "positive")
    )
    assert result.manifest.height > 0
    assert studies and studies <= set(truth["StudyInstanceUID"])
    assert set(result.manifest["label_pleural_effusion"]) == {"positive"}


def test_old_labels_table_is_migrated_and_negated_reads_as_negative(
    db: Path, tmp_path: Path
) -> None:
    con = catalog.connect(db)
    # A labels table as an earlier curation wrote it: six columns, "negated" values.
    con.execute(
        "CREATE TABLE labels (PatientID VARCHAR, StudyInstanceUID VARCHAR, "
        "SeriesInstanceUID VARCHAR, label VARCHAR, value VARCHAR, source VARCHAR)"
    )
    old = synthetic_report_labels(REPORTS)
    con.register("old", old)
    con.execute(
        "INSERT INTO labels SELECT PatientID, StudyInstanceUID, NULL, label, value, source FROM old"
    )
    con.unregister("old")
    con.close()
    assert main(["labels", "--db", str(db), "--reports", str(REPORTS), "-q"]) == 0
    con = catalog.connect(db)
    sources = dict(con.sql("SELECT source, count(*) FROM labels GROUP BY 1").fetchall())
    assert sources["synthetic report truth"] == old.height  # old rows kept
    negated = old.filter((pl.col("label") == "emphysema") & (pl.col("value") == "negated"))
    assert negated.height > 0
    # Only the old source's rows: the criterion "negative" must find its "negated" rows.
    con.execute("DELETE FROM labels WHERE source = 'report labeler'")
    spec = parse({"name": "x", "include": [{"label": "emphysema", "op": "=", "value": "negative"}]})
    build_cohort(con, spec, tmp_path / "out", key=b"k" * 16)
    studies = set(con.sql("SELECT StudyInstanceUID FROM cohort_members").pl()["StudyInstanceUID"])
    con.close()
    assert studies == set(negated["StudyInstanceUID"])


def test_report_files_bad_rows_are_counted_and_bad_files_named(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    con = catalog.connect(db, create=True)
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_bytes(
        b'{"StudyInstanceUID": "1.2.3", "text": "No pneumothorax."}\n'
        b'{"StudyInstanceUID": "1.2.4", "text": "bad \xff byte"}\n'
        b"not json\n"
        b'{"StudyInstanceUID": "1.2.5", "text": "   "}\n'
        b'{"text": "Small effusion."}\n'
        b'{"StudyInstanceUID": "1.2.3", "text": "again"}\n'
    )
    r = load_reports(con, jsonl)
    assert r.n_reports == 1 and r.n_resolved == 0
    assert r.skipped == {
        "not_utf8": 1,
        "bad_json": 1,
        "empty_text": 1,
        "no_key": 1,
        "duplicate_key": 1,
    }
    skips = con.sql("SELECT source_row, reason FROM report_skips ORDER BY 1").fetchall()
    assert skips == [
        (2, "not_utf8"),
        (3, "bad_json"),
        (4, "empty_text"),
        (5, "no_key"),
        (6, "duplicate_key"),
    ]
    # Loading again replaces, not appends.
    load_reports(con, jsonl)
    assert con.sql("SELECT count(*) FROM reports").fetchall() == [(1,)]
    csv = tmp_path / "r.csv"
    csv.write_bytes(b'AccessionNumber,report\nA1,No effusion.\nA2,"bad \xfe"\n')
    r = load_reports(con, csv)
    assert (r.n_reports, r.skipped) == (1, {"not_utf8": 1})
    pq = tmp_path / "r.parquet"
    pl.DataFrame({"acc": ["B1", "B2"], "Report Impression": ["No edema.", None]}).write_parquet(pq)
    r = load_reports(con, pq)
    assert (r.n_reports, r.skipped) == (1, {"empty_text": 1})
    for name, content, message in [
        ("nokey.csv", "id,text\n1,No effusion.\n", "no key column"),
        ("notext.csv", "AccessionNumber,notes\n1,x\n", "no text column"),
        ("r.xml", "<x/>", "unknown report file type"),
    ]:
        p = tmp_path / name
        p.write_text(content)
        with pytest.raises(InputError, match=message) as err:
            load_reports(con, p)
        assert name in str(err.value)
    con.close()
    bad = tmp_path / "nokey.csv"
    assert main(["labels", "--db", str(db), "--reports", str(bad), "-q"]) == 3


def test_labels_from_structured_reports(tmp_path: Path) -> None:
    from curation import crawl

    srs = [f for f in pydicom_test_files() if f.name in ("test-SR.dcm", "reportsi.dcm")]
    assert len(srs) == 2
    folder = tmp_path / "sr"
    folder.mkdir()
    for f in srs:
        shutil.copy(f, folder / f.name)
    db = tmp_path / "c.duckdb"
    crawl(folder, db, workers=1, progress=False)
    assert main(["labels", "--db", str(db), "--from-sr", "-q"]) == 0
    con = duckdb.connect(str(db), read_only=True)
    texts = con.sql("SELECT text FROM reports WHERE source = 'dicom-sr'").fetchall()
    rows = con.sql(
        "SELECT label, value, StudyInstanceUID IS NOT NULL FROM labels ORDER BY 1"
    ).fetchall()
    con.close()
    assert len(texts) == 2
    # reportsi.dcm's text items say "A mass of ... was detected."; the observer's
    # organisation (HAS OBS CONTEXT) is not report text.
    assert ("mass", "positive", True) in rows
    assert not any("Enter text" in t and "Organization" in t for (t,) in texts)


def test_user_lexicon_adds_a_finding_and_is_validated(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        "findings:\n  scoliosis:\n    terms: [scoliosis, scoliotic curvature]\n"
        "  pneumothorax:\n    terms: [collapsed lung air]\n"
    )
    lex = load_lexicon(extra)
    assert lex.version != default_lexicon().version
    got = label_report("Mild scoliosis. No scoliotic curvature of the lower spine.", lex)
    assert got["scoliosis"].value == "positive"
    assert "scoliosis" not in label_report("Mild scoliosis.")
    bad = tmp_path / "bad.yaml"
    bad.write_text("findings:\n  pneumothorax:\n    terms: ['(unclosed']\n")
    with pytest.raises(InputError, match=r"bad.yaml: findings.pneumothorax.terms\[0\]"):
        load_lexicon(bad)
    bad.write_text("findings:\n  Bad Name:\n    terms: [x]\n")
    with pytest.raises(InputError, match="lower_snake_case"):
        load_lexicon(bad)


def test_gold_json_is_not_needed_for_label_report_spans() -> None:
    text = "FINDINGS: Heart size is normal.\nIMPRESSION: Small left effusion, no pneumothorax."
    got = label_report(text)
    eff = got["pleural_effusion"]
    assert text[eff.start : eff.end].lower() == "effusion"
    assert text[eff.sentence_start : eff.sentence_end] == "Small left effusion, no pneumothorax."
    assert got["cardiomegaly"].value == "negative"
    assert got["pneumothorax"].value == "negative"
    assert json.dumps(sorted(got))  # finding names are plain strings
    # A heading can be the finding itself; an ignored section ends with its line.
    got = label_report("PNEUMOTHORAX: NONE.\nHEART: NORMAL SIZE.\nCOMPARISON: ___. Small effusion.")
    assert {f: m.value for f, m in got.items()} == {
        "pneumothorax": "negative",
        "cardiomegaly": "negative",
        "pleural_effusion": "positive",
    }
    assert "pneumonia" not in label_report(
        "INDICATION: Cough, evaluate for pneumonia.\nLungs are clear."
    )


def test_term_matcher_finds_what_one_alternation_finds() -> None:
    """The fast matcher against the plain way (one alternation searched left to right) on every
    gold text, for the mention and the trigger terms."""
    import re

    from curation.labels.matcher import _RIGHT, _bounded_right, pattern
    from curation.labels.text import lower_same_length

    lex = default_lexicon()
    gold = Path(__file__).resolve().parents[1] / "curation" / "labels" / "gold"
    texts = [
        lower_same_length(json.loads(line)["text"])
        for f in ("sentences.jsonl", "reports.jsonl")
        for line in (gold / f).read_text().splitlines()
    ]
    for matcher in (lex.mention_matcher, lex.trigger_matcher):
        groups = matcher.terms
        plain = re.compile(
            "|".join(
                rf"(?P<{g}>(?<!\w){pattern(t)}{_RIGHT if _bounded_right(t) else ''})"
                if t[:1].isalnum() or t[:1] == "("
                else f"(?P<{g}>{pattern(t)}{_RIGHT if _bounded_right(t) else ''})"
                for g, t in groups.items()
            )
        )
        n = 0
        for low in texts:
            want = [(m.start(), m.end(), groups[m.lastgroup or ""]) for m in plain.finditer(low)]
            assert list(matcher.finditer(low)) == want, low
            n += len(want)
        assert n > 300


def test_label_site_shortcut_rule_and_report_section(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from curation import qc
    from curation.qc.rules.heterogeneity import SITE
    from curation.qc.suite import from_mapping
    from curation.report import build_report

    assert main(["labels", "--db", str(db), "--reports", str(REPORTS), "-q"]) == 0
    con = catalog.connect(db)
    sites = con.sql(
        f"SELECT StudyInstanceUID, mode({SITE}) AS site FROM series GROUP BY 1 ORDER BY 1"
    ).pl()
    shortcut_site = sites["site"].mode().sort()[0]
    # Planted: one label positive at exactly one site; one positive in every other study.
    planted = pl.concat(
        [
            sites.select(
                "StudyInstanceUID",
                pl.lit("planted_shortcut").alias("label"),
                pl.when(pl.col("site") == shortcut_site)
                .then(pl.lit("positive"))
                .otherwise(pl.lit("negative"))
                .alias("value"),
            ),
            sites.with_row_index().select(
                "StudyInstanceUID",
                pl.lit("planted_balanced").alias("label"),
                pl.when(pl.col("index") % 2 == 0)
                .then(pl.lit("positive"))
                .otherwise(pl.lit("negative"))
                .alias("value"),
            ),
        ]
    ).with_columns(pl.lit("test planting").alias("source"))
    load_labels(con, planted)
    suite = from_mapping(
        {
            "include": ["cohort.label_site_shortcut"],
            "rules": {"cohort.label_site_shortcut": {"params": {"min_studies": 5}}},
        }
    )
    result = qc.run(con, suite)
    flagged = {
        v
        for (v,) in con.execute(
            "SELECT value FROM qc_findings WHERE run_id = $r", {"r": result.run_id}
        ).fetchall()
    }
    con.close()
    assert f"planted_shortcut @ {shortcut_site}" in flagged
    assert not any(v.startswith("planted_balanced") for v in flagged)
    monkeypatch.setenv("CURATION_PSEUDONYM_KEY", "k" * 32)
    out = tmp_path / "report.html"
    build_report(db, out, thumbnails=0)
    page = out.read_text()
    assert "Labels across sites and vendors" in page and "planted_shortcut" in page
    reports = pl.read_parquet(REPORTS)
    for ident in (*reports["AccessionNumber"], *reports["StudyInstanceUID"]):
        assert ident not in page
