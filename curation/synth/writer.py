"""Writing one series: drafts, defects, pixels, datasets, files.

The fast path: the series dataset (every element constant across the series, private blocks
included) is built once; each slice is a shallow copy of its element dict in which only the
per-slice elements are replaced by new elements, then written with ``dcmwrite``. Pixels are
rendered from the phantom (separable for axial slices) and noise is a window of a pre-drawn bank.
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, RLELossless

from curation.synth.defects import DEFECTS, PLANTERS, DefectContext, apply_pixel_defect
from curation.synth.geometry import (
    AXIAL,
    CORONAL,
    SAGITTAL,
    SeriesDraft,
    SliceDraft,
    regular_stack,
    slice_normal,
)
from curation.synth.phantom import NoiseBank, projection, render, shading, slice_coordinates
from curation.synth.plan import Profile, SeriesSpec, uid
from curation.synth.truth import truth_row
from curation.synth.vendors import (
    RLE,
    DiffusionEncoding,
    add_private,
    ct_private,
    mr_private,
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_ORIENTATIONS = {"axial": AXIAL, "coronal": CORONAL, "sagittal": SAGITTAL}
_MR_CONTRAST = {"mr_t1": "t1", "mr_t2": "t2", "mr_flair": "flair", "mr_localizer": "t1"}
_WINDOWS = {"soft": (40, 400), "lung": (-600, 1500), "bone": (300, 2000), "brain": (40, 80)}


@dataclass(frozen=True)
class SeriesResult:
    """What writing a series produced."""

    truth: list[dict[str, Any]]
    series_row: dict[str, Any]
    n_files: int
    n_bytes: int


def _elem(keyword: str, value: Any) -> DataElement:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return DataElement(tag, dictionary_VR(tag), value)


def _derive(base: Dataset, values: dict[str, Any]) -> Dataset:
    """A dataset sharing ``base``'s elements except ``values``, which are new elements."""
    ds = Dataset(dict(base._dict))
    for keyword, value in values.items():
        el = _elem(keyword, value)
        ds[el.tag] = el
    return ds


def _ds(v: float) -> str:
    """A DS string of at most 16 characters, without float noise."""
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s[:16]


