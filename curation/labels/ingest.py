"""Report texts into the ``reports`` table: from CSV, JSON lines or Parquet files, and from the
DICOM Structured Reports already in the catalog.

A file needs a key column (AccessionNumber or StudyInstanceUID, found by name or given) and a
text column. Rows that cannot be used are skipped and counted in ``report_skips`` with a stable
reason (``no_key``, ``empty_text``, ``not_utf8``, ``duplicate_key``, ``bad_json``); a file without a
key or text column, or that cannot be read at all, is an :class:`~curation.errors.InputError`
naming it. Loading a file again replaces the reports it loaded before.

The key stays in the catalog: messages name files and row numbers, never keys or texts.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from curation.catalog import has_table
from curation.errors import InputError
from curation.labels.tables import REPORT_SKIPS, REPORTS

log = logging.getLogger("curation.labels")

#: Column names taken as the key, by kind (compared lower-case, spaces and underscores removed).
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "AccessionNumber": ("accessionnumber", "accession", "accessionno", "acc", "accnum"),
    "StudyInstanceUID": ("studyinstanceuid", "studyuid", "study"),
}
#: Column names taken as the report text, in order of preference.
TEXT_COLUMNS: tuple[str, ...] = (
    "text",
    "reporttext",
    "report",
    "reportimpression",
    "impression",
    "findings",
    "body",
)
#: ``source`` of the reports read from the catalog's Structured Reports.
SR_SOURCE = "dicom-sr"


@dataclass
class LoadResult:
    """What one load did: reports stored, how many resolve to a study, skips by reason."""

    source: str
    n_reports: int = 0
    n_resolved: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        skips = ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items())) or "none"
        return (
            f"{self.source}: {self.n_reports} reports loaded, {self.n_resolved} resolved to a "
            f"study of the catalog; skipped: {skips}"
        )


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.lower())


def _pick_columns(
    columns: list[str], where: str, key_column: str | None, text_column: str | None
) -> tuple[str, str, str]:
    """(key column, its kind, text column) of a file with ``columns``."""
    norm = {_norm(c): c for c in reversed(columns)}
    if key_column is not None:
        if key_column not in columns:
            raise InputError(f"{where}: no column {key_column!r} (columns: {columns})")
        kind = next(
            (k for k, names in KEY_COLUMNS.items() if _norm(key_column) in names),
            "AccessionNumber",
        )
        key = key_column
    else:
        found = [(k, norm[n]) for k, names in KEY_COLUMNS.items() for n in names if n in norm]
        if not found:
            raise InputError(
                f"{where}: no key column: name one AccessionNumber or StudyInstanceUID, or "
                f"give --key-column (columns: {columns})"
            )
        kind, key = found[0]
    if text_column is not None:
        if text_column not in columns:
            raise InputError(f"{where}: no column {text_column!r} (columns: {columns})")
        text = text_column
    else:
        t = next((norm[n] for n in TEXT_COLUMNS if n in norm), None)
        if t is None:
            raise InputError(
                f"{where}: no text column: name one text or report, or give --text-column "
                f"(columns: {columns})"
            )
        text = t
    return key, kind, text


def _read_table(path: Path) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
    """The file as a frame of strings with a 1-based ``_row``, and rows skipped while reading."""
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    skips: list[tuple[int, str, str]] = []
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            frame = pl.read_csv(
                path,
                separator="\t" if suffix == ".tsv" else ",",
                infer_schema=False,
                encoding="utf8-lossy",
            )
            frame = frame.with_row_index("_row", offset=1)
        elif suffix in (".jsonl", ".ndjson", ".json"):
            rows: list[dict[str, object]] = []
            with path.open("rb") as fh:
                for i, raw in enumerate(fh, start=1):
                    if not raw.strip():
                        continue
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        skips.append((i, "not_utf8", f"line {i}: not UTF-8 ({exc.reason})"))
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        skips.append((i, "bad_json", f"line {i}: not JSON ({exc.msg})"))
                        continue
                    if not isinstance(obj, dict):
                        skips.append((i, "bad_json", f"line {i}: not a JSON object"))
                        continue
                    rows.append(
                        {
                            "_row": i,
                            **{str(k): None if v is None else str(v) for k, v in obj.items()},
                        }
                    )
            frame = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
        elif suffix == ".parquet":
            frame = pl.read_parquet(path).with_row_index("_row", offset=1)
        else:
            raise InputError(f"{path}: unknown report file type (use .csv, .tsv, .jsonl, .parquet)")
    except InputError:
        raise
    except (OSError, pl.exceptions.PolarsError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{path}: cannot read the report file: {first}") from exc
    return frame, skips


def load_reports(
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    *,
    key_column: str | None = None,
    text_column: str | None = None,
) -> LoadResult:
    """Load the report file ``path`` (CSV/TSV, JSON lines or Parquet) into ``reports``.

    Raises
    ------
    InputError
        The file cannot be read, or has no key or no text column.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such report file")
    frame, skips = _read_table(p)
    where = str(p)
    if frame.height == 0 and not skips:
        raise InputError(f"{p}: the report file holds no rows")
    cols = [c for c in frame.columns if c != "_row"]
    if not cols:
        raise InputError(
            f"{p}: no readable rows (see report_skips)" if skips else f"{p}: no columns"
        )
    key, kind, text = _pick_columns(cols, where, key_column, text_column)
    for c in (key, text):
        if frame[c].dtype not in (pl.String, pl.Int64, pl.Int32, pl.UInt64, pl.UInt32, pl.Null):
            raise InputError(f"{p}: column {c!r} holds {frame[c].dtype}, not text")
    frame = frame.select(
        pl.col("_row").cast(pl.Int64),
        pl.col(key).cast(pl.String).str.strip_chars().alias("report_key"),
        pl.col(text).cast(pl.String).alias("text"),
    )
    return _store(con, frame, kind, str(p.resolve()), skips)


