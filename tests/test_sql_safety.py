"""Names and values from outside the code (specs, cohort folders, suites) never change a query.

Hostile inputs: quotes, semicolons, subqueries, ``read_text``/``read_csv``/``COPY``/``ATTACH``, NUL
bytes, 10 MB strings. Each is refused with a message (exit 3 on the command line) or treated as a
literal name or value; no file outside the catalog and the output folder is read or written.
"""

from __future__ import annotations

import duckdb
import pytest

from curation.catalog import quote_ident, quote_literal
from curation.errors import InputError

#: Names that would break out of a naively quoted identifier or literal.
HOSTILE_NAMES = (
    "x\", (SELECT content FROM read_text('/etc/hostname')) AS \"pwned",
    "x'; DROP TABLE t; --",
    'a"b',
    '"',
    "''",
    "; COPY (SELECT 1) TO '/tmp/pwned.sh'",
    "x\" FROM t; ATTACH '/tmp/evil.duckdb' AS e; SELECT \"y",
    "(SELECT 1)",
    "name with spaces and ünïcödé",
    "x" * 10_000_000,
)


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n[:30]))
def test_a_quoted_identifier_is_exactly_its_name(name: str) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (a INTEGER)")
    cols = con.sql(f"DESCRIBE SELECT 1 AS {quote_ident(name)} FROM t").fetchall()
    assert [c[0] for c in cols] == [name]
    assert con.sql(f"SELECT {quote_literal(name)}").fetchall() == [(name,)]
    assert con.sql("SELECT count(*) FROM t").fetchall() == [(0,)]  # still there


@pytest.mark.parametrize("bad", ["", "a\0b", "\0"])
def test_empty_or_nul_names_are_refused(bad: str) -> None:
    with pytest.raises(InputError, match="name"):
        quote_ident(bad)
    if bad:
        with pytest.raises(InputError, match="NUL"):
            quote_literal(bad)


# -- hostile specs, suites and cohort folders against a real catalog ---------------------------

import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import polars as pl  # noqa: E402

from curation import catalog  # noqa: E402
from curation.cli.main import main  # noqa: E402
from curation.deid import scan  # noqa: E402

from .conftest import SAMPLE_DATA  # noqa: E402

KEY = "hostile-test-key-0123456789"
#: A file outside the catalog and the output folder that hostile SQL tries to read (its path
#: replaces /etc/hostname in the specs below, its token must not show up in any output).
SECRET_TOKEN = "secret-token-7c1e0f9a"


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("outside") / "secret.txt"
    path.write_text(SECRET_TOKEN)
    return path


@pytest.fixture(scope="module")
def base_catalog(tmp_path_factory: pytest.TempPathFactory, secret: Path) -> Path:
    """The synthetic cohort crawled and QC'd, with labels whose names are hostile SQL."""
    from curation import crawl, harmonize, qc
    from curation.cohort import load_labels

    db = tmp_path_factory.mktemp("hostile") / "catalog.duckdb"
    crawl(SAMPLE_DATA / "synthetic" / "dicom", db, workers=1, progress=False)
    con = catalog.connect(db)
    harmonize.build(con)
    qc.run(con)
    studies = [r[0] for r in con.sql("SELECT StudyInstanceUID FROM studies").fetchall()]
    reads_secret = HOSTILE_NAMES[0].replace("/etc/hostname", str(secret))
    load_labels(
        con,
        pl.DataFrame(
            {
                "StudyInstanceUID": studies * 2,
                "label": [reads_secret] * len(studies) + [HOSTILE_NAMES[5]] * len(studies),
                "value": ["present"] * (2 * len(studies)),
                "source": ["hostile"] * (2 * len(studies)),
            }
        ),
    )
    con.close()
    return db


@pytest.fixture
def work(base_catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: Path) -> Path:
    """A folder with a copy of the catalog; tests check that nothing else appears in it."""
    monkeypatch.setenv("CURATION_PSEUDONYM_KEY", KEY)
    shutil.copy(base_catalog, tmp_path / "catalog.duckdb")
    return tmp_path


def _catalog_intact(db: Path) -> None:
    con = catalog.connect(db, read_only=True)
    try:
        have = {
            r[0] for r in con.sql("SELECT table_name FROM information_schema.tables").fetchall()
        }
        assert {"qc_findings", "labels", "instances", "series", "files"} <= have
        assert con.sql("SELECT count(*) FROM qc_findings").fetchall()[0][0] > 0
        assert con.sql("SELECT count(*) FROM labels").fetchall()[0][0] > 0
    finally:
        con.close()


def _outputs_text(folder: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file()
    )


