"""Pseudonyms: the one policy for every identifier that leaves the catalog.

Manifests, reports, QC JSON and JUnit files show a keyed hash, never a PatientID, an accession
number or a DICOM UID (some vendors' UIDs embed the acquisition time or the scanner's serial
number): HMAC-SHA256 under a key the user holds, its first :data:`N_HEX` hex digits, computed by
DuckDB in bulk (:func:`install` creates the ``pseudonym(text)`` macro) and, for look-ups and tests,
in Python (:func:`pseudonym`). The same key gives the same pseudonym in every output, so a series
flagged in a JUnit file is found in the manifest and the report.

The key, in order of precedence:

1. a key file the user names (``--key-file``);
2. the ``CURATION_PSEUDONYM_KEY`` environment variable;
3. for a cohort build: the ``pseudonym.key`` of its output folder, generated there on first use
   (:func:`cohort_key`); for the outputs of a catalog (report, QC JSON/JUnit): the ``pseudonym.key``
   of the cohort folder given to the report, else a random per-catalog key kept in the catalog's
   ``settings`` table (:data:`curation.schema.SETTINGS`), created on first use (:func:`catalog_key`).

With the key, a pseudonym is mapped back inside the catalog: ``install(con, key)`` and
``SELECT * FROM series WHERE pseudonym(SeriesInstanceUID) = '...'``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from curation.catalog import has_table
from curation.errors import CatalogError, InputError, writing
from curation.schema import SETTINGS

if TYPE_CHECKING:
    import duckdb
    import polars as pl

log = logging.getLogger("curation.pseudonym")

#: Environment variable holding a shared pseudonym key.
ENV_VAR = "CURATION_PSEUDONYM_KEY"
#: Hex digits kept of each HMAC (96 bits: collisions are negligible at any archive's size).
N_HEX = 24
#: Name of the per-catalog key in ``settings``.
KEY_SETTING = "pseudonym_key"
#: File name of a cohort folder's key.
KEY_FILE_NAME = "pseudonym.key"
#: Shortest key accepted, in bytes.
MIN_KEY_BYTES = 16

#: Identifier columns of the catalog and how outputs name their pseudonyms: (column, prefix).
#: The prefix tells the kinds apart where a pseudonym stands alone (JUnit text, the report).
KEYS: dict[str, tuple[str, str]] = {
    "PatientID": ("patient_key", "P-"),
    "StudyInstanceUID": ("study_key", "T-"),
    "SeriesInstanceUID": ("series_key", "S-"),
    "SOPInstanceUID": ("instance_key", "I-"),
    "path": ("file_key", "F-"),
}


def read_key_file(path: str | Path) -> bytes:
    """The key held by the file ``path`` (surrounding whitespace stripped)."""
    p = Path(path)
    try:
        key = p.read_bytes().strip()
    except OSError as exc:
        raise InputError(f"{p}: cannot read the pseudonym key file: {exc.strerror or exc}") from exc
    if len(key) < MIN_KEY_BYTES:
        raise InputError(f"{p}: the pseudonym key must be at least {MIN_KEY_BYTES} bytes")
    return key


def _env_key() -> bytes | None:
    env = os.environ.get(ENV_VAR)
    if not env:
        return None
    if len(env.encode()) < MIN_KEY_BYTES:
        raise InputError(f"{ENV_VAR} must be at least {MIN_KEY_BYTES} characters")
    return env.encode()


def cohort_key(key_file: str | Path | None, out_dir: str | Path | None) -> tuple[bytes, str]:
    """A cohort build's key and where it came from (the key file, ``env``, or ``<path>``).

    Without a key file or the environment variable, the ``pseudonym.key`` of ``out_dir`` is used,
    generated there (mode 0600) on first use with a warning: keep it to map pseudonyms back and to
    reproduce them, do not ship it with the manifest.
    """
    if key_file is not None:
        return read_key_file(key_file), str(key_file)
    env = _env_key()
    if env is not None:
        return env, "env"
    if out_dir is None:
        raise InputError(f"no pseudonym key: set {ENV_VAR} or name a key file")
    path = Path(out_dir) / KEY_FILE_NAME
    if path.exists():
        return read_key_file(path), str(path)
    key = secrets.token_hex(32).encode()
    with writing(path):
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


def _stored_key(con: duckdb.DuckDBPyConnection) -> str | None:
    if not has_table(con, "settings"):
        return None
    rows = con.execute("SELECT value FROM settings WHERE name = $n", {"n": KEY_SETTING}).fetchall()
    return str(rows[0][0]) if rows else None


def _cohort_folder_key(cohort: str | Path | None) -> Path | None:
    """The key file of a cohort folder, if it has one.

    A cohort folder may come from someone else: a key "file" that is a link out of the folder is
    refused rather than read.
    """
    if cohort is None:
        return None
    path = Path(cohort) / KEY_FILE_NAME
    if not path.is_file():
        return None
    if not path.resolve().is_relative_to(Path(cohort).resolve()):
        raise InputError(f"{path}: a link out of the cohort folder (to {path.resolve()}); not read")
    return path


def catalog_key_is_available(
    con: duckdb.DuckDBPyConnection,
    cohort: str | Path | None = None,
    key_file: str | Path | None = None,
) -> bool:
    """True when :func:`catalog_key` needs no write (key file, env, cohort key, or key stored)."""
    return bool(
        key_file is not None
        or os.environ.get(ENV_VAR)
        or _cohort_folder_key(cohort) is not None
        or _stored_key(con) is not None
    )


def catalog_key(
    con: duckdb.DuckDBPyConnection,
    cohort: str | Path | None = None,
    key_file: str | Path | None = None,
) -> tuple[bytes, str]:
    """The key of a catalog's outputs and where it came from (a key file, ``env``, ``catalog settings``).

    Creating the per-catalog key writes the ``settings`` table, so the connection must then be
    writable.

    Raises
    ------
    CatalogError
        No key is given or stored, and the catalog cannot be written to store one: the message
        says to set ``CURATION_PSEUDONYM_KEY`` or pass ``--key-file``.
    """
    if key_file is not None:
        return read_key_file(key_file), str(key_file)
    env = _env_key()
    if env is not None:
        return env, "env"
    folder_key = _cohort_folder_key(cohort)
    if folder_key is not None:
        return read_key_file(folder_key), str(folder_key)
    stored = _stored_key(con)
    if stored is None:
        stored = secrets.token_hex(32)
        import duckdb

        try:
            SETTINGS.ensure(con)
            con.execute(
                "INSERT INTO settings VALUES ($n, $v, $t)",
                {"n": KEY_SETTING, "v": stored, "t": datetime.now()},
            )
        except duckdb.Error as exc:
            raise no_key_error("the catalog", exc) from exc
    return stored.encode("ascii"), "catalog settings"


def no_key_error(db: str | Path, reason: BaseException | str) -> CatalogError:
    """The error of a step that needs a pseudonym key where none is given and none can be stored."""
    first = (str(reason).strip().splitlines() or [type(reason).__name__])[0]
    return CatalogError(
        f"{db}: needs a pseudonym key: set {ENV_VAR} or pass --key-file (the catalog holds no "
        f"key of its own and cannot be written to store one: {first})"
    )


def fingerprint(key: bytes) -> str:
    """A short public fingerprint of the key (to tell keys apart in provenance, not to recover it)."""
    return hashlib.sha256(b"curation-key-fingerprint:" + key).hexdigest()[:12]


def pseudonym(value: str, key: bytes, prefix: str = "") -> str:
    """The pseudonym of ``value`` under ``key`` (Python twin of the SQL macro), ``prefix`` first."""
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
    return prefix + digest[:N_HEX]


def uid(value: str, key: bytes) -> str:
    """A DICOM UID standing for the UID ``value`` under ``key``: ``2.25.`` and a 128-bit integer.

    The integer is a UUID of version 8 (RFC 9562, application-defined) made of HMAC-SHA256 of
    ``uid:`` + ``value``, so the same UID maps to the same new UID in every file and every run
    under one key, different keys give unlinkable UIDs, and the result fits the 64 characters of
    a UI value (at most 44).
    """
    import uuid

    digest = bytearray(hmac.new(key, b"uid:" + value.encode("utf-8"), hashlib.sha256).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 9562 variant
    return f"2.25.{uuid.UUID(bytes=bytes(digest)).int}"


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


#: Hex digits of a site label (``site-`` and 8 digits: distinct for thousands of sites).
SITE_HEX = 8


def site_sql(expr: str) -> str:
    """SQL of the site label of ``expr`` (an InstitutionName): ``site-`` and a keyed hash.

    Needs the ``pseudonym`` macro (:func:`install`). What leaves the catalog (manifest, datalist,
    ``qc --json``) names a site this way: stable under one key, not readable without it.
    """
    return f"('site-' || left(pseudonym('site:' || ({expr})), {SITE_HEX}))"


def site_label(name: str, key: bytes) -> str:
    """The site label of ``name`` under ``key``, as :func:`site_sql` computes it."""
    return "site-" + pseudonym("site:" + name, key)[:SITE_HEX]


def label_sites(
    con: duckdb.DuckDBPyConnection,
    rows: pl.DataFrame,
    columns: tuple[str, ...] = ("value", "message"),
) -> pl.DataFrame:
    """``rows`` with every site name in ``columns`` replaced by its label (:func:`site_sql`).

    Site names are the catalog's InstitutionName and StationName values (what cohort rules group
    sites by) of at least 4 characters, longest first; ``con`` carries the ``pseudonym`` macro.
    For text that leaves the catalog (``qc --json``, JUnit) and was written from findings.
    """
    import polars as pl

    present = [c for c in columns if c in rows.columns]
    if rows.is_empty() or not present:
        return rows
    names = con.sql(
        f"""SELECT name, {site_sql("name")} FROM (
            SELECT InstitutionName AS name FROM series UNION SELECT StationName FROM series)
        WHERE length(name) >= 4 ORDER BY length(name) DESC, name"""
    ).fetchall()
    if not names:
        return rows
    old, new = [n for n, _ in names], [s for _, s in names]
    return rows.with_columns(pl.col(c).cast(pl.String).str.replace_many(old, new) for c in present)


def keyed_select(columns: list[str], alias: str = "") -> str:
    """A SELECT list of ``columns`` where each identifier column of :data:`KEYS` is replaced by its
    pseudonym (``pseudonym(PatientID) AS patient_key``); needs :func:`install` on the connection."""
    from curation.catalog import quote_ident

    ref = f"{alias}." if alias else ""
    out = []
    for c in columns:
        if c in KEYS:
            out.append(f"pseudonym({ref}{quote_ident(c)}) AS {KEYS[c][0]}")
        else:
            out.append(f"{ref}{quote_ident(c)}")
    return ", ".join(out)