def _skip(frame: pl.DataFrame, mask: pl.Expr, reason: str, message: str) -> pl.DataFrame:
    return frame.filter(mask).select(
        "_row", pl.lit(reason).alias("reason"), pl.format(message, pl.col("_row")).alias("message")
    )


def _store(
    con: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame,
    kind: str,
    source: str,
    read_skips: list[tuple[int, str, str]],
) -> LoadResult:
    result = LoadResult(source)
    no_key = pl.col("report_key").is_null() | (pl.col("report_key") == "")
    empty = pl.col("text").is_null() | (pl.col("text").str.strip_chars() == "")
    # polars' lossy decoding puts U+FFFD where bytes were not UTF-8.
    bad = pl.col("text").str.contains("\ufffd", literal=True) | pl.col("report_key").str.contains(
        "\ufffd", literal=True
    )
    skip_frames = [
        pl.DataFrame(
            read_skips,
            schema={"_row": pl.Int64, "reason": pl.String, "message": pl.String},
            orient="row",
        ),
        _skip(frame, no_key, "no_key", "row {}: no key"),
        _skip(frame, ~no_key & empty, "empty_text", "row {}: empty text"),
        _skip(frame, ~no_key & ~empty & bad, "not_utf8", "row {}: text is not valid UTF-8"),
    ]
    good = frame.filter(~no_key & ~empty & ~bad.fill_null(False))
    dup = good.select(
        pl.col("report_key").is_duplicated() & ~pl.col("report_key").is_first_distinct()
    )
    skip_frames.append(
        _skip(good.with_columns(_dup=dup.to_series()), pl.col("_dup"), "duplicate_key",
              "row {}: key already given by an earlier row (first kept)")
    )  # fmt: skip
    good = good.filter(~dup.to_series())
    skips = pl.concat([s.cast({"_row": pl.Int64}) for s in skip_frames])
    result.skipped = dict(skips.group_by("reason").len().iter_rows())
    REPORTS.ensure(con)
    REPORT_SKIPS.ensure(con)
    resolve = _resolver(con, kind)
    con.register("_reports_in", good)
    con.register("_skips_in", skips)
    try:
        con.execute("BEGIN")
        con.execute("DELETE FROM reports WHERE source = $s", {"s": source})
        con.execute("DELETE FROM report_skips WHERE source = $s", {"s": source})
        con.execute(
            f"""INSERT INTO reports
            SELECT r.report_key, $kind, s.StudyInstanceUID, s.PatientID, r.text, $src, r._row,
                   sha256(r.text), current_localtimestamp()
            FROM _reports_in r LEFT JOIN ({resolve}) s ON s.k = r.report_key""",
            {"kind": kind, "src": source},
        )
        con.execute(
            "INSERT INTO report_skips SELECT $src, _row, reason, message, "
            "current_localtimestamp() FROM _skips_in",
            {"src": source},
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("_reports_in")
        con.unregister("_skips_in")
    result.n_reports, result.n_resolved = con.execute(
        "SELECT count(*), count(StudyInstanceUID) FROM reports WHERE source = $s", {"s": source}
    ).fetchall()[0]
    for reason, n in sorted(result.skipped.items()):
        log.warning("%s: %d row(s) skipped: %s (see report_skips)", source, n, reason)
    return result


def _resolver(con: duckdb.DuckDBPyConnection, kind: str) -> str:
    """SQL of (k, StudyInstanceUID, PatientID): the catalog's studies by the key's kind."""
    if not has_table(con, "studies"):
        return "SELECT NULL::VARCHAR AS k, NULL::VARCHAR AS StudyInstanceUID, NULL::VARCHAR AS PatientID WHERE false"
    if kind == "StudyInstanceUID":
        return "SELECT StudyInstanceUID AS k, StudyInstanceUID, PatientID FROM studies"
    # One study per accession number; an accession shared by several studies resolves to none
    # rather than to an arbitrary one.
    return """SELECT AccessionNumber AS k, any_value(StudyInstanceUID) AS StudyInstanceUID,
                     any_value(PatientID) AS PatientID
              FROM studies WHERE AccessionNumber IS NOT NULL AND AccessionNumber <> ''
              GROUP BY AccessionNumber HAVING count(DISTINCT StudyInstanceUID) = 1"""


# An SR's content items: TextValue (0040,A160) of items whose RelationshipType is not
# HAS OBS CONTEXT (observer names, organisations), under the concept name of their container.
_SR_TEXT = r"""
WITH sr AS (
    SELECT SOPInstanceUID, StudyInstanceUID, PatientID FROM instances
    WHERE Modality = 'SR' OR SOPClassUID LIKE '1.2.840.10008.5.1.4.1.1.88.%'
), items AS (
    SELECT e.SOPInstanceUID, e.seq_path, e.value AS text,
           regexp_replace(e.seq_path, '/?0040A730\[\d+\]$', '') AS parent
    FROM elements e JOIN sr USING (SOPInstanceUID)
    WHERE e.tag = '0040A160' AND e.value IS NOT NULL AND trim(e.value) <> ''
), rel AS (
    SELECT SOPInstanceUID, seq_path, value FROM elements
    WHERE tag = '0040A010' AND SOPInstanceUID IN (SELECT SOPInstanceUID FROM sr)
), names AS (
    SELECT SOPInstanceUID, regexp_replace(seq_path, '/?0040A043\[0\]$', '') AS item, value
    FROM elements
    WHERE tag = '00080104' AND regexp_matches(seq_path, '(^|/)0040A043\[0\]$')
      AND SOPInstanceUID IN (SELECT SOPInstanceUID FROM sr)
), lines AS (
    SELECT i.SOPInstanceUID, i.seq_path, coalesce(n.value, '') AS heading, i.text,
           CAST(regexp_extract_all(i.seq_path, '\[(\d+)\]', 1) AS INTEGER[]) AS ord
    FROM items i
    LEFT JOIN rel r ON r.SOPInstanceUID = i.SOPInstanceUID AND r.seq_path = i.seq_path
    LEFT JOIN names n ON n.SOPInstanceUID = i.SOPInstanceUID AND n.item = i.parent
    WHERE coalesce(r.value, '') <> 'HAS OBS CONTEXT'
)
SELECT l.SOPInstanceUID AS report_key, sr.StudyInstanceUID, sr.PatientID,
       string_agg(CASE WHEN heading = '' THEN text ELSE upper(heading) || ': ' || text END,
                  chr(10) ORDER BY ord) AS text
FROM lines l JOIN sr USING (SOPInstanceUID)
GROUP BY l.SOPInstanceUID, sr.StudyInstanceUID, sr.PatientID
"""


def load_sr_reports(con: duckdb.DuckDBPyConnection) -> LoadResult:
    """Load the text of the catalog's DICOM Structured Reports into ``reports`` (key: the SR's
    SOPInstanceUID; study: its own), replacing those loaded before."""
    result = LoadResult(SR_SOURCE)
    if not has_table(con, "instances") or not has_table(con, "elements"):
        raise InputError("the catalog holds no crawl (no instances/elements): run curation crawl")
    REPORTS.ensure(con)
    REPORT_SKIPS.ensure(con)
    ((n_sr,),) = con.execute(
        "SELECT count(*) FROM instances WHERE Modality = 'SR' "
        "OR SOPClassUID LIKE '1.2.840.10008.5.1.4.1.1.88.%'"
    ).fetchall()
    try:
        con.execute("BEGIN")
        con.execute("DELETE FROM reports WHERE source = $s", {"s": SR_SOURCE})
        con.execute("DELETE FROM report_skips WHERE source = $s", {"s": SR_SOURCE})
        con.execute(
            f"""INSERT INTO reports
            SELECT report_key, 'SOPInstanceUID', StudyInstanceUID, PatientID, text, $src,
                   row_number() OVER (ORDER BY report_key), sha256(text), current_localtimestamp()
            FROM ({_SR_TEXT})""",
            {"src": SR_SOURCE},
        )
        n = con.execute(
            "SELECT count(*), count(StudyInstanceUID) FROM reports WHERE source = $s",
            {"s": SR_SOURCE},
        ).fetchall()[0]
        result.n_reports, result.n_resolved = int(n[0]), int(n[1])
        no_text = int(n_sr) - result.n_reports
        if no_text > 0:
            con.execute(
                "INSERT INTO report_skips VALUES ($src, NULL, 'empty_text', $msg, "
                "current_localtimestamp())",
                {"src": SR_SOURCE, "msg": f"{no_text} SR instance(s) hold no text content item"},
            )
            result.skipped["empty_text"] = no_text
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return result