def _series_dataset(spec: SeriesSpec, acq: dict[str, Any]) -> Dataset:
    st, sc = spec.study, spec.scanner
    ct = sc.modality == "CT"
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CT_IMAGE_STORAGE if ct else MR_IMAGE_STORAGE
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = st.StudyDate
    ds.StudyTime = st.StudyTime
    ds.SeriesTime = (
        f"{(int(st.StudyTime[:2]) + 0):02d}{st.StudyTime[2:4]}{spec.SeriesNumber % 60:02d}"
    )
    ds.AccessionNumber = st.AccessionNumber
    ds.Modality = sc.modality
    ds.Manufacturer = sc.Manufacturer
    ds.InstitutionName = spec.site.InstitutionName
    ds.InstitutionAddress = spec.site.InstitutionAddress
    ds.ReferringPhysicianName = st.ReferringPhysicianName
    ds.StationName = acq["station"]
    ds.StudyDescription = st.StudyDescription
    ds.SeriesDescription = spec.SeriesDescription
    ds.OperatorsName = st.OperatorsName
    ds.ManufacturerModelName = sc.ManufacturerModelName
    ds.PatientName = st.PatientName
    ds.PatientID = st.PatientID
    ds.PatientBirthDate = st.PatientBirthDate
    ds.PatientSex = st.PatientSex
    ds.PatientAge = st.PatientAge
    ds.PatientSize = _ds(st.PatientSize)
    ds.PatientWeight = _ds(st.PatientWeight)
    ds.BodyPartExamined = _body_part_examined(spec)
    ds.SliceThickness = _ds(spec.SliceThickness)
    ds.DeviceSerialNumber = sc.DeviceSerialNumber
    ds.SoftwareVersions = (
        list(sc.SoftwareVersions) if len(sc.SoftwareVersions) > 1 else sc.SoftwareVersions[0]
    )
    ds.ProtocolName = acq["protocol"] if ct else spec.SeriesDescription
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = st.StudyInstanceUID
    ds.SeriesInstanceUID = spec.SeriesInstanceUID
    ds.StudyID = st.StudyID
    ds.SeriesNumber = spec.SeriesNumber
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = spec.FrameOfReferenceUID
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    if ct:
        ds.KVP = _ds(acq["KVP"])
        ds.DataCollectionDiameter = "500"
        ds.ReconstructionDiameter = _ds(spec.pixel_spacing_mm * spec.columns)
        ds.GantryDetectorTilt = "0"
        ds.TableHeight = _ds(acq["TableHeight"])
        ds.RotationDirection = "CW"
        ds.ExposureTime = str(int(acq["rotation_s"] * 1000))
        ds.XRayTubeCurrent = str(acq["XRayTubeCurrent"])
        ds.FilterType = "BODY FILTER" if spec.body_part == "chest" else "HEAD FILTER"
        if spec.kernel_class:
            k = sc.kernels[spec.kernel_class]
            ds.ConvolutionKernel = list(k) if len(k) > 1 else k[0]
            center, width = _WINDOWS[spec.kernel_class]
            ds.WindowCenter, ds.WindowWidth = str(center), str(width)
        if spec.contrast_phase and spec.contrast_phase != "non_contrast":
            ds.ContrastBolusAgent = "IOHEXOL 350" if sc.vendor != "siemens" else "Omnipaque 350"
            ds.ContrastBolusRoute = "IV"
        ds.BitsStored = 16 if sc.ct_signed else 12
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if sc.ct_signed else 0
        ds.RescaleIntercept = "0" if sc.vendor == "canon" else "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        if sc.ct_padding:
            ds.PixelPaddingValue = -2000
        add_private(ds, ct_private(sc, acq))
    else:
        ds.ScanningSequence = acq["ScanningSequence"].split("\\")
        ds.SequenceVariant = acq["SequenceVariant"].split("\\")
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "3D" if spec.orientation == "sagittal" else "2D"
        ds.SequenceName = acq["pulse_sequence"]
        ds.RepetitionTime = _ds(acq["RepetitionTime"])
        ds.EchoTime = _ds(acq["EchoTime"])
        if "InversionTime" in acq:
            ds.InversionTime = _ds(acq["InversionTime"])
        ds.NumberOfAverages = "1"
        ds.ImagingFrequency = _ds((sc.MagneticFieldStrength or 3.0) * 42.577478)
        ds.MagneticFieldStrength = _ds(sc.MagneticFieldStrength or 3.0)
        if spec.spacing_mm:
            ds.SpacingBetweenSlices = _ds(spec.spacing_mm)
        ds.EchoTrainLength = acq["EchoTrainLength"]
        ds.PixelBandwidth = _ds(acq["bandwidth"] * 10)
        ds.FlipAngle = _ds(acq["FlipAngle"])
        ds.InPlanePhaseEncodingDirection = "COL"
        if spec.contrast_phase == "post_contrast":
            ds.ContrastBolusAgent = "GADOBUTROL"
        ds.BitsStored = 16 if sc.vendor == "ge" else 12
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if sc.vendor == "ge" else 0
        if sc.vendor == "philips":
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1.4", "normalized"
        if spec.series_type != "mr_dwi":
            add_private(ds, mr_private(sc, acq, None))
    if sc.vendor in ("philips", "canon"):
        ds.BurnedInAnnotation = "NO"
    return ds


def _body_part_examined(spec: SeriesSpec) -> str:
    if spec.body_part == "chest":
        return "CHEST"
    if spec.scanner.modality == "MR":
        return {"ge": "HEAD", "siemens": "BRAIN", "philips": "BRAIN", "canon": "HEAD"}[
            spec.scanner.vendor
        ]
    return "HEAD"


def _first_position(
    center: tuple[float, float, float],
    orientation: tuple[float, ...],
    spacing: float,
    n: int,
    rows: int,
    cols: int,
    pixel_spacing: float,
) -> tuple[float, float, float]:
    row_dir = np.asarray(orientation[:3])
    col_dir = np.asarray(orientation[3:6])
    walk = -slice_normal(orientation)
    p = (
        np.asarray(center)
        - row_dir * (cols - 1) / 2 * pixel_spacing
        - col_dir * (rows - 1) / 2 * pixel_spacing
        - walk * (n - 1) / 2 * spacing
    )
    return (round(float(p[0]), 4), round(float(p[1]), 4), round(float(p[2]), 4))


