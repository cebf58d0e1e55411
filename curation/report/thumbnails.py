"""Thumbnails of flagged series: the middle slice as a PNG data URI (:mod:`curation.pixels.draw`).

This is the only part of the report that reads pixels, and only the middle slice of the few series
it shows. Series that may show identifying text in their pixels are never drawn: those that declare
``BurnedInAnnotation`` YES, secondary captures and screen saves, and any series a privacy rule
flagged (every rule tagged :data:`curation.qc.rule.PRIVACY`, whatever its id).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from curation.qc.rule import PRIVACY, tagged
from curation.report.figures import FINDINGS_SQL

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("curation.report")

#: Longest side of a thumbnail in pixels: enough to see an artifact, too small to read fine print.
SIZE = 160


@dataclass(frozen=True)
class Thumbnail:
    """One drawn (or undrawable) middle slice of a flagged series."""

    series_pseudonym: str
    patient_pseudonym: str | None
    site: str
    modality: str
    rules: str
    data_uri: str | None
    problem: str | None = None


#: Series whose pixels the report never draws, each with why (``$privacy_rules`` binds the ids of
#: the rules tagged :data:`curation.qc.rule.PRIVACY`). Thumbnails and series mosaics share it.
HIDDEN_SQL = f"""
    SELECT SeriesInstanceUID, 'a privacy rule flagged it (' || min(rule_id) || ')' AS why
    FROM ({FINDINGS_SQL})
    WHERE SeriesInstanceUID IS NOT NULL AND list_contains($privacy_rules, rule_id)
    GROUP BY SeriesInstanceUID
    UNION ALL
    SELECT DISTINCT SeriesInstanceUID, 'it declares burned-in annotation'
    FROM instances WHERE upper(trim(BurnedInAnnotation)) = 'YES'
    UNION ALL
    SELECT SeriesInstanceUID, 'a secondary capture or screen save'
    FROM series WHERE coalesce(SOPClassUID, '') LIKE '1.2.840.10008.5.1.4.1.1.7%'
"""


def privacy_rules() -> list[str]:
    """Ids of the rules whose findings keep a series' pixels out of the report."""
    return [r.id for r in tagged(PRIVACY)]


def _candidates_sql(limit: int) -> str:
    # Worst first: errors, then warnings, then infos; series in HIDDEN_SQL never drawn.
    return f"""
        WITH f AS ({FINDINGS_SQL}),
        flagged AS (
            SELECT SeriesInstanceUID,
                count(*) FILTER (WHERE severity = 'error') AS n_error,
                count(*) FILTER (WHERE severity = 'warning') AS n_warning,
                count(*) AS n_all,
                string_agg(DISTINCT rule_id, ', ' ORDER BY rule_id) AS rules
            FROM f WHERE SeriesInstanceUID IS NOT NULL GROUP BY SeriesInstanceUID
        )
        SELECT fl.SeriesInstanceUID, 'S-' || pseudonym(fl.SeriesInstanceUID) AS series_pseudonym,
            'P-' || pseudonym(s.PatientID) AS patient_pseudonym,
            coalesce(s.InstitutionName, '(no site)') AS site, coalesce(s.Modality, '?') AS modality,
            fl.rules
        FROM flagged fl JOIN series s USING (SeriesInstanceUID)
        WHERE fl.SeriesInstanceUID NOT IN (SELECT SeriesInstanceUID FROM ({HIDDEN_SQL}))
        ORDER BY n_error DESC, n_warning DESC, n_all DESC, fl.SeriesInstanceUID
        LIMIT {int(limit)}
    """


def flagged_series(con: duckdb.DuckDBPyConnection, limit: int = 12) -> list[Thumbnail]:
    """Thumbnails of the middle slice of the ``limit`` worst flagged series (see module doc).

    ``con`` needs the ``pseudonym`` macro (:func:`curation.pseudonym.install`). The slice is
    drawn by :func:`curation.pixels.draw.thumbnail` (windowed to its 1st-99th percentile). A
    series whose pixels cannot be read keeps its entry with ``problem`` set (the pixel reader's
    reason code), so the report says why it shows no picture.
    """
    from curation.pixels.draw import thumbnail

    rows = con.sql(_candidates_sql(limit), params={"privacy_rules": privacy_rules()}).fetchall()
    out = []
    # One slice per shown series (at most ``limit``), not a loop over the catalog.
    for uid, series, patient, site, modality, rules in rows:
        uri, problem = None, None
        try:
            png = thumbnail(con, uid, size=SIZE)
            uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        except Exception as exc:  # any reader or decoder failure: say so in the report, go on
            problem = f"pixels not shown: {getattr(exc, 'reason', type(exc).__name__)}"
            log.info("thumbnail of %s: %s", series, exc)
        out.append(Thumbnail(series, patient, site, modality, rules, uri, problem))
    return out
