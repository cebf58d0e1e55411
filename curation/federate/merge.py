"""Adding up site summaries: a federation, and what it can say about counts that were suppressed.

A federation is an ordered set of site summaries with distinct names. Merging is associative and
commutative up to order (``merge(merge(a, b), c)`` and ``merge(a, merge(b, c))`` hold the same
sites, and every result below is computed from the set of sites, never from the order).

A suppressed count is not a number but an interval: what a reader of the summary can know about it.
:meth:`Dist.count` gives that interval for one cell: exact for a shown cell; ``[1, n_hidden - (m -
1)]`` for one of ``m`` named hidden cells; ``[0, n_hidden]`` for a value an open vocabulary may have
hidden; 0 for a value a closed vocabulary does not list. Sums of intervals are intervals, so pooled
counts over sites are intervals too, exact where nothing was suppressed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from curation.errors import InputError
from curation.federate.bins import NOT_RECORDED
from curation.federate.format import SiteSummary

#: A count as a reader of a summary knows it: (lowest, highest) possible value.
Interval = tuple[int, int]
ZERO: Interval = (0, 0)


def add(*xs: Interval) -> Interval:
    """The sum of intervals."""
    return (sum(x[0] for x in xs), sum(x[1] for x in xs))


def meet(a: Interval, b: Interval) -> Interval:
    """What two bounds of one count say together."""
    return (max(a[0], b[0]), min(a[1], b[1]))


def group_key(group: dict[str, str]) -> str:
    """A distribution's group as one hashable, order-free key."""
    return json.dumps(group, sort_keys=True)


@dataclass(frozen=True)
class Dist:
    """One distribution of one site, parsed for counting."""

    what: str
    group: dict[str, str]
    n: int
    visible: dict[str, int]
    hidden: tuple[str, ...]
    n_hidden: int
    closed: bool
    withheld: bool

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Dist:
        """The distribution as a summary writes it."""
        visible = {c["value"]: c["n"] for c in d["cells"] if not c.get("suppressed")}
        hidden = tuple(c["value"] for c in d["cells"] if c.get("suppressed"))
        return cls(
            d["what"],
            dict(d["group"]),
            d["n"],
            visible,
            hidden,
            d["n_hidden"],
            d["vocabulary"] == "closed",
            bool(d.get("withheld")),
        )

    def count(self, value: str) -> Interval:
        """What a reader knows about the count of ``value``."""
        if self.withheld:
            return (0, self.n)
        if value in self.visible:
            n = self.visible[value]
            return (n, n)
        if self.closed:
            if value in self.hidden:
                return (1, self.n_hidden - (len(self.hidden) - 1))
            return ZERO
        return (0, self.n_hidden)

    def values(self) -> set[str]:
        """The values a reader can name (shown or named hidden cells)."""
        return set(self.visible) | set(self.hidden)

    def others(self, value: str) -> Interval:
        """Series with a recorded value other than ``value``."""
        if self.withheld:
            return (0, self.n)
        shown = sum(n for v, n in self.visible.items() if v not in (value, NOT_RECORDED))
        if self.closed:
            named = [v for v in self.hidden if v not in (value, NOT_RECORDED)]
            taken = sum(1 for v in self.hidden if v in (value, NOT_RECORDED))
            return (shown + len(named), shown + (self.n_hidden - taken if named else 0))
        return (shown, shown + self.n_hidden)

    def recorded(self) -> Interval:
        """Series with a recorded value (not ``(not recorded)``)."""
        lo, hi = self.count(NOT_RECORDED)
        return (max(0, self.n - hi), self.n - lo)