def _plan_slices(spec: SeriesSpec, rng: np.random.Generator) -> SeriesDraft:
    orientation = _ORIENTATIONS[spec.orientation]
    ps = spec.pixel_spacing_mm
    if spec.series_type == "ct_localizer":
        drafts = []
        z_len = ps * spec.rows
        for i in range(spec.n_positions):
            ori = CORONAL if i == 0 else SAGITTAL
            top = spec.center[2] + z_len / 2
            pos = (
                (-ps * (spec.columns - 1) / 2, 0.0, top)
                if i == 0
                else (0.0, -ps * (spec.columns - 1) / 2, top)
            )
            drafts.append(
                SliceDraft(
                    index=i, position=pos, orientation=ori, pixel_spacing=(ps, ps), rows=spec.rows,
                    columns=spec.columns, instance_number=i + 1, sop_instance_uid=uid(rng),
                    image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), localizer=True,
                )
            )  # fmt: skip
        return SeriesDraft(drafts, 0.0)
    if spec.series_type == "mr_localizer":
        drafts = []
        for i, ori in enumerate((AXIAL, CORONAL, SAGITTAL)):
            pos = _first_position(spec.center, ori, 0.0, 1, spec.rows, spec.columns, ps)
            drafts.append(
                SliceDraft(
                    index=i, position=pos, orientation=ori, pixel_spacing=(ps, ps), rows=spec.rows,
                    columns=spec.columns, instance_number=i + 1, sop_instance_uid=uid(rng),
                    image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), localizer=True,
                )
            )  # fmt: skip
        return SeriesDraft(drafts, 0.0)
    n = spec.n_positions
    first = _first_position(
        spec.center, orientation, spec.spacing_mm, n, spec.rows, spec.columns, ps
    )
    image_type = (
        ("ORIGINAL", "PRIMARY", "AXIAL")
        if spec.scanner.modality == "CT"
        else ("ORIGINAL", "PRIMARY", "M", "ND")
    )
    volumes: list[tuple[float | None, tuple[float, float, float] | None]] = [(None, None)]
    if spec.series_type == "mr_dwi":
        volumes = [(0.0, (0.0, 0.0, 0.0))]
        dirs = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)][: spec.n_directions]
        if spec.n_directions == 1:
            dirs = [(0.57735, 0.57735, 0.57735)]
        volumes += [(spec.b_values[-1], d) for d in dirs]
    slices: list[SliceDraft] = []
    for v, (b, d) in enumerate(volumes):
        stack = regular_stack(
            n=n, first_position=first, orientation=orientation, spacing_mm=spec.spacing_mm,
            pixel_spacing=(ps, ps), rows=spec.rows, columns=spec.columns,
            uids=[uid(rng) for _ in range(n)], image_type=image_type,
        )  # fmt: skip
        for s in stack:
            s.index += v * n
            s.instance_number += v * n
            s.b_value, s.direction = b, d
        slices += stack
    return SeriesDraft(slices, spec.spacing_mm)


