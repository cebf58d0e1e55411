"""The labeler against the shipped gold sets (curation/labels/gold/): sentence and report level.

The gold labels were written from the meaning of each text (docs/labels.md, "Gold set"); the
thresholds are below the scores the README reports, so a rule change that costs accuracy fails
here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.cli.main import main
from curation.errors import InputError
from curation.labels.evaluate import evaluate_file, format_scores, load_gold, score

GOLD = Path(__file__).resolve().parents[1] / "curation" / "labels" / "gold"


@pytest.mark.parametrize(
    ("name", "n_texts", "min_exact", "min_uplus"),
    [("sentences.jsonl", 300, 0.95, 0.97), ("reports.jsonl", 100, 0.95, 0.97)],
)
def test_gold_scores(name: str, n_texts: int, min_exact: float, min_uplus: float) -> None:
    scores = evaluate_file(GOLD / name)
    assert scores.n_texts >= n_texts
    assert len(scores.findings) >= 16
    assert scores.micro("exact").f1 >= min_exact, format_scores(scores)
    assert scores.micro("u+").f1 >= min_uplus, format_scores(scores)
    assert scores.micro("u-").f1 >= min_exact, format_scores(scores)


def test_gold_covers_the_hard_cases() -> None:
    texts = [
        it.text.lower() for n in ("sentences.jsonl", "reports.jsonl") for it in load_gold(GOLD / n)
    ]
    for phrase in ("no change in", "cannot exclude", "rule out", "family history of", "history:",
                   "if ", " but ", "however", "nor ", "or ", "indication:"):  # fmt: skip
        assert any(phrase in t for t in texts), phrase


def test_scoring_counts_uncertain_both_ways() -> None:
    items = load_gold(GOLD / "sentences.jsonl")[:0]
    from curation.labels.evaluate import GoldItem

    items = [
        GoldItem("a", "x", {"pneumothorax": "uncertain"}),
        GoldItem("b", "y", {"pneumothorax": "positive"}),
        GoldItem("c", "z", {"pneumothorax": "negative"}),
    ]
    pred = {"x": {"pneumothorax": "positive"}, "y": {"pneumothorax": "uncertain"}, "z": {}}
    s = score(items, lambda t: pred[t])
    up, um, ex = s.micro("u+"), s.micro("u-"), s.micro("exact")
    assert (up.tp, up.fp, up.fn) == (2, 0, 0)
    assert (um.tp, um.fp, um.fn) == (0, 1, 1)
    assert (ex.tp, ex.fp, ex.fn) == (0, 2, 3)


def test_bad_gold_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        json.dumps({"text": "No effusion.", "labels": {"pleural_efusion": "negative"}}) + "\n"
    )
    with pytest.raises(InputError, match=r"gold.jsonl: no label of a finding the lexicon knows"):
        load_gold(gold)
    # An unknown finding among known ones is a counted skip, with the nearest name.
    gold.write_text(
        json.dumps(
            {"text": "No effusion.", "labels": {"pleural_efusion": "negative", "Pneumothorax": 0}}
        )
        + "\n"
    )
    skipped: dict[str, int] = {}
    assert load_gold(gold, skipped=skipped)[0].labels == {"pneumothorax": "negative"}
    assert skipped == {"'pleural_efusion' (did you mean 'pleural_effusion'?)": 1}
    gold.write_text(json.dumps({"text": "No effusion.", "labels": {"Effusion": "maybe"}}) + "\n")
    with pytest.raises(InputError, match=r"gold.jsonl:1: Effusion: value 'maybe'"):
        load_gold(gold)
    gold.write_text('{"text": "ok", "labels": {}}\nnot json\n')
    with pytest.raises(InputError, match=r"gold.jsonl:2: not JSON"):
        load_gold(gold)
    # Other names of a finding and CheXpert's numbers are accepted.
    gold.write_text(json.dumps({"text": "No effusion.", "labels": {"Pleural Effusion": 0}}) + "\n")
    assert load_gold(gold)[0].labels == {"pleural_effusion": "negative"}
    db = tmp_path / "c.duckdb"
    assert main(["labels", "--db", str(db), "--evaluate", str(gold)]) == 0
    out = capsys.readouterr().out
    assert "pleural_effusion" in out and "micro" in out
    gold.write_text(json.dumps({"text": "x", "labels": {"nonsense": "positive", "PTX": 1}}) + "\n")
    assert main(["labels", "--db", str(db), "--evaluate", str(gold)]) == 0
    assert "skipped: 1 label(s) of 'nonsense'" in capsys.readouterr().out
    gold.write_text(json.dumps({"text": "x", "labels": {"nonsense": "positive"}}) + "\n")
    assert main(["labels", "--db", str(db), "--evaluate", str(gold)]) == 3
    assert not db.exists()  # evaluating alone touches no catalog


def test_chexpert_style_csv_gold(tmp_path: Path) -> None:
    gold = tmp_path / "labeled.csv"
    gold.write_text(
        "Report Impression,Pleural Effusion,Pneumothorax,No Finding\n"
        '"1. Small left effusion. 2. No pneumothorax.",1.0,0.0,\n'
        '"No acute cardiopulmonary process.",,,1.0\n'
        '"Possible pneumothorax.",,-1.0,\n'
    )
    scores = evaluate_file(gold)
    assert scores.n_texts == 3 and scores.findings == ["pleural_effusion", "pneumothorax"]
    assert scores.skipped == {"'No Finding'": 1}
    assert scores.micro("exact").f1 == 1.0
    assert "skipped: 1 label(s) of 'No Finding'" in format_scores(scores)
