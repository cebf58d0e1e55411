"""A real Orthanc PACS for tests and benchmarks, in a private network namespace (loopback only).

Orthanc 1.10 cannot bind to one address: it listens on every interface. So this process's
thread enters a new network namespace whose only interface is loopback (``unshare(CLONE_NEWNET)``
through libc: Python 3.11 has no ``os.unshare``), starts Orthanc there, and on leaving stops it and
returns to the namespace it came from (``setns``). Network namespaces belong to threads: sockets
this thread (and the threads and processes it starts) opens meanwhile are in the private one;
pytest-xdist's own channel, opened before, is not affected. Facts behind the settings:
../shared/docs/PACS-TESTING.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
CLONE_NEWNET = 0x40000000

HTTP_PORT = 8042
DICOM_PORT = 4242
AE_TITLE = "ORTHANC"
#: The AE title and port the tests' own DIMSE side answers on (a C-MOVE destination).
CLIENT_AE = "CURATION"
CLIENT_PORT = 11113
USER, PASSWORD = "curator", "s3cret-pw"


def unavailable() -> str | None:
    """Why an Orthanc cannot be run here, or None when it can."""
    if not os.path.exists(ORTHANC):
        return "Orthanc is not installed (Debian packages orthanc, orthanc-dicomweb; .ci/run)"
    if not DICOMWEB_PLUGIN.exists():
        return "Orthanc's DICOMweb plugin is not installed (Debian package orthanc-dicomweb)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing: loopback cannot be brought up"
    return None


@contextlib.contextmanager
def private_network() -> Iterator[None]:
    """This thread in a new network namespace with loopback up; back where it was afterwards."""
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise PermissionError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)
            yield
        finally:
            if libc.setns(original, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back to the original network: {os.strerror(err)}")
    finally:
        os.close(original)


@dataclass
class Orthanc:
    """A running Orthanc: its ports, credentials and store."""

    workdir: Path
    process: subprocess.Popen[bytes]
    http_port: int = HTTP_PORT
    dicom_port: int = DICOM_PORT
    ae_title: str = AE_TITLE
    refused: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        """The DICOMweb source as curation takes it."""
        return f"dicomweb+{self.http}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"dimse://{self.ae_title}@127.0.0.1:{self.dicom_port}"

    @property
    def auth(self) -> str:
        return f"{USER}:{PASSWORD}"

    def rest(self, path: str, data: bytes | None = None, method: str | None = None) -> object:
        """Orthanc's own REST API (JSON), with the test credentials."""
        import base64
        import urllib.request

        request = urllib.request.Request(f"{self.http}{path}", data=data, method=method)
        token = base64.b64encode(self.auth.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def upload(self, files: Iterable[Path]) -> int:
        """Store files through the REST API; refusals are kept in ``refused``; count stored."""
        import urllib.error

        stored = 0
        for f in files:
            try:
                self.rest("/instances", f.read_bytes(), "POST")
                stored += 1
            except urllib.error.HTTPError as exc:
                self.refused.append((f, f"HTTP {exc.code}"))
        return stored

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)  # a throw-away store: no clean shutdown needed
            self.process.wait(10)


def config(workdir: Path, **extra: object) -> dict[str, object]:
    """Orthanc's configuration for a test store under ``workdir``."""
    return {
        "Name": "curation-test",
        "StorageDirectory": str(workdir / "store"),
        "IndexDirectory": str(workdir / "store"),
        "HttpPort": HTTP_PORT,
        "DicomPort": DICOM_PORT,
        "DicomAet": AE_TITLE,
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{HTTP_PORT}"},
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowEcho": True,
        "DicomModalities": {CLIENT_AE: [CLIENT_AE, "127.0.0.1", CLIENT_PORT]},
        "SaveJobs": False,
        "StorageCompression": False,
        "HttpCompressionEnabled": False,
        **extra,
    }


def start(workdir: Path, **extra: object) -> Orthanc:
    """Start Orthanc (in the current network namespace) and wait until it answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "orthanc.json"
    conf.write_text(json.dumps(config(workdir, **extra)))
    log = (workdir / "orthanc.log").open("wb")
    # TCP_NODELAY: DCMTK (inside Orthanc) reads it; without it DIMSE is 10-20x slower (Nagle).
    env = {**os.environ, "TCP_NODELAY": "1"}
    process = subprocess.Popen([ORTHANC, str(conf)], stdout=log, stderr=log, env=env)
    log.close()
    server = Orthanc(workdir, process)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited ({process.returncode}); see {workdir}/orthanc.log")
        try:
            with socket.create_connection(("127.0.0.1", DICOM_PORT), timeout=1):
                pass
            plugins = server.rest("/plugins")
            if isinstance(plugins, list) and "dicom-web" in plugins:
                return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"Orthanc did not answer within 30 s; see {workdir}/orthanc.log")
        time.sleep(0.05)
