"""Fetch a cohort's series from a PACS into a folder, then crawl them: C-GET, C-MOVE or WADO-RS.

Each instance is written as ``OUT/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``,
to a temporary name first and renamed when whole: a retrieve that is interrupted leaves only
whole files, and the next one asks only for the instances not on disk yet. Every instance's
outcome is a row of ``retrievals``; a rejected or failed one is reported with the PACS's status,
and the retrieve goes on. An association that is aborted is established again (a few times) for
the instances still missing.

The files are then crawled into the catalog. Where the catalog had the same instances from a
DICOMweb crawl (``files.path`` a URL), those rows give way to the local files' (which have the file
meta and the values' own text): one row per instance.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from curation import catalog
from curation.errors import InputError, output_error
from curation.pacs import dimse
from curation.pacs.source import (
    DICOMWEB_SCHEMES,
    Credentials,
    DimsePeer,
    PacsError,
    dicomweb_root,
    dimse_peer,
)
from curation.pacs.tables import RETRIEVALS

log = logging.getLogger("curation.pacs")

METHODS = ("auto", "get", "move", "wado")
#: Times an aborted association is established again before the series is given up.
ASSOCIATION_ATTEMPTS = 3
#: Transfer syntaxes offered for each SOP class in a C-GET, so that the PACS can send each file as
#: stored (an acceptor picks one transfer syntax per presentation context).
_OFFERED_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, first-order prediction
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)
#: Presentation contexts one association may propose (PS3.8: at most 128, odd ids 1-255).
_MAX_CONTEXTS = 127


@dataclass(frozen=True)
class RetrieveSummary:
    """What a retrieve did."""

    out: str
    retrieve_id: int
    n_series: int
    n_stored: int
    n_already: int
    n_failed: int
    seconds: float
    methods: dict[str, int] = field(default_factory=dict)
    crawled: str = ""

    @property
    def instances_per_second(self) -> float:
        """Instances stored per second of wall-clock time."""
        return self.n_stored / self.seconds if self.seconds > 0 else float("inf")

    def __str__(self) -> str:
        how = ", ".join(f"{k} {v}" for k, v in sorted(self.methods.items())) or "none"
        text = (
            f"retrieve {self.retrieve_id} into {self.out}: {self.n_series} series ({how}), "
            f"{self.n_stored} instances stored, {self.n_already} already there, "
            f"{self.n_failed} failed (see retrievals); {self.seconds:.1f} s"
        )
        return f"{text}\n{self.crawled}" if self.crawled else text


@dataclass
class _Series:
    """One series to fetch: where from, and its instances (SOP Instance UID -> SOP Class UID)."""

    source: str
    study: str
    series: str
    instances: dict[str, str] = field(default_factory=dict)


class _Outcomes:
    """The ``retrievals`` rows of a run, collected from the storing threads."""

    def __init__(self, retrieve_id: int) -> None:
        self.retrieve_id = retrieve_id
        self.rows: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def add(
        self,
        s: _Series,
        method: str,
        sop: str | None,
        status: str,
        reason: str | None,
        path: str | None,
    ) -> None:
        row = (self.retrieve_id, s.source, method, s.study, s.series, sop, status, reason, path,
               datetime.now())  # fmt: skip
        with self.lock:
            self.rows.append(row)

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r[6] == status)


def instance_path(out: Path, study: str, series: str, sop: str) -> Path:
    """Where an instance is written."""
    for uid in (study, series, sop):
        if not uid or "/" in uid or uid in (".", "..") or "\0" in uid:
            raise PacsError(f"{uid!r} is not a UID that can name a file")
    return out / study / series / f"{sop}.dcm"


def write_whole(path: Path, data: bytes) -> None:
    """Write ``data`` under a temporary name, then rename it: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    with open(part, "wb") as f:
        f.write(data)
    os.replace(part, path)