def _only_expected_files(work: Path, allowed: set[str]) -> None:
    """Nothing was written beside the catalog, the spec and the output folder."""
    found = {p.name for p in work.iterdir()}
    assert found <= {"catalog.duckdb", "catalog.duckdb.wal", *allowed}, found


def _yaml(value: object, secret: Path | None = None) -> str:
    # JSON is YAML: quotes and escapes exactly as given
    text = json.dumps(value)
    return text.replace("/etc/hostname", str(secret)) if secret is not None else text


# (label names, criterion, extra spec keys) that must be refused with exit 3
REFUSED_SPECS: dict[str, dict[str, object]] = {
    "label read_text subquery (not in the catalog)": {
        "labels": ["x\", (SELECT content FROM read_text('/etc/hostname')) AS \"y"]
    },
    "label with NUL byte": {"labels": ["pleural\0effusion"]},
    "label of 10 MB": {"labels": ["x" * 10_000_000]},
    "field with a subquery": {
        "include": [{"field": 'Modality" OR 1=1 OR "x', "op": "=", "value": "CT"}]
    },
    "field naming read_csv": {
        "include": [{"field": "(SELECT * FROM read_csv('/etc/passwd'))", "op": "not null"}]
    },
    "op with injection": {
        "include": [{"field": "Modality", "op": "= 'nope' OR 1=1 OR Modality =", "value": "x"}]
    },
    "op dropping a table": {
        "include": [{"field": "Modality", "op": "IS NULL; DROP TABLE labels; --"}]
    },
    "op with COPY": {
        "include": [{"field": "Modality", "op": "= 'x'; COPY labels TO 'pwned.sh'; --", "value": 1}]
    },
    "rule with ATTACH": {"exclude": [{"qc_rule": "x'; ATTACH 'pwned.duckdb' AS p; --"}]},
    "severity with semicolon": {"exclude": [{"qc_severity": "error; DROP TABLE qc_findings"}]},
    "stratify with subquery": {
        "split": {"ratios": {"train": 1.0}, "stratify": ['vendor") FROM labels; --']}
    },
    "qc suite name with quote": {"qc": {"suite": "default' OR '1'='1"}},
    "value of 10 MB": {"include": [{"field": "Modality", "op": "=", "value": "C" * 10_000_000}]},
    "value as a mapping": {"include": [{"field": "Modality", "op": "=", "value": {"sql": "1=1"}}]},
    "name with NUL": {"name": "a\0b"},
}


@pytest.mark.parametrize("case", sorted(REFUSED_SPECS))
def test_hostile_specs_are_refused_with_exit_3(
    work: Path, case: str, capsys: pytest.CaptureFixture[str], secret: Path
) -> None:
    spec = work / "spec.yaml"
    spec.write_text(_yaml({"name": "hostile", **REFUSED_SPECS[case]}, secret))
    code = main(
        ["cohort", str(spec), "--db", str(work / "catalog.duckdb"), "--out", str(work / "out")]
    )
    err = capsys.readouterr().err
    assert code == 3, err
    assert len(err.strip().splitlines()) == 1 and len(err) < 2000, err[:500]
    assert not (work / "out").exists()
    _only_expected_files(work, {"spec.yaml"})
    _catalog_intact(work / "catalog.duckdb")


# specs whose hostile text must come out as a literal (a name, a value), changing nothing
LITERAL_SPECS: dict[str, dict[str, object]] = {
    "label named like a read_text subquery": {"labels": [HOSTILE_NAMES[0]]},
    "label named like a COPY": {"labels": [HOSTILE_NAMES[5]]},
    "label criterion with hostile name": {"include": [{"label": HOSTILE_NAMES[5]}]},
    "value with quote and COPY": {
        "include": [
            {
                "field": "Modality",
                "op": "in",
                "value": ["CT' OR 1=1; COPY labels TO 'pwned.sh'; --"],
            }
        ]
    },
    "like value with read_text": {
        "include": [
            {"field": "Modality", "op": "like", "value": "%' || read_text('/etc/hostname') || '"}
        ]
    },
    "split names with quotes": {"split": {"ratios": {"train'); DROP TABLE labels; --": 1.0}}},
    "spec name with a subquery": {"name": "(SELECT content FROM read_text('/etc/hostname'))"},
    "label value with NUL": {"include": [{"label": HOSTILE_NAMES[0], "value": "pre\0sent"}]},
}


