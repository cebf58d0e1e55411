"""Suites: which rules run, with which severities and parameters.

A suite is a YAML or TOML file::

    name: ct-training
    description: what this suite is for
    include: ["*"]                     # fnmatch patterns of rule ids (default: every rule)
    exclude: ["series.obliquity"]
    rules:                             # per-rule overrides
      series.missing_slices:
        severity: warning
        params: {spacing_tolerance_fraction: 0.02}

Unknown rule ids, parameters or severities, and values of the wrong type, are input errors that name
the file and the key: a typo must not silently switch a check off.
"""

from __future__ import annotations

import fnmatch
import hashlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from curation.errors import InputError
from curation.qc.rule import ParamValue, Rule, Severity, all_rules


@dataclass(frozen=True)
class SelectedRule:
    """A rule as a suite runs it: effective severity and parameters."""

    rule: Rule
    severity: Severity
    params: dict[str, ParamValue]

    def settings(self) -> dict[str, Any]:
        """JSON-ready effective settings, for provenance."""
        return {"severity": self.severity.value, "params": self.params}


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its name, where it came from, and the rules it selects."""

    name: str
    description: str
    rules: tuple[SelectedRule, ...]
    path: str | None = None
    sha256: str = ""
    source: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> dict[str, Any]:
        """Rule id -> effective settings."""
        return {s.rule.id: s.settings() for s in self.rules}


DEFAULT_SUITE = "default_suite.yaml"


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text) if where.endswith(".toml") else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{where}: not a valid suite file: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{where}: a suite file must be a mapping with a 'name'")
    return data


def _resolve(r: Rule, o: Any, where: str) -> tuple[Severity, dict[str, ParamValue]]:
    """Severity and parameters of ``r`` with the suite's override ``o`` applied."""
    o = o or {}
    if not isinstance(o, dict) or set(o) - {"severity", "params"}:
        raise InputError(f"{where}: rules.{r.id}: only 'severity' and 'params' can be set")
    try:
        severity = Severity(o.get("severity", r.severity))
    except ValueError as exc:
        raise InputError(
            f"{where}: rules.{r.id}.severity: {o['severity']!r} is not info/warning/error"
        ) from exc
    params = r.defaults
    for name, value in (o.get("params") or {}).items():
        try:
            params[name] = r.param(name).coerce(value, r.id)
        except (KeyError, ValueError) as exc:
            # str() of a KeyError is the repr of its message, quotes and all
            reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise InputError(f"{where}: rules.{r.id}.params.{name}: {reason}") from exc
    return severity, params


def from_mapping(data: dict[str, Any], where: str = "<suite>") -> Suite:
    """Build a suite from its parsed mapping; raises :class:`InputError` naming bad keys."""
    rules = all_rules()
    unknown = set(data) - {"name", "description", "include", "exclude", "rules"}
    if unknown:
        raise InputError(f"{where}: unknown key(s) {sorted(unknown)}")
    include = data.get("include", ["*"])
    exclude = data.get("exclude", [])
    overrides = data.get("rules") or {}
    if not isinstance(include, list) or not isinstance(exclude, list):
        raise InputError(f"{where}: include and exclude must be lists of rule-id patterns")
    if not isinstance(overrides, dict):
        raise InputError(f"{where}: 'rules' must map rule ids to overrides")
    for pattern in [*include, *exclude]:
        if not any(fnmatch.fnmatchcase(r, str(pattern)) for r in rules):
            raise InputError(
                f"{where}: pattern {pattern!r} matches no rule (see curation qc --list)"
            )
    chosen = [
        r
        for rid, r in sorted(rules.items())
        if any(fnmatch.fnmatchcase(rid, p) for p in include)
        and not any(fnmatch.fnmatchcase(rid, p) for p in exclude)
        and r.deprecated is None
    ]
    for rid in overrides:
        if rid not in rules:
            raise InputError(f"{where}: rules.{rid}: no such rule (see curation qc --list)")
    selected = []
    for r in chosen:
        severity, params = _resolve(r, overrides.get(r.id), where)
        if r.follows is not None:
            # Shared parameters take the owner's values (even when the owner itself is excluded).
            owner = rules[r.follows]
            own = _resolve(owner, overrides.get(owner.id), where)[1]
            for name in sorted(params.keys() & own.keys()):
                if name in ((overrides.get(r.id) or {}).get("params") or {}):
                    raise InputError(
                        f"{where}: rules.{r.id}.params.{name}: {r.id} follows {owner.id} "
                        f"here; set it there (rules.{owner.id}.params.{name})"
                    )
                params[name] = own[name]
        selected.append(SelectedRule(r, severity, params))
    return Suite(
        name=str(data.get("name", Path(where).stem)),
        description=str(data.get("description", "")),
        rules=tuple(selected),
        source=data,
    )


def load_suite(path: str | Path | None = None) -> Suite:
    """Load the suite file at ``path`` (YAML or TOML), or the shipped default suite."""
    if path is None:
        raw = resources.files("curation.qc").joinpath(DEFAULT_SUITE).read_bytes()
        where = DEFAULT_SUITE
    else:
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise InputError(f"{p}: cannot read the suite file: {exc.strerror}") from exc
        where = str(p)
    suite = from_mapping(_parse(raw.decode("utf-8"), where), where)
    return Suite(
        name=suite.name,
        description=suite.description,
        rules=suite.rules,
        path=None if path is None else str(Path(path).resolve()),
        sha256=hashlib.sha256(raw).hexdigest(),
        source=suite.source,
    )
