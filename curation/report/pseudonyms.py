"""Pseudonyms in the report: the cohort's HMAC-SHA256 pseudonyms, under the right key.

The hash is :mod:`curation.cohort.pseudonym`'s (a ``pseudonym(text)`` DuckDB macro, 24 hex digits),
so a patient or series in the report carries the same pseudonym as in a manifest built with the same
key (``patient_key``, ``series_key``); the report prefixes them ``P-`` and ``S-``.

The key, in order: ``CURATION_PSEUDONYM_KEY`` from the environment; the ``pseudonym.key`` of the
cohort folder given to the report; else a random per-catalog key kept in the catalog's ``settings``
table, created on first use (the report never writes into a cohort folder).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from curation.cohort import pseudonym as cohort_pseudonym
from curation.schema import Column, Table

if TYPE_CHECKING:
    import duckdb

#: Environment variable holding a shared pseudonym key (the cohort's).
KEY_ENV = cohort_pseudonym.ENV_VAR
#: Name of the per-catalog key in ``settings``.
KEY_SETTING = "pseudonym_key"
#: Hex digits kept from the HMAC (the cohort's).
DIGITS = cohort_pseudonym.N_HEX

SETTINGS = Table(
    "settings",
    "catalog setting",
    "Small named settings of the catalog itself, such as the random per-catalog pseudonym key.",
    (
        Column("name", "VARCHAR", "Setting name, e.g. pseudonym_key"),
        Column("value", "VARCHAR", "Setting value as text (the pseudonym key: 64 hex digits)"),
        Column("created_at", "TIMESTAMP", "Local time the setting was written"),
    ),
)


def _stored_key(con: duckdb.DuckDBPyConnection) -> str | None:
    have = con.sql(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'settings'"
    ).fetchall()[0][0]
    if not have:
        return None
    rows = con.execute("SELECT value FROM settings WHERE name = $n", {"n": KEY_SETTING}).fetchall()
    return str(rows[0][0]) if rows else None


def key_is_available(con: duckdb.DuckDBPyConnection, cohort: str | Path | None = None) -> bool:
    """True when :func:`pseudonym_key` needs no write (env key, cohort key, or key stored)."""
    return bool(
        os.environ.get(KEY_ENV)
        or (cohort is not None and (Path(cohort) / "pseudonym.key").is_file())
        or _stored_key(con) is not None
    )


def pseudonym_key(
    con: duckdb.DuckDBPyConnection, cohort: str | Path | None = None
) -> tuple[bytes, str]:
    """The pseudonym key and where it came from (``env``, a key file, or ``catalog settings``).

    Creating the per-catalog key writes the ``settings`` table, so the connection must then be
    writable.
    """
    if os.environ.get(KEY_ENV):
        return cohort_pseudonym.resolve_key(None, None)
    if cohort is not None and (Path(cohort) / "pseudonym.key").is_file():
        return cohort_pseudonym.resolve_key(Path(cohort) / "pseudonym.key", None)
    stored = _stored_key(con)
    if stored is None:
        stored = secrets.token_hex(32)
        con.execute(SETTINGS.ddl())
        con.execute(
            "INSERT INTO settings VALUES ($n, $v, $t)",
            {"n": KEY_SETTING, "v": stored, "t": datetime.now()},
        )
    return stored.encode("ascii"), "catalog settings"


def pseudonym(value: str, key: bytes, prefix: str = "P-") -> str:
    """The pseudonym of ``value`` (Python twin of the SQL macro, for look-ups and tests)."""
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
    return prefix + digest[:DIGITS]


def install(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """Create the temporary macro ``pseudonym(text)`` (the cohort's HMAC-SHA256) on ``con``."""
    cohort_pseudonym.install(con, key)
