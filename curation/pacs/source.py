"""What names a PACS: a source address, and the credentials that go with it (never in the address).

``dicomweb+http://host:8042/dicom-web`` (or ``dicomweb+https://``) is a DICOMweb root;
``dimse://AET@host:104`` is a DIMSE peer (its called AE title, host and port). Credentials come
from an environment variable or a file, so they appear neither on a command line (visible in
``ps`` and shell history) nor in any log, message or catalog row.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from curation.errors import InputError

#: The environment variable read for credentials when none is named.
AUTH_ENV = "CURATION_PACS_AUTH"

DICOMWEB_SCHEMES = ("dicomweb+http://", "dicomweb+https://")
DIMSE_SCHEME = "dimse://"


class PacsError(InputError):
    """The PACS refused or failed a request, or answered with something that is not DICOM.

    The message names the URL (or the DIMSE peer) and the status; never the credentials. The CLI
    exits 3, as for any source that cannot be used.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status, where the failure was one.
        self.status = status


def is_pacs(text: str) -> bool:
    """True when ``text`` names a PACS rather than a path."""
    return text.startswith((*DICOMWEB_SCHEMES, DIMSE_SCHEME))


@dataclass(frozen=True)
class Credentials:
    """An HTTP Authorization header value; its repr never shows it.

    The secret text is ``user:password`` (basic auth) or ``Bearer TOKEN``.
    """

    header: str = field(repr=False)
    kind: str  # basic or bearer

    @classmethod
    def parse(cls, secret: str, where: str) -> Credentials:
        import base64

        secret = secret.strip()
        if secret[:7].lower() == "bearer ":
            token = secret[7:].strip()
            if not token:
                raise InputError(f"{where}: the bearer token is empty")
            return cls(f"Bearer {token}", "bearer")
        if ":" not in secret:
            raise InputError(
                f"{where}: credentials must be 'user:password' (basic) or 'Bearer TOKEN'"
            )
        return cls("Basic " + base64.b64encode(secret.encode("utf-8")).decode("ascii"), "basic")


def credentials(
    auth_env: str | None = None, auth_file: str | Path | None = None
) -> Credentials | None:
    """Credentials from ``auth_file`` or the environment variable ``auth_env``.

    With neither named, :data:`AUTH_ENV` is read if it is set; no credentials otherwise.
    """
    if auth_file is not None:
        try:
            text = Path(auth_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(
                f"{auth_file}: cannot read the credentials file: {exc.strerror}"
            ) from exc
        return Credentials.parse(text, str(auth_file))
    name = auth_env or AUTH_ENV
    value = os.environ.get(name)
    if value is None:
        if auth_env is not None:
            raise InputError(f"the environment variable {auth_env} (credentials) is not set")
        return None
    return Credentials.parse(value, f"${name}")


def dicomweb_root(source: str) -> str:
    """The HTTP(S) root of a ``dicomweb+http(s)://`` source, without a trailing slash."""
    if not source.startswith(DICOMWEB_SCHEMES):
        raise InputError(f"{source}: not a DICOMweb source (dicomweb+http:// or dicomweb+https://)")
    url = source[len("dicomweb+") :].rstrip("/")
    parts = urlsplit(url)
    if not parts.hostname:
        raise InputError(f"{source}: no host in the DICOMweb address")
    if parts.username or parts.password:
        raise InputError(
            f"{parts.scheme}://{parts.hostname}: credentials do not belong in the address "
            f"(they would show in logs and shell history); put them in ${AUTH_ENV} or a file "
            "(--auth-env, --auth-file)"
        )
    return url


@dataclass(frozen=True)
class DimsePeer:
    """A DIMSE peer: the PACS's AE title, host and port."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"dimse://{self.ae_title}@{self.host}:{self.port}"


_DIMSE = re.compile(
    r"^dimse://(?P<aet>[^@/]{1,16})@(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d{1,5})/?$"
)


def dimse_peer(source: str) -> DimsePeer:
    """The peer named by ``dimse://AET@HOST:PORT``."""
    m = _DIMSE.match(source)
    if m is None:
        raise InputError(
            f"{source}: a DIMSE source is dimse://AET@HOST:PORT (AE title: 1-16 characters)"
        )
    port = int(m["port"])
    if not 0 < port < 65536:
        raise InputError(f"{source}: port {port} is out of range")
    return DimsePeer(m["aet"], m["host"].strip("[]"), port)
