"""The labeler against a gold file: per-finding and overall precision, recall and F1.

A gold file is JSON lines, one text per line (or a CheXpert-style CSV: a text column such as
"Report Impression", one column per finding holding 1, 0, -1 or blank)::

    {"id": "r001", "text": "FINDINGS: No effusion. Mild cardiomegaly.", "labels": {"pleural_effusion": "negative", "cardiomegaly": "positive"}}

``labels`` maps a finding (its name or one of its other names in the lexicon, such as CheXpert's
"Pleural Effusion") to ``positive``, ``negative`` or ``uncertain`` (or CheXpert's 1, 0, -1); a
finding the text does not mention is left out. The findings scored are those the gold file labels
at least once; a text with no label for one of them counts as not mentioning it.

Scores, for each finding and micro-averaged over all (text, finding) pairs:

- ``u+``: positive class = positive or uncertain, in the gold and in the prediction;
- ``u-``: positive class = positive only (uncertain counts with negative and unmentioned);
- ``neg``: the negative class alone (a negated finding found as negated);
- ``exact``: each labeled (text, finding, value) is one item: a prediction counts when its value
  is the gold one (the three-class mention score public report-labeling benchmarks use).

A line that is not JSON, a text that is empty or a value that is not a label is an
:class:`~curation.errors.InputError` naming the file and line. A finding the lexicon does not
know (CheXpert's "No Finding", a typo) is a counted skip: its labels are left out, the output says
how many and suggests the nearest known name; a file with no label of a known finding is an error.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from curation.errors import InputError
from curation.labels.context import label_report
from curation.labels.lexicon import VALUES, Lexicon, default_lexicon

log = logging.getLogger("curation.labels")

#: Gold values accepted besides the labels themselves (CheXpert's numeric coding, older names).
VALUE_ALIASES: dict[str, str] = {
    "1": "positive",
    "1.0": "positive",
    "0": "negative",
    "0.0": "negative",
    "-1": "uncertain",
    "-1.0": "uncertain",
    "negated": "negative",
    "pos": "positive",
    "neg": "negative",
    "unc": "uncertain",
}
MODES: tuple[str, ...] = ("u+", "u-", "neg", "exact")


@dataclass(frozen=True)
class GoldItem:
    """One gold text and its labels (finding -> value)."""

    id: str
    text: str
    labels: dict[str, str]


@dataclass
class Counts:
    """True positives, false positives, false negatives."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else float("nan")


@dataclass
class Scores:
    """Counts per finding and mode (see :data:`MODES`), plus the disagreements."""

    source: str
    n_texts: int
    findings: list[str]
    counts: dict[tuple[str, str], Counts] = field(default_factory=dict)
    n_gold: dict[str, int] = field(default_factory=dict)
    errors: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)
    #: Gold labels of findings the lexicon does not know: name (with a hint) -> labels skipped.
    skipped: dict[str, int] = field(default_factory=dict)

    def micro(self, mode: str) -> Counts:
        """Counts of ``mode`` summed over the findings."""
        total = Counts()
        for f in self.findings:
            c = self.counts[(f, mode)]
            total.tp, total.fp, total.fn = total.tp + c.tp, total.fp + c.fp, total.fn + c.fn
        return total


def _value(raw: object, where: str) -> str:
    v = str(raw).strip().lower() if raw is not None else ""
    v = VALUE_ALIASES.get(v, v)
    if v not in VALUES:
        raise InputError(f"{where}: value {raw!r} is not one of {list(VALUES)} (or 1, 0, -1)")
    return v


