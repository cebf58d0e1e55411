"""The site-summary file format: its JSON schema, validation, and reading a summary back.

The schema is ``site_summary.schema.json`` beside this module (JSON Schema draft 7), checked with
fastjsonschema. A reader refuses, with a message naming the file: a file that is not JSON, another
format or schema version, a summary the schema rejects, and bins other than this version's
(summaries on different bins cannot be added up).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from curation.errors import InputError
from curation.federate import bins
from curation.federate.summary import FORMAT, SCHEMA_VERSION

SCHEMA_PATH = Path(__file__).with_name("site_summary.schema.json")


@cache
def schema() -> dict[str, Any]:
    """The JSON schema of a site summary."""
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


@cache
def _validator() -> Any:
    import fastjsonschema

    return fastjsonschema.compile(schema())


def validate(summary: Any, where: str) -> None:
    """Check ``summary`` against the schema.

    Raises
    ------
    InputError
        Naming ``where`` (the file) and the first place the schema rejects.
    """
    import fastjsonschema

    try:
        _validator()(summary)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InputError(f"{where}: not a valid site summary: {exc.message}") from None


@dataclass(frozen=True)
class SiteSummary:
    """A summary read from a file: its site name, where it came from, and its content."""

    site: str
    source: str
    data: dict[str, Any]


def check_bins(data: dict[str, Any], where: str) -> None:
    """Refuse a summary whose bins are not this version's, naming the first that differs."""
    ours = bins.bins_json()
    theirs = data.get("bins", {})
    if data.get("bins_version") != bins.BINS_VERSION:
        raise InputError(
            f"{where}: bins version {data.get('bins_version')!r}, this curation counts on bins "
            f"version {bins.BINS_VERSION}: summarize the site again with this version"
        )
    for name in sorted(set(ours) | set(theirs)):
        if ours.get(name) != theirs.get(name):
            raise InputError(
                f"{where}: bins of {name} differ from this version's "
                f"({theirs.get(name)} instead of {ours.get(name)}): summaries on other bins "
                "cannot be added up"
            )


def from_dict(data: Any, where: str) -> SiteSummary:
    """A :class:`SiteSummary` from parsed JSON, checked (format, version, schema, bins)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f'{where}: not a curation site summary (no "format": "{FORMAT}")')
    if data.get("schema_version") != SCHEMA_VERSION:
        raise InputError(
            f"{where}: site summary schema version {data.get('schema_version')!r}; this curation "
            f"reads version {SCHEMA_VERSION}"
        )
    validate(data, where)
    check_bins(data, where)
    return SiteSummary(data["site"], where, data)


def load_summary(path: str | Path) -> SiteSummary:
    """Read and check the summary file ``path``.

    Raises
    ------
    InputError
        The file cannot be read, is not JSON, or is not a summary this version can add up (the
        message names the file and why).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not JSON: {exc}") from None
    return from_dict(data, str(p))
