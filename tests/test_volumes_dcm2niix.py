"""Volumes against dcm2niix: curation's native-grid NIfTI of real series vs dcm2niix's own.

For a handful of small series of ``../shared/dicom`` (CT and MR, five vendors, single-frame and
enhanced multi-frame, native and JPEG 2000), dcm2niix (the PyPI package's binary) converts the
series folder and curation exports the same series with :meth:`VolumeOptions.native` (acquired
grid, modality units). Both NIfTI files are read with SimpleITK, which turns dcm2niix's RAS sform
into the LPS-based geometry curation writes, so they are compared in one convention; dcm2niix's
image is then reoriented (axis permutation and flips only, no interpolation) to curation's axis
order, and a multi-volume series is compared on its first volume. SimpleITK applies dcm2niix's
scl_slope/scl_inter on reading, so voxel values are compared scaled.

Run with ``-s`` (or ``-rP``) to see the agreement table that docs/cohort.md quotes.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from curation import catalog
from curation.cohort import build_cohort, parse
from curation.cohort.volumes import VolumeOptions, export_volumes
from tests.conftest import SHARED_DICOM, needs_shared

dcm2niix = pytest.importorskip(
    "dcm2niix", reason="the dcm2niix package (dev extra) is not installed"
)

KEY = b"k" * 32


@dataclass(frozen=True)
class Case:
    """A series folder of the corpus and which of dcm2niix's outputs to compare with."""

    folder: str  # under ../shared/dicom; holds exactly one series
    vendor: str
    kind: str  # what the series exercises
    output: str  # file name dcm2niix writes with -f %s (series number, then its own suffixes)
    refused: str | None = None  # why curation does not export it (asserted: a change is noticed)
    tilted: bool = False  # gantry tilt: curation's own check must flag it (see the comment below)
    philips_fp: bool = False  # dcm2niix scales to Philips "FP" values unless given -p n


CASES = [
    Case("dcm_qa_ct/In/Philips/S21570/S2010", "Philips", "CT, rescale intercept", "201.nii"),
    # gantry tilt: dcm2niix also writes a resampled "_Tilt_Eq_1" copy; the acquired grid is "2"
    # (a sheared grid). GDCM's series reader gives it a z spacing of 5.63 mm where the step along
    # the slice normal is 4.00 mm (dcm2niix, the headers): curation's geometry check flags it.
    # curation refuses to write it: two slice spacings (4 and 7 mm), which GDCM averages to 5.63 mm.
    Case(
        "dcm_qa_ct/In/GE",
        "GE",
        "CT, gantry tilt 18.5 deg",
        "2.nii",
        tilted=True,
        refused="geometry differs",
    ),
    Case("dcm_qa_frag/In/6001_anat-T1w_acq-tfl", "Siemens", "MR T1w, JPEG 2000", "6001.nii"),
    Case("dcm_qa_stc/In/GE/ProtocolDataBlock/mr_0004", "GE", "MR fMRI, 3 volumes", "4.nii"),
    Case(
        "dcm_qa_philips/In/Magdeburg_2014/fmri",
        "Philips",
        "MR fMRI, 3 volumes",
        "201.nii",
        philips_fp=True,
    ),
    # each file a mosaic of 20 slices without per-slice positions: dcm2niix unpacks it, curation
    # does not (yet), and says so
    Case(
        "dcm_qa_uih/In/DTI_134434/dti_tra_dir16_PA_SaveBySlc__135612",
        "UIH",
        "MR DWI mosaic, 17 volumes",
        "6.nii",
        refused="slices without ImagePositionPatient",
    ),
    Case("dcm_qa_enh/In/Siemens/XA10", "Siemens", "MR enhanced, 4 files x 6 frames", "6.nii"),
    # one file, 2 x 32 frames (magnitude and field map): dcm2niix splits the echoes into two
    # files; curation writes the first volume, the magnitude ("e1")
    Case(
        "dcm_qa_enh/In/Philips",
        "Philips",
        "MR enhanced, 1 file x 64 frames",
        "801_e1.nii",
        philips_fp=True,
    ),
]