def cohort_series(
    cohort: str | Path, con: catalog.duckdb.DuckDBPyConnection | None = None
) -> list[tuple[str, str]]:
    """The (study, series) UIDs of a cohort folder's ``manifest.parquet``.

    The manifest ``curation cohort`` writes names its series by pseudonym (``series_key``) only:
    their UIDs are those of the build's members in the catalog ``con`` it was built from
    (``cohort_members``, of the build ``provenance.json`` names). A manifest that holds the UIDs
    themselves (``StudyInstanceUID``, ``SeriesInstanceUID``) is read as it is.
    """
    import duckdb

    folder = Path(cohort)
    manifest = folder / "manifest.parquet"
    if not manifest.is_file():
        raise InputError(f"{manifest}: no cohort manifest here (run `curation cohort` first)")
    mem = duckdb.connect()
    try:
        columns = {
            str(r[0])
            for r in mem.execute(
                "DESCRIBE SELECT * FROM read_parquet(?)", [str(manifest)]
            ).fetchall()
        }
        if {"StudyInstanceUID", "SeriesInstanceUID"} <= columns:
            rows = mem.execute(
                "SELECT DISTINCT StudyInstanceUID, SeriesInstanceUID FROM read_parquet(?) "
                "WHERE SeriesInstanceUID IS NOT NULL ORDER BY 1, 2",
                [str(manifest)],
            ).fetchall()
            return [(str(a), str(b)) for a, b in rows]
        if "series_key" not in columns:
            raise InputError(f"{manifest}: names no series (no series_key, no SeriesInstanceUID)")
        keys = [
            str(r[0])
            for r in mem.execute(
                "SELECT DISTINCT series_key FROM read_parquet(?) WHERE series_key IS NOT NULL",
                [str(manifest)],
            ).fetchall()
        ]
    except duckdb.Error as exc:
        raise InputError(f"{manifest}: cannot read the series of the cohort: {exc}") from exc
    finally:
        mem.close()
    build = _cohort_id(folder)
    which = f"cohort build {build}" if build is not None else "a cohort build"
    if con is None or not catalog.has_table(con, "cohort_members"):
        raise InputError(
            f"{manifest}: names its series by pseudonym; only the catalog of {which} it was "
            "built from maps them to UIDs, and this one holds no cohort build"
        )
    rows = con.execute(
        """SELECT DISTINCT StudyInstanceUID, SeriesInstanceUID, series_key FROM cohort_members
           WHERE series_key IN (SELECT unnest($keys::VARCHAR[]))
             AND ($build IS NULL OR cohort_id = $build)""",
        {"keys": keys, "build": build},
    ).fetchall()
    missing = sorted(set(keys) - {str(k) for _, _, k in rows})
    if missing:
        raise InputError(
            f"{manifest}: {len(missing)} of its {len(keys)} series (e.g. S-{missing[0]}) are not "
            f"members of {which} in this catalog: name the catalog it was built from with --db"
        )
    return sorted({(str(st), str(se)) for st, se, _ in rows})


def _cohort_id(folder: Path) -> int | None:
    """The cohort build a cohort folder's ``provenance.json`` records, if it can be read."""
    try:
        value = json.loads((folder / "provenance.json").read_text()).get("cohort_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _sources(
    con: catalog.duckdb.DuckDBPyConnection, wanted: list[tuple[str, str]], source: str | None
) -> list[_Series]:
    """Where each series is fetched from: ``source``, or the PACS that last listed it."""
    if source is not None:
        return [_Series(source, st, se) for st, se in wanted]
    found: dict[str, str] = {}
    if catalog.has_table(con, "pacs_series"):
        found = dict(
            con.execute(
                """SELECT SeriesInstanceUID, arg_max(source, crawl_id) FROM pacs_series
                   WHERE SeriesInstanceUID IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1""",
                [[se for _, se in wanted]],
            ).fetchall()
        )
    missing = [se for _, se in wanted if se not in found]
    if missing:
        raise InputError(
            f"{len(missing)} series of the cohort (e.g. {missing[0]}) were not found on a PACS by "
            "a crawl of this catalog: name the PACS with --source"
        )
    return [_Series(found[se], st, se) for st, se in wanted]


