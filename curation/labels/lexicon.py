"""The finding lexicon and ConText modifiers as data: the shipped ``lexicon.yaml`` plus the user's.

A :class:`Lexicon` is validated when it is built (an unknown key, a term that is not a valid
regular expression, a finding without terms raise :class:`~curation.errors.InputError` naming the
file and the entry) and compiled once into two alternations: one for finding mentions (with the
exclusions that block them), one for modifier triggers. At a given position the longest
alternative is tried first, so "cannot exclude" is one trigger, not "not" and "exclude".

:attr:`Lexicon.version` hashes the lexicon files and the algorithm's version; every ``labels`` row
records the version that produced it (a user lexicon changes the hash).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from curation.errors import InputError
from curation.labels.matcher import TermMatcher, pattern

#: Version of the labeling algorithm (bump when the resolution rules change).
ALGORITHM_VERSION = "1"

#: Modifier categories: what a trigger in scope does to a mention.
CATEGORIES: tuple[str, ...] = (
    "negation",
    "uncertainty",
    "uncertainty_strong",
    "weak_uncertainty",
    "historical",
    "hypothetical",
    "experiencer",
)
#: Categories whose trigger in scope drops the mention (the report does not state the finding
#: for this patient now).
CONTEXT_CATEGORIES: frozenset[str] = frozenset({"historical", "hypothetical", "experiencer"})
DIRECTIONS = ("forward", "backward", "both")
#: The labels a mention or a report-level finding can have.
VALUES: tuple[str, ...] = ("positive", "negative", "uncertain")

_FINDING_KEYS = {"description", "names", "terms", "exclude", "qualified", "parent"}
_QUALIFIED_KEYS = {"anatomy", "positive", "negative", "uncertain"}
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class Qualified:
    """A finding stated through an attribute: an anatomy term plus a state word in one clause."""

    anatomy: tuple[str, ...]
    states: tuple[tuple[str, str], ...]  # (term, value)


@dataclass(frozen=True)
class Finding:
    """One finding: its terms, the phrases that look like it but are not, its other names."""

    name: str
    description: str
    terms: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    qualified: tuple[Qualified, ...] = ()
    parent: str | None = None


@dataclass(frozen=True)
class Trigger:
    """A modifier trigger: what it does and in which direction its scope runs."""

    category: str
    direction: str
    max_words: int | None = None


@dataclass(frozen=True, eq=False)
class Lexicon:
    """Findings, modifiers, section headings and implied statements, compiled for matching."""

    findings: Mapping[str, Finding]
    triggers: Mapping[str, tuple[Trigger, ...]]  # term -> what it triggers
    pseudo: tuple[str, ...]
    terminators: tuple[str, ...]
    ignored_sections: tuple[str, ...]
    kept_sections: tuple[str, ...]
    implied: tuple[tuple[str, tuple[str, ...]], ...]
    sha256: str
    # compiled
    mention_matcher: TermMatcher = field(repr=False, compare=False)
    mention_targets: Mapping[str, tuple[tuple[str, str, int], ...]] = field(
        repr=False, compare=False
    )  # term -> (kind, finding, qualified index)
    qualifier_res: Mapping[tuple[str, int], re.Pattern[str]] = field(repr=False, compare=False)
    trigger_matcher: TermMatcher = field(repr=False, compare=False)
    trigger_targets: Mapping[str, tuple[Trigger, ...]] = field(repr=False, compare=False)
    implied_matcher: TermMatcher | None = field(repr=False, compare=False)

    @property
    def version(self) -> str:
        """``<algorithm>-<first 12 hex digits of the lexicon's hash>``: recorded on every label."""
        return f"{ALGORITHM_VERSION}-{self.sha256[:12]}"

    def finding_name(self, name: str) -> str | None:
        """The finding ``name`` denotes: its own name or one of its other names (any case,
        spaces or underscores); None when no finding has it."""
        return _aliases(self).get(_norm_name(name))


def _norm_name(name: str) -> str:
    return re.sub(r"[\s_\-/]+", " ", name.strip().lower())


@lru_cache(maxsize=8)
def _aliases(lex: Lexicon) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in lex.findings.values():
        for n in (f.name, *f.names):
            out.setdefault(_norm_name(n), f.name)
    return out


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list):
        raise InputError(f"{where}: expected a list of terms")
    out = []
    for i, v in enumerate(value):
        if not isinstance(v, str | int | float) or not str(v).strip():
            raise InputError(f"{where}[{i}]: a term must be non-empty text")
        t = str(v).strip().lower()
        try:
            re.compile(pattern(t))
        except re.error as exc:
            raise InputError(f"{where}[{i}]: {t!r} is not a valid pattern: {exc}") from exc
        out.append(t)
    return tuple(out)