def _render(
    spec: SeriesSpec,
    s: SliceDraft,
    profile: Profile,
    noise: NoiseBank | None,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    ct = spec.scanner.modality == "CT"
    scale = spec.study.body_scale
    x, y, z = slice_coordinates(s.position, s.orientation, s.pixel_spacing, s.rows, s.columns)
    if s.localizer and ct:
        if s.orientation == CORONAL:
            img = projection(spec.body_part, x, z, axis="y", extent=(-130.0, 130.0), scale=scale)
        else:
            img = projection(spec.body_part, y, z, axis="x", extent=(-180.0, 180.0), scale=scale)
        return np.broadcast_to(img, (s.rows, s.columns)).copy()
    if ct:
        img = render(spec.body_part, "ct", x, y, z, scale=scale, phase=spec.contrast_phase)
        sigma = profile.noise_ct_hu
    else:
        contrast = _MR_CONTRAST.get(spec.series_type, "t1")
        if spec.series_type == "mr_dwi":
            contrast = "dwi_b0" if not s.b_value else "dwi_b1000"
        img = render("head", contrast, x, y, z, scale=scale)
        if profile.mr_shading:
            img = img * shading(x, y, profile.mr_shading)
        sigma = profile.noise_mr
    img = np.broadcast_to(img, (s.rows, s.columns)).copy()
    if sigma > 0:
        if noise is not None and noise.rows == s.rows and noise.columns == s.columns:
            img += sigma * noise.window(rng)
        else:
            img += rng.normal(0.0, sigma, img.shape)
        if not ct:
            np.abs(img, out=img)
    return img


def _to_stored(spec: SeriesSpec, img: NDArray[np.float64], s: SliceDraft) -> NDArray[Any]:
    sc = spec.scanner
    if sc.modality == "CT":
        intercept = 0.0 if sc.vendor == "canon" else -1024.0
        stored = np.rint(img - intercept)
        if sc.ct_signed:
            stored = np.clip(stored, -32768, 32767)
            if sc.ct_padding and not s.localizer:
                rr = (np.arange(s.rows) - (s.rows - 1) / 2)[:, None]
                cc = (np.arange(s.columns) - (s.columns - 1) / 2)[None, :]
                stored[rr**2 + cc**2 > (min(s.rows, s.columns) / 2) ** 2] = -2000
            return stored.astype(np.int16)
        return np.clip(stored, 0, 4095).astype(np.uint16)
    factor = 1 / 1.4 if sc.vendor == "philips" else 1.0
    stored = np.rint(img * factor)
    if sc.vendor == "ge":
        return np.clip(stored, -32768, 32767).astype(np.int16)
    return np.clip(stored, 0, 4095).astype(np.uint16)


def _file_name(spec: SeriesSpec, k: int, sop_uid: str) -> str:
    style = spec.site.file_style
    if style == "ge":
        name = f"IM-{spec.SeriesNumber:04d}-{k + 1:04d}.dcm"
    elif style == "uid":
        name = f"{sop_uid}.dcm"
    elif style == "noext":
        name = f"IMG{k + 1:05d}"
    else:
        name = f"{k + 1:08d}"
    if spec.file_format == "dcm.gz":
        name = (name if name.endswith(".dcm") else name + ".dcm") + ".gz"
    elif spec.file_format == "dcm" and not name.endswith(".dcm"):
        name += ".dcm"
    return name


def _slice_values(spec: SeriesSpec, s: SliceDraft, k: int) -> dict[str, Any]:
    t0 = (
        int(spec.study.StudyTime[:2]) * 3600
        + int(spec.study.StudyTime[2:4]) * 60
        + spec.SeriesNumber * 97
    )
    t = t0 + k // 4
    hhmmss = f"{(t // 3600) % 24:02d}{(t // 60) % 60:02d}{t % 60:02d}.{(k % 4) * 25:02d}0000"
    values: dict[str, Any] = {
        "ImageType": list(s.image_type),
        "SOPInstanceUID": s.sop_instance_uid,
        "AcquisitionTime": hhmmss,
        "ContentTime": hhmmss,
        "InstanceNumber": s.instance_number,
        "ImagePositionPatient": [_ds(v) for v in s.position],
        "ImageOrientationPatient": [_ds(v) for v in s.orientation],
        "Rows": s.rows,
        "Columns": s.columns,
        "PixelSpacing": [_ds(v) for v in s.pixel_spacing],
    }
    if "GantryDetectorTilt" in s.header:
        values["SliceLocation"] = _ds(s.position[2])
    elif not s.localizer:
        values["SliceLocation"] = _ds(float(np.dot(s.position, slice_normal(s.orientation))))
    if s.b_value is not None and spec.scanner.vendor == "canon":
        d = s.direction or (0.0, 0.0, 0.0)
        values["DiffusionBValue"] = float(s.b_value)
        values["ImageComments"] = f"b={int(s.b_value)}({d[0]:.3f},{d[1]:.3f},{d[2]:.3f})"
    for key, value in s.header.items():
        if not key.startswith("_"):
            values[key] = _ds(value) if isinstance(value, float) else value
    return values


def write_series(spec: SeriesSpec, root: Path, profile: Profile) -> SeriesResult:
    """Write ``spec``'s files under ``root``; returns its truth rows and its ``series.parquet`` row."""
    rng = np.random.default_rng(list(spec.key))
    draft = _plan_slices(spec, rng)
    n_positions = spec.n_positions
    params: dict[str, Any] = {}
    if spec.defect:
        ctx = DefectContext(
            rng=rng,
            modality=spec.scanner.modality,
            body_part=spec.body_part,
            new_uid=lambda: uid(rng),
            identity={
                "PatientName": spec.study.PatientName,
                "PatientID": spec.study.PatientID,
                "PatientBirthDate": spec.study.PatientBirthDate,
            },
            study_date=spec.study.StudyDate,
        )
        params = PLANTERS[spec.defect](draft, ctx)
        if spec.defect == "wrong_rescale":
            params = _wrong_rescale_values(spec, draft)
    acq = dict(spec.acq)
    base = _series_dataset(spec, acq)
    series_header = dict(draft.header)
    phi_keyword = series_header.pop("_phi_keyword", None)
    for keyword, value in series_header.items():
        if keyword == phi_keyword and keyword in base:
            value = f"{base[keyword].value} {value}"
        el = _elem(keyword, _ds(value) if isinstance(value, float) else value)
        base[el.tag] = el

    ts = spec.transfer_syntax
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = base.SOPClassUID
    meta.TransferSyntaxUID = UID(ts)
    noise = None
    if (profile.noise_ct_hu if spec.scanner.modality == "CT" else profile.noise_mr) > 0:
        noise = NoiseBank(rng, spec.rows, spec.columns)

    series_dir = root / spec.series_dir
    series_dir.mkdir(parents=True, exist_ok=True)
    truth: list[dict[str, Any]] = []
    paths: list[str] = []
    n_bytes = 0
    n_readable = 0
    for k, s in enumerate(draft.slices):
        img = _render(spec, s, profile, noise, rng)
        if s.pixel_defect is not None:
            kind, pparams = s.pixel_defect
            img = apply_pixel_defect(
                kind, pparams, img, rng=rng, position=s.position, pixel_spacing=s.pixel_spacing,
                modality=spec.scanner.modality,
            )  # fmt: skip
        stored = _to_stored(spec, img, s)
        values = _slice_values(spec, s, k)
        if phi_keyword and phi_keyword in values:
            values[phi_keyword] = f"{values[phi_keyword]} {draft.header[phi_keyword]}"
        ds = _derive(base, values)
        if spec.series_type == "mr_dwi" and s.b_value is not None:
            add_private(
                ds,
                mr_private(
                    spec.scanner, acq, DiffusionEncoding(s.b_value, s.direction or (0, 0, 0))
                ),
            )
        fm = FileMetaDataset(dict(meta._dict))
        fm.MediaStorageSOPInstanceUID = UID(s.sop_instance_uid)
        ds.file_meta = fm
        if ts == RLE:
            ds.compress(RLELossless, stored, encoding_plugin="pydicom", generate_instance_uid=False)
        else:
            ds.PixelData = stored.tobytes()
            ds["PixelData"].VR = "OW"
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        data = buf.getvalue()
        if s.file_action == "zero_byte":
            data = b""
        elif s.file_action == "truncate":
            pixel_len = len(ds.PixelData)
            header_len = len(data) - pixel_len
            if s.header.get("_cut_in") == "header":
                cut = 132 + int((header_len - 140) * float(s.header["_cut_fraction"]))
            else:
                cut = header_len + int(pixel_len * float(s.header["_cut_fraction"]))
            data = data[:cut]
        else:
            n_readable += 1
        if spec.file_format == "dcm.gz":
            data = gzip.compress(data, compresslevel=6, mtime=0)
        name = _file_name(spec, k, s.sop_instance_uid)
        (series_dir / name).write_bytes(data)
        n_bytes += len(data)
        paths.append(f"{spec.series_dir}/{name}")

    st = spec.study
    ids = {
        "PatientID": st.PatientID,
        "StudyInstanceUID": st.StudyInstanceUID,
        "SeriesInstanceUID": spec.SeriesInstanceUID,
    }
    if spec.defect:
        level = DEFECTS[spec.defect].level
        if level == "series":
            truth.append(truth_row(level=level, kind=spec.defect, params=params, **ids))
        else:
            for i in draft.affected:
                s = draft.slices[i]
                row_params = dict(params)
                if spec.defect in ("truncated",):
                    row_params.pop("index", None)
                truth.append(
                    truth_row(
                        level=level, kind=spec.defect, SOPInstanceUID=s.sop_instance_uid,
                        path=paths[i], params=row_params, **ids,
                    )
                )  # fmt: skip
    sc = spec.scanner
    kernel = sc.kernels.get(spec.kernel_class or "", ())
    series_row = {
        "site": spec.site.key,
        "InstitutionName": spec.site.InstitutionName,
        "StationName": acq["station"],
        "vendor": sc.vendor,
        "Manufacturer": sc.Manufacturer,
        "ManufacturerModelName": sc.ManufacturerModelName,
        "SoftwareVersions": "\\".join(sc.SoftwareVersions),
        **ids,
        "Modality": sc.modality,
        "study_type": st.study_type,
        "body_part": spec.body_part,
        "BodyPartExamined": _body_part_examined(spec),
        "series_type": spec.series_type,
        "contrast_phase": spec.contrast_phase,
        "kernel_class": spec.kernel_class,
        "ConvolutionKernel": "\\".join(kernel) if kernel else None,
        "SeriesNumber": spec.SeriesNumber,
        "SeriesDescription": spec.SeriesDescription,
        "orientation": _orientation_label(spec),
        "SliceThickness": spec.SliceThickness,
        "slice_spacing_mm": spec.spacing_mm if spec.spacing_mm else None,
        "pixel_spacing_mm": spec.pixel_spacing_mm,
        "Rows": spec.rows,
        "Columns": spec.columns,
        "b_values": list(spec.b_values) if spec.b_values else None,
        "n_positions_planned": n_positions,
        "n_files": len(draft.slices),
        "n_instances_readable": n_readable,
        "TransferSyntaxUID": ts,
        "file_format": spec.file_format,
        "series_dir": spec.series_dir,
        "defect": spec.defect,
    }
    return SeriesResult(truth, series_row, len(draft.slices), n_bytes)


def _orientation_label(spec: SeriesSpec) -> str:
    if spec.series_type == "mr_localizer" or (
        spec.series_type == "ct_localizer" and spec.n_positions > 1
    ):
        return "mixed"
    return spec.orientation


def _wrong_rescale_values(spec: SeriesSpec, draft: SeriesDraft) -> dict[str, Any]:
    """Make the planted rescale relative to the vendor's true one (Canon stores HU directly)."""
    true_intercept = 0.0 if spec.scanner.vendor == "canon" else -1024.0
    if "RescaleIntercept" in draft.header:
        wrong = (
            true_intercept + 1024.0
            if draft.header["RescaleIntercept"] == 0.0
            else -true_intercept + 1024.0
        )
        draft.header["RescaleIntercept"] = wrong
        return {"RescaleIntercept": wrong, "true_RescaleIntercept": true_intercept}
    return {"RescaleSlope": draft.header["RescaleSlope"], "true_RescaleSlope": 1.0}


def write_junk(root: Path, path: str, kind: str, seed: int) -> int:
    """Write one non-DICOM junk file; returns its size."""
    rng = np.random.default_rng([seed, len(path), sum(path.encode())])
    if kind == "ole":
        data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + rng.bytes(1016)
    elif kind == "dsstore":
        data = b"\x00\x00\x00\x01Bud1" + rng.bytes(2040)
    elif kind == "jpeg":
        data = (
            b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
            + rng.bytes(3000)
            + b"\xff\xd9"
        )
    else:
        data = (
            json.dumps(
                {"exported_by": "PACS export tool 4.2", "files": int(rng.integers(10, 999))}
            ).encode()
            + b"\n"
        )
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return len(data)