def retrieve(
    db: str | Path,
    cohort: str | Path,
    out: str | Path,
    *,
    source: str | None = None,
    method: str = "auto",
    auth: Credentials | None = None,
    calling_aet: str = "CURATION",
    move_port: int | None = None,
    workers: int = 4,
    crawl: bool = True,
) -> RetrieveSummary:
    """Fetch the series of the cohort folder ``cohort`` into ``out``; crawl them into ``db``.

    Parameters
    ----------
    db
        The catalog: where the PACS of each series is looked up (``pacs_series``), the outcomes
        written (``retrievals``) and the files crawled.
    cohort
        A cohort folder (its ``manifest.parquet`` names the series; by pseudonym, mapped back
        through this catalog's ``cohort_members``: see :func:`cohort_series`).
    out
        The folder the instances are written to (created).
    source
        The PACS to fetch from; default: the one a crawl of this catalog found each series on.
    method
        ``get`` (C-GET), ``move`` (C-MOVE to our own storage SCP on ``move_port``), ``wado``
        (WADO-RS) or ``auto``: WADO-RS from a DICOMweb source; C-GET from a DIMSE one, or C-MOVE
        where the PACS refuses C-GET and a ``move_port`` is given.
    auth
        Credentials of a DICOMweb source.
    calling_aet
        Our AE title (DIMSE). For C-MOVE the PACS must know it, with our host and ``move_port``.
    move_port
        The port our storage SCP listens on for C-MOVE.
    workers
        Instances fetched at once (WADO-RS).
    crawl
        Crawl ``out`` into ``db`` afterwards.

    Raises
    ------
    PacsError
        The PACS refused the association or the credentials (exit 3). Failed instances are
        ``retrievals`` rows instead.
    """
    if method not in METHODS:
        raise InputError(f"--method {method!r}: one of {', '.join(METHODS)}")
    t0 = time.perf_counter()
    out = Path(out)
    with catalog.opened(db, read_only=True) as con:
        wanted = cohort_series(cohort, con)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(out, exc) from exc
    with catalog.opened(db) as con:
        plan = _sources(con, wanted, source)
        RETRIEVALS.ensure(con)
        retrieve_id = int(
            con.sql("SELECT coalesce(max(retrieve_id), 0) + 1 FROM retrievals").fetchall()[0][0]
        )
    outcomes = _Outcomes(retrieve_id)
    methods: dict[str, int] = {}
    try:
        for s in plan:
            used = _retrieve_series(s, out, outcomes, method, auth, calling_aet, move_port, workers)
            methods[used] = methods.get(used, 0) + 1
    finally:
        # What was fetched before an interruption is recorded too (and is on disk, whole).
        with catalog.opened(db) as con:
            _record(con, outcomes)
    crawled = ""
    if crawl:
        from curation.crawler.run import crawl as crawl_folder

        summary = crawl_folder(out, db, workers=None, progress=False)
        with catalog.opened(db) as con:
            _prefer_local_copies(con, str(out.resolve()))
        crawled = str(summary)
    return RetrieveSummary(
        out=str(out), retrieve_id=retrieve_id, n_series=len(plan),
        n_stored=outcomes.count("stored"), n_already=outcomes.count("already_stored"),
        n_failed=outcomes.count("failed"), seconds=time.perf_counter() - t0, methods=methods,
        crawled=crawled,
    )  # fmt: skip


def _record(con: catalog.duckdb.DuckDBPyConnection, outcomes: _Outcomes) -> None:
    if not outcomes.rows:
        return
    con.executemany(
        "INSERT INTO retrievals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", list(outcomes.rows)
    )


