"""Building the harmonized tables (:mod:`curation.harmonize.tables`), set-based in DuckDB.

:func:`build` runs named steps: it pivots the elements the field declarations read
(:data:`fields.RAW`) out of ``elements`` in one grouped scan, gathers per-frame gradients and item
times, reads the few Siemens CSA items from the files that need them
(:mod:`curation.harmonize.csa`), then rebuilds each table from its declared select, which
evaluates every declared field and classification as SQL. No Python loop runs over catalog rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import duckdb

from curation import catalog
from curation.errors import CatalogError
from curation.harmonize import csa
from curation.harmonize.fields import RAW
from curation.harmonize.tables import HARMONIZED_IMAGES, HARMONIZED_SERIES

log = logging.getLogger("curation.harmonize")

#: The staging tables the steps fill for the tables' selects; dropped at the end of a build.
STAGING = ("_h_first", "_h_raw", "_h_frame_grad", "_h_times", "_h_csa", "_h_diff")


def _raw_aggregates() -> tuple[str, str]:
    """(aggregate list, element prefilter) for pivoting :data:`RAW` out of elements."""
    aggs, public, private = [], set(), set()
    for r in RAW:
        depth = "" if r.nested else " AND seq_path = ''"
        if r.creator is None:
            cond = f"tag = '{r.tag}' AND private_creator IS NULL{depth}"
            public.add(r.tag)
        else:
            cond = f"private_creator = '{r.creator}' AND private_element = '{r.tag}'{depth}"
            private.add(r.tag)
        aggs.append(f'arg_min(value, seq_path) FILTER (WHERE {cond}) AS "{r.name}"')
    pre = (
        f"(tag IN ({', '.join(repr(t) for t in sorted(public))}) "
        f"OR private_element IN ({', '.join(repr(t) for t in sorted(private))}))"
    )
    return ", ".join(aggs), pre


def _stage_first_and_raw(con: duckdb.DuckDBPyConnection) -> None:
    """``_h_first``: each series' first instance; ``_h_raw``: the RAW elements of MR files."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _h_first AS
        SELECT SeriesInstanceUID,
            arg_min(file_id, struct_pack(n := coalesce(InstanceNumber, 0), p := path)) AS file_id,
            avg(CASE WHEN list_contains(ImageType, 'LOCALIZER') THEN 1.0 ELSE 0.0 END) AS localizer_fraction
        FROM instances WHERE SeriesInstanceUID IS NOT NULL GROUP BY SeriesInstanceUID"""
    )
    aggs, pre = _raw_aggregates()
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _h_raw AS
        SELECT file_id, {aggs}
        FROM elements
        WHERE file_id IN (SELECT file_id FROM instances WHERE Modality = 'MR') AND {pre}
        GROUP BY file_id"""
    )


def _stage_frames(con: duckdb.DuckDBPyConnection) -> None:
    """``_h_frame_grad``: per-frame diffusion gradients; ``_h_times``: item acquisition times."""
    con.execute(
        r"""CREATE OR REPLACE TEMP TABLE _h_frame_grad AS
        SELECT file_id,
            CAST(regexp_extract(seq_path, '^52009230\[(\d+)\]', 1) AS INTEGER) AS frame_index,
            arg_min(value, seq_path) AS diffusion_grad
        FROM elements
        WHERE tag = '00189089' AND starts_with(seq_path, '52009230[')
        GROUP BY ALL"""
    )
    # Acquisition times of the items of the first object of each series: per-frame times of
    # Siemens XA objects, per-slice times of UIH mosaics.
    con.execute(
        r"""CREATE OR REPLACE TEMP TABLE _h_times AS
        WITH x AS (
            SELECT file_id,
                CAST(regexp_extract(seq_path, '^[0-9A-F]{8}\[(\d+)\]', 1) AS INTEGER) AS idx,
                min(epoch_us(coalesce(try_strptime(trim(value), '%Y%m%d%H%M%S.%f'),
                                      try_strptime(trim(value), '%Y%m%d%H%M%S')))) / 1e6 AS t
            FROM elements
            WHERE file_id IN (SELECT file_id FROM _h_first)
              AND ((tag = '00189074' AND regexp_matches(seq_path, '^52009230\[\d+\]/00209111\[0\]$'))
                OR (tag = '0008002A' AND regexp_matches(seq_path, '^00651051\[\d+\]$')))
            GROUP BY ALL
        )
        SELECT file_id, list(round(t - m, 6) ORDER BY idx) AS item_times_s
        FROM x JOIN (SELECT file_id, min(t) AS m FROM x GROUP BY file_id) USING (file_id)
        GROUP BY file_id HAVING count(*) > 1"""
    )


