"""Small-cell suppression that differencing cannot undo.

A cell is a count of series (or patients) that leaves the site. A cell under ``k`` (but not 0) is
suppressed: its count is not shown. That alone is not enough when the total of the distribution is
published too: total minus the visible cells gives the hidden cells' sum, and if one cell is hidden
that sum *is* its count. So suppression is complemented (the usual statistical-disclosure rule):

* **Distributions with a published total** (:func:`protect`): more cells, smallest first, are
  hidden until the hidden cells together hold at least ``k + (m - 1)`` series, where ``m`` is the
  number of hidden cells a reader can tell apart (the labels of a closed vocabulary are listed, so
  ``m`` of them; an open vocabulary's hidden cells are not listed at all, so they are one bucket).
  Each hidden cell holds at least 1, so from the total a reader can only conclude that any one of
  them holds between 1 and ``k`` or more: not its count, and not even that it is under ``k``.
  Where that cannot be reached (every cell would be hidden and still too few series), the whole
  distribution is *withheld*: only its total is shown.
* **Sequences of nested counts** (:func:`protect_sequence`, the cohort's attrition: series left
  after each criterion): a count is shown only if it is 0 or at least ``k`` *and* differs from the
  last shown count by 0 or at least ``k``, so no difference of two shown counts is a small cell.
* **Standalone counts** that no published total ties to anything (:func:`protect_count`): shown
  if 0 or at least ``k``.

Cells of 0 are never suppressed: an empty cell says that nobody is there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: Default smallest count shown.
DEFAULT_MIN_COUNT = 10


@dataclass(frozen=True)
class Protected:
    """A distribution after suppression.

    ``visible``: value -> count of the cells shown; ``hidden``: the values of the suppressed cells
    that may be named (closed vocabularies only; empty for open ones, whose hidden cells are not
    listed); ``n_hidden``: the hidden cells' sum (what total minus visible cells gives anyway);
    ``withheld``: nothing but the total is shown.
    """

    visible: dict[str, int]
    hidden: tuple[str, ...]
    n_hidden: int
    withheld: bool


def protect(
    counts: Mapping[str, int], k: int, *, closed: bool, force: Iterable[str] = ()
) -> Protected:
    """Primary and complementary suppression of one distribution whose total is published.

    Parameters
    ----------
    counts
        value -> count (zero counts may be left out).
    k
        Smallest count shown (``1``: nothing is suppressed).
    closed
        True when the values come from a declared vocabulary and hidden cells may be named.
    force
        Values to hide whatever their count (see :func:`protect_nested`).
    """
    cells = {v: int(c) for v, c in counts.items() if c}
    hidden = {v for v, c in cells.items() if c < k} | (set(force) & set(cells))
    withheld = False
    while hidden:
        m = len(hidden) if closed else 1
        if sum(cells[v] for v in hidden) - (m - 1) >= k:
            break
        rest = sorted((c, v) for v, c in cells.items() if v not in hidden)
        if not rest:
            withheld = True
            break
        hidden.add(rest[0][1])
    total = sum(cells.values())
    if withheld:
        return Protected({}, (), total, True)
    visible = {v: c for v, c in cells.items() if v not in hidden}
    named = tuple(sorted(hidden)) if closed else ()
    return Protected(visible, named, total - sum(visible.values()), False)


def protect_count(n: int, k: int) -> int | None:
    """A standalone count as shown: itself when 0 or at least ``k``, else None (suppressed)."""
    return n if n == 0 or n >= k else None


def protect_sequence(counts: Sequence[int], k: int) -> list[int | None]:
    """Nested counts (each at most the one before) as shown: None where suppressed.

    A count is shown when it is 0 or at least ``k`` and its difference from the last count shown
    is 0 or at least ``k``; the first count is the population and follows the first rule only.
    """
    out: list[int | None] = []
    last: int | None = None
    for n in counts:
        ok = n == 0 or n >= k
        if ok and last is not None:
            d = last - n
            ok = d == 0 or d >= k
        out.append(n if ok else None)
        if ok:
            last = n
    return out


def protect_nested(
    fine: Mapping[str, int],
    coarse_of: Mapping[str, str],
    k: int,
    *,
    fine_closed: bool,
    coarse_closed: bool,
) -> tuple[Protected, Protected]:
    """Protect a distribution and a coarsening of it together (Manufacturer and vendor).

    Each coarse cell is the sum of the fine cells that map to it (``coarse_of``), and a reader
    who knows the mapping can difference the two: a shown vendor count minus its shown
    Manufacturer counts is the hidden Manufacturer counts of that vendor; a hidden vendor count
    whose Manufacturer cells are all shown is their sum. So, until neither changes: a shown coarse
    cell whose hidden fine cells hold between 1 and k - 1 series is hidden too, and a hidden
    coarse cell whose fine cells are all shown gets its smallest fine cell hidden.
    """
    coarse: dict[str, int] = {}
    for v, n in fine.items():
        coarse[coarse_of[v]] = coarse.get(coarse_of[v], 0) + n
    force_fine: set[str] = set()
    force_coarse: set[str] = set()
    while True:
        pf = protect(fine, k, closed=fine_closed, force=force_fine)
        pc = protect(coarse, k, closed=coarse_closed, force=force_coarse)
        if pf.withheld or pc.withheld:
            return pf, pc
        changed = False
        for c, n in coarse.items():
            members = [v for v in fine if coarse_of[v] == c and fine[v]]
            shown = sum(pf.visible.get(v, 0) for v in members)
            if c in pc.visible and 0 < n - shown < k and c not in force_coarse:
                force_coarse.add(c)
                changed = True
            elif c not in pc.visible and n and all(v in pf.visible for v in members):
                force_fine.add(min(members, key=lambda v: (fine[v], v)))
                changed = True
        if not changed:
            return pf, pc
