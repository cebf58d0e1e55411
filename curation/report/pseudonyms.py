"""Keyed-hash pseudonyms (HMAC-SHA256) for everything the report shows about a patient or series.

A pseudonym is ``prefix + the first 16 hex digits of HMAC-SHA256(key, value)``: stable for a given key,
not reversible without the catalog, and different for every catalog unless a team shares a key.

The key is ``CURATION_PSEUDONYM_KEY`` from the environment when set (share it to get the same
pseudonyms across catalogs), else a random per-catalog key kept in the catalog's ``settings`` table,
created on first use. The HMAC is computed by DuckDB in SQL (a ``pseudonym(value, prefix)`` temporary
macro), so whole columns are pseudonymised set-based; :func:`pseudonym` is the same function in Python.

This is the report's own pseudonym function until the cohort package's lands; both must agree.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import datetime
from typing import TYPE_CHECKING

from curation.schema import Column, Table, register

if TYPE_CHECKING:
    import duckdb

#: Environment variable holding a shared pseudonym key (any text; its UTF-8 bytes are the key).
KEY_ENV = "CURATION_PSEUDONYM_KEY"
#: Name of the per-catalog key in ``settings``.
KEY_SETTING = "pseudonym_key"
#: Hex digits kept from the HMAC: 64 bits, collision-free in practice for millions of patients.
DIGITS = 16

SETTINGS = register(
    Table(
        "settings",
        "catalog setting",
        "Small named settings of the catalog itself, such as the random per-catalog pseudonym key.",
        (
            Column("name", "VARCHAR", "Setting name, e.g. pseudonym_key"),
            Column("value", "VARCHAR", "Setting value as text (the pseudonym key: 64 hex digits)"),
            Column("created_at", "TIMESTAMP", "Local time the setting was written"),
        ),
    )
)


def _stored_key(con: duckdb.DuckDBPyConnection) -> str | None:
    have = con.sql(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'settings'"
    ).fetchall()[0][0]
    if not have:
        return None
    rows = con.execute("SELECT value FROM settings WHERE name = $n", {"n": KEY_SETTING}).fetchall()
    return str(rows[0][0]) if rows else None


def key_is_available(con: duckdb.DuckDBPyConnection) -> bool:
    """True when :func:`pseudonym_key` needs no write (env key set, or key already stored)."""
    return bool(os.environ.get(KEY_ENV)) or _stored_key(con) is not None


def pseudonym_key(con: duckdb.DuckDBPyConnection) -> bytes:
    """The pseudonym key: from ``CURATION_PSEUDONYM_KEY``, else the catalog's, created if missing.

    Creating the key writes the ``settings`` table, so the connection must then be writable.
    """
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode("utf-8")
    stored = _stored_key(con)
    if stored is None:
        stored = secrets.token_hex(32)
        con.execute(SETTINGS.ddl())
        con.execute(
            "INSERT INTO settings VALUES ($n, $v, $t)",
            {"n": KEY_SETTING, "v": stored, "t": datetime.now()},
        )
    return stored.encode("ascii")


def pseudonym(value: str, key: bytes, prefix: str = "P-") -> str:
    """The pseudonym of ``value`` (Python twin of the SQL macro, for look-ups and tests)."""
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
    return prefix + digest[:DIGITS]


def install(con: duckdb.DuckDBPyConnection, key: bytes | None = None) -> None:
    """Create the temporary macro ``pseudonym(value, prefix)`` on ``con``.

    HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)), written with DuckDB's ``sha256`` over BLOBs.
    NULL values give NULL pseudonyms.
    """
    key = pseudonym_key(con) if key is None else key
    if len(key) > 64:  # HMAC hashes keys longer than the block size first
        key = hashlib.sha256(key).digest()
    block = key.ljust(64, b"\0")
    ipad = bytes(b ^ 0x36 for b in block).hex()
    opad = bytes(b ^ 0x5C for b in block).hex()
    con.execute(
        f"""CREATE OR REPLACE TEMP MACRO pseudonym(v, prefix) AS
            CASE WHEN v IS NOT NULL THEN prefix || left(lower(sha256(
                unhex('{opad}') || unhex(sha256(unhex('{ipad}') || encode(CAST(v AS VARCHAR))))
            )), {DIGITS}) END"""
    )