def _stage_diffusion(con: duckdb.DuckDBPyConnection) -> None:
    """``_h_diff``: per series, the b-value and gradient of each volume (from harmonized_images)."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _h_diff AS
        WITH ref AS (
            SELECT SeriesInstanceUID,
                arg_min(position_mm, struct_pack(n := coalesce(InstanceNumber, 0), f := frame_index)) AS ref_pos,
                max(b_value_s_mm2) AS max_b
            FROM harmonized_images GROUP BY SeriesInstanceUID
        )
        SELECT h.SeriesInstanceUID, any_value(ref.max_b) AS max_b_value_s_mm2, count(*) AS n_volumes,
            list(h.b_value_s_mm2 ORDER BY h.InstanceNumber, h.frame_index) AS b_values,
            list(h.diffusion_gradient ORDER BY h.InstanceNumber, h.frame_index) AS gradients
        FROM harmonized_images h JOIN ref USING (SeriesInstanceUID)
        WHERE h.position_mm IS NOT DISTINCT FROM ref.ref_pos
        GROUP BY h.SeriesInstanceUID"""
    )


def _series(con: duckdb.DuckDBPyConnection) -> None:
    _stage_diffusion(con)
    HARMONIZED_SERIES.rebuild(con)


def build(db: str | Path | duckdb.DuckDBPyConnection, *, read_csa: bool = True) -> dict[str, float]:
    """(Re)build ``harmonized_images`` and ``harmonized_series`` in the catalog.

    Parameters
    ----------
    db
        The catalog: a path or an open connection (left open).
    read_csa
        Read the Siemens CSA image header from the files of Siemens MR series that need it
        (phase-encoding polarity, b-values missing from public tags). False keeps to the catalog.

    Returns
    -------
    dict
        Seconds per step, for the curious.

    Raises
    ------
    CatalogError
        The catalog lacks the crawl's tables.
    """
    steps: tuple[tuple[str, Callable[[duckdb.DuckDBPyConnection], None]], ...] = (
        ("pivot", _stage_first_and_raw),
        ("frames", _stage_frames),
        ("csa", partial(_read_csa, enabled=read_csa)),
        ("images", HARMONIZED_IMAGES.rebuild),
        ("series", _series),
    )
    timings: dict[str, float] = {}
    with catalog.opened(db) as con:
        catalog.require(con, "instances", "elements", "series", "frames")
        for name, step in steps:
            t0 = time.perf_counter()
            step(con)
            timings[name] = time.perf_counter() - t0
        for t in STAGING:
            con.execute(f"DROP TABLE IF EXISTS {t}")
    log.info("harmonized tables built: %s", {k: round(v, 2) for k, v in timings.items()})
    return timings


def _read_csa(con: duckdb.DuckDBPyConnection, enabled: bool) -> None:
    """Fill ``_h_csa`` with the CSA items of the Siemens MR files that need them."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _h_csa (file_id UBIGINT, csa_pe_positive BIGINT,
        csa_b_value DOUBLE, csa_gradient DOUBLE[3])"""
    )
    if not enabled:
        return
    with_csa = """SELECT DISTINCT e.file_id FROM elements e
        WHERE e.private_creator = 'SIEMENS CSA HEADER' AND e.private_element = '0029xx10'
          AND e.seq_path = ''"""
    firsts = f"""SELECT f.file_id, i.path FROM _h_first f JOIN instances i USING (file_id)
        WHERE i.Modality = 'MR' AND f.file_id IN ({with_csa})"""
    try:
        table = csa.read_csa(con, firsts)
    except duckdb.Error as exc:
        raise CatalogError(
            f"cannot list the Siemens files to read CSA headers from: {exc}"
        ) from exc
    con.register("_h_csa_part", table)
    con.execute("INSERT INTO _h_csa SELECT * FROM _h_csa_part")
    con.unregister("_h_csa_part")
    # Diffusion series whose b-values are only in CSA: read every instance.
    rest = f"""SELECT i.file_id, i.path FROM instances i
        JOIN _h_first f USING (SeriesInstanceUID)
        JOIN _h_csa c ON c.file_id = f.file_id
        LEFT JOIN _h_raw r ON r.file_id = i.file_id
        WHERE c.csa_b_value IS NOT NULL AND r.sie_b IS NULL AND i.file_id <> f.file_id
          AND i.file_id IN ({with_csa})"""
    table = csa.read_csa(con, rest)
    if table.num_rows:
        con.register("_h_csa_part", table)
        con.execute("INSERT INTO _h_csa SELECT * FROM _h_csa_part")
        con.unregister("_h_csa_part")
