"""Many regular-expression terms matched at once, longest first, fast.

One alternation of a few hundred terms tried at every character costs Python's ``re`` a few
milliseconds per sentence: it tries each alternative in turn. A :class:`TermMatcher` instead
files each term under the first :data:`KEY` characters its matches can start with (listed once
from the term's parsed pattern), and at each word start (or punctuation mark) of the text tries
only the few terms filed under the text's next characters. Same matches as the alternation (at a
position the first term in longest-first order that matches wins, and matching resumes after
it), some fifty times faster; ``tests/test_labels.py`` checks the two agree on the gold texts.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

# The regular-expression parser of the standard library (private, stable since 3.11): it tells
# which characters a term can start with.
_sre_p: Any = importlib.import_module("re._parser")
_sre_c: Any = importlib.import_module("re._constants")

# An unescaped "(" that does not open a special group: made non-capturing so that only the named
# groups of an alternation capture (and ``Match.lastgroup`` names the alternative).
_CAPTURING = re.compile(r"(?<!\\)\((?!\?)")
_RIGHT = r"(?!\w)"
# Where a term may start: a word start, or any other character that is not a space.
_CANDIDATES = re.compile(r"(?<!\w)\w|[^\w\s]")
_ZERO_WIDTH = {_sre_c.AT, _sre_c.ASSERT, _sre_c.ASSERT_NOT}
_REPEATS = {_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT, getattr(_sre_c, "POSSESSIVE_REPEAT", None)}


def pattern(term: str) -> str:
    """The regular expression of a lexicon term: its groups non-capturing, a space matching any
    whitespace run (report texts wrap lines mid-phrase)."""
    return _CAPTURING.sub("(?:", term.strip()).replace(" ", r"\s+")


def _bounded_right(term: str) -> bool:
    return not (term[-1:] in (";", ":", ",", "-") or term.endswith("\\?"))


#: How many characters of text a term is filed under.
KEY = 3
#: Most prefixes one term may be filed under (a larger set files it under every position).
MAX_PREFIXES = 400
_WS = str.maketrans(dict.fromkeys("\t\n\r\x0c\x0b", " "))
_SPACE_SET = [(_sre_c.CATEGORY, _sre_c.CATEGORY_SPACE)]


def _seq(items: Iterable[tuple[Any, Any]], k: int) -> set[str] | None:
    """The first ``k`` characters (fewer where the pattern ends sooner) of every match of a parsed
    pattern, whitespace as one space; None when unknown or too many."""
    partials = {""}
    for op, av in items:
        if all(len(p) >= k for p in partials):
            break
        nxt: set[str] = set()
        for p in partials:
            if len(p) >= k:
                nxt.add(p)
                continue
            got = _op(op, av, k - len(p))
            if got is None:
                return None
            nxt |= {p + g for g in got}
        partials = nxt
        if len(partials) > MAX_PREFIXES:
            return None
    return {p[:k] for p in partials}


def _op(op: Any, av: Any, n: int) -> set[str] | None:
    if op is _sre_c.LITERAL:
        return {chr(av)}
    if op is _sre_c.IN:
        if list(av) == _SPACE_SET:
            return {" "}
        chars: set[str] = set()
        for o, a in av:
            if o is _sre_c.LITERAL:
                chars.add(chr(a))
            elif o is _sre_c.RANGE and a[1] - a[0] < 64:
                chars.update(chr(c) for c in range(a[0], a[1] + 1))
            else:
                return None
        return chars
    if op is _sre_c.SUBPATTERN:
        return _seq(av[-1], n)
    if op is _sre_c.BRANCH:
        out: set[str] = set()
        for alt in av[1]:
            got = _seq(alt, n)
            if got is None:
                return None
            out |= got
        return out
    if op in _REPEATS:
        lo, hi, sub = av
        if _seq(sub, 1) == {" "}:
            return {" "}  # a whitespace run: one space in the key
        out = set()
        for r in range(lo, min(hi, n) + 1):
            got = _seq(list(sub) * r, n) if r else {""}
            if got is None:
                return None
            out |= got
        return out
    if op in _ZERO_WIDTH:
        return {""}
    return None


def prefixes(term: str, k: int = KEY) -> set[str] | None:
    """The first ``k`` characters every match of ``term`` can start with (whitespace runs as
    one space; shorter where a match can be shorter); None when they cannot be listed."""
    try:
        return _seq(_sre_p.parse(pattern(term)), k)
    except (re.error, TypeError, ValueError):  # pragma: no cover - validated terms parse
        return None


class TermMatcher:
    """Match ``terms`` (lexicon terms, see :func:`pattern`) in lower-case text, longest first.

    :meth:`finditer` yields ``(start, end, term)`` for non-overlapping matches, left to right.
    Each term is filed under the first :data:`KEY` characters all its matches start with (or,
    when it has fewer fixed ones, under every first character it can have); at a candidate
    position only the terms filed under the text's next characters are tried, in one small
    alternation.
    """

    def __init__(self, terms: Sequence[str]) -> None:
        # Longest first, by pattern text: a stand-in for "the longer phrase wins" that holds for
        # the lexicon's terms ("cannot exclude" before "not").
        ordered = sorted(set(terms), key=lambda t: (-len(t), t))
        self.terms = {f"g{i}": t for i, t in enumerate(ordered)}
        # Each term compiled once; at a position the few terms filed under the text's next
        # characters are tried in order.
        self._compiled_terms = {
            g: re.compile(f"{pattern(t)}{_RIGHT if _bounded_right(t) else ''}")
            for g, t in self.terms.items()
        }
        self._order = {g: i for i, g in enumerate(self.terms)}
        self._filed: dict[str, list[str]] = {}
        self._anywhere: list[str] = []
        for g, t in self.terms.items():
            keys = prefixes(t)
            if keys is None or "" in keys:
                self._anywhere.append(g)
                continue
            for key in keys:
                self._filed.setdefault(key, []).append(g)
        self._buckets: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {}

    def _bucket(self, raw: str) -> tuple[tuple[re.Pattern[str], str], ...]:
        """The (pattern, term) pairs tried where the text continues with ``raw`` (its next
        characters), cached under ``raw``."""
        key = raw.translate(_WS)
        groups = {*self._anywhere}
        for i in range(1, len(key) + 1):
            groups.update(self._filed.get(key[:i], ()))
        bucket = tuple(
            (self._compiled_terms[g], self.terms[g])
            for g in sorted(groups, key=self._order.__getitem__)
        )
        self._buckets[raw] = bucket
        return bucket

    def finditer(
        self, low: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, int, str]]:
        """Non-overlapping matches in ``low[start:end]``: (start, end, term)."""
        end = len(low) if end is None else end
        pos = start
        buckets = self._buckets
        for cand in _CANDIDATES.finditer(low, start, end):
            p = cand.start()
            if p < pos:
                continue
            key = low[p : p + KEY]
            bucket = buckets[key] if key in buckets else self._bucket(key)
            for pat, term in bucket:
                m = pat.match(low, p, end)
                if m is not None and m.end() > p:
                    pos = m.end()
                    yield p, pos, term
                    break
