"""Thumbnails of flagged series: the middle slice, windowed, downsampled, as a PNG data URI.

This is the only part of the report that reads pixels, and only the middle instance of the few series
it shows. Series that may show identifying text in their pixels are never drawn: those that declare
``BurnedInAnnotation`` YES, secondary captures and screen saves, and any series a privacy rule
flagged (rule ids containing ``burned``, ``phi`` or ``secondary_capture``).
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from curation.report.figures import FINDINGS_SQL

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("curation.report")

#: Longest side of a thumbnail in pixels: enough to see an artifact, too small to read fine print.
SIZE = 160

_PRIVACY_RULES = (
    "(rule_id LIKE '%burned%' OR rule_id LIKE '%phi%' OR rule_id LIKE '%secondary_capture%')"
)


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


def _candidates_sql(limit: int) -> str:
    # Worst first: errors, then warnings, then infos; privacy-flagged series never drawn.
    return f"""
        WITH f AS ({FINDINGS_SQL}),
        flagged AS (
            SELECT SeriesInstanceUID,
                count(*) FILTER (WHERE severity = 'error') AS n_error,
                count(*) FILTER (WHERE severity = 'warning') AS n_warning,
                count(*) AS n_all,
                string_agg(DISTINCT rule_id, ', ' ORDER BY rule_id) AS rules,
                bool_or({_PRIVACY_RULES}) AS privacy
            FROM f WHERE SeriesInstanceUID IS NOT NULL GROUP BY SeriesInstanceUID
        ), chosen AS (
            SELECT fl.*, s.PatientID, s.InstitutionName, s.Modality
            FROM flagged fl JOIN series s USING (SeriesInstanceUID)
            WHERE NOT fl.privacy AND coalesce(s.SOPClassUID, '') NOT LIKE '1.2.840.10008.5.1.4.1.1.7%'
            ORDER BY n_error DESC, n_warning DESC, n_all DESC, SeriesInstanceUID
            LIMIT {int(limit)}
        ), ranked AS (
            SELECT i.SeriesInstanceUID, i.path, i.NumberOfFrames, i.BurnedInAnnotation,
                row_number() OVER (
                    PARTITION BY i.SeriesInstanceUID
                    ORDER BY i.InstanceNumber NULLS LAST, i.ImagePositionPatient[3], i.SOPInstanceUID
                ) AS k,
                count(*) OVER (PARTITION BY i.SeriesInstanceUID) AS n
            FROM instances i JOIN chosen c USING (SeriesInstanceUID)
            WHERE i.Rows > 0
        )
        SELECT 'S-' || pseudonym(c.SeriesInstanceUID) AS series_pseudonym,
            'P-' || pseudonym(c.PatientID) AS patient_pseudonym,
            coalesce(c.InstitutionName, '(no site)') AS site, coalesce(c.Modality, '?') AS modality,
            c.rules, r.path, r.NumberOfFrames
        FROM chosen c JOIN ranked r USING (SeriesInstanceUID)
        WHERE r.k = (r.n + 1) // 2
            AND upper(trim(coalesce(r.BurnedInAnnotation, ''))) <> 'YES'
        ORDER BY c.n_error DESC, c.n_warning DESC, c.n_all DESC, c.SeriesInstanceUID
    """


def to_png_data_uri(pixels: np.ndarray, size: int = SIZE) -> str:
    """A 2-D (or RGB) array as a windowed, downsampled PNG ``data:`` URI.

    Grey images are windowed to their 1st-99th percentile, which shows anatomy for CT and MR alike
    without knowing the modality's window.
    """
    from PIL import Image

    arr = np.asarray(pixels)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        img = Image.fromarray(arr[..., :3].astype(np.uint8), mode="RGB")
    else:
        values = arr.astype(np.float64)
        lo, hi = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
        scaled = np.clip((values - lo) / max(hi - lo, 1e-9), 0, 1) * 255
        img = Image.fromarray(scaled.astype(np.uint8), mode="L")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _middle_slice(path: str, n_frames: int | None) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_rescale

    ds = pydicom.dcmread(path, force=True)
    arr = ds.pixel_array
    if (n_frames or 1) > 1:
        arr = arr[len(arr) // 2]
    if getattr(ds, "SamplesPerPixel", 1) == 1:
        arr = apply_rescale(arr, ds)
    return np.asarray(arr)


def flagged_series(con: duckdb.DuckDBPyConnection, limit: int = 12) -> list[Thumbnail]:
    """Thumbnails of the middle slice of the ``limit`` worst flagged series (see module doc).

    ``con`` needs the ``pseudonym`` macro (:func:`curation.report.pseudonyms.install`). A series whose
    pixels cannot be decoded (an unsupported compression, a truncated file) keeps its entry with
    ``problem`` set, so the report says why it shows no picture.
    """
    rows = con.sql(_candidates_sql(limit)).fetchall()
    out = []
    # One file per shown series (at most ``limit``), not a loop over the catalog.
    for series, patient, site, modality, rules, path, n_frames in rows:
        uri, problem = None, None
        try:
            uri = to_png_data_uri(_middle_slice(path, n_frames))
        except Exception as exc:  # any decoder failure: say so in the report, keep going
            problem = f"pixels not shown: {type(exc).__name__}"
            log.info("thumbnail of %s: %s", series, exc)
        out.append(Thumbnail(series, patient, site, modality, rules, uri, problem))
    return out