def _dcm2niix(folder: Path, out: Path, *options: str) -> list[str]:
    out.mkdir(parents=True)
    subprocess.run(
        [dcm2niix.bin, "-z", "n", "-b", "n", "-f", "%s", *options, "-o", str(out), str(folder)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return sorted(p.name for p in out.glob("*.nii"))


def _compare(ours: Any, theirs: Any) -> dict[str, Any]:
    """Geometry and voxel agreement of two SimpleITK images (theirs reoriented to ours)."""
    import SimpleITK as sitk  # noqa: N813

    if theirs.GetDimension() == 4:
        size = list(theirs.GetSize())
        theirs = sitk.Extract(theirs, [*size[:3], 0], [0, 0, 0, 0])
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(ours.GetDirection())
    theirs = sitk.DICOMOrient(theirs, code)
    row: dict[str, Any] = {
        "shape_match": ours.GetSize() == theirs.GetSize(),
        "origin_mm": float(np.abs(np.subtract(ours.GetOrigin(), theirs.GetOrigin())).max()),
        "direction": float(np.abs(np.subtract(ours.GetDirection(), theirs.GetDirection())).max()),
        "spacing_mm": float(np.abs(np.subtract(ours.GetSpacing(), theirs.GetSpacing())).max()),
        "corr": None,
        "max_abs": None,
        "ratio": None,
    }
    if row["shape_match"]:
        a = sitk.GetArrayFromImage(ours).astype(np.float64).ravel()
        b = sitk.GetArrayFromImage(theirs).astype(np.float64).ravel()
        row["max_abs"] = float(np.abs(a - b).max())
        row["corr"] = float(np.corrcoef(a, b)[0, 1])
        # a constant factor is a different scaling convention (Philips FP vs display values)
        row["ratio"] = float(np.dot(a, b) / np.dot(a, a))
    return row


def _voxels(r: dict[str, Any], display: dict[str, Any] | None) -> str:
    if r["corr"] is None:
        return "-"
    if r["max_abs"] <= 1e-3:
        return "identical"
    text = f"r = {r['corr']:.6f}, dcm2niix = {r['ratio']:.4g} x curation"
    if display is not None:
        same = "identical" if display["max_abs"] <= 1e-3 else f"max diff {display['max_abs']:.3g}"
        text += f" (Philips FP scale); with -p n: {same}"
    return text


@needs_shared
def test_native_volumes_agree_with_dcm2niix(shared_catalog: Path, tmp_path: Path) -> None:
    # a copy: the cohort tables written here must not leak into the session's shared catalog
    db = tmp_path / "catalog.duckdb"
    shutil.copy(shared_catalog, db)
    con = catalog.connect(db)
    uids: dict[str, str] = {}
    for case in CASES:
        found = con.sql(
            "SELECT DISTINCT SeriesInstanceUID FROM instances WHERE starts_with(path, $p)",
            params={"p": f"{SHARED_DICOM / case.folder}/"},
        ).fetchall()
        assert len(found) == 1, f"{case.folder}: expected one series, found {len(found)}"
        uids[found[0][0]] = case.folder
    spec = parse(
        {
            "name": "dcm2niix",
            "include": [{"field": "SeriesInstanceUID", "op": "in", "value": sorted(uids)}],
            "split": {"ratios": {"train": 1.0}},
        }
    )
    out = tmp_path / "cohort"
    res = build_cohort(con, spec, out, key=KEY)
    report = export_volumes(con, res, out, VolumeOptions.native(), progress=False)
    keys = dict(con.sql("SELECT series_key, SeriesInstanceUID FROM _cohort_members").fetchall())
    by_folder = {uids[keys[r["series_key"]]]: r for r in report.iter_rows(named=True)}

    import SimpleITK as sitk  # noqa: N813

    # per case: dcm2niix's agreement, with -p n (Philips), or why there is none
    rows: list[tuple[Case, dict[str, Any] | None, dict[str, Any] | None, str]] = []
    failures: list[tuple[str, Any]] = []
    for i, case in enumerate(CASES):
        ours = by_folder[case.folder]
        made = _dcm2niix(SHARED_DICOM / case.folder, tmp_path / f"d2n{i}")
        if case.output not in made:  # dcm2niix split or rejected the series: say so, move on
            rows.append((case, None, None, f"skipped: dcm2niix wrote {made}"))
            failures.append((case.folder, f"dcm2niix wrote {made}, not {case.output}"))
            continue
        if case.refused or ours["error"]:
            rows.append((case, None, None, f"not exported by curation: {ours['error']}"))
            if not (case.refused and case.refused in (ours["error"] or "")):
                failures.append((case.folder, ours["error"]))
            continue
        ours_img = sitk.ReadImage(ours["image"])
        r = _compare(ours_img, sitk.ReadImage(str(tmp_path / f"d2n{i}" / case.output)))
        display = None
        if case.philips_fp:  # the same values as curation's once dcm2niix uses RescaleSlope
            _dcm2niix(SHARED_DICOM / case.folder, tmp_path / f"d2n{i}p", "-p", "n")
            display = _compare(ours_img, sitk.ReadImage(str(tmp_path / f"d2n{i}p" / case.output)))
        rows.append((case, r, display, ""))
        # origins: dcm2niix takes the slice step as (last - first) / (n - 1), curation the median
        # step; when reorienting flips the slice axis the origin moves to the last slice, so
        # 1e-4 mm of step (float rounding in the headers) becomes n x 1e-4 mm there.
        ok = (
            r["shape_match"]
            and r["origin_mm"] < 0.02
            and r["direction"] < 1e-4
            and (r["spacing_mm"] < 1e-3 or case.tilted)
            and r["corr"] > 0.9999
            and (r["max_abs"] <= 1e-3 or (display is not None and display["max_abs"] <= 1e-3))
        )
        if case.tilted and ours["geometry_ok"]:
            failures.append((case.folder, "gantry tilt not flagged by the geometry check"))
        if not ok:
            failures.append((case.folder, r))

    lines = [
        "| series | vendor | kind | shape match | max origin diff (mm) | max direction diff "
        "| spacing diff (mm) | voxels |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, agree, display, note in rows:
        if agree is None:
            lines.append(f"| {case.folder} | {case.vendor} | {case.kind} | {note} | | | | |")
            continue
        shape = "yes" if agree["shape_match"] else "NO"
        lines.append(
            f"| {case.folder} | {case.vendor} | {case.kind} | {shape} | {agree['origin_mm']:.2g} "
            f"| {agree['direction']:.2g} | {agree['spacing_mm']:.2g} | {_voxels(agree, display)} |"
        )
    print("\n" + "\n".join(lines))
    assert not failures, failures
    assert sum(r is not None for _, r, _, _ in rows) >= 6
