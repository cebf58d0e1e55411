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


@lru_cache(maxsize=16)
def _heading_re(ignored: tuple[str, ...], kept: tuple[str, ...]) -> re.Pattern[str]:
    known = sorted({*ignored, *kept}, key=lambda t: (-len(t), t))
    alts = "|".join(t.replace(" ", r"[ \t]+") for t in known)
    # A known heading (any case) at a line start or after a sentence end, or an unknown one in
    # capitals at a line start; the colon is required.
    return re.compile(
        rf"(?:^|(?<=\n)|(?<=[.;]\s)|(?<=[.;]\s\s))[ \t]*(?P<h>(?i:{alts})|[A-Z][A-Z /&()-]{{2,40}})[ \t]*:",
    )


def sections(text: str, ignored: tuple[str, ...], kept: tuple[str, ...]) -> list[Section]:
    """The sections of ``text`` (original case: unknown headings are recognised by capitals)."""
    ign = re.compile(rf"(?:{'|'.join(ignored)})", re.IGNORECASE) if ignored else None
    out: list[Section] = []
    start, heading, kind = 0, "", "none"
    for m in _heading_re(ignored, kept).finditer(text):
        if m.start() > start or out or heading:
            out.append(Section(heading, kind, start, m.start()))
        heading = re.sub(r"\s+", " ", m.group("h").strip().lower())
        kind = "ignored" if ign is not None and ign.fullmatch(heading) else "kept"
        start = m.end()
    out.append(Section(heading, kind, start, len(text)))
    return [s for s in out if s.end > s.start or s.heading]


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