def _finding(name: str, raw: Any, where: str, base: Finding | None) -> Finding:
    if not _NAME.fullmatch(name):
        raise InputError(
            f"{where}: finding name {name!r} must be lower_snake_case (a-z, 0-9, _), "
            "at most 64 characters"
        )
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a finding is a mapping with terms, exclude, ...")
    unknown = set(raw) - _FINDING_KEYS
    if unknown:
        raise InputError(
            f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_FINDING_KEYS)}"
        )
    terms = _strings(raw.get("terms"), f"{where}.terms")
    exclude = _strings(raw.get("exclude"), f"{where}.exclude")
    names = tuple(str(n) for n in (raw.get("names") or []))
    qualified = []
    for i, q in enumerate(raw.get("qualified") or []):
        qw = f"{where}.qualified[{i}]"
        if not isinstance(q, dict) or set(q) - _QUALIFIED_KEYS or "anatomy" not in q:
            raise InputError(f"{qw}: needs anatomy and any of positive/negative/uncertain")
        states = tuple((t, v) for v in VALUES for t in _strings(q.get(v), f"{qw}.{v}"))
        qualified.append(Qualified(_strings(q["anatomy"], f"{qw}.anatomy"), states))
    parent = raw.get("parent")
    if base is not None:
        return Finding(
            name,
            str(raw.get("description") or base.description),
            base.terms + tuple(t for t in terms if t not in base.terms),
            base.exclude + tuple(t for t in exclude if t not in base.exclude),
            base.names + tuple(n for n in names if n not in base.names),
            base.qualified + tuple(qualified),
            str(parent) if parent else base.parent,
        )
    if not terms and not qualified:
        raise InputError(f"{where}: a new finding needs at least one term")
    return Finding(
        name,
        str(raw.get("description") or name.replace("_", " ")),
        terms,
        exclude,
        names,
        tuple(qualified),
        str(parent) if parent else None,
    )


