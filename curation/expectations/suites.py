"""Expectation suite files: great-expectations ``ExpectationSuite`` JSON plus what each runs on.

A suite file (``expectations/*.json``) is GX's own suite format with one addition in its ``meta``::

    {"name": "catalog_series",
     "meta": {"curation": {"source": "series", "description": "..."}},
     "expectations": [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "SeriesInstanceUID"},
         "meta": {"rule_id": "series_uid_unique"}},
        {"type": "expect_column_values_to_be_between", "severity": "warning", ...}]}

``source`` is a catalog table name, or ``manifest`` for a cohort's ``manifest.parquet``. Reading a
file needs no great-expectations.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.errors import InputError

#: Source name of a cohort manifest (``manifest.parquet`` of a cohort folder).
MANIFEST = "manifest"
#: great-expectations severities as QC severities (:class:`curation.qc.rule.Severity`).
SEVERITIES = {"critical": "error", "warning": "warning", "info": "info"}
#: Expectations that look at the table's whole column set, so every column must be loaded.
_TABLE_SHAPE = (
    "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list",
    "expect_table_column_count_to_equal",
    "expect_table_column_count_to_be_between",
)
_COLUMN_KWARGS = ("column", "column_A", "column_B")


@dataclass(frozen=True)
class SuiteFile:
    """An expectation suite as read from its JSON file."""

    name: str
    path: Path
    source: str
    description: str
    data: dict[str, Any]
    sha256: str

    def columns(self) -> list[str] | None:
        """Columns the suite names, or None when it needs every column of its source."""
        names: list[str] = []
        for e in self.data["expectations"]:
            if e["type"] in _TABLE_SHAPE:
                return None
            kwargs = e.get("kwargs", {})
            names += [kwargs[k] for k in _COLUMN_KWARGS if k in kwargs]
            names += list(kwargs.get("column_list", []))
        return list(dict.fromkeys(names))


def suites_dir() -> Path:
    """The ``expectations/`` folder of a source checkout, or of the current directory."""
    for candidate in (
        Path(__file__).resolve().parents[2] / "expectations",
        Path.cwd() / "expectations",
    ):
        if candidate.is_dir():
            return candidate
    raise InputError("no expectations/ folder next to the package or in the current directory")


def rule_id(suite: str, expectation: dict[str, Any]) -> str:
    """The stable rule id of an expectation: ``expect.<suite>.<meta.rule_id>``, or one built from
    its type and column when it has no ``meta.rule_id``."""
    own = expectation.get("meta", {}).get("rule_id")
    if own:
        return f"expect.{suite}.{own}"
    kwargs = expectation.get("kwargs", {})
    column = kwargs.get("column") or "_".join(kwargs.get("column_list", [])) or None
    short = str(expectation["type"]).removeprefix("expect_")
    return f"expect.{suite}.{short}" + (f".{column}" if column else "")


def load_suite(path: str | Path) -> SuiteFile:
    """Read one suite file; raises :class:`InputError` naming the file and what is wrong."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        data = json.loads(raw)
    except OSError as exc:
        raise InputError(f"{p}: cannot read the suite: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise InputError(f"{p}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
        raise InputError(f"{p}: a suite is a JSON object with 'name' and 'expectations'")
    name = str(data.get("name") or p.stem)
    meta = data.get("meta", {}).get("curation", {})
    source = meta.get("source")
    if not isinstance(source, str) or not source:
        raise InputError(f"{p}: meta.curation.source must name a catalog table or 'manifest'")
    for i, e in enumerate(data["expectations"]):
        if not isinstance(e, dict) or not str(e.get("type", "")).startswith("expect_"):
            raise InputError(f"{p}: expectation {i} has no 'type' starting with expect_")
        if e.get("severity", "critical") not in SEVERITIES:
            raise InputError(
                f"{p}: expectation {i} ({e['type']}): severity must be one of "
                f"{', '.join(SEVERITIES)}, not {e['severity']!r}"
            )
    rule_ids = [rule_id(name, e) for e in data["expectations"]]
    dupes = sorted({r for r in rule_ids if rule_ids.count(r) > 1})
    if dupes:
        raise InputError(f"{p}: rule ids repeat ({', '.join(dupes)}): give each a meta.rule_id")
    return SuiteFile(
        name=name,
        path=p,
        source=source,
        description=str(meta.get("description", "")),
        data=data,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def find_suites(names: Sequence[str | Path] | None = None) -> list[SuiteFile]:
    """The suites to run: every ``expectations/*.json`` by default, else the named ones.

    A name is a path to a JSON file or the stem of a file in :func:`suites_dir` (``catalog_series``).
    """
    if not names:
        return [load_suite(p) for p in sorted(suites_dir().glob("*.json"))]
    out = []
    for n in names:
        p = Path(n)
        if not p.is_file():
            folder = suites_dir()
            p = folder / f"{n}.json"
            if not p.is_file():
                known = ", ".join(sorted(q.stem for q in folder.glob("*.json")))
                raise InputError(f"no suite {str(n)!r} (a JSON file, or one of: {known})")
        out.append(load_suite(p))
    return out
