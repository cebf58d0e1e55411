"""The labeler: finding mentions in report text, each resolved by the ConText modifiers in scope.

For every sentence of a kept section (:mod:`curation.labels.text`):

1. **Mentions.** The lexicon's finding terms are matched (longest first); a match of an exclusion
   ("pericardial effusion", "mass effect") blocks it. A *qualified* finding is stated through an
   attribute: an anatomy term ("heart size", "costophrenic angle") with a state word near it in
   the same clause ("normal" -> negative, "enlarged" -> positive, "borderline" -> uncertain).
2. **Scope.** Triggers are matched the same way. A clause runs between terminators ("but",
   "however", "; ", ", there is", ...); a forward trigger reaches the mentions after it in its
   clause, a backward trigger those before it, a trigger with ``max_words`` only that far. Pseudo
   triggers ("no change in", "not only") match and do nothing, so "no change in the size of the
   nodule" leaves the nodule positive. Context triggers (history of, if, family history of) reach
   to the end of the sentence unless a hard terminator ("but", "however", ";") ends it first.
3. **Resolution.** Of the assertion triggers in scope, the nearest before and the nearest after the
   mention count (so in "no pneumothorax, possible small effusion" the effusion is uncertain, not
   negated): strong uncertainty ("cannot exclude", "no new") wins over negation, negation over
   uncertainty; a weak trigger ("atelectasis or pneumonia") makes a mention uncertain only when no
   other trigger decided it. A context trigger in scope drops the mention: the report does not
   state the finding for this patient now.

Report level (:func:`label_report`): one label per finding mentioned, positive over uncertain over
negative (a finding positive in one sentence and negated in another is positive, CheXpert's rule),
with the first mention that carries it as evidence. A finding not mentioned has no label.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from curation.labels.lexicon import CONTEXT_CATEGORIES, Lexicon, Trigger, default_lexicon
from curation.labels.text import lower_same_length, sections, sentences

#: Report-level precedence of a finding's mention labels (first wins).
PRECEDENCE: tuple[str, ...] = ("positive", "uncertain", "negative")
_INVERT = {"positive": "negative", "negative": "positive", "uncertain": "negative"}


@dataclass(frozen=True)
class Mention:
    """One mention of a finding with its label and the evidence for it.

    ``start``/``end`` span the finding's words in the report text; ``sentence_start``/
    ``sentence_end`` the sentence; ``cues`` the triggers that decided (``category:text``).
    """

    finding: str
    value: str
    start: int
    end: int
    sentence_start: int
    sentence_end: int
    section: str
    cues: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    triggers: tuple[Trigger, ...]


def _words(low: str, a: int, b: int) -> int:
    return len(low[a:b].split()) if b > a else 0


def _resolve(
    low: str,
    hits: list[_Hit],
    m_start: int,
    m_end: int,
    a: int,
    b: int,
    base: str,
    spans: list[tuple[int, int]] = [],  # noqa: B006 (read only)
) -> tuple[str | None, tuple[str, ...]]:
    """The label of a mention at ``[m_start, m_end)`` of sentence ``[a, b)``; None to drop it.

    ``spans`` are the sentence's other mentions: a weak trigger does not reach over one.
    """
    # Clause bounds: assertion scopes end at any terminator, hypothetical ones at hard ones,
    # historical and experiencer ones also at a comma ("family history of X, no Y").
    left, right, hard_left, hard_right = a, b, a, b
    comma_left = low.rfind(",", a, m_start) + 1 or a
    comma_right = low.find(",", m_end, b)
    comma_right = b if comma_right < 0 else comma_right
    for h in hits:
        kinds = {t.category for t in h.triggers}
        if not kinds & {"terminator", "hard_terminator"}:
            continue
        hard = "hard_terminator" in kinds
        if h.end <= m_start:
            left = max(left, h.end)
            if hard:
                hard_left = max(hard_left, h.end)
        elif h.start >= m_end:
            right = min(right, h.start)
            if hard:
                hard_right = min(hard_right, h.start)
    before: tuple[_Hit, Trigger] | None = None
    after: tuple[_Hit, Trigger] | None = None
    weak: list[tuple[_Hit, Trigger]] = []
    for h in hits:
        for t in h.triggers:
            cat = t.category
            if cat in ("terminator", "hard_terminator", "pseudo"):
                continue
            inside = h.start >= m_start and h.end <= m_end  # within a qualified mention
            # A trigger may overlap the mention's words: "no acute" + "acute infarct".
            fwd = t.direction in ("forward", "both") and (h.start < m_start or inside)
            bwd = t.direction in ("backward", "both") and h.start > m_start and h.end > m_end
            if cat in CONTEXT_CATEGORIES:
                if cat == "hypothetical":
                    lo, hi = hard_left, hard_right
                else:
                    lo, hi = max(left, comma_left), min(right, comma_right)
                if (fwd and h.start >= lo) or (bwd and h.end <= hi):
                    return None, (f"{cat}:{low[h.start : h.end]}",)
                continue
            if fwd and h.start >= left:
                if t.max_words is not None and _words(low, h.end, m_start) > t.max_words:
                    continue
                if cat == "weak_uncertainty":
                    weak.append((h, t))
                elif before is None or h.start >= before[0].start:
                    before = (h, t)
            elif bwd and h.end <= right:
                if t.max_words is not None and _words(low, m_end, h.start) > t.max_words:
                    continue
                if cat == "weak_uncertainty":
                    weak.append((h, t))
                elif after is None or h.start < after[0].start:
                    after = (h, t)
    decided = [x for x in (before, after) if x is not None]
    cats = {t.category for _, t in decided}
    cues = tuple(f"{t.category}:{low[h.start : h.end]}" for h, t in decided)
    if "uncertainty_strong" in cats:
        return "uncertain", cues
    if "negation" in cats:
        return _INVERT[base], cues
    if "uncertainty" in cats:
        return "uncertain", cues
    if base == "positive":
        for h, t in weak:
            lo, hi = (h.end, m_start) if h.end <= m_start else (m_end, h.start)
            # "atelectasis or pneumonia", not "atelectasis, no effusion or pneumothorax".
            if "," in low[lo:hi] or any(lo <= s < hi for s, _ in spans):
                continue
            return "uncertain", (f"{t.category}:{low[h.start : h.end]}",)
    return base, cues


def _state(
    lex: Lexicon, low: str, finding: str, qi: int, m_start: int, m_end: int, lo: int, hi: int
) -> tuple[str, int, int] | None:
    """The state word nearest to an anatomy term within a few words: (value, start, end)."""
    pat = lex.qualifier_res[(finding, qi)]
    best: tuple[int, str, int, int] | None = None
    for q in pat.finditer(low, lo, hi):
        if q.end() <= m_start:
            dist = _words(low, q.end(), m_start)
            if dist > 3:
                continue
        elif q.start() >= m_end:
            dist = _words(low, m_end, q.start())
            if dist > 6:
                continue
        else:
            continue
        value = (q.lastgroup or "positive_").rsplit("_", 1)[0]
        if best is None or dist < best[0]:
            best = (dist, value, q.start(), q.end())
    return None if best is None else best[1:]


def mentions(
    text: str,
    lexicon: Lexicon | None = None,
    *,
    keep_ignored_sections: bool = False,
    implied_negatives: bool = False,
) -> Iterator[Mention]:
    """Every labeled finding mention of ``text``, in text order."""
    lex = lexicon or default_lexicon()
    low = lower_same_length(text)
    for sec in sections(text, lex.ignored_sections, lex.kept_sections):
        if sec.kind == "ignored" and not keep_ignored_sections:
            continue
        for a, b in sentences(low, sec.start, sec.end):
            yield from _sentence(lex, low, a, b, sec.heading, implied_negatives)


def _sentence(
    lex: Lexicon, low: str, a: int, b: int, section: str, implied: bool
) -> Iterator[Mention]:
    found = list(lex.mention_matcher.finditer(low, a, b))
    implied_in = dict(lex.implied)
    stmts = list(lex.implied_matcher.finditer(low, a, b)) if implied and lex.implied_matcher else []
    if not found and not stmts:
        return
    hits = [
        _Hit(s, e, lex.trigger_targets[t]) for s, e, t in lex.trigger_matcher.finditer(low, a, b)
    ]
    spans = [(s, e) for s, e, _ in found]
    # Finding terms bound the reach of a state word ("heart size stable, small effusion"); other
    # anatomy terms do not ("heart size and mediastinal contours are normal").
    terms = [(s, e) for s, e, t in found if any(k == "term" for k, _, _ in lex.mention_targets[t])]
    for m_start, m_end, term in found:
        # An exclusion ("pericardial effusion") has consumed the words a shorter term of
        # another finding would have matched; it yields nothing itself.
        targets = [t for t in lex.mention_targets[term] if t[0] != "exclude"]
        lo = max([e for _, e in terms if e <= m_start], default=a)
        hi = min([st for st, _ in terms if st >= m_end], default=b)
        for kind, finding, qi in targets:
            start, end, base = m_start, m_end, "positive"
            if kind == "anatomy":
                st = _state(lex, low, finding, qi, start, end, lo, hi)
                if st is None:
                    continue
                base, start, end = st[0], min(start, st[1]), max(end, st[2])
            others = [sp for sp in spans if sp != (m_start, m_end)]
            value, cues = _resolve(low, hits, start, end, a, b, base, others)
            if value is None:
                continue
            f = lex.findings[finding]
            for name in (finding, f.parent) if f.parent else (finding,):
                yield Mention(name, value, start, end, a, b, section, cues)
    for s_start, s_end, stmt in stmts:
        value, cues = _resolve(low, hits, s_start, s_end, a, b, "negative")
        if value is None:
            continue
        for finding in implied_in[stmt]:
            yield Mention(finding, value, s_start, s_end, a, b, section, ("implied",))


def aggregate(found: list[Mention] | Iterator[Mention]) -> dict[str, Mention]:
    """Report-level label per finding: positive over uncertain over negative; the first mention
    carrying the winning label is the evidence."""
    best: dict[str, Mention] = {}
    for m in found:
        cur = best.get(m.finding)
        if cur is None or PRECEDENCE.index(m.value) < PRECEDENCE.index(cur.value):
            best[m.finding] = m
    return best


def label_report(
    text: str,
    lexicon: Lexicon | None = None,
    *,
    keep_ignored_sections: bool = False,
    implied_negatives: bool = False,
) -> dict[str, Mention]:
    """The report-level label of each finding ``text`` mentions (see the module docstring)."""
    return aggregate(
        mentions(
            text,
            lexicon,
            keep_ignored_sections=keep_ignored_sections,
            implied_negatives=implied_negatives,
        )
    )