def _read(path: Path | None) -> tuple[dict[str, Any], str, str]:
    if path is None:
        text = resources.files("curation.labels").joinpath("lexicon.yaml").read_text("utf-8")
        where = "lexicon.yaml (shipped)"
    else:
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the lexicon: {exc}") from exc
        where = str(path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{where}: a lexicon is a mapping (findings, modifiers, sections)")
    unknown = set(data) - {"version", "findings", "modifiers", "sections", "implied"}
    if unknown:
        raise InputError(f"{where}: unknown top-level key(s) {sorted(unknown)}")
    return data, text, where


def load_lexicon(*extra: str | Path) -> Lexicon:
    """The shipped lexicon, extended by the user's lexicon files ``extra`` (in order).

    A user file may add findings (``findings: {name: {terms: [...]}}``), add terms, exclusions or
    other names to a shipped finding, and add modifier triggers, terminators and section
    headings; it cannot remove shipped entries.
    """
    return _load(tuple(str(p) for p in extra))


@lru_cache(maxsize=16)
def _load(extra: tuple[str, ...]) -> Lexicon:
    findings: dict[str, Finding] = {}
    triggers: dict[str, list[Trigger]] = {}
    pseudo: list[str] = []
    terminators: list[str] = []
    hard: list[str] = []
    ignored: list[str] = []
    kept: list[str] = []
    implied: list[tuple[str, tuple[str, ...]]] = []
    digest = hashlib.sha256(ALGORITHM_VERSION.encode())
    for path in (None, *(Path(p) for p in extra)):
        data, text, where = _read(path)
        digest.update(text.encode())
        raw_findings = data.get("findings") or {}
        if not isinstance(raw_findings, dict):
            raise InputError(f"{where}: findings must be a mapping of name -> finding")
        for name, raw in raw_findings.items():
            findings[str(name)] = _finding(
                str(name), raw, f"{where}: findings.{name}", findings.get(str(name))
            )
        mods = data.get("modifiers") or {}
        if not isinstance(mods, dict):
            raise InputError(f"{where}: modifiers must be a mapping")
        for cat, spec in mods.items():
            mw = f"{where}: modifiers.{cat}"
            if cat == "pseudo":
                pseudo.extend(_strings(spec, mw))
                continue
            if cat == "terminators":
                terminators.extend(_strings(spec, mw))
                continue
            if cat == "hard_terminators":
                hard.extend(_strings(spec, mw))
                continue
            if cat not in CATEGORIES:
                raise InputError(
                    f"{mw}: unknown modifier category; known: {[*CATEGORIES, 'pseudo', 'terminators', 'hard_terminators']}"
                )
            if not isinstance(spec, dict) or set(spec) - {*DIRECTIONS, "max_words"}:
                raise InputError(f"{mw}: expected forward/backward/both lists and max_words")
            max_words = spec.get("max_words")
            if max_words is not None and (not isinstance(max_words, int) or max_words < 0):
                raise InputError(f"{mw}.max_words: a number of words (0 or more)")
            for direction in DIRECTIONS:
                for t in _strings(spec.get(direction), f"{mw}.{direction}"):
                    triggers.setdefault(t, []).append(Trigger(cat, direction, max_words))
        secs = data.get("sections") or {}
        if not isinstance(secs, dict) or set(secs) - {"ignored", "kept"}:
            raise InputError(f"{where}: sections has ignored and kept lists")
        ignored.extend(_strings(secs.get("ignored"), f"{where}: sections.ignored"))
        kept.extend(_strings(secs.get("kept"), f"{where}: sections.kept"))
        for i, item in enumerate(data.get("implied") or []):
            iw = f"{where}: implied[{i}]"
            if not isinstance(item, dict) or set(item) != {"statement", "negative"}:
                raise InputError(f"{iw}: needs statement and negative (a list of findings)")
            (stmt,) = _strings([item["statement"]], f"{iw}.statement")
            implied.append((stmt, tuple(str(f) for f in item["negative"] or [])))
    for f in findings.values():
        if f.parent is not None and f.parent not in findings:
            raise InputError(f"finding {f.name}: parent {f.parent!r} is not a finding")
    for stmt, names in implied:
        for n in names:
            if n not in findings:
                raise InputError(f"implied statement {stmt!r}: {n!r} is not a finding")
    return _compile(
        findings,
        {t: tuple(v) for t, v in triggers.items()},
        tuple(dict.fromkeys(pseudo)),
        tuple(dict.fromkeys(terminators)),
        tuple(dict.fromkeys(hard)),
        tuple(dict.fromkeys(ignored)),
        tuple(dict.fromkeys(kept)),
        tuple(implied),
        digest.hexdigest(),
    )


def _compile(
    findings: dict[str, Finding],
    triggers: dict[str, tuple[Trigger, ...]],
    pseudo: tuple[str, ...],
    terminators: tuple[str, ...],
    hard: tuple[str, ...],
    ignored: tuple[str, ...],
    kept: tuple[str, ...],
    implied: tuple[tuple[str, tuple[str, ...]], ...],
    sha256: str,
) -> Lexicon:
    targets: dict[str, list[tuple[str, str, int]]] = {}
    for f in findings.values():
        for t in f.terms:
            targets.setdefault(t, []).append(("term", f.name, -1))
        for t in f.exclude:
            targets.setdefault(t, []).append(("exclude", f.name, -1))
        for i, q in enumerate(f.qualified):
            for t in q.anatomy:
                targets.setdefault(t, []).append(("anatomy", f.name, i))
    qualifier_res = {}
    for f in findings.values():
        for i, q in enumerate(f.qualified):
            # Small alternations over a few words' window: one pattern whose group names say
            # the state's value ("negative_3").
            ordered = sorted(q.states, key=lambda tv: (-len(tv[0]), tv[0]))
            src = "|".join(
                rf"(?P<{v}_{j}>(?<!\w){pattern(t)}(?!\w))" for j, (t, v) in enumerate(ordered)
            )
            qualifier_res[(f.name, i)] = re.compile(src)
    trig_all: dict[str, tuple[Trigger, ...]] = dict(triggers)
    for t in pseudo:
        trig_all[t] = (Trigger("pseudo", "both"),)
    for t in terminators:
        trig_all[t] = (*trig_all.get(t, ()), Trigger("terminator", "both"))
    for t in hard:
        trig_all[t] = (*trig_all.get(t, ()), Trigger("hard_terminator", "both"))
    return Lexicon(
        findings=findings,
        triggers=triggers,
        pseudo=pseudo,
        terminators=(*terminators, *hard),
        ignored_sections=ignored,
        kept_sections=kept,
        implied=implied,
        sha256=sha256,
        mention_matcher=TermMatcher(list(targets)),
        mention_targets={t: tuple(v) for t, v in targets.items()},
        qualifier_res=qualifier_res,
        trigger_matcher=TermMatcher(list(trig_all)),
        trigger_targets=trig_all,
        implied_matcher=TermMatcher([s for s, _ in implied]) if implied else None,
    )


def default_lexicon() -> Lexicon:
    """The shipped lexicon alone."""
    return load_lexicon()
