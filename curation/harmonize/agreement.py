"""Agreement of ``harmonized_series`` with an independent reader: dcm2niix's BIDS sidecars.

The real corpus ships, per source folder, dcm2niix's JSON sidecars and ``.bval``/``.bvec`` files
(``<source>/Ref/``). :func:`compare` matches each sidecar to its series (same source folder and
SeriesNumber; ties broken by SeriesDescription and acquisition time), then compares every field
both produce through :data:`COMPARED` (BIDS key -> our column, unit conversion, tolerance).

Gradient directions are compared in dcm2niix's frame: image axes with the row axis flipped
(NIfTI stores rows bottom-up), GE vectors (already in the logical frame) with x negated; a vector and
its negative describe the same diffusion encoding, so the sign of the whole vector is not compared.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl


@dataclass(frozen=True)
class Compared:
    """How one BIDS key compares with one of our columns."""

    bids: str
    column: str
    kind: str = "number"  # number, text, list
    scale: float = 1.0  # ours x scale = BIDS unit
    abs_tol: float = 1e-6
    rel_tol: float = 1e-4


#: BIDS key (dcm2niix) -> our column. Scales convert our units (ms, MHz, ...) to BIDS (s, ...).
COMPARED: tuple[Compared, ...] = (
    Compared("Modality", "Modality", "text"),
    Compared("Manufacturer", "vendor", "text"),
    Compared("ManufacturersModelName", "ManufacturerModelName", "text"),
    Compared("SeriesNumber", "SeriesNumber"),
    Compared("SeriesDescription", "SeriesDescription", "text"),
    Compared("ProtocolName", "ProtocolName", "text"),
    Compared("StationName", "StationName", "text"),
    Compared("InstitutionName", "InstitutionName", "text"),
    Compared("BodyPartExamined", "BodyPartExamined", "text"),
    Compared("MagneticFieldStrength", "field_strength_t", abs_tol=0.01),
    Compared("ImagingFrequency", "imaging_frequency_mhz", rel_tol=1e-4),
    Compared("EchoTime", "echo_time_ms", scale=1e-3, abs_tol=1e-5),
    Compared("RepetitionTime", "repetition_time_ms", scale=1e-3, abs_tol=1e-4),
    Compared("InversionTime", "inversion_time_ms", scale=1e-3, abs_tol=1e-4),
    Compared("FlipAngle", "flip_angle_deg", abs_tol=0.01),
    Compared("SliceThickness", "slice_thickness_mm", abs_tol=1e-3),
    Compared("PixelBandwidth", "pixel_bandwidth_hz_px", rel_tol=1e-3),
    Compared("EchoTrainLength", "echo_train_length"),
    Compared("InPlanePhaseEncodingDirectionDICOM", "in_plane_phase_encoding", "text"),
    Compared("PhaseEncodingDirection", "phase_encoding_direction", "text"),
    Compared("PhaseEncodingAxis", "phase_encoding_axis", "text"),
    Compared("AcquisitionMatrixPE", "acquisition_matrix_pe"),
    Compared("ReconMatrixPE", "recon_matrix_pe"),
    Compared("ParallelReductionFactorInPlane", "parallel_reduction_factor_in_plane", rel_tol=1e-3),
    Compared("EffectiveEchoSpacing", "effective_echo_spacing_s", abs_tol=2e-7, rel_tol=1e-3),
    Compared("TotalReadoutTime", "total_readout_time_s", abs_tol=2e-5, rel_tol=1e-3),
    # dcm2niix quantizes UIH slice times to 1/64 s and Siemens XA ones to 2.5 ms.
    Compared("SliceTiming", "slice_timing_s", "list", abs_tol=1 / 64),
    Compared("bval", "b_values_s_mm2", "list", abs_tol=0.5, rel_tol=1e-4),
    Compared("bvec", "bvec", "list", abs_tol=2e-3),
)


def _close(a: float, b: float, c: Compared) -> bool:
    return math.isclose(a * c.scale, b, rel_tol=c.rel_tol, abs_tol=c.abs_tol)


def _agree(ours: Any, theirs: Any, c: Compared) -> bool:
    if c.kind == "text":
        return str(ours).strip() == str(theirs).strip()
    if c.kind == "list":
        a, b = list(ours), list(theirs)
        return len(a) == len(b) and all(
            _close(float(x), float(y), c) for x, y in zip(a, b, strict=True)
        )
    return _close(float(ours), float(theirs), c)


#: Vendors whose gradient tags are in the image's logical frame, not the patient's, and how that
#: frame maps to dcm2niix's bvec axes (found on the corpus, one series per vendor).
_LOGICAL_FRAME: dict[str, Any] = {
    "GE": lambda v: np.array([-v[0], v[1], v[2]]),
    "UIH": lambda v: np.array([v[0], -v[1], v[2]]),
    "Canon": lambda v: np.array([-v[1], v[0], v[2]]),
}


def _drop_trace(row: dict[str, Any]) -> None:
    """Drop the derived isotropic (trace) volume Philips appends (b > 0, zero gradient), as dcm2niix does."""
    b, g = row.get("b_values_s_mm2"), row.get("diffusion_gradients")
    if row["vendor"] != "Philips" or b is None or g is None:
        return
    keep = [
        i
        for i, (bi, gi) in enumerate(zip(b, g, strict=True))
        if not (bi and bi > 0 and gi is not None and not any(gi))
    ]
    row["b_values_s_mm2"] = [b[i] for i in keep]
    row["diffusion_gradients"] = [g[i] for i in keep]


def _bvec(row: dict[str, Any]) -> list[float] | None:
    """Our gradients in dcm2niix's bvec frame, flattened x-row, y-row, z-row (as in the file).

    Each vector's overall sign is normalized (first non-zero component positive): g and -g are the
    same diffusion encoding.
    """
    grads = row.get("diffusion_gradients")
    iop = row.get("ImageOrientationPatient")
    if grads is None:
        return None
    out = []
    for g in grads:
        v = np.zeros(3) if g is None else np.asarray(g, dtype=float)
        if row["vendor"] in _LOGICAL_FRAME:
            v = _LOGICAL_FRAME[row["vendor"]](v)
        elif iop is not None:
            r, c = np.asarray(iop[:3]), np.asarray(iop[3:])
            n = np.cross(r, c)
            v = np.array([v @ r, -(v @ c), v @ n])
        out.append(_canonical_sign(v))
    return list(np.asarray(out).T.ravel())


def _canonical_sign(v: np.ndarray) -> np.ndarray:
    nz = np.flatnonzero(np.abs(v) > 1e-6)
    return -v if len(nz) and v[nz[0]] < 0 else v


def _read_ref(path: Path) -> dict[str, Any]:
    ref: dict[str, Any] = json.loads(path.read_text())
    if "PhaseEncodingAxis" not in ref and "PhaseEncodingDirection" in ref:
        ref["PhaseEncodingAxis"] = ref["PhaseEncodingDirection"].rstrip("-")
    bval, bvec = path.with_suffix(".bval"), path.with_suffix(".bvec")
    if bval.exists():
        ref["bval"] = [float(x) for x in bval.read_text().split()]
    if bvec.exists():
        rows = [
            [float(x) for x in line.split()]
            for line in bvec.read_text().splitlines()
            if line.strip()
        ]
        vecs = np.asarray(rows).T
        ref["bvec"] = list(np.asarray([_canonical_sign(v) for v in vecs]).T.ravel())
    return ref


def _match(refs: dict[str, Any], candidates: pl.DataFrame) -> dict[str, Any] | None:
    """The series row a sidecar describes, or None when it cannot be told apart."""
    rows = candidates.filter(pl.col("SeriesNumber") == refs.get("SeriesNumber"))
    if rows.height > 1 and "SeriesDescription" in refs:
        rows = rows.filter(pl.col("SeriesDescription") == refs["SeriesDescription"])
    if rows.height > 1 and "AcquisitionTime" in refs:
        t = refs["AcquisitionTime"].replace(":", "")[:6]
        rows = rows.filter(pl.col("acq_times").list.contains(t))
    return rows.row(0, named=True) if rows.height == 1 else None


def compare(con: duckdb.DuckDBPyConnection, corpus: str | Path) -> pl.DataFrame:
    """Compare ``harmonized_series`` (built on a crawl of ``corpus``) with the sidecars of ``corpus``.

    Returns
    -------
    polars.DataFrame
        One row per (sidecar, compared key) that both sides produce: ``source``, ``sidecar``,
        ``vendor``, ``field`` (the BIDS key), ``column`` (ours), ``ours``, ``theirs`` (as text)
        and ``agree``.
    """
    corpus = Path(corpus).resolve()
    series = con.sql(
        """SELECT h.*, coalesce(s.ImageOrientationPatient, fr.iop) AS ImageOrientationPatient,
            fi.acq_times, fi.first_path
        FROM harmonized_series h JOIN series s USING (SeriesInstanceUID)
        LEFT JOIN (SELECT i.SeriesInstanceUID, any_value(f.ImageOrientationPatient) AS iop
                   FROM frames f JOIN instances i USING (file_id) GROUP BY 1) fr USING (SeriesInstanceUID)
        JOIN (SELECT SeriesInstanceUID, any_value(path) AS first_path,
                     list(DISTINCT replace(CAST(AcquisitionTime AS VARCHAR), ':', '')[:6]) AS acq_times
              FROM instances GROUP BY 1) fi USING (SeriesInstanceUID)"""
    ).pl()
    series = series.with_columns(
        pl.col("first_path")
        .str.strip_prefix(str(corpus) + "/")
        .str.split("/")
        .list.first()
        .alias("source")
    )
    rows: list[dict[str, Any]] = []
    for sidecar in sorted(corpus.glob("*/Ref/*.json")):
        source = sidecar.parts[-3]
        ref = _read_ref(sidecar)
        row = _match(ref, series.filter(pl.col("source") == source))
        if row is None:
            continue
        _drop_trace(row)
        row["bvec"] = _bvec(row)
        for c in COMPARED:
            ours, theirs = row.get(c.column), ref.get(c.bids)
            if ours is None or theirs is None or theirs == "":
                continue
            rows.append(
                {
                    "source": source,
                    "sidecar": sidecar.name,
                    "vendor": row["vendor"],
                    "field": c.bids,
                    "column": c.column,
                    "ours": _text(ours, c, c.scale),
                    "theirs": _text(theirs, c),
                    "agree": _agree(ours, theirs, c),
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "source": pl.String,
            "sidecar": pl.String,
            "vendor": pl.String,
            "field": pl.String,
            "column": pl.String,
            "ours": pl.String,
            "theirs": pl.String,
            "agree": pl.Boolean,
        },
    )


def _text(v: Any, c: Compared, scale: float = 1.0) -> str:
    """A value as text, numbers in the BIDS unit."""
    if c.kind == "list":
        return "[" + ", ".join(f"{float(x) * scale:.6g}" for x in list(v)) + "]"
    if c.kind == "text":
        return str(v)
    return f"{float(v) * scale:.6g}"


def summary(agreement: pl.DataFrame) -> pl.DataFrame:
    """Agreement rate per field and vendor (and the overall rate in the last row)."""
    per = (
        agreement.group_by("field", "vendor")
        .agg(pl.len().alias("n_compared"), pl.col("agree").sum().alias("n_agree"))
        .with_columns((pl.col("n_agree") / pl.col("n_compared")).alias("rate"))
        .sort("field", "vendor")
    )
    total = pl.DataFrame(
        {
            "field": ["(all)"],
            "vendor": ["(all)"],
            "n_compared": [agreement.height],
            "n_agree": [int(agreement["agree"].sum())],
        },
        schema_overrides={"n_compared": pl.UInt32, "n_agree": pl.UInt32},
    ).with_columns((pl.col("n_agree") / pl.col("n_compared")).alias("rate"))
    return pl.concat([per, total.cast(per.schema)])
