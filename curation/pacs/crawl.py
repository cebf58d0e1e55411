"""Crawl a DICOMweb PACS into the catalog: QIDO-RS search, then WADO-RS metadata per series.

The instances land in the crawl's own tables through the crawler's writer, so a catalog built
through the PACS equals the one built from the same files on disk (see :mod:`curation.pacs.dicomjson`
for what DICOM JSON cannot carry). A ``files`` row names the instance's WADO-RS URL.

Incremental: the studies the PACS returned are kept in ``pacs_studies`` with their instance
counts, the series in ``pacs_series``. A second crawl of the same source asks for the series of a
study only when the study is new or its count changed, and fetches the metadata of a series only
when the series is new or its count changed. A study the PACS no longer returns is left in the
catalog: a filter, a server limit or an outage hides studies as well as a deletion does.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from tqdm import tqdm

from curation import __version__, catalog
from curation.crawler.batches import Batch, make_batch
from curation.crawler.discover import file_id
from curation.crawler.reader import ElementColumns
from curation.crawler.run import COMMIT_FILES
from curation.crawler.writer import write_batches
from curation.errors import InputError
from curation.pacs import dicomjson
from curation.pacs.dicomweb import DicomWebClient
from curation.pacs.source import Credentials, PacsError, dicomweb_root
from curation.pacs.tables import PACS_TABLES

log = logging.getLogger("curation.pacs")

_DATE_RANGE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")

STUDY = "0020000D"
SERIES = "0020000E"
SOP = "00080018"
#: QIDO-RS attributes asked for (``includefield``): servers return only the required ones else.
STUDY_FIELDS = ("00100020", "00080020", "00081030", "00080050", "00080061", "00201206", "00201208")
SERIES_FIELDS = ("00080060", "00200011", "0008103E", "00180015", "00201209", "00080020")


@dataclass(frozen=True)
class Query:
    """What to ask the PACS for; every filter is optional.

    Parameters
    ----------
    modality
        A modality (``CT``): studies that hold it, and of those only its series.
    study_date
        ``YYYYMMDD``, or a range ``YYYYMMDD-YYYYMMDD`` (either end may be left open).
    description
        Study description, as a DICOM matching pattern (``*`` and ``?`` wildcards).
    """

    modality: str | None = None
    study_date: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        if self.study_date is not None and (
            not self.study_date or self.study_date == "-" or not _DATE_RANGE.match(self.study_date)
        ):
            raise InputError(
                f"--study-date {self.study_date!r}: give YYYYMMDD or a range YYYYMMDD-YYYYMMDD "
                "(one end may be open: 20240101-)"
            )
        if self.modality is not None and not re.fullmatch(r"[A-Z0-9_]{1,16}", self.modality):
            raise InputError(
                f"--modality {self.modality!r}: a DICOM modality code such as CT or MR"
            )

    def study_params(self) -> dict[str, str]:
        """QIDO-RS study-level matching keys."""
        params = {}
        if self.modality:
            params["ModalitiesInStudy"] = self.modality
        if self.study_date:
            params["StudyDate"] = self.study_date
        if self.description:
            params["StudyDescription"] = self.description
        return params

    def series_params(self) -> dict[str, str]:
        """QIDO-RS series-level matching keys."""
        return {"Modality": self.modality} if self.modality else {}

    @property
    def series_filter(self) -> str:
        """The series-level filter as recorded in ``pacs_studies`` ('' for every series)."""
        return "&".join(f"{k}={v}" for k, v in self.series_params().items())


@dataclass(frozen=True)
class PacsCrawlSummary:
    """What a PACS crawl did."""

    db: str
    source: str
    crawl_id: int
    n_studies: int
    n_studies_changed: int
    n_series_fetched: int
    n_instances: int
    n_errors: int
    n_requests: int
    seconds: float
    errors_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def instances_per_second(self) -> float:
        """Instances cataloged per second of wall-clock time."""
        return self.n_instances / self.seconds if self.seconds > 0 else float("inf")

    def __str__(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.errors_by_reason.items())) or "none"
        return (
            f"crawl {self.crawl_id} of {self.db} from {self.source}: {self.n_studies} studies "
            f"found, {self.n_studies_changed} new or changed, {self.n_series_fetched} series "
            f"fetched, {self.n_instances} instances cataloged, {self.n_errors} with problems; "
            f"{self.n_requests} requests, {self.seconds:.1f} s, "
            f"{self.instances_per_second:,.0f} instances/s; problems by reason: {reasons}"
        )


def ensure_tables(con: catalog.duckdb.DuckDBPyConnection) -> None:
    """Create the crawl's tables and the PACS tables if they do not exist yet."""
    catalog.ensure_tables(con, dictionary=False)
    for table in PACS_TABLES:
        table.ensure(con)


