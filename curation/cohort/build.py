"""Building a cohort: criteria -> attrition -> patient-level split -> manifest, all in the catalog.

:func:`build_cohort` is the library entry point; ``curation cohort`` is a thin layer over it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from curation import __version__, pseudonym
from curation.catalog import has_table, quote_ident, quote_literal
from curation.cohort import attrition as attr
from curation.cohort import split
from curation.cohort.manifest import MANIFEST_ATTRIBUTES, pseudonymous_files, write
from curation.cohort.spec import LABEL_SYNONYMS, CohortSpec, load_spec
from curation.cohort.tables import COHORT_ATTRITION, COHORT_MEMBERS, COHORT_TABLES
from curation.errors import CatalogError, InputError

log = logging.getLogger("curation.cohort")


@dataclass
class CohortResult:
    """What a build produced: ids, tables as polars frames, where files went, timings."""

    cohort_id: int
    spec: CohortSpec
    attrition: pl.DataFrame
    manifest: pl.DataFrame
    provenance: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def split_counts(self) -> pl.DataFrame:
        """Patients, studies and series per split."""
        return (
            self.manifest.group_by("split")
            .agg(
                pl.col("patient_key").n_unique().alias("n_patients"),
                pl.col("study_key").n_unique().alias("n_studies"),
                pl.len().alias("n_series"),
            )
            .sort("split")
        )

    def __str__(self) -> str:
        splits = ", ".join(f"{r['split']} {r['n_series']}" for r in self.split_counts.to_dicts())
        return (
            f"cohort {self.cohort_id} ({self.spec.name}): {self.manifest.height} series of "
            f"{self.manifest['patient_key'].n_unique()} patient(s) ({splits or 'none'}), "
            f"{len(self.spec.criteria)} criteria"
        )

    def __repr__(self) -> str:
        # The frames and the spec are long: a notebook printing the result wants the outcome.
        return (
            f"CohortResult(cohort_id={self.cohort_id}, spec={self.spec.name!r}, "
            f"series={self.manifest.height}, paths={sorted(self.paths)})"
        )


def catalog_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """An order-independent fingerprint of the cataloged files (id, size, mtime) and their count."""
    n, x = con.sql(
        "SELECT count(*), bit_xor(hash(file_id, size, mtime_ns)) FROM files WHERE status = 'ok'"
    ).fetchall()[0]
    return f"files={n};xor={x or 0:016x};duckdb={duckdb.__version__}"


def _qc_provenance(
    con: duckdb.DuckDBPyConnection, run_id: int | None, selected_by: str | None
) -> dict[str, Any] | None:
    if run_id is None:
        return None
    row = con.execute(
        "SELECT suite_name, suite_path, suite_sha256, curation_version FROM qc_runs WHERE run_id = $r",
        {"r": run_id},
    ).fetchall()[0]
    return {
        "run_id": run_id,
        "selected_by": selected_by,
        "suite_name": row[0],
        "suite_path": row[1],
        "suite_sha256": row[2],
        "curation_version": row[3],
    }


def build_cohort(
    db: str | Path | duckdb.DuckDBPyConnection,
    spec: CohortSpec | str | Path,
    out_dir: str | Path | None = None,
    *,
    key_file: str | Path | None = None,
    key: bytes | None = None,
    files: str | None = None,
) -> CohortResult:
    """Build the cohort ``spec`` from the catalog ``db`` and, with ``out_dir``, write it there.

    Parameters
    ----------
    db
        Catalog path or open connection (left open). ``harmonized_series`` is built if missing.
    spec
        A :class:`CohortSpec` or the path of a YAML spec.
    out_dir
        Where to write manifest.parquet/.csv, datalist.json, attrition.csv, provenance.json.
        None builds in the catalog only.
    key_file, key
        The pseudonym key (see :mod:`curation.pseudonym`); ``key`` bytes win over the file.
    files
        ``None``: ``dicom_files`` lists the archive's own paths (a warning says which identifiers
        its folder and file names carry); ``"link"``: pseudonymous symbolic links in
        ``out_dir/files/<series_key>/``; ``"copy"``: pseudonymous copies there (hard links where
        the file system allows). See :func:`curation.cohort.manifest.pseudonymous_files`.

    Raises
    ------
    InputError
        The spec is invalid or names what the catalog does not have.
    CatalogError
        The catalog lacks the crawl's tables, or QC findings / labels a criterion needs.
    """
    if not isinstance(db, duckdb.DuckDBPyConnection):
        from curation import catalog

        with catalog.opened(db) as opened:
            return build_cohort(opened, spec, out_dir, key_file=key_file, key=key, files=files)
    con = db
    loaded = spec if isinstance(spec, CohortSpec) else load_spec(spec)
    out = Path(out_dir) if out_dir is not None else None
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    if not has_table(con, "series"):
        raise CatalogError("the catalog has no series table: run `curation crawl` first")
    if not has_table(con, "harmonized_series"):
        from curation import harmonize

        harmonize.build(con)
        t["harmonize"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    compiled = attr.compile_spec(con, loaded)
    attr.evaluate(con, loaded, compiled)
    attrition = con.sql(attr.attrition_sql(loaded)).pl()
    attrition = attrition.with_columns(
        (pl.col("n_series").shift(1) - pl.col("n_series")).fill_null(0).alias("n_series_dropped"),
        (pl.col("n_patients").shift(1) - pl.col("n_patients"))
        .fill_null(0)
        .alias("n_patients_dropped"),
    )
    t["criteria"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _cohort_in AS SELECT * FROM _cohort_eval WHERE dropped_at IS NULL"
    )
    for stratum in loaded.split.stratify:
        if stratum.startswith("label:"):
            attr.check_labels(con, [stratum[6:]], f"{loaded.where or 'spec'}: split.stratify")
    split.assign(con, loaded.split, set(compiled.columns), has_table(con, "labels"))
    if key is None:
        # Only now: a spec the catalog cannot answer leaves no generated key in the out folder.
        key, _ = pseudonym.cohort_key(key_file, out)
    pseudonym.install(con, key)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _cohort_members AS
        SELECT m.SeriesInstanceUID, m.StudyInstanceUID, m.PatientID, s.split,
            pseudonym(m.PatientID) AS patient_key, pseudonym(m.StudyInstanceUID) AS study_key,
            pseudonym(m.SeriesInstanceUID) AS series_key
        FROM _cohort_in m JOIN _cohort_split s USING (PatientID) WHERE s.split IS NOT NULL"""
    )
    split.check_leakage(con, "_cohort_members")
    t["split"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    attrs = [c for c in MANIFEST_ATTRIBUTES if c in compiled.columns]
    label_sel, label_join, params = "", "", {}
    if loaded.labels:
        for i, name in enumerate(loaded.labels):
            where = (
                loaded.label_where[i]
                if i < len(loaded.label_where)
                else f"{loaded.where or 'spec'}: labels[{i}]"
            )
            attr.check_labels(con, [name], where)
        for i, lm in enumerate(loaded.label_maps):
            params[f"l{i}"] = lm.name
            number, p = lm.sql(f"l{i}.value", f"l{i}n")
            params.update(p)
            cast = "INTEGER" if lm.integer else "DOUBLE"
            label_sel += (
                f", l{i}.value AS {quote_ident('label_' + lm.name)}"
                f", CAST({number} AS {cast}) AS {quote_ident('target_' + lm.name)}"
            )
            # One value per series: its own label before its study's, then by source, so that
            # labels from several sources (report truth, a labeler) never repeat a manifest row.
            label_join += f""" LEFT JOIN (
                SELECT m.SeriesInstanceUID,
                    first(l.value ORDER BY l.SeriesInstanceUID IS NULL, l.source NULLS LAST, l.value)
                        AS value,
                FROM _cohort_members m JOIN {_CANONICAL_LABELS} l ON l.label = $l{i}
                    AND (l.SeriesInstanceUID = m.SeriesInstanceUID
                         OR (l.SeriesInstanceUID IS NULL AND l.StudyInstanceUID = m.StudyInstanceUID))
                GROUP BY 1) l{i} USING (SeriesInstanceUID)"""
    manifest = con.sql(
        f"""SELECT m.patient_key, m.study_key, m.series_key, m.split,
            {", ".join(_manifest_column(c) for c in attrs)}{label_sel}, f.dicom_files
        FROM _cohort_members m
        JOIN harmonized_series h USING (SeriesInstanceUID)
        JOIN (SELECT SeriesInstanceUID, list(path ORDER BY InstanceNumber, path) AS dicom_files
              FROM (
                  -- one file per SOP instance: a copy of the series elsewhere in the archive
                  -- would otherwise feed every image twice to training (instance.duplicate_sop)
                  SELECT SeriesInstanceUID, InstanceNumber, path FROM instances
                  WHERE SeriesInstanceUID IN (SELECT SeriesInstanceUID FROM _cohort_members)
                  QUALIFY row_number() OVER (PARTITION BY SOPInstanceUID ORDER BY path) = 1)
              GROUP BY 1) f USING (SeriesInstanceUID)
        {label_join}
        ORDER BY m.split, m.patient_key, m.study_key, h.SeriesNumber, m.series_key""",
        params=params,
    ).pl()
    _warn_conflicting_labels(con, loaded, params)
    if files is not None:
        if out is None:
            raise InputError("pseudonymous files (files='link' or 'copy') need an output folder")
        manifest = pseudonymous_files(manifest, out, files)
    else:
        _warn_identifying_paths(con)
    manifest = _series_folders(con, manifest, pseudonymous=files is not None)
    t["manifest"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    cohort_id = _record(con, loaded, attrition, compiled.qc_run_id, key, out)
    counts = con.sql(
        "SELECT count(DISTINCT PatientID), count(DISTINCT StudyInstanceUID), count(*) FROM _cohort_members"
    ).fetchall()[0]
    provenance = {
        "cohort_id": cohort_id,
        "name": loaded.name,
        "curation_version": __version__,
        "created_at": datetime.now().isoformat(timespec="seconds"),
        "spec": loaded.to_dict(),
        "spec_sha256": loaded.sha256,
        "qc_run": _qc_provenance(con, compiled.qc_run_id, compiled.qc_selected_by),
        "catalog_fingerprint": catalog_fingerprint(con),
        "pseudonym": {
            "algorithm": "HMAC-SHA256",
            "hex_digits": pseudonym.N_HEX,
            "key_fingerprint": pseudonym.fingerprint(key),
        },
        "counts": {"patients": counts[0], "studies": counts[1], "series": counts[2]},
    }
    t["record"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    attrition = datalist_step(con, cohort_id, loaded, attrition, manifest, provenance)
    paths = write(out, manifest, attrition, provenance) if out is not None else {}
    t["write"] = time.perf_counter() - t1
    if out is not None:
        con.execute(
            "UPDATE cohort_runs SET out_dir = $o WHERE cohort_id = $c",
            {"o": str(out), "c": cohort_id},
        )
    return CohortResult(cohort_id, loaded, attrition, manifest, provenance, paths, t)


#: The labels table with its values in canonical form (``negated`` read as ``negative``).
_CANONICAL_LABELS = (
    "(SELECT * REPLACE (CASE value "
    + " ".join(
        f"WHEN {quote_literal(k)} THEN {quote_literal(v)}" for k, v in LABEL_SYNONYMS.items()
    )
    + " ELSE value END AS value) FROM labels)"
)


def _warn_conflicting_labels(
    con: duckdb.DuckDBPyConnection, spec: CohortSpec, params: dict[str, Any]
) -> None:
    """Warn when a series' label has several values (sources disagree): the first is used."""
    for i, name in enumerate(spec.labels):
        n = con.execute(
            f"""SELECT count(*) FROM (
                SELECT m.SeriesInstanceUID FROM _cohort_members m JOIN {_CANONICAL_LABELS} l
                    ON l.label = $n AND (l.SeriesInstanceUID = m.SeriesInstanceUID
                        OR (l.SeriesInstanceUID IS NULL AND l.StudyInstanceUID = m.StudyInstanceUID))
                GROUP BY 1 HAVING count(DISTINCT l.value) > 1)""",
            {"n": params.get(f"l{i}", name)},
        ).fetchall()[0][0]
        if n:
            log.warning(
                "%d series have several values of label %r (the labels table holds rows from "
                "more than one source that disagree); the manifest takes the series' own label "
                "before its study's, then the first source by name",
                n,
                name,
            )


#: The attrition step of series the datalist cannot point at.
DATALIST_STEP = "exclude series without a loadable image (see the manifest's excluded_reason)"


def _series_folders(
    con: duckdb.DuckDBPyConnection, manifest: pl.DataFrame, *, pseudonymous: bool
) -> pl.DataFrame:
    """``manifest`` with ``image``: the folder holding the series' files and nothing else.

    MONAI (PydicomReader, ITKReader) and SimpleITK read a folder as one series. Pseudonymous
    files are one folder per series; the archive's own folder is used where it holds exactly
    the series' files (every file the crawl saw there, and no copy of one); otherwise ``image``
    is NULL and ``excluded_reason`` says why.
    """
    if pseudonymous:
        folders = manifest["dicom_files"].list.first().str.replace(r"/[^/]*$", "")
        return manifest.with_columns(
            folders.alias("image"), pl.lit(None, pl.String).alias("excluded_reason")
        )
    con.register("_m_files", manifest.select("series_key", "dicom_files"))
    try:
        checked = con.sql(
            r"""WITH f AS (
                SELECT series_key, unnest(dicom_files) AS path FROM _m_files),
            d AS (
                SELECT series_key, count(DISTINCT regexp_replace(path, '/[^/]*$', '')) AS n_dirs,
                    any_value(regexp_replace(path, '/[^/]*$', '')) AS folder, count(*) AS n_files
                FROM f GROUP BY 1),
            inside AS (
                SELECT d.series_key, count(fl.path) AS n_there
                FROM d JOIN files fl ON regexp_replace(fl.path, '/[^/]*$', '') = d.folder
                WHERE d.n_dirs = 1 GROUP BY 1)
            SELECT d.series_key,
                CASE WHEN d.n_dirs = 1 AND i.n_there = d.n_files THEN d.folder END AS image,
                CASE WHEN d.n_dirs > 1 THEN 'its files lie in ' || d.n_dirs || ' folders'
                     WHEN coalesce(i.n_there, 0) <> d.n_files
                     THEN 'its folder holds ' || (coalesce(i.n_there, 0) - d.n_files)
                          || ' other file(s)'
                END || ' (no folder to read as one image): build with --files link or --volumes'
                    AS excluded_reason
            FROM d LEFT JOIN inside i USING (series_key)"""
        ).pl()
    finally:
        con.unregister("_m_files")
    return manifest.join(checked, on="series_key", how="left")


def _manifest_column(name: str) -> str:
    """SELECT item of a harmonized attribute in the manifest: the site as its label, not its name."""
    if name == "InstitutionName":
        return f"{pseudonym.site_sql('h.InstitutionName')} AS site"
    return "h." + quote_ident(name)


def datalist_step(
    con: duckdb.DuckDBPyConnection,
    cohort_id: int,
    spec: CohortSpec,
    attrition: pl.DataFrame,
    manifest: pl.DataFrame,
    provenance: dict[str, Any],
) -> pl.DataFrame:
    """``attrition`` with a last step for the series ``excluded_reason`` keeps out of the datalist.

    They stay in the manifest (with the reason) and in ``cohort_members``; the step is recorded
    in ``cohort_attrition`` and ``cohort_exclusions`` (replacing an earlier one of this build, as
    when volumes are exported after the build) and the provenance counts the datalist.
    """
    step = len(spec.steps) + 1
    attrition = attrition.filter(pl.col("step") < step)
    kept = manifest.filter(pl.col("excluded_reason").is_null())
    provenance["counts"]["datalist_series"] = kept.height
    con.execute(
        "DELETE FROM cohort_attrition WHERE cohort_id = $c AND step >= $s",
        {"c": cohort_id, "s": step},
    )
    con.execute(
        "DELETE FROM cohort_exclusions WHERE cohort_id = $c AND step >= $s",
        {"c": cohort_id, "s": step},
    )
    if kept.height == manifest.height:
        return attrition
    last = attrition.row(-1, named=True)
    n_patients = kept["patient_key"].n_unique()
    row = pl.DataFrame(
        {
            "step": [step],
            "criterion": [DATALIST_STEP],
            "n_patients": [n_patients],
            "n_studies": [kept["study_key"].n_unique()],
            "n_series": [kept.height],
            "n_series_dropped": [last["n_series"] - kept.height],
            "n_patients_dropped": [last["n_patients"] - n_patients],
        }
    )
    attrition = pl.concat([attrition, row.cast(attrition.schema)])
    con.register("_dl_row", row.with_columns(pl.lit(cohort_id).alias("cohort_id")))
    con.register("_dl_out", manifest.filter(pl.col("excluded_reason").is_not_null()))
    try:
        cols = ", ".join(f'"{c}"' for c in COHORT_ATTRITION.column_names)
        con.execute(f"INSERT INTO cohort_attrition ({cols}) SELECT {cols} FROM _dl_row")
        con.execute(
            """INSERT INTO cohort_exclusions
            SELECT $c, m.SeriesInstanceUID, m.StudyInstanceUID, m.PatientID, $s, $t
            FROM cohort_members m JOIN _dl_out o USING (series_key) WHERE m.cohort_id = $c""",
            {"c": cohort_id, "s": step, "t": DATALIST_STEP},
        )
    finally:
        con.unregister("_dl_row")
        con.unregister("_dl_out")
    n = manifest.height - kept.height
    log.warning(
        "%d of %d series have no loadable image and are left out of the datalist "
        "(manifest.excluded_reason says why)",
        n,
        manifest.height,
    )
    return attrition


def identifying_paths(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How many manifest file paths carry each identifier of their own instance in their text.

    PatientID, AccessionNumber (at least 4 characters, shorter ones match anything) and StudyDate
    (``YYYYMMDD`` or ``YYYY-MM-DD``), counted over the instances of ``_cohort_members``, plus
    ``any``: paths with at least one.
    """
    row = con.sql(
        """WITH p AS (
            SELECT contains(i.path, m.PatientID) AS pid,
                length(i.AccessionNumber) >= 4 AND contains(i.path, i.AccessionNumber) AS acc,
                i.StudyDate IS NOT NULL AND (contains(i.path, strftime(i.StudyDate, '%Y%m%d'))
                    OR contains(i.path, strftime(i.StudyDate, '%Y-%m-%d'))) AS day
            FROM _cohort_members m JOIN instances i USING (SeriesInstanceUID))
        SELECT count(*) FILTER (WHERE pid), count(*) FILTER (WHERE acc),
            count(*) FILTER (WHERE day), count(*) FILTER (WHERE pid OR acc OR day), count(*)
        FROM p"""
    ).fetchall()[0]
    return dict(zip(("PatientID", "AccessionNumber", "StudyDate", "any", "all"), row, strict=True))


def _warn_identifying_paths(con: duckdb.DuckDBPyConnection) -> None:
    found = identifying_paths(con)
    if not found["any"]:
        return
    which = ", ".join(
        f"{k} in {found[k]}" for k in ("PatientID", "AccessionNumber", "StudyDate") if found[k]
    )
    log.warning(
        "%d of the manifest's %d file paths carry identifiers in the archive's folder and file "
        "names (%s); pass --files link (pseudonymous symbolic links) or --files copy "
        "(pseudonymous copies) to give the training job paths without them, or export "
        "--volumes. The DICOM headers themselves still hold the identifiers.",
        found["any"],
        found["all"],
        which,
    )


def _record(
    con: duckdb.DuckDBPyConnection,
    spec: CohortSpec,
    attrition: pl.DataFrame,
    qc_run_id: int | None,
    key: bytes,
    out: Path | None,
) -> int:
    """Write the build's rows to cohort_runs, cohort_attrition, cohort_exclusions, cohort_members."""
    for table in COHORT_TABLES:
        table.ensure(con)
    con.execute("BEGIN TRANSACTION")
    try:
        cid = int(
            con.sql("SELECT coalesce(max(cohort_id), 0) + 1 FROM cohort_runs").fetchall()[0][0]
        )
        counts = con.sql(
            "SELECT count(DISTINCT PatientID), count(DISTINCT StudyInstanceUID), count(*) FROM _cohort_members"
        ).fetchall()[0]
        con.execute(
            """INSERT INTO cohort_runs VALUES ($c, $n, $spec, $sha, $v, now()::TIMESTAMP, $q, $fp, $kf,
            $np, $ns, $nse, $o)""",
            {
                "c": cid,
                "n": spec.name,
                "spec": json.dumps(spec.to_dict()),
                "sha": spec.sha256,
                "v": __version__,
                "q": qc_run_id,
                "fp": catalog_fingerprint(con),
                "kf": pseudonym.fingerprint(key),
                "np": counts[0],
                "ns": counts[1],
                "nse": counts[2],
                "o": str(out) if out else None,
            },
        )
        con.register("_cohort_attr", attrition.with_columns(pl.lit(cid).alias("cohort_id")))
        cols = ", ".join(f'"{c}"' for c in COHORT_ATTRITION.column_names)
        con.execute(f"INSERT INTO cohort_attrition ({cols}) SELECT {cols} FROM _cohort_attr")
        con.unregister("_cohort_attr")
        con.execute(
            """INSERT INTO cohort_exclusions
            SELECT $c, e.SeriesInstanceUID, e.StudyInstanceUID, e.PatientID, e.dropped_at, a.criterion
            FROM _cohort_eval e JOIN cohort_attrition a ON a.cohort_id = $c AND a.step = e.dropped_at""",
            {"c": cid},
        )
        cols = ", ".join(f'"{c}"' for c in COHORT_MEMBERS.column_names if c != "cohort_id")
        con.execute(
            f"INSERT INTO cohort_members SELECT $c, {cols} FROM _cohort_members", {"c": cid}
        )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return cid