def _prefer_local_copies(con: catalog.duckdb.DuckDBPyConnection, out: str) -> None:
    """Drop the DICOMweb rows of instances that are now cataloged from files under ``out``."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _remote AS
               SELECT r.file_id FROM files r JOIN files l USING (SOPInstanceUID)
               WHERE r.reader = 'dicomweb' AND l.status = 'ok' AND starts_with(l.path, ?)""",
            [out.rstrip("/") + "/"],
        )
        catalog.drop_file_rows(con, "_remote")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    catalog.rebuild_aggregates(con)


def _retrieve_series(
    s: _Series,
    out: Path,
    outcomes: _Outcomes,
    method: str,
    auth: Credentials | None,
    calling_aet: str,
    move_port: int | None,
    workers: int,
) -> str:
    """Fetch one series; returns the method used."""
    if s.source.startswith(DICOMWEB_SCHEMES):
        if method in ("get", "move"):
            raise InputError(f"--method {method}: {s.source} is a DICOMweb source (use wado)")
        _wado(s, out, outcomes, auth, workers)
        return "WADO-RS"
    if method == "wado":
        raise InputError(f"--method wado: {s.source} is a DIMSE source (use get or move)")
    peer = dimse_peer(s.source)
    s.instances = _find_instances(peer, calling_aet, s)
    missing = _missing(s, out, outcomes, "C-MOVE" if method == "move" else "C-GET")
    if not missing:
        return "C-MOVE" if method == "move" else "C-GET"
    if method in ("auto", "get"):
        try:
            _dimse_fetch(peer, calling_aet, s, out, outcomes, missing, "C-GET", None)
            return "C-GET"
        except _GetRefused as exc:
            if method == "get" or move_port is None:
                raise PacsError(
                    f"{peer}: C-GET refused ({exc}); retrieve with C-MOVE: --method move "
                    "--move-port PORT (the PACS must know our AE title, host and that port)"
                ) from None
            log.info("%s: C-GET refused (%s); retrieving by C-MOVE", peer, exc)
    if move_port is None:
        raise InputError("--method move needs --move-port: the port our storage SCP listens on")
    _dimse_fetch(peer, calling_aet, s, out, outcomes, missing, "C-MOVE", move_port)
    return "C-MOVE"


def _missing(s: _Series, out: Path, outcomes: _Outcomes, method: str) -> list[str]:
    """The instances of ``s`` not on disk yet; those that are get an ``already_stored`` row."""
    missing = []
    for sop in s.instances:
        path = instance_path(out, s.study, s.series, sop)
        if path.is_file():
            outcomes.add(s, method, sop, "already_stored", None, str(path.resolve()))
        else:
            missing.append(sop)
    return missing


# -- WADO-RS -----------------------------------------------------------------------------------


def _wado(
    s: _Series, out: Path, outcomes: _Outcomes, auth: Credentials | None, workers: int
) -> None:
    from curation.pacs import dicomjson
    from curation.pacs.dicomweb import DicomWebClient

    with DicomWebClient(dicomweb_root(s.source), auth, pool=workers) as client:
        listing = client.search(f"studies/{s.study}/series/{s.series}/instances", {})
        for match in listing:
            sop = dicomjson.first_value(match, "00080018")
            if sop:
                s.instances[sop] = dicomjson.first_value(match, "00080016") or ""
        missing = _missing(s, out, outcomes, "WADO-RS")

        def fetch(sop: str) -> None:
            path = instance_path(out, s.study, s.series, sop)
            try:
                data = client.instance(s.study, s.series, sop)
                if data[128:132] != b"DICM":
                    raise PacsError(
                        f"{client.url(f'studies/{s.study}/series/{s.series}/instances/{sop}')}: not a DICOM file"
                    )
                write_whole(path, data)
            except PacsError as exc:
                if exc.status in (401, 403):
                    raise
                outcomes.add(s, "WADO-RS", sop, "failed", str(exc), None)
                return
            except OSError as exc:
                raise output_error(path, exc) from exc
            outcomes.add(s, "WADO-RS", sop, "stored", None, str(path.resolve()))

        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="curation-wado") as pool:
            for future in [pool.submit(fetch, sop) for sop in missing]:
                future.result()