@dataclass(frozen=True)
class Site:
    """One site's summary, indexed for counting."""

    summary: SiteSummary
    dists: dict[tuple[str, str], Dist] = field(repr=False)

    @classmethod
    def of(cls, summary: SiteSummary) -> Site:
        """Index ``summary``."""
        dists = {}
        for d in summary.data["distributions"]:
            parsed = Dist.from_json(d)
            dists[(parsed.what, group_key(parsed.group))] = parsed
        return cls(summary, dists)

    @property
    def name(self) -> str:
        """The site's name."""
        return self.summary.site

    @property
    def k(self) -> int:
        """The site's min_count."""
        return int(self.summary.data["min_count"])

    def dist(self, what: str, **group: str) -> Dist | None:
        """The distribution ``what`` within ``group``, if the summary has it."""
        return self.dists.get((what, group_key(group)))

    def modality_count(self, modality: str) -> Interval:
        """Series of ``modality`` at the site."""
        d = self.dist("Modality")
        if d is None:  # fewer than k series in all
            return (0, self.k - 1)
        return d.count(modality)

    def modalities(self) -> set[str]:
        """Modalities a reader can name at the site."""
        d = self.dist("Modality")
        return set() if d is None else d.values() - {NOT_RECORDED}

    def measures(self, attribute: str) -> bool:
        """True when the site's catalog could give ``attribute`` (pixel metrics need pixels)."""
        return attribute in self.summary.data["attributes"]

    def value_count(self, modality: str, attribute: str, value: str) -> tuple[Interval, Interval]:
        """Series of ``modality`` with ``attribute`` = ``value``, and with another recorded value."""
        d = self.dist(attribute, Modality=modality)
        if d is not None:
            return d.count(value), d.others(value)
        lo, hi = self.modality_count(modality)
        if lo > 0 and hi == lo and self._shown(modality):
            return ZERO, ZERO  # the modality is shown and the attribute never recorded
        return (0, hi), (0, hi)

    def recorded(self, modality: str, attribute: str) -> Interval:
        """Series of ``modality`` with a recorded ``attribute``."""
        d = self.dist(attribute, Modality=modality)
        if d is not None:
            return d.recorded()
        lo, hi = self.modality_count(modality)
        if lo > 0 and hi == lo and self._shown(modality):
            return ZERO
        return (0, hi)

    def _shown(self, modality: str) -> bool:
        d = self.dist("Modality")
        return d is not None and modality in d.visible


@dataclass(frozen=True)
class Federation:
    """Site summaries with distinct names, in the order they were added."""

    summaries: tuple[SiteSummary, ...]

    @cached_property
    def sites(self) -> tuple[Site, ...]:
        """The sites, sorted by name (results never depend on the order of merging)."""
        return tuple(Site.of(s) for s in sorted(self.summaries, key=lambda s: s.site))

    def __iter__(self) -> Iterator[Site]:
        return iter(self.sites)

    def site(self, name: str) -> Site:
        """The site called ``name``."""
        return next(s for s in self.sites if s.name == name)

    def pooled(self, what: str, **group: str) -> dict[str, Interval]:
        """Pooled counts of a distribution over every site: value -> interval."""
        values: set[str] = set()
        for s in self.sites:
            d = s.dist(what, **group)
            if d is not None:
                values |= d.values()
        out = {}
        for v in sorted(values):
            parts = []
            for s in self.sites:
                d = s.dist(what, **group)
                if d is not None:
                    parts.append(d.count(v))
            out[v] = add(*parts)
        return out


def merge(*parts: SiteSummary | Federation) -> Federation:
    """A federation of the given summaries and federations.

    Raises
    ------
    InputError
        Two summaries name the same site (the message names both files).
    """
    summaries: list[SiteSummary] = []
    for p in parts:
        summaries.extend(p.summaries if isinstance(p, Federation) else (p,))
    seen: dict[str, str] = {}
    for s in summaries:
        if s.site in seen:
            raise InputError(
                f"{s.source}: site {s.site!r} is given twice (also by {seen[s.site]}); "
                "name each site once (curation summary --site NAME)"
            )
        seen[s.site] = s.source
    return Federation(tuple(summaries))


def federate(summaries: Iterable[SiteSummary]) -> Federation:
    """The federation of ``summaries`` (see :func:`merge`)."""
    return merge(*summaries)
