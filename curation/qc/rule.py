"""A QC rule is a declaration: what it checks, at which level, how bad a violation is, its tunable
parameters, and the set-based query that selects the violations.

Running rules is the runner's job (:mod:`curation.qc.runner`); this module only declares them and
keeps the registry (:data:`RULES`), keyed by a stable dotted id that is never renamed, only deprecated.

The query contract
------------------
A rule's ``query`` is either DuckDB SQL or a Python callable.

* SQL: a ``SELECT`` that returns exactly the columns of :data:`FINDING_COLUMNS`, one row per
  violation. Parameters are referenced as DuckDB named parameters (``$max_gap_ratio``) and bound by
  the runner, never formatted into the text.
* Callable: ``query(con, params) -> polars.DataFrame`` with the same columns, for checks that are
  easier to state with polars. It must stay set-based (no Python loop over rows).

``value`` carries the offending value as text (a spacing in mm, a count, a reason code); ``message``
says what is wrong in words. Neither may contain a patient name or ID: those stay in their columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeAlias

from curation.errors import InputError

if TYPE_CHECKING:
    import duckdb
    import polars as pl

#: What every rule query returns, in this order.
FINDING_COLUMNS: tuple[str, ...] = (
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "path",
    "value",
    "message",
)

#: Tag of the rules whose findings may mean identifying content (headers or pixels): the report
#: never draws a thumbnail of a series one of them flagged.
PRIVACY = "privacy"

ParamValue: TypeAlias = float | int | str | bool | list[str] | list[float]
QueryFn: TypeAlias = Callable[["duckdb.DuckDBPyConnection", Mapping[str, Any]], "pl.DataFrame"]

_ID = re.compile(r"^(instance|series|study|cohort|pixel)\.[a-z][a-z0-9_]*$")
#: Id families that are not a level: pixel rules are series-level checks named ``pixel.*``.
_FAMILIES = ("pixel.",)


class Level(StrEnum):
    """What one finding is about."""

    INSTANCE = "instance"
    SERIES = "series"
    STUDY = "study"
    COHORT = "cohort"


class Severity(StrEnum):
    """How bad a violation is; ordered, so ``--fail-on warning`` also fails on errors."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        """0 for info, 1 for warning, 2 for error: the one order every threshold compares by."""
        return _RANKS[self.value]

    def fails(self, fail_on: str | Severity) -> bool:
        """True when this severity is at or above the threshold ``fail_on`` (``never``: never)."""
        threshold = fail_threshold(fail_on)
        return threshold is not None and self.rank >= threshold


_RANKS = {"info": 0, "warning": 1, "error": 2}
#: Values a ``--fail-on`` option accepts, strictest last: a severity, or ``never``.
FAIL_ON: tuple[str, ...] = ("info", "warning", "error", "never")


def fail_threshold(fail_on: str | Severity) -> int | None:
    """The rank at or above which a finding fails a run; None for ``never``.

    Raises
    ------
    InputError
        ``fail_on`` is neither a severity nor ``never``.
    """
    value = str(getattr(fail_on, "value", fail_on))
    if value == "never":
        return None
    if value not in _RANKS:
        raise InputError(f"fail_on must be one of {', '.join(FAIL_ON)}, not {value!r}")
    return _RANKS[value]


@dataclass(frozen=True)
class Param:
    """A tunable parameter of a rule.

    Parameters
    ----------
    name
        Identifier, used as ``$name`` in the rule's SQL and as the key in suite files.
    default
        Default value; its type is the parameter's type (suites are checked against it).
    unit
        Unit of the value (``mm``, ``deg``, ``fraction``, ``count``, ...), ``""`` when unitless.
    description
        One line: what the parameter changes.
    """

    name: str
    default: ParamValue
    unit: str
    description: str

    def coerce(self, value: Any, rule_id: str) -> ParamValue:
        """``value`` checked against the type of the default; raises ``ValueError`` if it does not fit."""
        d = self.default
        where = f"rule {rule_id}, parameter {self.name}"
        if isinstance(d, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{where}: expected true/false, got {value!r}")
            return value
        if isinstance(d, int | float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(
                    f"{where}: expected a number in {self.unit or 'units'}, got {value!r}"
                )
            return int(value) if isinstance(d, int) and float(value).is_integer() else float(value)
        if isinstance(d, str):
            if not isinstance(value, str):
                raise ValueError(f"{where}: expected text, got {value!r}")
            return value
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return list(value)


@dataclass(frozen=True)
class Rule:
    """One QC rule, as a declaration.

    Parameters
    ----------
    id
        Stable dotted id, ``<level>.<name>`` (``series.missing_slices``). Never renamed.
    level
        What a finding is about: instance, series, study or cohort.
    severity
        Default severity; a suite may override it.
    title
        A few words, for tables and JUnit test names.
    description
        What the rule flags and why it matters.
    not_checked
        What the rule deliberately does not check (and which rule does, if any).
    query
        The set-based query (see the module docstring for the contract).
    params
        Tunable parameters with defaults and units.
    requires
        Catalog tables (or :mod:`curation.qc.views` names) the query reads.
    detects
        Defect kinds of the synthetic cohort's ground truth this rule is meant to find; used by
        :mod:`curation.qc.measure` to compute precision and recall.
    deprecated
        Why the rule is retired, or None; a retired id is never reused.
    tags
        Labels that select rules by what they are about rather than by id (:data:`PRIVACY`), so
        that renaming or adding a rule does not slip past a filter (:func:`tagged`).
    follows
        Id of the rule that owns the parameters this rule shares with it (the same :class:`Param`
        objects): a suite resolves them on that rule, and this rule runs with those values.
    """

    id: str
    level: Level
    severity: Severity
    title: str
    description: str
    not_checked: str
    query: str | QueryFn
    params: tuple[Param, ...] = ()
    requires: tuple[str, ...] = ("instances",)
    detects: tuple[str, ...] = ()
    deprecated: str | None = None
    tags: tuple[str, ...] = field(default=())
    follows: str | None = None

    def __post_init__(self) -> None:
        # A declaration is valid once constructed: a typo in an id or level fails at import time.
        object.__setattr__(self, "level", Level(self.level))
        object.__setattr__(self, "severity", Severity(self.severity))
        if not _ID.match(self.id):
            raise ValueError(f"rule id {self.id!r} is not '<level>.<snake_case_name>'")
        if not self.id.startswith((self.level.value + ".", *_FAMILIES)):
            raise ValueError(
                f"rule id {self.id!r} does not start with its level {self.level.value!r}"
            )
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"rule {self.id}: duplicate parameter names {names}")
        if isinstance(self.query, str):
            used = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", self.query))
            if used - set(names):
                raise ValueError(
                    f"rule {self.id}: query uses undeclared parameters {used - set(names)}"
                )
        if not self.description or not self.not_checked:
            raise ValueError(f"rule {self.id}: description and not_checked are both required")

    @property
    def defaults(self) -> dict[str, ParamValue]:
        """Parameter name -> default value."""
        return {p.name: p.default for p in self.params}

    def param(self, name: str) -> Param:
        """The parameter called ``name``; ``KeyError`` if the rule has none."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"rule {self.id} has no parameter {name!r}")


#: Every known rule, by id. Filled by :func:`register` when the rule modules are imported.
RULES: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    """Add ``rule`` to :data:`RULES`; a second, different rule with the same id is an error."""
    existing = RULES.get(rule.id)
    if existing is not None and existing is not rule:
        raise ValueError(f"QC rule id {rule.id!r} is declared twice")
    RULES[rule.id] = rule
    return rule


def all_rules() -> dict[str, Rule]:
    """:data:`RULES`, after importing the shipped rules (:mod:`curation.qc.rules`)."""
    # Imported here, not at the top: the rule modules import this module to declare their rules.
    import curation.qc.rules  # noqa: F401

    return RULES


def tagged(tag: str) -> list[Rule]:
    """Every known rule carrying ``tag`` (e.g. :data:`PRIVACY`), by id."""
    return [r for _, r in sorted(all_rules().items()) if tag in r.tags]
