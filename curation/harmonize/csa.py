"""The few Siemens CSA header items harmonization needs, read from the files that need them.

The CSA image header (0029,xx10, creator ``SIEMENS CSA HEADER``) is binary (OB), so ``elements`` has
no text for it. Only :data:`ITEMS` are read, with nibabel's CSA reader, and only from Siemens MR
instances that carry a CSA image header: the first instance of each series (phase-encoding
polarity), and every instance of a series whose b-value is not in the public SIEMENS MR HEADER tags.
"""

from __future__ import annotations

import logging
from typing import Any

import duckdb
import pyarrow as pa

log = logging.getLogger("curation.harmonize")

#: CSA image header items read, and the column each lands in.
ITEMS: dict[str, str] = {
    "PhaseEncodingDirectionPositive": "csa_pe_positive",
    "B_value": "csa_b_value",
    "DiffusionGradientDirection": "csa_gradient",
}

_CSA_IMAGE = (0x0029, 0x0010)


def _read_one(path: str) -> dict[str, Any]:
    import warnings

    import pydicom

    with warnings.catch_warnings():
        # nibabel warns about its DICOM *readers*; only its CSA parser is used here.
        warnings.simplefilter("ignore", UserWarning)
        from nibabel.nicom import csareader

    out: dict[str, Any] = dict.fromkeys(ITEMS.values())
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        block = ds.private_block(0x0029, "SIEMENS CSA HEADER")
        raw = block[_CSA_IMAGE[1]].value
        tags = csareader.read(raw)["tags"]
    except (KeyError, OSError, ValueError, csareader.CSAReadError) as exc:
        log.debug("%s: no readable CSA image header (%s)", path, exc)
        return out
    pos = tags.get("PhaseEncodingDirectionPositive", {}).get("items") or []
    b = tags.get("B_value", {}).get("items") or []
    g = tags.get("DiffusionGradientDirection", {}).get("items") or []
    out["csa_pe_positive"] = int(pos[0]) if pos else None
    out["csa_b_value"] = float(b[0]) if b else None
    out["csa_gradient"] = [float(x) for x in g] if len(g) == 3 else None
    return out


def read_csa(con: duckdb.DuckDBPyConnection, files: str) -> pa.Table:
    """CSA items of the files listed by the query ``files`` (columns ``file_id``, ``path``).

    One file is read per row: the caller keeps the list to the instances that need it.
    """
    rows = con.sql(files).fetchall()
    cols: dict[str, list[Any]] = {"file_id": [], **{c: [] for c in ITEMS.values()}}
    for file_id, path in rows:  # one file per row is the unit of work here, not a catalog scan
        cols["file_id"].append(file_id)
        for k, v in _read_one(path).items():
            cols[k].append(v)
    return pa.table(
        cols,
        schema=pa.schema(
            [
                ("file_id", pa.uint64()),
                ("csa_pe_positive", pa.int64()),
                ("csa_b_value", pa.float64()),
                ("csa_gradient", pa.list_(pa.float64(), 3)),
            ]
        ),
    )