# -- DIMSE -------------------------------------------------------------------------------------


class _GetRefused(Exception):
    """The PACS does not do C-GET for us (context rejected, or the request refused)."""


def _find_instances(peer: DimsePeer, calling_aet: str, s: _Series) -> dict[str, str]:
    ae = dimse.application_entity(calling_aet)
    ae.add_requested_context(dimse.STUDY_ROOT_FIND)
    with dimse.associated(peer, ae) as assoc:
        matches = dimse.find(assoc, peer, dimse.instance_identifier(s.study, s.series))
    found = {}
    for m in matches:
        sop = str(m.get("SOPInstanceUID", "")).strip()
        if sop:
            found[sop] = str(m.get("SOPClassUID", "")).strip()
    return found


def _store_handler(
    s: _Series, out: Path, outcomes: _Outcomes, method: str, expected: set[str]
) -> Callable[[Any], int]:
    """The C-STORE handler: each instance written whole; an unexpected one refused."""

    def handle(event: Any) -> int:
        handle.calls += 1  # type: ignore[attr-defined]
        sop = str(event.request.AffectedSOPInstanceUID)
        if sop not in expected:
            return 0xA900  # not one we asked for (Dataset does not match SOP class)
        try:
            path = instance_path(out, s.study, s.series, sop)
            write_whole(path, event.encoded_dataset(include_meta=True))
        except (OSError, PacsError) as exc:
            outcomes.add(s, method, sop, "failed", f"cannot write: {exc}", None)
            return 0xA700  # out of resources
        outcomes.add(s, method, sop, "stored", None, str(path.resolve()))
        return 0x0000

    handle.calls = 0  # type: ignore[attr-defined]
    return handle


def _dimse_fetch(
    peer: DimsePeer,
    calling_aet: str,
    s: _Series,
    out: Path,
    outcomes: _Outcomes,
    missing: list[str],
    method: str,
    move_port: int | None,
) -> None:
    """C-GET or C-MOVE the ``missing`` instances; again after an abort; failures recorded."""
    from pynetdicom import evt

    todo = list(missing)
    reason = ""
    scp = None
    handler = _store_handler(s, out, outcomes, method, set(missing))
    if method == "C-MOVE":
        scp = _storage_scp(calling_aet, move_port or 0, handler)
    try:
        for _attempt in range(ASSOCIATION_ATTEMPTS):
            if not todo:
                break
            if method == "C-GET":
                ae, roles = _get_ae(calling_aet, s, todo)
                handlers = [(evt.EVT_C_STORE, handler)]
            else:
                ae, roles, handlers = dimse.application_entity(calling_aet), [], []
                ae.add_requested_context(dimse.STUDY_ROOT_MOVE)
            try:
                with dimse.associated(peer, ae, handlers=handlers, roles=roles) as assoc:
                    model = dimse.STUDY_ROOT_GET if method == "C-GET" else dimse.STUDY_ROOT_MOVE
                    if not any(c.abstract_syntax == model for c in assoc.accepted_contexts):
                        raise _GetRefused(f"the PACS did not accept {method}")
                    identifier = _retrieve_identifier(s, todo, len(todo) == len(s.instances))
                    if method == "C-GET":
                        responses = assoc.send_c_get(identifier, model)
                    else:
                        responses = assoc.send_c_move(identifier, calling_aet, model)
                    reason = _final_status(responses, method, lambda: handler.calls)  # type: ignore[attr-defined]
                    # Connection lost mid-operation: pynetdicom ends the responses without a status.
                    aborted = (
                        assoc.is_aborted or not assoc.is_established or "no response" in reason
                    )
            except PacsError as exc:
                reason, aborted = str(exc), True
            todo = [sop for sop in todo if not instance_path(out, s.study, s.series, sop).is_file()]
            if not aborted:
                break
            log.warning("%s: association aborted during %s (%s); %d instances to go",
                        peer, method, reason, len(todo))  # fmt: skip
    finally:
        if scp is not None:
            scp.shutdown()
    failed_already = {r[5] for r in outcomes.rows if r[6] == "failed" and r[4] == s.series}
    for sop in todo:
        if sop not in failed_already:
            outcomes.add(
                s, method, sop, "failed", reason or f"not sent by the PACS ({method})", None
            )


