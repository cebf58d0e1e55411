"""De-identifying a cohort: its files rewritten under a profile, a manifest pointing at them, audit.

:func:`deidentify` is the library entry point; ``curation deid`` is a thin layer over it. For the
cohort build in ``cohort`` (its ``provenance.json`` names the build), each file of the manifest
(one per SOP instance, the build's choice) is read, de-identified (:mod:`curation.deid.actions`),
inspected for burned-in text where the profile says (:mod:`curation.deid.pixels`) and written to
``out/dicom/<patient_key>/<study_key>/<series_key>/<instance_key>.dcm``; sources are never
modified. A file that cannot be de-identified safely is quarantined: not written, listed with a
stable reason in ``deid_files`` and ``out/quarantine.csv``. Then the de-identified manifest,
datalist, attrition and provenance are written by the cohort's own writer
(:func:`curation.cohort.manifest.write`), with the manifest columns the profile removes from the
files (InstitutionName...) dropped, and the run is recorded in ``deid_runs``/``deid_files``.

The key is the cohort's pseudonym key (a key file, ``CURATION_PSEUDONYM_KEY``, or the cohort
folder's ``pseudonym.key``), checked against the fingerprint the build recorded, so that the
pseudonyms in the de-identified files are the manifest's. It is never written or logged.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from curation import __version__, pseudonym
from curation.catalog import has_table
from curation.deid import actions, keys, pixels
from curation.deid.profile import Profile, load_profile
from curation.deid.standard import CID_7050, Option
from curation.deid.tables import COUNT_COLUMNS, DEID_FILES, DEID_TABLES
from curation.errors import CatalogError, InputError, writing

log = logging.getLogger("curation.deid")

#: Stable codes of ``deid_files.reason``, with what each means.
QUARANTINE_REASONS: dict[str, str] = {
    "unreadable": "the header cannot be parsed as DICOM",
    "pixel_decode": "pixels had to be inspected or rewritten but cannot be decoded",
    "pixel_encoding": "masked pixels cannot be written back in a valid encoding",
    "ocr_unavailable": "pixels had to be inspected for burned-in text, and OCR is not available",
    "ocr_text_remains": "OCR still reads text after masking",
    "write_failed": "the de-identified file could not be written",
}

#: Transfer syntaxes written as they are (pixel data untouched); any other uncompressed one
#: (big endian, deflated) is decoded and written as explicit VR little endian.
_NATIVE_AS_IS = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


@dataclass
class DeidResult:
    """What a run produced: its id, the audit rows, the manifest, where files went."""

    deid_id: int
    profile: Profile
    files: pl.DataFrame
    manifest: pl.DataFrame
    out_dir: Path
    paths: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n_written(self) -> int:
        """Files written de-identified."""
        return self.files.filter(pl.col("status") == "written").height

    @property
    def quarantined(self) -> pl.DataFrame:
        """Files quarantined: instance_key, series_key, reason, message."""
        return self.files.filter(pl.col("status") == "quarantined").select(
            "instance_key", "series_key", "reason", "message"
        )

    def __str__(self) -> str:
        reasons = Counter(self.quarantined["reason"].to_list())
        why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
        return (
            f"deid {self.deid_id} ({self.profile.name}): {self.n_written} of "
            f"{self.files.height} file(s) written to {self.out_dir}"
            + (f"; {self.quarantined.height} quarantined ({why})" if why else "")
        )


def _mark(ds: Any, profile: Profile, masked: bool, shifted: bool) -> None:
    """PatientIdentityRemoved, DeidentificationMethod (+ code sequence), and the related flags."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds.PatientIdentityRemoved = "YES"
    applied = ["basic", *profile.options] + (["clean_pixel_data"] if masked else [])
    ds.DeidentificationMethod = f"curation {__version__} profile {profile.name}"[:64]
    items = []
    for name in applied:
        code, meaning = CID_7050[name]
        item = Dataset()
        item.CodeValue = code
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if shifted else "REMOVED"
    if masked:
        ds.BurnedInAnnotation = "NO"


