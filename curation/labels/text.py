"""Report text into sections and sentences, as character spans of the original text.

Spans index the text as given, so an evidence span in the ``labels`` table points into the stored
report. Matching runs on a lower-cased copy of the same length.

A section starts at a heading: a word or phrase followed by a colon at the start of a line (or
after a sentence end), such as ``FINDINGS:`` or ``Clinical history:``. Known headings are kept
(findings, impression, ...) or ignored (indication, history, comparison, technique, ...) as the
lexicon says; an unknown heading in capitals at the start of a line opens a kept section. Text
before the first heading is kept.

A sentence ends at ``.`` or ``!`` followed by whitespace (not after an abbreviation such as
"e.g." or "vs."), at a blank line, and before a list item ("1. ", "- ") on a new line. A single line
break does not end a sentence: report texts wrap lines mid-sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

#: Words after which a period does not end a sentence.
ABBREVIATIONS = frozenset(
    {"dr", "vs", "e.g", "i.e", "eg", "ie", "approx", "st", "mr", "mrs", "ms", "fig", "cf", "resp",
     "incl", "u.s", "a.m", "p.m", "dept", "prof", "ca"}
)  # fmt: skip

_BREAK = re.compile(
    r"(?P<stop>(?<=[.!])(?=\s|$))"  # after . or ! before whitespace
    r"|(?P<blank>\n[ \t]*\n)"  # a blank line
    r"|(?P<item>\n(?=[ \t]*(?:\d{1,2}[.)]|[-*\u2022])[ \t]))"  # a new list item
)
_WORD_BEFORE = re.compile(r"([a-z][a-z.]*)\.$")


@dataclass(frozen=True)
class Section:
    """A section of a report: its heading (lower case, '' before the first), how it is used, its
    body's span."""

    heading: str
    kind: str  # "kept", "ignored" or "none" (no heading)
    start: int
    end: int


def lower_same_length(text: str) -> str:
    """``text`` lower-cased, character for character (a character whose lower case is longer,
    such as "İ", is kept) so that offsets into it are offsets into ``text``."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


_CAPS_HEADING = re.compile(r"[A-Z][A-Z /&()-]{2,40}")
# Headings that name a part of the document, not of the body: their words are no finding.
_DOCUMENT_PARTS = re.compile(
    r"findings?|impressions?|conclusions?|opinion|summary|interpretation|results?|(final )?report"
    r"|diagnosis|addendum|note"
)


@lru_cache(maxsize=16)
def _known_re(
    ignored: tuple[str, ...], kept: tuple[str, ...]
) -> tuple[re.Pattern[str], re.Pattern[str]]:
    def alt(terms: tuple[str, ...]) -> re.Pattern[str]:
        return re.compile("|".join(t.replace(" ", r"\s+") for t in terms) or "(?!)", re.IGNORECASE)

    return alt(ignored), alt((*ignored, *kept))


def sections(text: str, ignored: tuple[str, ...], kept: tuple[str, ...]) -> list[Section]:
    """The sections of ``text`` (original case: unknown headings are recognised by capitals).

    A heading is the text between a line start (or a sentence end) and a colon: a known one in
    any case, an unknown one in capitals at a line start.
    """
    ign, known = _known_re(ignored, kept)
    out: list[Section] = []
    start, heading, kind = 0, "", "none"
    colon = text.find(":")
    while colon >= 0:
        line_start = text.rfind("\n", 0, colon) + 1
        dot = max(text.rfind(". ", line_start, colon), text.rfind("; ", line_start, colon))
        h_start = dot + 2 if dot >= 0 else line_start
        cand = text[h_start:colon].strip()
        at_line_start = dot < 0 and cand
        if (
            cand
            and h_start >= start
            and (known.fullmatch(cand) or (at_line_start and _CAPS_HEADING.fullmatch(cand)))
        ):
            h_at = text.index(cand, h_start)
            if h_at > start or out or heading:
                out.append(Section(heading, kind, start, h_at))
            heading = " ".join(cand.lower().split())
            kind = "ignored" if ign.fullmatch(cand) else "kept"
            # A heading other than a document part may itself name the finding ("PNEUMOTHORAX:
            # NONE", "Heart: normal size"): its words stay in its section.
            start = colon + 1 if kind == "ignored" or _DOCUMENT_PARTS.fullmatch(heading) else h_at
        colon = text.find(":", colon + 1)
    out.append(Section(heading, kind, start, len(text)))
    return [p for s in out for p in _split_ignored(text, s) if p.end > p.start or p.heading]


# Headings whose text is a line or a phrase ("COMPARISON: None.", "TECHNIQUE: PA and lateral");
# what follows them on the same line is a report's findings when no FINDINGS heading comes.
_SHORT_SECTIONS = re.compile(
    r"comparisons?|technique|examination|exam|procedure|dose|contrast|study"
)
_SHORT_END = re.compile(r"\S[^\n]*?(?:\.(?=\s)|\n|$)")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def _split_ignored(text: str, sec: Section) -> list[Section]:
    """An ignored section ends where its kind of text ends: a short one ("comparison") at its
    first sentence or line, any other at a blank line; the rest is kept, without heading."""
    if sec.kind != "ignored":
        return [sec]
    if _SHORT_SECTIONS.fullmatch(sec.heading):
        m = _SHORT_END.search(text, sec.start, sec.end)
        end = m.end() if m else sec.end
    else:
        m = _BLANK_LINE.search(text, sec.start, sec.end)
        end = m.start() if m else sec.end
    if end >= sec.end or not text[end : sec.end].strip():
        return [sec]
    return [Section(sec.heading, sec.kind, sec.start, end), Section("", "none", end, sec.end)]


def sentences(low: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentence spans of ``low[start:end]`` (lower-cased text), whitespace trimmed, empty ones
    dropped."""
    spans = []
    s = start
    for m in _BREAK.finditer(low, start, end):
        if m.lastgroup == "stop":
            w = _WORD_BEFORE.search(low, max(s, m.start() - 12), m.start())
            if w is not None and (w.group(1) in ABBREVIATIONS or len(w.group(1)) == 1):
                continue
        spans.append((s, m.start()))
        s = m.end()
    spans.append((s, end))
    out = []
    for a, b in spans:
        while a < b and low[a].isspace():
            a += 1
        while b > a and low[b - 1].isspace():
            b -= 1
        if b > a:
            out.append((a, b))
    return out
