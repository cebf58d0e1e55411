"""The report labeler against maintained clinical NLP libraries, on the shipped gold sets.

    python -m venv /tmp/nlp && /tmp/nlp/bin/pip install medspacy negspacy pyyaml polars duckdb
    PYTHONPATH=. /tmp/nlp/bin/python benchmarks/labels_compare.py

In a virtual environment of its own: medspaCy 1.3 pins spaCy 3.7, whose thinc needs numpy < 2,
which the project's pyarrow and pandas cannot run with (installing it into the project's
environment downgrades numpy and breaks them). Blank spaCy pipelines only: no model is downloaded.

Contenders, all on the same texts (sections curation ignores blanked out, offsets kept) and scored
by :mod:`curation.labels.evaluate`, with the same report-level aggregation (positive over
uncertain over negative):

- ``negspacy strict``: a blank spaCy pipeline, sentencizer, an EntityRuler with each finding's
  names as literal phrases ("pleural effusion", "effusion", ...), negspacy's NegEx
  (``en_clinical`` termset): negated -> negative, else positive. The issue's baseline.
- ``negspacy + lexicon``: the same NegEx on curation's lexicon mentions (its terms and exclusions).
- ``medspaCy ConText + lexicon``: medspaCy's PyRuSH sentence splitter and ConText with its default
  rules on curation's lexicon mentions: negated -> negative, possible/uncertain -> uncertain,
  historical, hypothetical and family -> dropped.
- ``curation``: :func:`curation.labels.label_report`.

The libraries see curation's finding terms, not its attribute statements ("heart size is normal"),
which no library rule set states. Prints exact / uncertain-as-positive / uncertain-as-negative
micro-F1 per gold file and each contender's speed (reports/s, CPU time, one core).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import spacy
from spacy.util import filter_spans

from curation.labels.context import PRECEDENCE, label_report
from curation.labels.evaluate import GoldItem, load_gold, score
from curation.labels.lexicon import default_lexicon
from curation.labels.text import lower_same_length, sections

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "curation" / "labels" / "gold"
FILES = ("sentences.jsonl", "reports.jsonl", "holdout_reports.jsonl")
LEX = default_lexicon()


def kept_text(text: str) -> str:
    """``text`` with the sections curation ignores blanked (same length, so spans agree)."""
    out = list(text)
    for sec in sections(text, LEX.ignored_sections, LEX.kept_sections):
        if sec.kind == "ignored":
            out[sec.start : sec.end] = " " * (sec.end - sec.start)
    return "".join(out)


def lexicon_spans(text: str) -> list[tuple[int, int, str]]:
    """curation's finding-term mentions (not attribute statements): (start, end, finding)."""
    low = lower_same_length(text)
    out = []
    for s, e, term in LEX.mention_matcher.finditer(low):
        for kind, finding, _ in LEX.mention_targets[term]:
            if kind == "term":
                out.append((s, e, finding))
    return out


def aggregate(found: list[tuple[str, str]]) -> dict[str, str]:
    best: dict[str, str] = {}
    for finding, value in found:
        if finding not in best or PRECEDENCE.index(value) < PRECEDENCE.index(best[finding]):
            best[finding] = value
    return best


def set_ents(nlp: spacy.Language, text: str) -> spacy.tokens.Doc:
    doc = nlp.make_doc(text)
    spans = []
    for s, e, finding in lexicon_spans(text):
        span = doc.char_span(s, e, label=finding, alignment_mode="expand")
        if span is not None:
            spans.append(span)
    doc.ents = filter_spans(spans)
    return doc


def negspacy_strict() -> Callable[[str], dict[str, str]]:
    from negspacy.negation import Negex  # noqa: F401 (registers the "negex" factory)
    from negspacy.termsets import termset

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
    patterns = []
    for f in LEX.findings.values():
        for name in {f.name.replace("_", " "), *(n.lower() for n in f.names)}:
            patterns.append({"label": f.name, "pattern": name})
    ruler.add_patterns(patterns)  # type: ignore[attr-defined]
    nlp.add_pipe("negex", config={"neg_termset": termset("en_clinical").get_patterns()})

    def predict(text: str) -> dict[str, str]:
        doc = nlp(kept_text(text))
        return aggregate([(e.label_, "negative" if e._.negex else "positive") for e in doc.ents])

    return predict


def negspacy_lexicon() -> Callable[[str], dict[str, str]]:
    from negspacy.negation import Negex  # noqa: F401
    from negspacy.termsets import termset

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("negex", config={"neg_termset": termset("en_clinical").get_patterns()})

    def predict(text: str) -> dict[str, str]:
        doc = set_ents(nlp, kept_text(text))
        for _, proc in nlp.pipeline:
            doc = proc(doc)
        return aggregate([(e.label_, "negative" if e._.negex else "positive") for e in doc.ents])

    return predict


def medspacy_context() -> Callable[[str], dict[str, str]]:
    import medspacy

    try:  # PyRuSH logs every sentence at DEBUG through loguru: silence it, it is not timed work
        from loguru import logger

        logger.remove()
    except ImportError:
        pass
    nlp = medspacy.load(medspacy_enable=["medspacy_pyrush", "medspacy_context"])

    def predict(text: str) -> dict[str, str]:
        doc = set_ents(nlp, kept_text(text))
        for _, proc in nlp.pipeline:
            doc = proc(doc)
        found = []
        for e in doc.ents:
            if e._.is_historical or e._.is_hypothetical or e._.is_family:
                continue
            value = (
                "negative" if e._.is_negated else "uncertain" if e._.is_uncertain else "positive"
            )
            found.append((e.label_, value))
        return aggregate(found)

    return predict


def curation() -> Callable[[str], dict[str, str]]:
    def predict(text: str) -> dict[str, str]:
        return {f: m.value for f, m in label_report(text, LEX).items()}

    return predict


def main() -> None:
    golds: dict[str, list[GoldItem]] = {f: load_gold(GOLD / f, LEX) for f in FILES}
    contenders = {
        "negspacy strict": negspacy_strict,
        "negspacy + lexicon": negspacy_lexicon,
        "medspaCy ConText + lexicon": medspacy_context,
        "curation": curation,
    }
    texts = [it.text for f in ("reports.jsonl", "holdout_reports.jsonl") for it in golds[f]] * 5
    print(f"{'contender':<28} " + " ".join(f"{f.split('.')[0]:>27}" for f in FILES) + "  reports/s")
    print(f"{'':<28} " + " ".join(f"{'exact   u+    u-':>27}" for _ in FILES))
    for name, make in contenders.items():
        predict = make()
        cells = []
        for f in FILES:
            s = score(golds[f], predict, lexicon=LEX)
            cells.append(
                f"{s.micro('exact').f1:>17.3f} {s.micro('u+').f1:.3f} {s.micro('u-').f1:.3f}"
            )
        predict(texts[0])
        t0 = time.process_time()
        for t in texts:
            predict(t)
        rate = len(texts) / (time.process_time() - t0)
        print(f"{name:<28} " + " ".join(cells) + f"  {rate:9,.0f}")


if __name__ == "__main__":
    main()