def load_gold(
    path: str | Path, lexicon: Lexicon | None = None, skipped: dict[str, int] | None = None
) -> list[GoldItem]:
    """The gold items of the JSON lines file ``path`` (see the module docstring).

    Labels of findings the lexicon does not know are left out and counted in ``skipped`` (name ->
    labels, with a "did you mean" hint in the name when one is close).
    """
    if skipped is None:
        skipped = {}
    lex = lexicon or default_lexicon()
    p = Path(path)
    try:
        raw_lines = p.read_bytes().splitlines()
    except OSError as exc:
        raise InputError(f"{p}: cannot read the gold file: {exc.strerror or exc}") from exc
    if p.suffix.lower() in (".csv", ".tsv"):
        raw_lines = _csv_as_json_lines(p)
    items: list[GoldItem] = []
    known = sorted(lex.findings)
    for i, raw in enumerate(raw_lines, start=1):
        where = f"{p}:{i}"
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InputError(f"{where}: not UTF-8 ({exc.reason})") from exc
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise InputError(f"{where}: expected an object with text and labels")
        if not obj["text"].strip():
            raise InputError(f"{where}: empty text")
        labels = obj.get("labels") or {}
        if not isinstance(labels, dict):
            raise InputError(f"{where}: labels must map finding -> value")
        out: dict[str, str] = {}
        for name, value in labels.items():
            finding = lex.finding_name(str(name))
            if finding is None:
                close = difflib.get_close_matches(str(name).lower(), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                key = f"{name!r}{hint}"
                if key not in skipped:
                    log.warning("%s: unknown finding %s: its labels are skipped", where, key)
                skipped[key] = skipped.get(key, 0) + 1
                continue
            if value is None or (isinstance(value, float) and value != value):
                continue  # CheXpert's blank: not mentioned
            out[finding] = _value(value, f"{where}: {name}")
        items.append(GoldItem(str(obj.get("id") or i), obj["text"], out))
    if not items:
        raise InputError(f"{p}: the gold file holds no items")
    if not any(it.labels for it in items):
        raise InputError(
            f"{p}: no label of a finding the lexicon knows"
            + (f" (unknown: {', '.join(sorted(skipped))})" if skipped else "")
        )
    return items


#: Columns of a gold CSV that are neither the text nor a label.
_ID_COLUMNS = {"id", "key", "path", "accessionnumber", "studyinstanceuid", "studyuid", "report_id"}


def _csv_as_json_lines(p: Path) -> list[bytes]:
    """A CheXpert-style gold CSV (a text column, one column per finding holding 1/0/-1 or
    blank) as the JSON lines :func:`load_gold` reads."""
    import polars as pl

    from curation.labels.ingest import TEXT_COLUMNS, _norm

    try:
        frame = pl.read_csv(p, separator="\t" if p.suffix.lower() == ".tsv" else ",",
                            infer_schema=False)  # fmt: skip
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{p}: cannot read the gold CSV: {exc}") from exc
    norm = {_norm(c): c for c in reversed(frame.columns)}
    text = next((norm[n] for n in TEXT_COLUMNS if n in norm), None)
    if text is None:
        raise InputError(f"{p}: no text column (text, report, Report Impression, ...)")
    ids = [c for c in frame.columns if _norm(c) in _ID_COLUMNS]
    labels = [c for c in frame.columns if c != text and c not in ids]
    out = []
    for row in frame.iter_rows(named=True):
        out.append(
            json.dumps(
                {
                    "id": row[ids[0]] if ids else None,
                    "text": row[text] or "",
                    "labels": {c: row[c] for c in labels if row[c] not in (None, "")},
                }
            ).encode()
        )
    return out


def _positive(v: str | None, mode: str) -> bool:
    if mode == "u+":
        return v in ("positive", "uncertain")
    if mode == "u-":
        return v == "positive"
    return v == "negative"  # "neg"


def score(
    items: Iterable[GoldItem],
    predict: object = None,
    *,
    lexicon: Lexicon | None = None,
    source: str = "gold",
    keep_ignored_sections: bool = False,
    implied_negatives: bool = False,
) -> Scores:
    """Score predictions against ``items``.

    ``predict`` is a function text -> {finding: value}; by default the labeler with ``lexicon``.
    """
    lex = lexicon or default_lexicon()
    items = list(items)
    if predict is None:

        def predict(text: str) -> dict[str, str]:
            got = label_report(
                text,
                lex,
                keep_ignored_sections=keep_ignored_sections,
                implied_negatives=implied_negatives,
            )
            return {f: m.value for f, m in got.items()}

    assert callable(predict)
    findings = sorted({f for it in items for f in it.labels})
    scores = Scores(source, len(items), findings)
    for f in findings:
        for mode in MODES:
            scores.counts[(f, mode)] = Counts()
        scores.n_gold[f] = sum(1 for it in items if f in it.labels)
    for it in items:
        pred = predict(it.text)
        for f in findings:
            g, p = it.labels.get(f), pred.get(f)
            for mode in ("u+", "u-", "neg"):
                c = scores.counts[(f, mode)]
                gp, pp = _positive(g, mode), _positive(p, mode)
                c.tp += gp and pp
                c.fp += pp and not gp
                c.fn += gp and not pp
            c = scores.counts[(f, "exact")]
            if g is not None and g == p:
                c.tp += 1
            else:
                c.fn += g is not None
                c.fp += p is not None
            if g != p:
                scores.errors.append((it.id, f, g, p))
    return scores


def evaluate_file(
    path: str | Path,
    lexicon: Lexicon | None = None,
    *,
    keep_ignored_sections: bool = False,
    implied_negatives: bool = False,
) -> Scores:
    """:func:`score` the labeler on the gold file ``path``."""
    lex = lexicon or default_lexicon()
    skipped: dict[str, int] = {}
    scores = score(
        load_gold(path, lex, skipped),
        lexicon=lex,
        source=str(path),
        keep_ignored_sections=keep_ignored_sections,
        implied_negatives=implied_negatives,
    )
    scores.skipped = skipped
    return scores


def _f(x: float) -> str:
    return "   -" if x != x else f"{x:.2f}"


def format_scores(scores: Scores) -> str:
    """The scores as a text table: one row per finding, then the micro average."""
    w = max([len(f) for f in scores.findings] + [7])
    head = f"{'finding':<{w}}  {'n':>4}  " + "  ".join(
        f"{m + ' P':>7} {'R':>4} {'F1':>4}" for m in MODES
    )
    lines = [f"{scores.source}: {scores.n_texts} texts, {len(scores.findings)} findings"]
    for name, n in sorted(scores.skipped.items()):
        lines.append(f"skipped: {n} label(s) of {name}, not a finding of the lexicon")
    lines.append(head)
    rows = [(f, scores.n_gold[f], [scores.counts[(f, m)] for m in MODES]) for f in scores.findings]
    rows.append(("micro", sum(scores.n_gold.values()), [scores.micro(m) for m in MODES]))
    for name, n, cs in rows:
        cells = "  ".join(f"{_f(c.precision):>7} {_f(c.recall):>4} {_f(c.f1):>4}" for c in cs)
        lines.append(f"{name:<{w}}  {n:>4}  {cells}")
    lines.append(
        "u+: uncertain counted as positive; u-: as negative; neg: the negative class; "
        "exact: positive/negative/uncertain must match"
    )
    return "\n".join(lines)