@pytest.mark.parametrize("case", sorted(LITERAL_SPECS))
def test_hostile_text_in_a_spec_is_a_literal(
    work: Path, case: str, capsys: pytest.CaptureFixture[str], secret: Path
) -> None:
    data = json.loads(_yaml({"name": "hostile", **LITERAL_SPECS[case]}, secret))
    spec = work / "spec.yaml"
    spec.write_text(json.dumps(data))
    out = work / "out"
    code = main(["cohort", str(spec), "--db", str(work / "catalog.duckdb"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    manifest = pl.read_parquet(out / "manifest.parquet")
    for name in data.get("labels", []):  # type: ignore[union-attr]
        assert manifest["label_" + name].drop_nulls().to_list() == ["present"] * manifest.height
    if "value" in case:
        assert manifest.height == 0
    assert SECRET_TOKEN not in _outputs_text(out)
    _only_expected_files(work, {"spec.yaml", "out"})
    _catalog_intact(work / "catalog.duckdb")


def test_hostile_suite_parameters_are_bound(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = work / "suite.yaml"
    evil = ["CT' OR 1=1; COPY qc_findings TO 'pwned.sh'; --", "MR"]
    suite.write_text(
        _yaml(
            {
                "name": "hostile",
                "include": ["series.*"],
                "rules": {"series.too_few_slices": {"params": {"modalities": evil}}},
            }
        )
    )
    code = main(["qc", "--db", str(work / "catalog.duckdb"), "--suite", str(suite)])
    assert code in (0, 1), capsys.readouterr().err
    con = catalog.connect(work / "catalog.duckdb", read_only=True)
    ran = con.sql(
        "SELECT parameters FROM qc_rule_runs WHERE run_id = 2 AND rule_id = 'series.too_few_slices'"
    ).fetchall()
    con.close()
    assert json.loads(ran[0][0])["modalities"] == evil
    _only_expected_files(work, {"suite.yaml"})
    _catalog_intact(work / "catalog.duckdb")
    for params in ({"min_instances": "3; DROP TABLE qc_findings"}, {"no_such_param": 1}):
        suite.write_text(
            _yaml({"name": "h", "rules": {"series.missing_slices": {"params": params}}})
        )
        assert main(["qc", "--db", str(work / "catalog.duckdb"), "--suite", str(suite)]) == 3
    _catalog_intact(work / "catalog.duckdb")


# -- hostile cohort folders handed to `curation report --cohort` --------------------------------

_LEAK = "leak.csv"
#: Column names that, pasted into the report's SQL, would copy identifiers into the report or a file.
HOSTILE_COLUMNS = (
    "x\" || (SELECT string_agg(PatientID || PatientName, ',') FROM instances) || \"",
    'criterion" AS step, 1 AS n FROM instances; COPY (SELECT PatientID, PatientName FROM instances) '
    f"TO '{_LEAK}'; SELECT \"x",
    "n_series\" FROM (SELECT string_agg(PatientID, ',') AS \"criterion",
)


def _attrition_with_header(name: str) -> pl.DataFrame:
    return pl.DataFrame({name: ["all series", "include CT"], "n_series": [10, 4]})


def _tamper(cohort: Path, case: str, secret: Path) -> None:
    manifest = pl.read_parquet(cohort / "manifest.parquet")
    if case.startswith("attrition header"):
        i = int(case[-1])
        (cohort / "attrition.csv").unlink()
        _attrition_with_header(HOSTILE_COLUMNS[i]).write_csv(cohort / "attrition.csv")
    elif case.startswith("attrition parquet header"):
        i = int(case[-1])
        _attrition_with_header(HOSTILE_COLUMNS[i]).write_parquet(cohort / "attrition.parquet")
    elif case.startswith("manifest label column"):
        i = int(case[-1])
        manifest.with_columns(pl.lit("x").alias("label_" + HOSTILE_COLUMNS[i])).write_parquet(
            cohort / "manifest.parquet"
        )
    elif case == "manifest split values with HTML":
        manifest.with_columns(
            pl.lit("<img src=x onerror=alert(1)>").alias("split"),
            pl.lit("<b>x</b>").alias("label_<script>alert(1)</script>"),
        ).write_parquet(cohort / "manifest.parquet")
    elif case == "file name with quotes":
        (cohort / "attrition.csv").rename(
            cohort
            / f"x'); COPY (SELECT PatientID FROM instances) TO '{_LEAK}'); --attrition.parquet"
        )
    elif case == "manifest is a link outside":
        (cohort / "manifest.parquet").unlink()
        (cohort / "manifest.parquet").symlink_to(secret)
    elif case == "attrition is garbage":
        (cohort / "attrition.csv").write_bytes(b"\x00\xff\x00garbage;;;\n\x00" * 1000)
    elif case == "provenance of 10 MB":
        (cohort / "provenance.json").write_text(json.dumps({"name": "x" * 10_000_000}))
    else:  # pragma: no cover
        raise AssertionError(case)


COHORT_CASES = (
    *(f"attrition header {i}" for i in range(len(HOSTILE_COLUMNS))),
    *(f"attrition parquet header {i}" for i in range(len(HOSTILE_COLUMNS))),
    *(f"manifest label column {i}" for i in range(len(HOSTILE_COLUMNS))),
    "manifest split values with HTML",
    "file name with quotes",
    "manifest is a link outside",
    "attrition is garbage",
    "provenance of 10 MB",
)


@pytest.mark.parametrize("case", COHORT_CASES)
def test_a_hostile_cohort_folder_leaks_nothing(
    work: Path, case: str, secret: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = work / "catalog.duckdb"
    cohort = work / "cohort"
    spec = work / "cohort.yaml"
    spec.write_text(
        _yaml({"name": "c", "include": [{"field": "Modality", "op": "=", "value": "CT"}]})
    )
    assert main(["cohort", str(spec), "--db", str(db), "--out", str(cohort), "-q"]) == 0
    spec.unlink()
    capsys.readouterr()
    _tamper(cohort, case, secret)
    con = catalog.connect(db, read_only=True)
    pairs = scan.identifier_values(con, keywords=("PatientID", "PatientName", "AccessionNumber"))
    con.close()
    identifiers = {v.strip() for _, v in pairs if len(v.strip()) >= scan.MIN_LENGTH}
    needles = scan.needles_for(pairs)
    out = work / "report.html"
    code = main(
        ["report", "--db", str(db), "--cohort", str(cohort), "--out", str(out), "--thumbnails", "0"]
    )
    err = capsys.readouterr().err
    assert code in (0, 3), err
    if code == 3:
        assert len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    else:
        html = out.read_text()
        html = html[html.index("</script>") :]  # after the inlined plotly.js
        assert not [x for x in identifiers if x in html]  # not even inside a longer word
        assert not scan.scan_bytes(html.encode(), needles)  # nor in another spelling or case
        assert SECRET_TOKEN not in html
        assert "<script>alert" not in html and "<img src=x" not in html
    assert not list(work.rglob(_LEAK)) and not list(work.rglob("pwned*"))
    assert not (Path.cwd() / _LEAK).exists()
    _only_expected_files(work, {"cohort", "report.html"})
    _catalog_intact(db)


def test_a_key_file_linked_out_of_a_cohort_folder_is_not_read(
    work: Path, secret: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = work / "catalog.duckdb"
    cohort = work / "cohort"
    spec = work / "cohort.yaml"
    spec.write_text(_yaml({"name": "c", "split": {"ratios": {"train": 1.0}}}))
    assert main(["cohort", str(spec), "--db", str(db), "--out", str(cohort), "-q"]) == 0
    monkeypatch.delenv("CURATION_PSEUDONYM_KEY")
    (cohort / "pseudonym.key").symlink_to(secret)
    capsys.readouterr()
    code = main(["report", "--db", str(db), "--cohort", str(cohort), "--out", str(work / "r.html")])
    err = capsys.readouterr().err
    assert code == 3 and "link out of the cohort folder" in err, err
    assert not (work / "r.html").exists()


def test_criterion_names_reach_the_attrition_table_as_literals(work: Path) -> None:
    from curation.cohort import build_cohort, parse

    name = "x'] AS criterion, (SELECT string_agg(PatientID, ',') FROM instances) AS n --"
    spec = parse({"name": "c", "include": [{"field": "Modality", "op": "not null", "name": name}]})
    res = build_cohort(work / "catalog.duckdb", spec, None)
    assert res.attrition["criterion"].to_list()[1] == name


@pytest.mark.parametrize("i", range(len(HOSTILE_COLUMNS)))
def test_validate_reads_a_hostile_manifest_as_data(
    work: Path, i: int, secret: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = work / "catalog.duckdb"
    cohort = work / "cohort"
    spec = work / "cohort.yaml"
    spec.write_text(_yaml({"name": "c", "split": {"ratios": {"train": 1.0}}}))
    assert main(["cohort", str(spec), "--db", str(db), "--out", str(cohort), "-q"]) == 0
    spec.unlink()
    _tamper(cohort, f"manifest label column {i}", secret)
    capsys.readouterr()
    code = main(["validate", "--db", str(db), "--cohort", str(cohort), "--suite", "manifest", "-q"])
    err = capsys.readouterr().err
    assert code in (0, 1, 3), err
    assert "Traceback" not in err
    assert not list(work.rglob(_LEAK)) and not (Path.cwd() / _LEAK).exists()
    _only_expected_files(work, {"cohort"})
    _catalog_intact(db)