def begin_crawl(con: catalog.duckdb.DuckDBPyConnection, source: str, workers: int) -> int:
    """Record a new crawl of ``source`` in ``crawls``; its id."""
    crawl_id = int(con.sql("SELECT coalesce(max(crawl_id), 0) + 1 FROM crawls").fetchall()[0][0])
    con.execute(
        "INSERT INTO crawls (crawl_id, started_at, roots, curation_version, workers) VALUES (?, ?, ?, ?, ?)",
        [crawl_id, datetime.now(), [source], __version__, workers],
    )
    return crawl_id


def finish_crawl(
    con: catalog.duckdb.DuckDBPyConnection,
    crawl_id: int,
    *,
    n_seen: int,
    n_read: int,
    n_unchanged: int,
    seconds: float,
    rebuild: bool = True,
) -> int:
    """Rebuild the aggregates (if ``rebuild``) and close the crawl's row; instances with problems."""
    if rebuild:
        catalog.rebuild_aggregates(con)
    n_errors = int(
        con.sql(
            "SELECT count(DISTINCT file_id) FROM crawl_errors WHERE crawl_id = ?", params=[crawl_id]
        ).fetchall()[0][0]
    )
    con.execute(
        """UPDATE crawls SET finished_at = ?, n_seen = ?, n_read = ?, n_unchanged = ?,
           n_removed = 0, n_errors = ?, seconds = ? WHERE crawl_id = ?""",
        [datetime.now(), n_seen, n_read, n_unchanged, n_errors, seconds, crawl_id],
    )
    return n_errors