def _quarantine(task: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
    return {**_base_row(task), "status": "quarantined", "reason": reason, "message": message}


def _base_row(task: dict[str, Any]) -> dict[str, Any]:
    return {
        "file_key": task["file_key"],
        "instance_key": task["instance_key"],
        "series_key": task["series_key"],
        "patient_key": task["patient_key"],
        "status": None,
        "reason": None,
        "message": None,
        "out_path": None,
        **dict.fromkeys(COUNT_COLUMNS.values(), 0),
        "inspected": None,
        "ocr_ran": False,
        "n_masked": 0,
        "TransferSyntaxUID": None,
    }


def _to_explicit_little(ds: Any) -> None:
    """Re-encode a big-endian or deflated dataset as explicit VR little endian (pixels decoded)."""
    from pydicom.uid import ExplicitVRLittleEndian

    frames = pixels.decode_frames(ds) if "PixelData" in ds else None
    for _ in ds.iterall():  # every value decoded while the original encoding is known
        pass
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_original_encoding(False, True, ds.original_character_set)
    if frames is not None:
        pixels.write_pixels(ds, frames)


def deidentify_file(task: dict[str, Any]) -> dict[str, Any]:
    """De-identify one file (runs in a worker); returns its ``deid_files`` row (without deid_id).

    ``task`` carries the source path, the output path, the profile, the key and what the catalog
    knows (PatientID, flagged series); nothing of it is returned but pseudonyms and counts.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    profile: Profile = task["profile"]
    key: bytes = task["key"]
    try:
        # force: a dataset without the DICM preamble (older exports) is still DICOM; what is
        # not DICOM at all has no SOPInstanceUID and is refused below
        ds = pydicom.dcmread(task["path"], force=True)
        if "SOPInstanceUID" not in ds:
            raise InvalidDicomError("no SOPInstanceUID")
        ts = str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))
        ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(ts)
    except (
        InvalidDicomError,
        OSError,
        ValueError,
        EOFError,
        KeyError,
        TypeError,
        AttributeError,
    ) as exc:
        return _quarantine(task, "unreadable", f"header cannot be parsed: {type(exc).__name__}")
    row = _base_row(task)
    patient_id = str(ds.get("PatientID", "") or task["PatientID"] or "")
    inspect = pixels.inspection_reason(ds, profile, task["flagged"])
    row["inspected"] = inspect
    if inspect is not None and task["ocr_unavailable"]:
        return {
            **_quarantine(task, "ocr_unavailable", task["ocr_unavailable"]),
            "inspected": inspect,
        }
    shift = None
    if profile.has(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES):
        shift = keys.shift_days(patient_id, key, profile.max_shift_days, profile.keep_weekday)
    vocab = actions.Vocabulary.of(ds)
    ctx = actions.Context(profile, key, task["patient_key"], shift, vocab.pattern())
    try:
        if ts not in _NATIVE_AS_IS and not pydicom.uid.UID(ts).is_compressed:
            _to_explicit_little(ds)
        counts = actions.deidentify_dataset(ds, ctx)
        masked = 0
        ocr_ran = False
        if inspect is not None or pixels.regions_for(ds, profile):
            masked, ocr_ran = pixels.mask(ds, profile, run_ocr=inspect is not None)
    except pixels.PixelError as exc:
        return {**_quarantine(task, exc.reason, str(exc)), "inspected": inspect}
    _mark(ds, profile, masked > 0 or ocr_ran, shift is not None)
    meta = ds.file_meta
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    for tag in (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102):
        # source/sending/receiving AE titles and private information: who sent it, from where
        if tag in meta:
            del meta[tag]
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"CURATION_{__version__}"[:16]
    out = Path(task["out_root"]) / task["out_rel"]
    tmp = out.with_name(out.name + ".part")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, out)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        tmp.unlink(missing_ok=True)
        return {
            **_quarantine(task, "write_failed", f"cannot be written: {type(exc).__name__}"),
            "inspected": inspect,
        }
    row.update(
        {
            "status": "written",
            "out_path": task["out_rel"],
            "ocr_ran": ocr_ran,
            "n_masked": masked,
            "TransferSyntaxUID": str(meta.TransferSyntaxUID),
        }
    )
    for name, column in COUNT_COLUMNS.items():
        row[column] = int(counts.get(name, 0))
    return row


def _cohort(cohort: Path) -> tuple[dict[str, Any], pl.DataFrame, pl.DataFrame]:
    """The provenance, manifest and attrition of the cohort folder."""
    try:
        provenance = json.loads((cohort / "provenance.json").read_text())
        manifest = pl.read_parquet(cohort / "manifest.parquet")
        attrition = pl.read_csv(cohort / "attrition.csv")
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        raise InputError(
            f"{cohort}: not a cohort folder (provenance.json, manifest.parquet, attrition.csv "
            f"written by `curation cohort`): {exc}"
        ) from exc
    if "cohort_id" not in provenance:
        raise InputError(f"{cohort}/provenance.json: names no cohort build (cohort_id)")
    return provenance, manifest, attrition


def _key(cohort: Path, key_file: str | Path | None, provenance: dict[str, Any]) -> bytes:
    """The cohort's key, checked against the fingerprint its build recorded."""
    if (
        key_file is None
        and not os.environ.get(pseudonym.ENV_VAR)
        and not (cohort / pseudonym.KEY_FILE_NAME).is_file()
    ):
        raise InputError(
            f"{cohort}: no pseudonym key: pass the cohort's --key-file, set "
            f"{pseudonym.ENV_VAR}, or keep the cohort's {pseudonym.KEY_FILE_NAME}"
        )
    key, _ = pseudonym.cohort_key(key_file, cohort)
    want = (provenance.get("pseudonym") or {}).get("key_fingerprint")
    if want and pseudonym.fingerprint(key) != want:
        raise InputError(
            f"{cohort}: the key given is not the one the cohort was built with (fingerprint "
            f"{pseudonym.fingerprint(key)}, the build's {want}): its pseudonyms would not match "
            "the manifest's"
        )
    return key


def _flagged(con: duckdb.DuckDBPyConnection, profile: Profile) -> frozenset[str]:
    """Series with a finding of one of the profile's ``ocr_rules`` in the latest QC run that ran
    them, and series whose pixel metrics show at least ``min_text_aligned`` glyphs on a line (the
    measure ``pixel.burned_in_text`` reads, without the fence it sets over similar series: a
    series alone in its group still shows its text)."""
    rules = profile.burned_in.ocr_rules
    found: set[str] = set()
    if has_table(con, "pixel_metrics"):
        found.update(
            r[0]
            for r in con.execute(
                "SELECT SeriesInstanceUID FROM pixel_metrics WHERE text_aligned >= $n",
                {"n": profile.burned_in.min_text_aligned},
            ).fetchall()
        )
    if not rules or not has_table(con, "qc_findings"):
        return frozenset(found)
    rows = con.execute(
        """SELECT DISTINCT SeriesInstanceUID FROM qc_findings
        WHERE run_id = (SELECT max(run_id) FROM qc_findings WHERE list_contains($r, rule_id))
            AND list_contains($r, rule_id) AND SeriesInstanceUID IS NOT NULL""",
        {"r": list(rules)},
    ).fetchall()
    return frozenset(found | {r[0] for r in rows})


def _files(con: duckdb.DuckDBPyConnection, cohort_id: int, key: bytes) -> pl.DataFrame:
    """The cohort's files, as its manifest lists them (one per SOP instance), with pseudonyms."""
    if not has_table(con, "cohort_members"):
        raise CatalogError("the catalog has no cohort_members table: build the cohort first")
    pseudonym.install(con, key)
    files = con.sql(
        """SELECT m.patient_key, m.study_key, m.series_key, i.PatientID, i.path,
            pseudonym(i.path) AS file_key, pseudonym(i.SOPInstanceUID) AS instance_key,
            i.InstanceNumber
        FROM cohort_members m JOIN instances i USING (SeriesInstanceUID)
        WHERE m.cohort_id = $c
        QUALIFY row_number() OVER (PARTITION BY i.SOPInstanceUID ORDER BY i.path) = 1
        ORDER BY m.series_key, i.InstanceNumber, i.path""",
        params={"c": cohort_id},
    ).pl()
    if files.is_empty():
        n = con.execute(
            "SELECT count(*) FROM cohort_runs WHERE cohort_id = $c", {"c": cohort_id}
        ).fetchall()[0][0]
        if not n:
            raise CatalogError(f"the catalog holds no cohort build {cohort_id}")
    return files


def _record(
    con: duckdb.DuckDBPyConnection,
    cohort_id: int,
    profile: Profile,
    key: bytes,
    out: Path,
    rows: pl.DataFrame,
    seconds: float,
) -> int:
    for table in DEID_TABLES:
        table.ensure(con)
    con.execute("BEGIN TRANSACTION")
    try:
        did = int(con.sql("SELECT coalesce(max(deid_id), 0) + 1 FROM deid_runs").fetchall()[0][0])
        import pydicom

        con.execute(
            "INSERT INTO deid_runs VALUES ($d, $c, $p, $sha, $o, $pj, $v, $pv, $ocr, $kf, "
            "now()::TIMESTAMP, $out, $n, $nw, $nq, $s)",
            {
                "d": did,
                "c": cohort_id,
                "p": profile.name,
                "sha": profile.sha256,
                "o": [str(o) for o in profile.options],
                "pj": json.dumps(profile.to_dict()),
                "v": __version__,
                "pv": pydicom.__version__,
                "ocr": pixels.ocr_version(),
                "kf": pseudonym.fingerprint(key),
                "out": str(out),
                "n": rows.height,
                "nw": rows.filter(pl.col("status") == "written").height,
                "nq": rows.filter(pl.col("status") == "quarantined").height,
                "s": seconds,
            },
        )
        con.register("_deid_rows", rows.with_columns(pl.lit(did).alias("deid_id")))
        cols = ", ".join(f'"{c}"' for c in DEID_FILES.column_names)
        con.execute(f"INSERT INTO deid_files ({cols}) SELECT {cols} FROM _deid_rows")
        con.unregister("_deid_rows")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return did


def deidentified_manifest(
    manifest: pl.DataFrame, files: pl.DataFrame, profile: Profile
) -> pl.DataFrame:
    """The cohort's ``manifest`` pointing at the de-identified files of ``files`` (deid_files rows).

    ``dicom_files`` lists the written files (paths relative to the output folder, in the
    manifest's order), ``image`` is their series folder (which holds them alone: MONAI reads it as
    one series); a series with a quarantined file keeps its row with ``excluded_reason`` set, so
    the datalist leaves it out rather than feed a volume with a missing slice. Columns the profile
    removes from the files (InstitutionName...) are dropped.
    """
    per_series = (
        files.with_row_index("_order")
        .group_by("series_key")
        .agg(
            pl.col("out_path")
            .filter(pl.col("status") == "written")
            .sort_by(pl.col("_order").filter(pl.col("status") == "written"))
            .alias("_files"),
            pl.len().alias("_n"),
            (pl.col("status") == "quarantined").sum().alias("_q"),
        )
    )
    out = (
        manifest.drop(
            [c for c in ("dicom_files", "image", "excluded_reason") if c in manifest.columns]
        )
        .join(per_series, on="series_key", how="left")
        .with_columns(
            pl.col("_files").fill_null(pl.lit([], dtype=pl.List(pl.String))).alias("dicom_files"),
            pl.col("_files").list.first().str.replace(r"/[^/]*$", "").alias("image"),
            pl.when(pl.col("_q").fill_null(0) > 0)
            .then(
                pl.format(
                    "{} of {} file(s) quarantined by de-identification (quarantine.csv)",
                    pl.col("_q"),
                    pl.col("_n"),
                )
            )
            .otherwise(pl.lit(None, pl.String))
            .alias("excluded_reason"),
        )
        .drop("_files", "_n", "_q")
    )
    out = out.with_columns(
        pl.when(pl.col("excluded_reason").is_null()).then(pl.col("image")).alias("image")
    )
    n_out = out.filter(pl.col("excluded_reason").is_not_null()).height
    if n_out:
        log.warning(
            "%d series have quarantined files: kept in the manifest with excluded_reason, "
            "left out of the datalist",
            n_out,
        )
    return out.drop(removed_columns(out.columns, profile))


def removed_columns(columns: list[str], profile: Profile) -> list[str]:
    """Manifest columns named by a DICOM keyword the profile does not keep (InstitutionName...)."""
    from pydicom.datadict import tag_for_keyword

    out = []
    for c in columns:
        tag = tag_for_keyword(c)
        if tag is not None and actions.action_for(int(tag), profile) not in (None, "K"):
            out.append(c)
    return out


def deidentify(
    db: str | Path | duckdb.DuckDBPyConnection,
    cohort: str | Path,
    out_dir: str | Path,
    *,
    key_file: str | Path | None = None,
    profile: Profile | str | Path = "basic",
    workers: int = 1,
    volumes: bool = False,
    progress: bool = True,
) -> DeidResult:
    """De-identify the files of the cohort folder ``cohort`` into ``out_dir`` and record the run.

    Parameters
    ----------
    db
        The catalog the cohort was built from (path or open connection, left open).
    cohort
        The folder ``curation cohort`` wrote (provenance.json, manifest.parquet, attrition.csv).
    out_dir
        Where the de-identified files, manifest, datalist and quarantine list go.
    key_file
        The cohort's pseudonym key file; default: ``CURATION_PSEUDONYM_KEY`` or the cohort
        folder's ``pseudonym.key``. It must be the key the cohort was built with.
    profile
        A :class:`~curation.deid.profile.Profile`, a shipped profile's name (``basic``,
        ``research``) or a YAML profile file.
    workers
        Processes de-identifying files in parallel.
    volumes
        Also write ``volumes/<series_key>.nii.gz`` read from the de-identified files
        (:mod:`curation.deid.volumes`; the cohort's volume options), the manifest's ``image``.

    Raises
    ------
    InputError
        The cohort folder, the key or the profile cannot be used.
    CatalogError
        The catalog does not hold the cohort's build.
    OutputError
        ``out_dir`` cannot be written.
    """
    if not isinstance(db, duckdb.DuckDBPyConnection):
        from curation import catalog

        with catalog.opened(db) as opened:
            return deidentify(
                opened,
                cohort,
                out_dir,
                key_file=key_file,
                profile=profile,
                workers=workers,
                volumes=volumes,
                progress=progress,
            )
    con = db
    t0 = time.perf_counter()
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    cohort_dir, out = Path(cohort), Path(out_dir)
    if out.resolve() == cohort_dir.resolve():
        raise InputError(f"{out}: write the de-identified cohort to a folder of its own")
    provenance, manifest, attrition = _cohort(cohort_dir)
    key = _key(cohort_dir, key_file, provenance)
    files = _files(con, int(provenance["cohort_id"]), key)
    flagged = _flagged(con, prof)
    unavailable = pixels.ocr_unavailable()
    if unavailable:
        log.warning(
            "OCR is not available (%s): files whose pixels must be inspected for burned-in text "
            "are quarantined, not written",
            unavailable,
        )
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    base = {
        "profile": prof,
        "key": key,
        "flagged": flagged,
        "ocr_unavailable": unavailable,
        "out_root": str(out),
    }
    tasks = [
        base
        | {
            "path": r["path"],
            "PatientID": r["PatientID"],
            "file_key": r["file_key"],
            "instance_key": r["instance_key"],
            "series_key": r["series_key"],
            "patient_key": r["patient_key"],
            "out_rel": f"dicom/{r['patient_key']}/{r['study_key']}/{r['series_key']}/"
            f"{r['instance_key']}.dcm",
        }
        for r in files.iter_rows(named=True)
    ]
    rows = _run(tasks, workers, progress)
    table = pl.DataFrame(
        rows, schema={c.name: _polars_type(c.sql_type) for c in DEID_FILES.columns[1:]}
    )
    seconds = time.perf_counter() - t0
    did = _record(con, int(provenance["cohort_id"]), prof, key, out, table, seconds)
    new_manifest = deidentified_manifest(manifest, table, prof)
    if volumes:
        from curation.deid import volumes as deid_volumes

        out_of = dict(zip(table["file_key"], table["out_path"], strict=True))
        written = {
            p: str(out / out_of[k])
            for p, k in zip(files["path"], files["file_key"], strict=True)
            if out_of.get(k)
        }
        vols = deid_volumes.export(
            con, int(provenance["cohort_id"]), new_manifest, written, out, provenance.get("volumes")
        )
        with writing(out / "volumes.csv", pl.exceptions.PolarsError):
            vols.write_csv(out / "volumes.csv")
        new_manifest = (
            new_manifest.drop("image")
            .join(vols.rename({"error": "_verr"}), on="series_key", how="left")
            .with_columns(
                pl.coalesce(
                    "excluded_reason",
                    pl.when(pl.col("image").is_null()).then(
                        pl.lit("no volume: ") + pl.col("_verr").fill_null("not exported")
                    ),
                ).alias("excluded_reason")
            )
            .drop("_verr")
        )
    deid_prov = {
        **provenance,
        "deid": {
            "deid_id": did,
            "profile": prof.to_dict(),
            "profile_sha256": prof.sha256,
            "curation_version": __version__,
            "created_at": datetime.now().isoformat(timespec="seconds"),
            "ocr_engine": pixels.ocr_version(),
            "n_written": int(table.filter(pl.col("status") == "written").height),
            "n_quarantined": int(table.filter(pl.col("status") == "quarantined").height),
        },
    }
    from curation.cohort.manifest import write
    from curation.deid import scan

    # The spec's values (a criterion naming a series or a patient) reach the attrition table and
    # the provenance: what identifies a source file is redacted there too.
    needles = scan.identifiers(con, files["path"].to_list(), retained=scan.retained_by(prof))
    attrition = attrition.with_columns(
        pl.col(c).map_elements(lambda v: scan.redact(v, needles), return_dtype=pl.String)
        for c, t in attrition.schema.items()
        if t == pl.String
    )
    deid_prov = dict(scan.redact_data(deid_prov, needles))  # type: ignore[call-overload]
    paths = write(out, new_manifest, attrition, deid_prov)
    with writing(out / "quarantine.csv", pl.exceptions.PolarsError):
        table.filter(pl.col("status") == "quarantined").select(
            "instance_key", "series_key", "patient_key", "reason", "message"
        ).write_csv(out / "quarantine.csv")
    paths["quarantine"] = out / "quarantine.csv"
    result = DeidResult(did, prof, table, new_manifest, out, paths, time.perf_counter() - t0)
    log.log(logging.WARNING if result.quarantined.height else logging.INFO, "%s", result)
    return result


def _polars_type(sql: str) -> Any:
    return {
        "VARCHAR": pl.String,
        "INTEGER": pl.Int64,
        "BOOLEAN": pl.Boolean,
    }[sql]


def _run(tasks: list[dict[str, Any]], workers: int, progress: bool) -> list[dict[str, Any]]:
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="deid", unit="file", disable=not progress)
    rows = []
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for r in pool.map(deidentify_file, tasks, chunksize=8):
                rows.append(r)
                bar.update()
    else:
        for t in tasks:
            rows.append(deidentify_file(t))
            bar.update()
    bar.close()
    return rows
