"""Planning a cohort: patients, studies, series, and which series get which defect.

Planning draws everything from one generator seeded with the cohort seed, in a fixed order, and
produces plain frozen specs. Each series is then written from its own spec and its own generator
(seeded with the cohort seed and the series' position in the plan), so a series' bytes do not depend
on which worker writes it or in what order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curation.synth.defects import DEFECTS, DefectKind
from curation.synth.identities import patient, person_name, physician_name
from curation.synth.phantom import Z_EXTENT
from curation.synth.reports import make_report
from curation.synth.vendors import RLE, SITES, Scanner, Site


@dataclass(frozen=True)
class Profile:
    """Size knobs of a cohort."""

    name: str
    ct_matrix: int
    mr_matrix: int
    dwi_matrix: int
    #: CT slices per axial series are min(coverage / spacing, ct_max_slices)
    ct_max_slices: int
    ct_min_slices: int
    mr_slices: tuple[int, int]
    dwi_directions: int
    #: extra CT reconstructions (thin lung/bone kernels) per CT study: (min, max)
    ct_extra_series: tuple[int, int]
    noise_ct_hu: float
    noise_mr: float
    #: amplitude of the smooth MR intensity shading (coil sensitivity); 0 keeps RLE small
    mr_shading: float
    default_patients: int
    #: every plantable defect kind is planted at least this many times (when enough series exist)
    min_per_kind: int
    n_junk_min: int


PROFILES: dict[str, Profile] = {
    "small": Profile(
        name="small",
        ct_matrix=256,
        mr_matrix=128,
        dwi_matrix=96,
        ct_max_slices=16,
        ct_min_slices=10,
        mr_slices=(10, 14),
        dwi_directions=1,
        ct_extra_series=(0, 1),
        noise_ct_hu=0.0,
        noise_mr=0.0,
        mr_shading=0.0,
        default_patients=36,
        min_per_kind=3,
        n_junk_min=4,
    ),
    "bench": Profile(
        name="bench",
        ct_matrix=512,
        mr_matrix=256,
        dwi_matrix=128,
        ct_max_slices=640,
        ct_min_slices=30,
        mr_slices=(24, 36),
        dwi_directions=3,
        ct_extra_series=(1, 2),
        noise_ct_hu=9.0,
        noise_mr=12.0,
        mr_shading=0.4,
        default_patients=200,
        min_per_kind=3,
        n_junk_min=10,
    ),
}


@dataclass(frozen=True)
class StudySpec:
    """Study-level attributes shared by the series of a study."""

    PatientID: str
    PatientName: str
    PatientBirthDate: str
    PatientSex: str
    PatientAge: str
    PatientWeight: float
    PatientSize: float
    StudyInstanceUID: str
    StudyDate: str
    StudyTime: str
    AccessionNumber: str
    StudyID: str
    StudyDescription: str
    ReferringPhysicianName: str
    OperatorsName: str
    study_type: str
    body_scale: float


@dataclass(frozen=True)
class SeriesSpec:
    """Everything needed to write one series."""

    key: tuple[int, int, int, int]
    site: Site
    scanner: Scanner
    study: StudySpec
    series_type: str
    body_part: str
    SeriesInstanceUID: str
    FrameOfReferenceUID: str
    SeriesNumber: int
    SeriesDescription: str
    orientation: str
    n_positions: int
    spacing_mm: float
    SliceThickness: float
    rows: int
    columns: int
    pixel_spacing_mm: float
    center: tuple[float, float, float]
    transfer_syntax: str
    file_format: str
    series_dir: str
    contrast_phase: str | None = None
    kernel_class: str | None = None
    b_values: tuple[float, ...] = ()
    n_directions: int = 0
    acq: dict[str, Any] = field(default_factory=dict)
    defect: str | None = None


@dataclass(frozen=True)
class CohortPlan:
    """The plan of a cohort: series specs, reports and junk files."""

    series: tuple[SeriesSpec, ...]
    reports: tuple[dict[str, Any], ...]
    junk: tuple[tuple[str, str], ...]


def uid(rng: np.random.Generator) -> str:
    """A UID under the 2.25 root (PS3.5 B.2): a random 128-bit integer."""
    return "2.25." + str(int.from_bytes(rng.bytes(16), "big"))


_CT_DESCRIPTIONS = {
    "ge": "{part} {phase} {thk}mm {kernel}",
    "siemens": "{part} {thk} {kernel0} {phase_short}",
    "philips": "{part} {phase} {thk}mm {kernel}",
    "canon": "{part} {thk} {kernel} {phase_short}",
}
_PHASE_LABEL = {
    "non_contrast": ("NON CON", "nat"),
    "arterial": ("ARTERIAL", "art"),
    "portal_venous": ("PORTAL VENOUS", "ven"),
    "delayed": ("DELAYED", "del"),
}
_LOCALIZER_DESC = {
    "ge": "Scout",
    "siemens": "Topogram  0.6  T20s",
    "philips": "Surview",
    "canon": "Scanogram",
}
_MR_DESC = {
    "ge": {"mr_localizer": "3Plane Loc SSFSE", "mr_t1": "Ax T1 SE", "mr_t1_sag": "Sag T1 FLAIR",
           "mr_t1_post": "Ax T1 SE +C", "mr_t2": "Ax T2 FSE", "mr_flair": "Ax T2 FLAIR",
           "mr_dwi": "Ax DWI 1000b"},
    "siemens": {"mr_localizer": "localizer", "mr_t1": "t1_se_tra", "mr_t1_sag": "t1_mprage_sag_p2",
                "mr_t1_post": "t1_se_tra_KM", "mr_t2": "t2_tse_tra_p2",
                "mr_flair": "t2_tirm_tra_dark-fluid", "mr_dwi": "ep2d_diff_3scan_p2"},
    "philips": {"mr_localizer": "Survey", "mr_t1": "T1W_SE", "mr_t1_sag": "sT1W_3D_TFE",
                "mr_t1_post": "T1W_SE+C", "mr_t2": "T2W_TSE", "mr_flair": "T2W_FLAIR",
                "mr_dwi": "DWI_b1000"},
    "canon": {"mr_localizer": "Locator", "mr_t1": "T1W_SE_AX", "mr_t1_sag": "T1W_3D_SAG",
              "mr_t1_post": "T1W_SE_AX_CE", "mr_t2": "T2W_FSE_AX", "mr_flair": "FLAIR_AX",
              "mr_dwi": "DWI_b0_1000"},
}  # fmt: skip
_MR_ACQ = {
    "mr_t1": {"ScanningSequence": "SE", "SequenceVariant": "SK", "RepetitionTime": 550.0,
              "EchoTime": 12.0, "FlipAngle": 90.0, "EchoTrainLength": 1, "pulse_sequence": "se"},
    "mr_t1_sag": {"ScanningSequence": "GR\\IR", "SequenceVariant": "SK\\SP\\MP",
                  "RepetitionTime": 2300.0, "EchoTime": 2.32, "InversionTime": 900.0,
                  "FlipAngle": 8.0, "EchoTrainLength": 1, "pulse_sequence": "tfl3d1_16ns"},
    "mr_t2": {"ScanningSequence": "SE", "SequenceVariant": "SK\\SP", "RepetitionTime": 5000.0,
              "EchoTime": 95.0, "FlipAngle": 150.0, "EchoTrainLength": 16, "pulse_sequence": "tse2d1_16"},
    "mr_flair": {"ScanningSequence": "SE\\IR", "SequenceVariant": "SK\\SP\\MP",
                 "RepetitionTime": 9000.0, "EchoTime": 120.0, "InversionTime": 2500.0,
                 "FlipAngle": 150.0, "EchoTrainLength": 18, "pulse_sequence": "tir2d1_18"},
    "mr_dwi": {"ScanningSequence": "EP", "SequenceVariant": "SK\\SP", "RepetitionTime": 5400.0,
               "EchoTime": 82.0, "FlipAngle": 90.0, "EchoTrainLength": 1, "pulse_sequence": "epi2"},
    "mr_localizer": {"ScanningSequence": "GR", "SequenceVariant": "SP", "RepetitionTime": 8.6,
                     "EchoTime": 4.0, "FlipAngle": 20.0, "EchoTrainLength": 1, "pulse_sequence": "fl2d1"},
}  # fmt: skip


def _safe(name: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in name)
    return keep.strip("_")[:40] or "series"


def _ts(rng: np.random.Generator, site: Site, profile: str, modality: str) -> str:
    options = site.transfer_syntaxes[profile][modality]
    weights = np.array([w for _, w in options])
    return options[int(rng.choice(len(options), p=weights / weights.sum()))][0]


def _file_format(rng: np.random.Generator, site: Site, ts: str) -> str:
    if site.gzip_fraction and ts != RLE and rng.random() < site.gzip_fraction * 5:
        return "dcm.gz"
    return "noext" if site.file_style in ("noext", "seq") else "dcm"


def plan_cohort(*, patients: int, seed: int, profile: Profile, defect_rate: float) -> CohortPlan:
    """Plan a cohort of ``patients`` patients (see the module docstring)."""
    rng = np.random.default_rng(seed)
    series: list[SeriesSpec] = []
    reports: list[dict[str, Any]] = []
    for p in range(patients):
        site = SITES[p % len(SITES)]
        year = int(rng.integers(2019, 2024))
        person = patient(rng, site.mrn_format, year)
        kinds = []
        r = rng.random()
        if r < 0.4 or patients == 1:
            kinds = ["ct", "mr"]
        elif r < 0.75:
            kinds = ["ct"]
        else:
            kinds = ["mr"]
        for s_idx, kind in enumerate(kinds):
            study_type = (
                "mr_brain" if kind == "mr" else ("ct_chest" if rng.random() < 0.6 else "ct_head")
            )
            month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
            date = f"{year:04d}{month:02d}{day:02d}"
            time = f"{int(rng.integers(7, 20)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
            age = year - int(person.PatientBirthDate[:4])
            contrast = study_type != "ct_head" and rng.random() < 0.6
            study = StudySpec(
                PatientID=person.PatientID,
                PatientName=person.PatientName,
                PatientBirthDate=person.PatientBirthDate,
                PatientSex=person.PatientSex,
                PatientAge=f"{age:03d}Y",
                PatientWeight=person.PatientWeight,
                PatientSize=person.PatientSize,
                StudyInstanceUID=uid(rng),
                StudyDate=date,
                StudyTime=time,
                AccessionNumber=f"{site.station_prefix[:2]}{int(rng.integers(10**7, 10**8))}",
                StudyID=str(int(rng.integers(1000, 99999))),
                StudyDescription={
                    "ct_chest": "CT CHEST W CONTRAST" if contrast else "CT CHEST WO CONTRAST",
                    "ct_head": "CT HEAD WO CONTRAST",
                    "mr_brain": "MRI BRAIN W/WO CONTRAST" if contrast else "MRI BRAIN WO CONTRAST",
                }[study_type],
                ReferringPhysicianName=physician_name(rng),
                OperatorsName=person_name(rng),
                study_type=study_type,
                body_scale=round(float(rng.uniform(0.9, 1.1)), 3),
            )
            study_dir = f"dicom/{site.key}/{person.PatientID}/{date}_{study.AccessionNumber}"
            rep = make_report(
                rng,
                study_type,
                contrast=contrast,
                patient_name=person.PatientName,
                patient_id=person.PatientID,
                study_date=date,
                physician=physician_name(rng),
                include_header_phi=rng.random() < 0.5,
            )
            reports.append(
                {
                    "PatientID": person.PatientID,
                    "StudyInstanceUID": study.StudyInstanceUID,
                    "AccessionNumber": study.AccessionNumber,
                    "study_type": study_type,
                    "report_path": f"reports/{study.AccessionNumber}.txt",
                    "report_text": rep.text,
                    "findings": [f.__dict__ for f in rep.findings],
                }
            )
            planner = _plan_ct if kind == "ct" else _plan_mr
            for spec in planner(rng, profile, site, study, contrast, study_dir, (seed, p, s_idx)):
                series.append(spec)
    series = _assign_defects(rng, series, profile, defect_rate)
    junk = _plan_junk(rng, series, profile)
    return CohortPlan(tuple(series), tuple(reports), tuple(junk))


def _spec(
    rng: np.random.Generator,
    profile: Profile,
    site: Site,
    scanner: Scanner,
    study: StudySpec,
    study_dir: str,
    key: tuple[int, int, int, int],
    number: int,
    description: str,
    frame_of_reference: str,
    **kw: Any,
) -> SeriesSpec:
    ts = _ts(rng, site, profile.name, scanner.modality)
    if profile.name == "small" and kw["series_type"] == "ct_axial":
        # 256x256 uncompressed CT stacks would dominate the size of the shipped sample
        ts = RLE
    series_dir = f"{study_dir}/{number:03d}_{_safe(description)}"
    return SeriesSpec(
        key=key,
        site=site,
        scanner=scanner,
        study=study,
        SeriesInstanceUID=uid(rng),
        FrameOfReferenceUID=frame_of_reference,
        SeriesNumber=number,
        SeriesDescription=description,
        transfer_syntax=ts,
        file_format=_file_format(rng, site, ts),
        series_dir=series_dir,
        **kw,
    )


def _plan_ct(
    rng: np.random.Generator,
    profile: Profile,
    site: Site,
    study: StudySpec,
    contrast: bool,
    study_dir: str,
    key: tuple[int, int, int],
) -> list[SeriesSpec]:
    scanner = site.ct
    body = "chest" if study.study_type == "ct_chest" else "head"
    zlo, zhi = Z_EXTENT[body]
    for_uid = uid(rng)
    kvp = float(rng.choice([100.0, 120.0, 120.0, 140.0] if body == "chest" else [120.0, 120.0]))
    acq = {
        "body_part": body,
        "station": f"{site.station_prefix}CT{int(rng.integers(1, 3))}",
        "KVP": kvp,
        "XRayTubeCurrent": int(rng.integers(80, 400)),
        "rotation_s": float(rng.choice([0.28, 0.35, 0.5, 1.0])),
        "table_speed_mm_s": float(rng.uniform(40, 160)),
        "pitch": float(rng.choice([0.516, 0.984, 1.375])),
        "iterative_level": int(rng.integers(0, 6)),
        "protocol": "CHEST ROUTINE" if body == "chest" else "HEAD ROUTINE",
        "TableHeight": round(float(rng.uniform(120, 180)), 1),
    }
    specs: list[SeriesSpec] = []
    n_loc = 2 if scanner.vendor in ("siemens", "canon") and rng.random() < 0.5 else 1
    fov = (
        float(rng.choice([340.0, 360.0, 400.0]))
        if body == "chest"
        else float(rng.choice([220.0, 240.0]))
    )
    # localizer
    specs.append(
        _spec(
            rng, profile, site, scanner, study, study_dir, (*key, 0), 1,
            _LOCALIZER_DESC[scanner.vendor], for_uid,
            series_type="ct_localizer", body_part=body, orientation="coronal",
            n_positions=n_loc, spacing_mm=0.0, SliceThickness=1.0 if body == "head" else 0.6,
            rows=profile.ct_matrix // 2 if profile.name == "small" else profile.ct_matrix,
            columns=profile.ct_matrix,
            pixel_spacing_mm=round(fov * 1.4 / profile.ct_matrix, 4),
            center=(0.0, 0.0, (zlo + zhi) / 2), acq=acq,
        )
    )  # fmt: skip
    phases = ["non_contrast"]
    if contrast:
        phases = [str(rng.choice(["portal_venous", "arterial", "delayed"]))]
        if rng.random() < 0.3:
            phases = ["non_contrast", *phases]
    recons: list[tuple[str, str, float]] = []
    main_kernel = "soft" if body == "chest" else "brain"
    for ph in phases:
        recons.append((ph, main_kernel, float(rng.choice([2.5, 3.0, 5.0]))))
    n_extra = int(rng.integers(profile.ct_extra_series[0], profile.ct_extra_series[1] + 1))
    extra_kernels = ["lung", "bone"] if body == "chest" else ["bone", "soft"]
    for i in range(n_extra):
        recons.append((phases[-1], extra_kernels[i % 2], float(rng.choice([0.625, 1.0, 1.25]))))
    coverage = (zhi - zlo) * float(rng.uniform(0.85, 1.0))
    for i, (phase, kclass, thk) in enumerate(recons):
        spacing = thk if rng.random() < 0.7 else round(thk * 0.8, 3)
        n = int(min(profile.ct_max_slices, max(profile.ct_min_slices, coverage // spacing)))
        cz = (zlo + zhi) / 2 + float(rng.uniform(-10, 10))
        kernel = scanner.kernels[kclass]
        label_long, label_short = _PHASE_LABEL[phase]
        desc = _CT_DESCRIPTIONS[scanner.vendor].format(
            part="CHEST" if body == "chest" else "HEAD",
            phase=label_long,
            phase_short=label_short,
            thk=f"{thk:g}",
            kernel=kernel[0],
            kernel0=kernel[0][:3],
        )
        specs.append(
            _spec(
                rng, profile, site, scanner, study, study_dir, (*key, i + 1), 2 + i, desc, for_uid,
                series_type="ct_axial", body_part=body, orientation="axial",
                n_positions=n, spacing_mm=spacing, SliceThickness=thk,
                rows=profile.ct_matrix, columns=profile.ct_matrix,
                pixel_spacing_mm=round(fov / profile.ct_matrix, 6),
                center=(0.0, float(rng.uniform(-15, 15)), cz),
                contrast_phase=phase, kernel_class=kclass, acq=acq,
            )
        )  # fmt: skip
    return specs


def _plan_mr(
    rng: np.random.Generator,
    profile: Profile,
    site: Site,
    study: StudySpec,
    contrast: bool,
    study_dir: str,
    key: tuple[int, int, int],
) -> list[SeriesSpec]:
    scanner = site.mr
    descs = _MR_DESC[scanner.vendor]
    for_uid = uid(rng)
    base_acq = {
        "body_part": "head",
        "station": f"{site.station_prefix}MR{int(rng.integers(1, 3))}",
        "bandwidth": float(rng.uniform(15, 40)),
        "philips_scale_slope": round(float(rng.uniform(0.002, 0.01)), 6),
        "protocol": "BRAIN ROUTINE",
    }
    plan: list[tuple[str, str]] = [("mr_localizer", "mr_localizer")]
    sag = rng.random() < 0.35
    plan.append(("mr_t1", "mr_t1_sag" if sag else "mr_t1"))
    plan += [("mr_t2", "mr_t2"), ("mr_flair", "mr_flair"), ("mr_dwi", "mr_dwi")]
    if contrast:
        plan.append(("mr_t1", "mr_t1_post"))
    specs: list[SeriesSpec] = []
    fov = float(rng.choice([220.0, 230.0, 240.0]))
    cz = float(rng.uniform(-5, 10))
    for i, (stype, variant) in enumerate(plan):
        acq = {**base_acq, **_MR_ACQ["mr_t1" if variant == "mr_t1_post" else variant]}
        matrix = profile.dwi_matrix if stype == "mr_dwi" else profile.mr_matrix
        if stype == "mr_localizer":
            n, spacing, thk, orientation = 3, 0.0, 10.0, "axial"
        else:
            lo, hi = profile.mr_slices
            n = int(rng.integers(lo, hi + 1))
            thk = float(rng.choice([4.0, 5.0, 6.0])) if variant != "mr_t1_sag" else 1.0
            gap = float(rng.choice([0.0, 0.5, 1.0])) if variant != "mr_t1_sag" else 0.0
            spacing = thk + gap
            if variant == "mr_t1_sag":
                # a 3D sagittal volume: thin slices, covering the head in x
                spacing = thk = round(150.0 / n, 3)
            orientation = "sagittal" if variant == "mr_t1_sag" else "axial"
        b_values: tuple[float, ...] = ()
        n_dirs = 0
        if stype == "mr_dwi":
            b_values = (0.0, 1000.0)
            n_dirs = profile.dwi_directions
        specs.append(
            _spec(
                rng, profile, site, scanner, study, study_dir, (*key, i), i + 1, descs[variant],
                for_uid,
                series_type=stype, body_part="head", orientation=orientation,
                n_positions=n, spacing_mm=spacing, SliceThickness=thk,
                rows=matrix, columns=matrix, pixel_spacing_mm=round(fov / matrix, 6),
                center=(0.0, 0.0, cz),
                contrast_phase=(
                    ("post_contrast" if variant == "mr_t1_post" else "non_contrast")
                    if stype == "mr_t1" else None
                ),
                b_values=b_values, n_directions=n_dirs, acq=acq,
            )
        )  # fmt: skip
    return specs


def _compatible(kind: DefectKind, spec: SeriesSpec) -> bool:
    return (
        spec.scanner.modality in kind.modalities
        and spec.series_type in kind.series_types
        and spec.n_positions >= kind.min_slices
        and not (kind.level == "file" and spec.file_format == "dcm.gz")
    )


def _assign_defects(
    rng: np.random.Generator, series: list[SeriesSpec], profile: Profile, defect_rate: float
) -> list[SeriesSpec]:
    plantable = [k for k in DEFECTS.values() if k.series_types]
    eligible = [i for i, s in enumerate(series) if any(_compatible(k, s) for k in plantable)]
    target = round(defect_rate * len(eligible))
    # the quota of every kind wins over the rate, but clean series stay the majority
    n_defective = min(max(target, profile.min_per_kind * len(plantable)), int(0.5 * len(eligible)))
    if defect_rate == 0:
        n_defective = 0
    queue: list[DefectKind] = []
    n_compatible = {k.code: sum(_compatible(k, series[i]) for i in eligible) for k in plantable}
    while len(queue) < n_defective:
        round_ = [plantable[int(i)] for i in rng.permutation(len(plantable))]
        # the most selective kinds choose first, so that each finds a series it fits
        queue += sorted(round_, key=lambda k: n_compatible[k.code])
    queue = queue[:n_defective]
    order = list(rng.permutation(eligible))
    chosen: dict[int, str] = {}
    for kind in queue:
        for i in order:
            if i not in chosen and _compatible(kind, series[i]):
                chosen[int(i)] = kind.code
                break
    out = []
    for i, s in enumerate(series):
        if i in chosen:
            s = SeriesSpec(**{**s.__dict__, "defect": chosen[i]})
        out.append(s)
    return out


_JUNK = (
    ("Thumbs.db", "ole"),
    (".DS_Store", "dsstore"),
    ("export.log", "text"),
    ("thumbnail.jpg", "jpeg"),
    ("README.TXT", "text"),
    ("VERSION", "text"),
)


def _plan_junk(
    rng: np.random.Generator, series: list[SeriesSpec], profile: Profile
) -> list[tuple[str, str]]:
    n_files = sum(s.n_positions for s in series)
    n = max(profile.n_junk_min, math.ceil(n_files / 1000))
    dirs = sorted({s.series_dir for s in series} | {s.series_dir.rsplit("/", 1)[0] for s in series})
    junk = []
    used: set[str] = set()
    for i in range(n):
        name, kind = _JUNK[i % len(_JUNK)]
        d = dirs[int(rng.integers(0, len(dirs)))]
        path = f"{d}/{name}"
        if path in used:
            continue
        used.add(path)
        junk.append((path, kind))
    return junk