def crawl_dicomweb(
    source: str,
    db: str,
    *,
    query: Query | None = None,
    auth: Credentials | None = None,
    workers: int = 4,
    bulk_lengths: bool = True,
    progress: bool | None = None,
) -> PacsCrawlSummary:
    """Crawl the DICOMweb service ``source`` (``dicomweb+http(s)://HOST/ROOT``) into ``db``.

    Parameters
    ----------
    source
        The DICOMweb root, as ``dicomweb+http://`` or ``dicomweb+https://``.
    db
        The catalog DuckDB file; created if missing.
    query
        Filters (modality, study date range, description); default: every study.
    auth
        Credentials (see :func:`curation.pacs.source.credentials`).
    workers
        Series fetched at once (HTTP connections in the pool).
    bulk_lengths
        Fetch each non-pixel bulk data value once to record its length as a file crawl does
        (a request per value); otherwise their ``value_length`` is NULL.
    progress
        Show a progress bar; default: only when stderr is a terminal.

    Raises
    ------
    PacsError
        The PACS refused the credentials, is not a DICOMweb service, or its study search failed
        (the message names the URL and the status). A series whose metadata cannot be had is a
        ``crawl_errors`` row instead, and is asked for again by the next crawl.
    """
    t0 = time.perf_counter()
    query = query or Query()
    root = dicomweb_root(source)
    source = "dicomweb+" + root
    workers = max(1, workers)
    with DicomWebClient(root, auth, pool=workers) as client:
        # Ask before touching the catalog: a wrong address or refused credentials leave it as it was.
        studies = list(
            client.search(
                "studies", {**query.study_params(), "includefield": ",".join(STUDY_FIELDS)}
            )
        )
        con = catalog.connect(db, create=True)
        try:
            ensure_tables(con)
            crawl_id = begin_crawl(con, source, workers)
            # A study is as it was when its count is the same and the series asked for then
            # covered those asked for now (all of them, or the same modality).
            known = dict(
                con.sql(
                    "SELECT StudyInstanceUID, NumberOfStudyRelatedInstances FROM pacs_studies "
                    "WHERE source = ? AND protocol = 'dicomweb' AND series_filter IN ('', ?)",
                    params=[source, query.series_filter],
                ).fetchall()
            )
            changed = []
            for study in studies:
                uid = dicomjson.first_value(study, STUDY)
                if not uid:
                    raise PacsError(f"{client.url('studies')}: a study without a StudyInstanceUID")
                count = _int(dicomjson.first_value(study, "00201208"))
                if uid not in known or count is None or known[uid] != count:
                    changed.append((uid, study))
            if changed:  # filling the dictionary imports pydicom's (~0.5 s): only when needed
                catalog.ensure_dictionary(con)
            log.info(
                "crawl %d of %s: %d studies, %d new or changed",
                crawl_id, source, len(studies), len(changed),
            )  # fmt: skip
            stats = _Stats()
            bar = tqdm(total=len(changed), unit="study", desc="crawl",
                       disable=None if progress is None else not progress)  # fmt: skip
            # As the folder crawl writes: one DuckDB thread is faster for many small inserts.
            con.execute("SET threads = 1")
            try:
                with ThreadPoolExecutor(workers, thread_name_prefix="curation-pacs") as pool:
                    _crawl_studies(con, client, pool, source, changed, query, crawl_id,
                                   bulk_lengths, stats, bar.update, 2 * workers)  # fmt: skip
            finally:
                bar.close()
                con.execute("RESET threads")
            n_unchanged = int(
                con.sql(
                    "SELECT coalesce(sum(NumberOfStudyRelatedInstances), 0) FROM pacs_studies "
                    "WHERE source = ? AND crawl_id < ? AND StudyInstanceUID IN (SELECT unnest(?::VARCHAR[]))",
                    params=[source, crawl_id, [dicomjson.first_value(s, STUDY) for s in studies]],
                ).fetchall()[0][0]
            )
            seconds = time.perf_counter() - t0
            n_errors = finish_crawl(
                con, crawl_id, n_seen=stats.instances + n_unchanged, n_read=stats.instances,
                n_unchanged=n_unchanged, seconds=seconds, rebuild=bool(changed) or _stale(con, crawl_id),
            )  # fmt: skip
        finally:
            con.close()
        n_requests = client.requests
    summary = PacsCrawlSummary(
        db=str(db), source=source, crawl_id=crawl_id, n_studies=len(studies),
        n_studies_changed=len(changed), n_series_fetched=stats.series,
        n_instances=stats.instances, n_errors=n_errors, n_requests=n_requests,
        seconds=time.perf_counter() - t0, errors_by_reason=dict(stats.reasons),
    )  # fmt: skip
    log.debug("%s", summary)
    return summary


