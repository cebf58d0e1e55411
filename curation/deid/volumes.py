"""NIfTI volumes of a de-identified cohort, read from the de-identified files, with no identifier.

The cohort's own volume export (:mod:`curation.cohort.volumes`) plans each series from the
catalog (slice order along the normal, first volume of a multi-volume series, geometry check);
here the plan's files are swapped for their de-identified copies before they are read, so a
masked burned-in text stays masked in the volume. Enhanced multi-frame series are not exported:
their frames are read at byte offsets the catalog measured in the source files, which the
de-identified copies do not share; their manifest rows say so. A series with a quarantined file
is not exported either (a volume with a missing slice).

The NIfTI header fields that can carry text (``descrip``, ``aux_file``, ``intent_name``,
``db_name``) are set to what curation chooses: ``descrip`` names the tool, the others are empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from curation import __version__

#: The ``descrip`` of every de-identified volume.
DESCRIP = f"curation {__version__} deid"


def clean_header(path: Path) -> None:
    """Rewrite the text fields of the NIfTI header of ``path`` (the voxels are not touched)."""
    import nibabel as nib

    img: Any = nib.load(path)
    header = img.header.copy()
    header["descrip"] = DESCRIP.encode()[:79]
    header["aux_file"] = b""
    header["intent_name"] = b""
    header["db_name"] = b""
    nib.save(nib.Nifti1Image(img.dataobj, img.affine, header), path)


def export(
    con: duckdb.DuckDBPyConnection,
    cohort_id: int,
    manifest: pl.DataFrame,
    written: dict[str, str],
    out_dir: Path,
    options: dict[str, Any] | None,
) -> pl.DataFrame:
    """Write ``out_dir/volumes/<series_key>.nii.gz`` for each exportable series of ``manifest``.

    ``written`` maps each source path to its de-identified file. ``options`` are the cohort's
    volume options (its provenance), None for the defaults. Returns ``series_key``, ``image``
    (relative to ``out_dir``), ``error``.
    """
    from curation.cohort.volumes import VolumeOptions, export_one, plan_volumes

    opts = VolumeOptions(**(options or {}))
    vol_dir = out_dir / "volumes"
    vol_dir.mkdir(parents=True, exist_ok=True)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _cohort_members AS "
        "SELECT * FROM cohort_members WHERE cohort_id = $c",
        {"c": cohort_id},
    )
    wanted = manifest.filter(pl.col("excluded_reason").is_null()).select("series_key")
    tasks = plan_volumes(con, wanted, vol_dir, opts)
    rows = []
    for task in tasks:
        if task["multiframe"]:
            task["problem"] = (
                "enhanced multi-frame: not exported from the de-identified copies "
                "(use their DICOM files)"
            )
        elif not task["problem"]:
            missing = [f for f in task["files"] if f not in written]
            if missing:
                task["problem"] = f"{len(missing)} slice file(s) not de-identified"
            else:
                task["files"] = [written[f] for f in task["files"]]
        r = export_one(task)
        if r["image"]:
            clean_header(Path(r["image"]))
            r["image"] = str(Path(r["image"]).relative_to(out_dir))
        rows.append({"series_key": r["series_key"], "image": r["image"], "error": r["error"]})
    return pl.DataFrame(
        rows, schema={"series_key": pl.String, "image": pl.String, "error": pl.String}
    )