def _retrieve_identifier(s: _Series, sops: list[str], whole: bool) -> Any:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.StudyInstanceUID = s.study
    ds.SeriesInstanceUID = s.series
    if whole:
        ds.QueryRetrieveLevel = "SERIES"
    else:
        ds.QueryRetrieveLevel = "IMAGE"
        ds.SOPInstanceUID = sops
    return ds


def _get_ae(calling_aet: str, s: _Series, todo: Iterable[str]) -> tuple[Any, list[Any]]:
    """An AE proposing C-GET and, with the SCP role, storage of the series' SOP classes."""
    from pynetdicom import build_role

    ae = dimse.application_entity(calling_aet)
    ae.add_requested_context(dimse.STUDY_ROOT_GET)
    classes = sorted({s.instances[sop] for sop in todo if s.instances.get(sop)})
    if not classes:
        raise PacsError(f"{s.source}: C-FIND gave no SOP Class UID for the instances of {s.series}")
    room = (_MAX_CONTEXTS - 1) // len(classes)
    if room < 1:
        raise PacsError(f"{s.series}: {len(classes)} SOP classes, more than one association offers")
    syntaxes = list(_OFFERED_SYNTAXES[:room])
    roles = []
    for sop_class in classes:
        # One context per transfer syntax: the PACS accepts the one each file is stored in.
        for ts in syntaxes:
            ae.add_requested_context(sop_class, [ts])
        roles.append(build_role(sop_class, scp_role=True))
    return ae, roles


def _final_status(
    responses: Iterable[tuple[Any, Any]], method: str, received: Callable[[], int]
) -> str:
    """Consume a C-GET/C-MOVE's responses; what its last status says ('' for success)."""
    reason = ""
    for status, identifier in responses:
        code = getattr(status, "Status", None)
        if code is None:
            return f"{method}: no response (aborted or timed out)"
        if code in (0xFF00, 0xFF01):
            continue
        if code == 0x0000:
            return ""
        failed = getattr(identifier, "FailedSOPInstanceUIDList", None) if identifier else None
        reason = f"{method} status 0x{code:04X}" + (f", failed: {failed}" if failed else "")
        if (
            method == "C-GET"
            and not received()
            and code in (0xA701, 0xA702, 0xA900, 0xAA00, 0xC000)
        ):
            raise _GetRefused(reason)  # refused before sending us anything
    return reason


def _storage_scp(calling_aet: str, port: int, handler: Callable[[Any], int]) -> Any:
    """Our storage SCP for C-MOVE, on every interface at ``port`` (the PACS connects to it)."""
    from pydicom.uid import AllTransferSyntaxes
    from pynetdicom import AllStoragePresentationContexts, evt

    ae = dimse.application_entity(calling_aet)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, AllTransferSyntaxes)
    try:
        return ae.start_server(
            ("", port),
            block=False,
            evt_handlers=[*dimse.nodelay_handlers(), (evt.EVT_C_STORE, handler)],
        )
    except OSError as exc:
        raise InputError(
            f"--move-port {port}: our storage SCP cannot listen: {exc.strerror}"
        ) from exc