@dataclass
class _Stats:
    series: int = 0
    instances: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def problem(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def _stale(con: catalog.duckdb.DuckDBPyConnection, crawl_id: int) -> bool:
    """True when an earlier crawl stopped before rebuilding series/studies/patients."""
    return bool(
        con.sql(
            "SELECT count(*) FROM crawls WHERE finished_at IS NULL AND crawl_id < ?",
            params=[crawl_id],
        ).fetchall()[0][0]
    )


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass
class _Pending:
    """Fetched series waiting to be written together (a transaction has a fixed cost)."""

    batches: list[Batch] = field(default_factory=list)
    #: (study UID, series UID, QIDO series match, study match, instances cataloged, fetched whole)
    series: list[tuple[str, str, Mapping[str, Any], Mapping[str, Any], int, bool]] = field(
        default_factory=list
    )
    #: (study UID, study match, every series fetched)
    studies: list[tuple[str, Mapping[str, Any], bool]] = field(default_factory=list)
    n: int = 0


def _crawl_studies(
    con: catalog.duckdb.DuckDBPyConnection,
    client: DicomWebClient,
    pool: ThreadPoolExecutor,
    source: str,
    changed: Sequence[tuple[str, Mapping[str, Any]]],
    query: Query,
    crawl_id: int,
    bulk_lengths: bool,
    stats: _Stats,
    advance: Any,
    in_flight: int,
) -> None:
    """Fetch the new or changed series of the ``changed`` studies, a few at once; write them.

    Series metadata is fetched by the pool while this thread converts and writes what came
    back; rows are written in transactions of about :data:`run.COMMIT_FILES` instances, a
    series' ``pacs_series`` row with its rows and a study's ``pacs_studies`` row after all of
    its series, so that an interrupted crawl leaves no study marked as done that is not.
    """
    queue: deque[tuple[str, Mapping[str, Any], str, Mapping[str, Any], Future[_Fetched], bool]]
    queue = deque()
    pending = _Pending()
    whole: dict[str, bool] = {}

    def take() -> None:
        study_uid, study, uid, match, future, last = queue.popleft()
        fetched = future.result()
        whole[study_uid] = whole.get(study_uid, True) and fetched.error is None
        batch, n_ok = _series_batch(client, study_uid, uid, fetched, crawl_id, stats)
        pending.batches.append(batch)
        pending.series.append((study_uid, uid, match, study, n_ok, fetched.error is None))
        pending.n += max(1, batch.files.num_rows)
        stats.series += 1
        stats.instances += n_ok
        if last:
            pending.studies.append((study_uid, study, whole.pop(study_uid)))
            advance(1)
        if pending.n >= COMMIT_FILES:
            _flush(con, client, source, pending, crawl_id, query.series_filter)

    for study_uid, study in changed:
        todo = _series_todo(con, client, source, study_uid, query)
        if not todo:
            pending.studies.append((study_uid, study, True))
            advance(1)
        for i, (uid, match) in enumerate(todo):
            future = pool.submit(_fetch, client, study_uid, uid, bulk_lengths)
            queue.append((study_uid, study, uid, match, future, i == len(todo) - 1))
            while len(queue) > in_flight:
                take()
    while queue:
        take()
    _flush(con, client, source, pending, crawl_id, query.series_filter)


def _series_todo(
    con: catalog.duckdb.DuckDBPyConnection,
    client: DicomWebClient,
    source: str,
    study_uid: str,
    query: Query,
) -> list[tuple[str, Mapping[str, Any]]]:
    """The series of a study that are new or changed (QIDO-RS); drops those gone from it."""
    series_list = list(
        client.search(
            f"studies/{study_uid}/series",
            {**query.series_params(), "includefield": ",".join(SERIES_FIELDS)},
        )
    )
    known = dict(
        con.sql(
            "SELECT SeriesInstanceUID, NumberOfSeriesRelatedInstances FROM pacs_series "
            "WHERE source = ? AND StudyInstanceUID = ? AND level = 'instance'",
            params=[source, study_uid],
        ).fetchall()
    )
    todo: list[tuple[str, Mapping[str, Any]]] = []
    for series in series_list:
        uid = dicomjson.first_value(series, SERIES)
        if not uid:
            raise PacsError(
                f"{client.url(f'studies/{study_uid}/series')}: a series without a SeriesInstanceUID"
            )
        count = _int(dicomjson.first_value(series, "00201209"))
        if uid not in known or count is None or known[uid] != count:
            todo.append((uid, series))
    if not query.series_params():
        # Without a series filter, a series the PACS no longer lists is gone from the study.
        present = {dicomjson.first_value(s, SERIES) for s in series_list}
        gone = sorted(set(known) - present)
        if gone:
            _forget_series(con, client, source, [(study_uid, g) for g in gone])
    return todo


def _flush(
    con: catalog.duckdb.DuckDBPyConnection,
    client: DicomWebClient,
    source: str,
    pending: _Pending,
    crawl_id: int,
    series_filter: str,
) -> None:
    """Write the pending series (their old rows dropped first), then record them and their studies."""
    if pending.series:
        _forget_series(con, client, source, [(st, se) for st, se, *_ in pending.series])
    if pending.batches:
        write_batches(con, pending.batches)
    for study_uid, _uid, match, study, n_ok, fetched_whole in pending.series:
        if fetched_whole:
            record_series(con, source, study_uid, match, study, n_ok, crawl_id)
    for study_uid, study, complete in pending.studies:
        record_study(con, source, study_uid, study, crawl_id, series_filter, complete=complete)
    pending.batches.clear()
    pending.series.clear()
    pending.studies.clear()
    pending.n = 0


@dataclass
class _Fetched:
    metadata: list[dict[str, Any]]
    bulk: dict[str, int]
    error: PacsError | None = None
    #: Bulk data values that could not be fetched (their length stays NULL).
    bulk_problems: list[str] = field(default_factory=list)


def _fetch(client: DicomWebClient, study: str, series: str, bulk_lengths: bool) -> _Fetched:
    """One series' WADO-RS metadata and the lengths of its bulk data (runs in a pool thread)."""
    try:
        metadata = client.get_json(f"studies/{study}/series/{series}/metadata")
        bulk: dict[str, int] = {}
        problems: list[str] = []
        if bulk_lengths:
            for instance in metadata:
                for uri in dicomjson.bulk_uris(instance):
                    if uri in bulk:
                        continue
                    try:
                        bulk[uri] = client.bulk_length(_same_origin(client.root, uri))
                    except PacsError as exc:
                        if _refused(exc):
                            raise
                        problems.append(str(exc))  # its length stays unknown (NULL)
        return _Fetched(metadata, bulk, None, problems)
    except PacsError as exc:
        if _refused(exc):
            raise
        return _Fetched([], {}, exc)


def _refused(exc: PacsError) -> bool:
    """The credentials were refused: no later request can succeed, so the crawl stops."""
    return exc.status in (401, 403)


def _same_origin(root: str, uri: str) -> str:
    """``uri`` on the root's scheme, host and port.

    A server behind a proxy often writes its own internal address into BulkDataURIs (Orthanc's
    unless told its ``Host``); the path is what identifies the value.
    """
    absolute = urljoin(root + "/", uri)
    r, u = urlsplit(root), urlsplit(absolute)
    return urlunsplit((r.scheme, r.netloc, u.path, u.query, ""))


_FILE_COLUMNS = ("file_id", "path", "path_bytes", "size", "mtime_ns", "status", "reason",
                 "SOPInstanceUID", "reader", "gzip", "crawl_id")  # fmt: skip
_ERROR_COLUMNS = ("file_id", "path", "reason", "message", "cataloged", "crawl_id")


def _series_batch(
    client: DicomWebClient,
    study: str,
    series: str,
    fetched: _Fetched,
    crawl_id: int,
    stats: _Stats,
) -> tuple[Batch, int]:
    """The catalog rows of one fetched series (instances that contradict the query are errors)."""
    files: dict[str, list[Any]] = {c: [] for c in _FILE_COLUMNS}
    errors: dict[str, list[Any]] = {c: [] for c in _ERROR_COLUMNS}
    cols = ElementColumns()
    ids: list[int] = []
    counts: list[int] = []
    series_url = client.url(f"studies/{study}/series/{series}")

    def file_row(url: str, status: str, reason: str | None, sop: str | None) -> int:
        fid = file_id(url)
        row = (fid, url, None, None, None, status, reason, sop, "dicomweb", False, crawl_id)
        for name, value in zip(_FILE_COLUMNS, row, strict=True):
            files[name].append(value)
        return fid

    def error_row(fid: int, url: str, reason: str, message: str) -> None:
        for name, value in zip(
            _ERROR_COLUMNS, (fid, url, reason, message, False, crawl_id), strict=True
        ):
            errors[name].append(value)
        stats.problem(reason)

    if fetched.error is not None:
        url = series_url + "/metadata"
        error_row(file_row(url, "error", "pacs_error", None), url, "pacs_error", str(fetched.error))
    if fetched.bulk_problems:
        url = series_url + "/metadata"
        more = len(fetched.bulk_problems) - 1
        message = f"bulk data length unknown (NULL): {fetched.bulk_problems[0]}" + (
            f" (and {more} more)" if more else ""
        )
        error_row(file_id(url), url, "pacs_error", message)
        errors["cataloged"][-1] = True
    for i, instance in enumerate(fetched.metadata):
        sop = dicomjson.first_value(instance, SOP)
        url = f"{series_url}/instances/{sop}" if sop else f"{series_url}/metadata#{i}"
        lie = None
        if not sop:
            lie = "an instance without a SOPInstanceUID (0008,0018)"
        elif dicomjson.first_value(instance, SERIES) != series:
            lie = f"an instance of series {dicomjson.first_value(instance, SERIES)} in the metadata of {series}"
        elif dicomjson.first_value(instance, STUDY) != study:
            lie = f"an instance of study {dicomjson.first_value(instance, STUDY)} in study {study}"
        mark = len(cols)
        if lie is None:
            try:
                dicomjson.add_dataset(instance, cols, "", fetched.bulk)
            except dicomjson.JsonError as exc:
                cols.truncate(mark)
                lie = str(exc)
        if lie is not None:
            fid = file_row(url, "error", "bad_dicom_json", sop)
            error_row(fid, url, "bad_dicom_json", lie)
            continue
        fid = file_row(url, "ok", None, sop)
        ids.append(fid)
        counts.append(len(cols) - mark)
    return make_batch(files, errors, cols, ids, counts), len(ids)


def _forget_series(
    con: catalog.duckdb.DuckDBPyConnection,
    client: DicomWebClient,
    source: str,
    series: list[tuple[str, str]],
) -> None:
    """Drop the rows of ``(study, series)`` (before they are written again, or when gone)."""
    prefixes = [client.url(f"studies/{st}/series/{se}") + "/" for st, se in series]
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _gone AS SELECT file_id FROM files
               WHERE starts_with(path, 'http') AND list_bool_or(list_transform(
                   ?::VARCHAR[], lambda p: starts_with(path, p)))""",
            [prefixes],
        )
        catalog.drop_file_rows(con, "_gone")
        con.execute(
            """DELETE FROM crawl_errors WHERE starts_with(path, 'http') AND list_bool_or(
                   list_transform(?::VARCHAR[], lambda p: starts_with(path, p)))""",
            [prefixes],
        )
        con.execute(
            "DELETE FROM pacs_series WHERE source = ? AND SeriesInstanceUID IN (SELECT unnest(?::VARCHAR[]))",
            [source, [se for _, se in series]],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def record_series(
    con: catalog.duckdb.DuckDBPyConnection,
    source: str,
    study_uid: str,
    series: Mapping[str, Any],
    study: Mapping[str, Any],
    n_cataloged: int,
    crawl_id: int,
    *,
    level: str = "instance",
    protocol: str = "dicomweb",
) -> None:
    """Record a series (a QIDO-RS or C-FIND match, as DICOM JSON) in ``pacs_series``."""
    v = dicomjson.first_value
    con.execute(
        "DELETE FROM pacs_series WHERE source = ? AND SeriesInstanceUID = ?",
        [source, v(series, SERIES)],
    )
    con.execute(
        """INSERT INTO pacs_series BY NAME SELECT ? AS source, ? AS StudyInstanceUID,
           ? AS SeriesInstanceUID, ? AS PatientID, dicom_date(?) AS StudyDate, ? AS Modality,
           dicom_int(?) AS SeriesNumber, ? AS SeriesDescription, ? AS BodyPartExamined,
           dicom_int(?) AS NumberOfSeriesRelatedInstances, ? AS level, ? AS n_cataloged,
           ? AS protocol, ? AS crawl_id""",
        [source, study_uid, v(series, SERIES), v(study, "00100020"),
         v(series, "00080020") or v(study, "00080020"), v(series, "00080060"),
         v(series, "00200011"), v(series, "0008103E"), v(series, "00180015"),
         v(series, "00201209"), level, n_cataloged, protocol, crawl_id],
    )  # fmt: skip


def record_study(
    con: catalog.duckdb.DuckDBPyConnection,
    source: str,
    study_uid: str,
    study: Mapping[str, Any],
    crawl_id: int,
    series_filter: str,
    *,
    complete: bool = True,
    protocol: str = "dicomweb",
) -> None:
    """Record a study; an incomplete one (a series failed) has no count, so it is asked again."""
    v = dicomjson.first_value
    modalities = (study.get("00080061") or {}).get("Value") or []
    con.execute(
        "DELETE FROM pacs_studies WHERE source = ? AND StudyInstanceUID = ?", [source, study_uid]
    )
    con.execute(
        """INSERT INTO pacs_studies BY NAME SELECT ? AS source, ? AS StudyInstanceUID,
           ? AS PatientID, dicom_date(?) AS StudyDate, ? AS StudyDescription,
           ? AS AccessionNumber, ?::VARCHAR[] AS ModalitiesInStudy,
           CASE WHEN ? THEN dicom_int(?) END AS NumberOfStudyRelatedInstances, ? AS series_filter,
           (SELECT count(*) FROM pacs_series WHERE source = ? AND StudyInstanceUID = ?
              AND level = 'instance') AS n_series_cataloged,
           ? AS protocol, ? AS crawl_id""",
        [source, study_uid, v(study, "00100020"), v(study, "00080020"), v(study, "00081030"),
         v(study, "00080050"), [str(m) for m in modalities if m is not None],
         complete, v(study, "00201208"), series_filter, source, study_uid, protocol, crawl_id],
    )  # fmt: skip
