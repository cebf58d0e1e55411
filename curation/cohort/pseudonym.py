"""Pseudonyms: HMAC-SHA256 of identifiers under a key the user holds, computed by DuckDB in bulk.

The key comes from the ``CURATION_PSEUDONYM_KEY`` environment variable or a key file the user
names. There is no default key: when neither is given, a random key is generated into the output
folder and a warning says so (keep it to map pseudonyms back, or delete it to make them one-way).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from pathlib import Path

import duckdb

from curation.errors import InputError

log = logging.getLogger("curation.cohort")

ENV_VAR = "CURATION_PSEUDONYM_KEY"
#: Hex digits kept of each HMAC (96 bits: collisions are negligible at any archive's size).
N_HEX = 24


def resolve_key(key_file: str | Path | None, out_dir: str | Path | None) -> tuple[bytes, str]:
    """The pseudonym key and where it came from (``env``, the key file, or ``generated:<path>``)."""
    if key_file is not None:
        p = Path(key_file)
        try:
            key = p.read_bytes().strip()
        except OSError as exc:
            raise InputError(f"{p}: cannot read the pseudonym key file: {exc}") from exc
        if len(key) < 16:
            raise InputError(f"{p}: the pseudonym key must be at least 16 bytes")
        return key, str(p)
    env = os.environ.get(ENV_VAR)
    if env:
        if len(env) < 16:
            raise InputError(f"{ENV_VAR} must be at least 16 characters")
        return env.encode(), "env"
    if out_dir is None:
        raise InputError(f"no pseudonym key: set {ENV_VAR} or name a key file")
    path = Path(out_dir) / "pseudonym.key"
    if path.exists():
        return path.read_bytes().strip(), str(path)
    key = secrets.token_hex(32).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key + b"\n")
    path.chmod(0o600)
    log.warning(
        "no pseudonym key given (%s or --key-file): generated one into %s; keep it to reproduce the "
        "same pseudonyms, and do not ship it with the manifest",
        ENV_VAR,
        path,
    )
    return key, f"generated:{path}"


def fingerprint(key: bytes) -> str:
    """A short public fingerprint of the key (to tell keys apart in provenance, not to recover it)."""
    return hashlib.sha256(b"curation-key-fingerprint:" + key).hexdigest()[:12]


def install(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """Create the temp macro ``pseudonym(text)``: HMAC-SHA256 (RFC 2104) of ``text`` under ``key``."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    k = key.ljust(64, b"\0")
    ipad = bytes(b ^ 0x36 for b in k).hex()
    opad = bytes(b ^ 0x5C for b in k).hex()
    # The pads are hex literals built here from bytes, never from user text.
    con.execute(
        f"""CREATE OR REPLACE TEMP MACRO pseudonym(t) AS
        CASE WHEN t IS NULL THEN NULL ELSE
        left(sha256(unhex('{opad}') || unhex(sha256(unhex('{ipad}') || encode(t)))), {N_HEX}) END"""
    )
