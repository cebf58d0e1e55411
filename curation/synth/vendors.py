"""Vendors, scanners, sites and the private tags each vendor writes.

Everything here is a declaration: the manufacturer and model strings, software versions, kernel names
and private creators are the ones real scanners of that vendor write. Where two vendors encode the same
parameter differently (the diffusion b-value and gradient direction, the CT kernel, the rescale of CT
pixels, the MR scaling), the generator does too: that heterogeneity is what harmonization must detect.

Private elements are declared as ``(group, creator, offset, VR, value)`` and written into the private
block the creator reserves, so a reader that identifies them by creator + offset (as the catalog does)
finds them whatever block they land in.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

#: Stable vendor keys used in ``series.parquet`` (``vendor`` column).
VENDORS = ("ge", "siemens", "philips", "canon")


@dataclass(frozen=True)
class Scanner:
    """One scanner model as it identifies itself in the header."""

    vendor: str
    modality: str
    Manufacturer: str
    ManufacturerModelName: str
    SoftwareVersions: tuple[str, ...]
    DeviceSerialNumber: str
    MagneticFieldStrength: float | None = None
    #: kernel class (soft/lung/bone/brain) -> the vendor's ConvolutionKernel value(s)
    kernels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: CT stored-value convention: True = signed int16 (PixelRepresentation 1)
    ct_signed: bool = False
    #: CT: pixels outside the reconstruction circle carry PixelPaddingValue
    ct_padding: bool = False
    #: GE DWI: b-value stored as 1e9 + b in (0043,1039) (newer software)
    ge_bvalue_offset: bool = False


@dataclass(frozen=True)
class Site:
    """A site: an institution with its scanners and its export habits."""

    key: str
    InstitutionName: str
    InstitutionAddress: str
    station_prefix: str
    ct: Scanner
    mr: Scanner
    #: PatientID format (``str.format`` with ``n``)
    mrn_format: str
    #: file naming style: ``ge`` (IM-0001-0001.dcm), ``uid`` (<SOPInstanceUID>.dcm), ``noext`` (I0001),
    #: ``seq`` (00000001 without extension)
    file_style: str
    #: transfer syntax weights per profile: {profile: {modality: ((uid, weight), ...)}}
    transfer_syntaxes: dict[
        str, dict[str, tuple[tuple[str, float], ...]]
    ]  # see TransferSyntaxWeights
    #: fraction of series this site exports gzip-wrapped (``.dcm.gz``)
    gzip_fraction: float = 0.0


EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
RLE = "1.2.840.10008.1.2.5"

GE_CT = Scanner(
    vendor="ge",
    modality="CT",
    Manufacturer="GE MEDICAL SYSTEMS",
    ManufacturerModelName="Revolution CT",
    SoftwareVersions=("revo_ct_22ms.40",),
    DeviceSerialNumber="*",
    kernels={
        "soft": ("STANDARD",),
        "lung": ("LUNG",),
        "bone": ("BONEPLUS",),
        "brain": ("SOFT",),
    },
    ct_signed=True,
    ct_padding=True,
)
GE_MR = Scanner(
    vendor="ge",
    modality="MR",
    Manufacturer="GE MEDICAL SYSTEMS",
    ManufacturerModelName="SIGNA Premier",
    SoftwareVersions=("29", "LX", "MR29.1_R01_2002.b"),
    DeviceSerialNumber="0000000608HB0MR",
    MagneticFieldStrength=3.0,
    ge_bvalue_offset=True,
)
GE_MR_OLD = Scanner(
    vendor="ge",
    modality="MR",
    Manufacturer="GE MEDICAL SYSTEMS",
    ManufacturerModelName="DISCOVERY MR750",
    SoftwareVersions=("25", "LX", "MR DV25.0_R02_1549.b"),
    DeviceSerialNumber="0000000414MR750",
    MagneticFieldStrength=3.0,
)
SIEMENS_CT = Scanner(
    vendor="siemens",
    modality="CT",
    Manufacturer="SIEMENS",
    ManufacturerModelName="SOMATOM Definition AS+",
    SoftwareVersions=("syngo CT VA48A",),
    DeviceSerialNumber="64551",
    kernels={
        "soft": ("I30f", "3"),
        "lung": ("I70f", "3"),
        "bone": ("B70s",),
        "brain": ("H31s",),
    },
)
SIEMENS_CT_FORCE = Scanner(
    vendor="siemens",
    modality="CT",
    Manufacturer="Siemens Healthineers",
    ManufacturerModelName="SOMATOM Force",
    SoftwareVersions=("syngo CT VB20A",),
    DeviceSerialNumber="75012",
    kernels={
        "soft": ("Br40d", "3"),
        "lung": ("Bl57d", "3"),
        "bone": ("Br64d",),
        "brain": ("Hr38h", "3"),
    },
)
SIEMENS_MR = Scanner(
    vendor="siemens",
    modality="MR",
    Manufacturer="SIEMENS",
    ManufacturerModelName="Prisma_fit",
    SoftwareVersions=("syngo MR E11",),
    DeviceSerialNumber="167021",
    MagneticFieldStrength=3.0,
)
SIEMENS_MR_15 = Scanner(
    vendor="siemens",
    modality="MR",
    Manufacturer="SIEMENS",
    ManufacturerModelName="Avanto_fit",
    SoftwareVersions=("syngo MR E11",),
    DeviceSerialNumber="166318",
    MagneticFieldStrength=1.5,
)
PHILIPS_CT = Scanner(
    vendor="philips",
    modality="CT",
    Manufacturer="Philips",
    ManufacturerModelName="iCT 256",
    SoftwareVersions=("4.1.6",),
    DeviceSerialNumber="200134",
    kernels={"soft": ("B",), "lung": ("L",), "bone": ("YC",), "brain": ("UB",)},
)
PHILIPS_MR = Scanner(
    vendor="philips",
    modality="MR",
    Manufacturer="Philips Medical Systems",
    ManufacturerModelName="Ingenia",
    SoftwareVersions=("5.4.1", "5.4.1.1"),
    DeviceSerialNumber="45123",
    MagneticFieldStrength=3.0,
)
CANON_CT = Scanner(
    vendor="canon",
    modality="CT",
    Manufacturer="TOSHIBA",
    ManufacturerModelName="Aquilion ONE",
    SoftwareVersions=("V6.0ER010",),
    DeviceSerialNumber="2BA1682035",
    kernels={"soft": ("FC07",), "lung": ("FC52",), "bone": ("FC30",), "brain": ("FC26",)},
    ct_signed=True,
)
CANON_MR = Scanner(
    vendor="canon",
    modality="MR",
    Manufacturer="CANON_MEC",
    ManufacturerModelName="Vantage Galan 3T",
    SoftwareVersions=("V6.0SP2000*",),
    DeviceSerialNumber="MAB19X2003",
    MagneticFieldStrength=3.0,
)

# The small profile ships in the repository, so most of its files are RLE; bench is what archives
# hold: mostly uncompressed explicit VR, some implicit VR (one site), a few RLE.
#: transfer syntax weights: {profile: {modality: ((TransferSyntaxUID, weight), ...)}}
TransferSyntaxWeights = dict[str, dict[str, tuple[tuple[str, float], ...]]]

_TS_DEFAULT: TransferSyntaxWeights = {
    "small": {"CT": ((RLE, 0.96), (EXPLICIT_LE, 0.04)), "MR": ((RLE, 0.9), (EXPLICIT_LE, 0.1))},
    "bench": {"CT": ((EXPLICIT_LE, 0.95), (RLE, 0.05)), "MR": ((EXPLICIT_LE, 1.0),)},
}
_TS_IMPLICIT: TransferSyntaxWeights = {
    "small": {"CT": ((RLE, 0.95), (IMPLICIT_LE, 0.05)), "MR": ((RLE, 0.8), (IMPLICIT_LE, 0.2))},
    "bench": {"CT": ((IMPLICIT_LE, 1.0),), "MR": ((IMPLICIT_LE, 1.0),)},
}

SITES: tuple[Site, ...] = (
    Site(
        key="riverside",
        InstitutionName="Riverside General Hospital",
        InstitutionAddress="1200 River Road, Millbrook",
        station_prefix="RGH",
        ct=GE_CT,
        mr=GE_MR,
        mrn_format="{n:08d}",
        file_style="ge",
        transfer_syntaxes=_TS_DEFAULT,
    ),
    Site(
        key="st_aldric",
        InstitutionName="St. Aldric University Medical Center",
        InstitutionAddress="45 Cathedral Square, Easton",
        station_prefix="SAUMC",
        ct=SIEMENS_CT_FORCE,
        mr=SIEMENS_MR,
        mrn_format="SA{n:07d}",
        file_style="uid",
        transfer_syntaxes=_TS_DEFAULT,
        gzip_fraction=0.04,
    ),
    Site(
        key="northbay",
        InstitutionName="Northbay Clinic Imaging",
        InstitutionAddress="8 Harbour View, Northbay",
        station_prefix="NBC",
        ct=PHILIPS_CT,
        mr=PHILIPS_MR,
        mrn_format="NB-{n:06d}",
        file_style="noext",
        transfer_syntaxes=_TS_IMPLICIT,
    ),
    Site(
        key="hollow_pines",
        InstitutionName="Hollow Pines Radiology",
        InstitutionAddress="77 Pine Street, Hollow Pines",
        station_prefix="HPR",
        ct=CANON_CT,
        mr=CANON_MR,
        mrn_format="{n:07d}",
        file_style="seq",
        transfer_syntaxes=_TS_DEFAULT,
    ),
    Site(
        key="lakeshore",
        InstitutionName="Lakeshore Community Hospital",
        InstitutionAddress="3 Lakeshore Drive, Westfield",
        station_prefix="LCH",
        ct=SIEMENS_CT,
        mr=GE_MR_OLD,
        mrn_format="L{n:07d}",
        file_style="ge",
        transfer_syntaxes=_TS_DEFAULT,
    ),
    Site(
        key="eastgate",
        InstitutionName="Eastgate Medical Imaging",
        InstitutionAddress="210 Eastgate Avenue, Eastgate",
        station_prefix="EMI",
        ct=GE_CT,
        mr=SIEMENS_MR_15,
        mrn_format="E{n:07d}",
        file_style="noext",
        transfer_syntaxes=_TS_DEFAULT,
    ),
)


# --- private elements ----------------------------------------------------------------------------

#: A private element declaration: (group, private creator, element offset 0x00-0xFF, VR, value).
PrivateElement = tuple[int, str, int, str, Any]


def add_private(ds: Dataset, elements: Sequence[PrivateElement]) -> None:
    """Write private elements into the blocks their creators reserve (reserving blocks as needed)."""
    for group, creator, offset, vr, value in elements:
        block = ds.private_block(group, creator, create=True)
        block.add_new(offset, vr, value)


def csa2_header(tags: Sequence[tuple[str, str, Sequence[str]]]) -> bytes:
    """Encode a Siemens CSA2 ("SV10") header from ``(name, VR, values)`` triples.

    The layout is the one Siemens writes into (0029,xx10) and (0029,xx20) and that nibabel and
    dcm2niix parse: a 16-byte preamble, then per tag a 84-byte descriptor followed by its items,
    each item a 16-byte length record and a NUL-terminated value padded to 4 bytes.
    """
    out = bytearray(b"SV10\x04\x03\x02\x01")
    out += struct.pack("<2I", len(tags), 77)
    for name, vr, values in tags:
        vm = len(values)
        out += struct.pack("<64si4s3i", name.encode("ascii"), vm, vr.encode("ascii"), 0, vm, 77)
        for value in values:
            raw = value.encode("ascii") + b"\x00"
            out += struct.pack("<4i", len(raw), len(raw), 77, len(raw))
            out += raw + b"\x00" * (-len(raw) % 4)
    return bytes(out)


def _phoenix_protocol(scanner: Scanner, sequence: str) -> str:
    return (
        "### ASCCONV BEGIN ###\n"
        'sProtConsistencyInfo.tBaselineString\t = \t"N4_VE11C_LATEST_20160120"\n'
        f'tSequenceFileName\t = \t"%SiemensSeq%\\\\{sequence}"\n'
        f"sProtConsistencyInfo.flNominalB0\t = \t{scanner.MagneticFieldStrength or 3.0:.4f}\n"
        "sKSpace.ucDimension\t = \t0x2\n"
        "### ASCCONV END ###"
    )


@dataclass(frozen=True)
class DiffusionEncoding:
    """The diffusion weighting of one slice: b-value in s/mm2 and unit gradient direction."""

    b_value: float
    direction: tuple[float, float, float]


def ct_private(scanner: Scanner, acq: dict[str, Any]) -> list[PrivateElement]:
    """The private elements a CT scanner of this vendor writes (constant within a series)."""
    if scanner.vendor == "ge":
        return [
            (0x0009, "GEMS_IDEN_01", 0x01, "LO", "CT_LIGHTSPEED"),
            (0x0009, "GEMS_IDEN_01", 0x02, "SH", acq["station"]),
            (0x0019, "GEMS_ACQU_01", 0x23, "DS", f"{acq['table_speed_mm_s']:.2f}"),
            (0x0019, "GEMS_ACQU_01", 0x27, "DS", f"{acq['rotation_s']:.3f}"),
            (0x0019, "GEMS_ACQU_01", 0x39, "SS", 2 if acq["body_part"] == "chest" else 1),
            (0x0043, "GEMS_PARM_01", 0x31, "DS", ["0.0", "0.0"]),
            (0x0043, "GEMS_PARM_01", 0x64, "CS", ["NONE", "AAR2"]),
            (0x0045, "GEMS_HELIOS_01", 0x01, "SS", 64),
            (0x0045, "GEMS_HELIOS_01", 0x02, "FL", 0.625),
            (0x0053, "GEHC_CT_ADVAPP_001", 0x42, "SS", 1),
            (0x0053, "GEHC_CT_ADVAPP_001", 0x43, "SS", acq["iterative_level"]),
        ]
    if scanner.vendor == "siemens":
        return [
            (0x0019, "SIEMENS CT VA0  COAD", 0x92, "DS", f"{acq['rotation_s']:.2f}"),
            (0x0019, "SIEMENS CT VA0  COAD", 0xB0, "DS", f"{acq['table_speed_mm_s']:.1f}"),
            (0x0021, "SIEMENS MED", 0x11, "DS", ["0", "0"]),
            (0x0029, "SIEMENS CSA HEADER", 0x08, "CS", "IMAGE NUM 4"),
            (0x0029, "SIEMENS CSA HEADER", 0x09, "LO", "20180321"),
            (
                0x0029,
                "SIEMENS CSA HEADER",
                0x10,
                "OB",
                csa2_header([("ProtocolName", "LO", [acq["protocol"]])]),
            ),
        ]
    if scanner.vendor == "philips":
        return [
            (0x00E1, "ELSCINT1", 0x40, "SH", acq["protocol"][:16]),
            (0x01F1, "ELSCINT1", 0x01, "CS", "SPIRAL"),
            (0x01F1, "ELSCINT1", 0x26, "DS", f"{acq['pitch']:.3f}"),
            (0x01F1, "ELSCINT1", 0x4B, "SH", "128x0.625"),
            (0x01F1, "ELSCINT1", 0x4E, "SH", "Chest" if acq["body_part"] == "chest" else "Brain"),
        ]
    return [
        (0x7005, "TOSHIBA_MEC_CT3", 0x08, "DS", f"{acq['pitch']:.3f}"),
        (0x7005, "TOSHIBA_MEC_CT3", 0x0B, "CS", "ORG"),
        (0x7005, "TOSHIBA_MEC_CT3", 0x13, "CS", "ON"),
        (0x7005, "TOSHIBA_MEC_CT3", 0x40, "SH", "AIDR 3D STD"),
    ]


def mr_private(
    scanner: Scanner, acq: dict[str, Any], diffusion: DiffusionEncoding | None
) -> list[PrivateElement]:
    """The private elements an MR scanner of this vendor writes for one slice.

    The diffusion b-value and direction go where each vendor puts them:

    - GE: b-value in ``GEMS_PARM_01`` (0043,xx39) IS, first value, plus 1e9 on newer software;
      direction in ``GEMS_ACQU_01`` (0019,xxBB/BC/BD) DS.
    - Siemens: ``SIEMENS CSA HEADER`` (0019,xx0C) B_value IS, (0019,xx0E) direction FD, and again
      inside the CSA2 image header (0029,xx10).
    - Philips: ``Philips Imaging DD 001`` (2001,xx03) FL b-factor, ``Philips MR Imaging DD 001``
      (2005,xxB0/B1/B2) FL direction.
    - Canon: public DiffusionBValue (0018,9087) plus ImageComments ``b=1000(0.577,...)`` (set by the
      caller) and a ``CANON_MEC_MR3`` block.
    """
    b = diffusion.b_value if diffusion else 0.0
    g = diffusion.direction if diffusion else (0.0, 0.0, 0.0)
    if scanner.vendor == "ge":
        elems: list[PrivateElement] = [
            (0x0009, "GEMS_IDEN_01", 0x04, "SH", "SIGNA"),
            (0x0019, "GEMS_ACQU_01", 0x9C, "LO", acq["pulse_sequence"]),
            (0x0043, "GEMS_PARM_01", 0x2C, "SS", 0),
        ]
        if diffusion is not None:
            stored = int(b) + (1_000_000_000 if scanner.ge_bvalue_offset else 0)
            elems += [
                (0x0019, "GEMS_ACQU_01", 0xBB, "DS", f"{g[0]:.6f}"),
                (0x0019, "GEMS_ACQU_01", 0xBC, "DS", f"{g[1]:.6f}"),
                (0x0019, "GEMS_ACQU_01", 0xBD, "DS", f"{g[2]:.6f}"),
                (0x0043, "GEMS_PARM_01", 0x39, "IS", [str(stored), "8", "0", "0"]),
            ]
        return elems
    if scanner.vendor == "siemens":
        csa = [
            ("SliceNormalVector", "FD", ["0.00000000", "0.00000000", "1.00000000"]),
            ("PhaseEncodingDirectionPositive", "IS", ["1"]),
            ("BandwidthPerPixelPhaseEncode", "FD", [f"{acq['bandwidth']:.8f}"]),
        ]
        elems = [(0x0019, "SIEMENS MR HEADER", 0x08, "CS", "IMAGE NUM 4")]
        if diffusion is not None:
            csa += [
                ("B_value", "IS", [str(int(b))]),
                ("DiffusionDirectionality", "CS", ["DIRECTIONAL" if b > 0 else "NONE"]),
            ]
            if b > 0:
                csa.append(("DiffusionGradientDirection", "FD", [f"{v:.8f}" for v in g]))
            elems += [
                (0x0019, "SIEMENS MR HEADER", 0x0C, "IS", str(int(b))),
                (0x0019, "SIEMENS MR HEADER", 0x0D, "CS", "DIRECTIONAL" if b > 0 else "NONE"),
            ]
            if b > 0:
                elems.append((0x0019, "SIEMENS MR HEADER", 0x0E, "FD", list(g)))
        elems += [
            (0x0029, "SIEMENS CSA HEADER", 0x08, "CS", "IMAGE NUM 4"),
            (0x0029, "SIEMENS CSA HEADER", 0x10, "OB", csa2_header(csa)),
            (0x0029, "SIEMENS CSA HEADER", 0x18, "CS", "MR"),
            (
                0x0029,
                "SIEMENS CSA HEADER",
                0x20,
                "OB",
                csa2_header(
                    [
                        (
                            "MrPhoenixProtocol",
                            "UN",
                            [_phoenix_protocol(scanner, acq["pulse_sequence"])],
                        )
                    ]
                ),
            ),
            (0x0051, "SIEMENS MR HEADER", 0x0E, "LO", "Tra"),
            (0x0051, "SIEMENS MR HEADER", 0x13, "SH", "+LPH"),
        ]
        return elems
    if scanner.vendor == "philips":
        elems = [
            (0x2001, "Philips Imaging DD 001", 0x20, "LO", acq["pulse_sequence"]),
            (0x2001, "Philips Imaging DD 001", 0x0B, "CS", "TRANSVERSAL"),
            (0x2005, "Philips MR Imaging DD 001", 0x0E, "FL", acq["philips_scale_slope"]),
        ]
        if diffusion is not None:
            elems += [
                (0x2001, "Philips Imaging DD 001", 0x03, "FL", float(b)),
                (0x2001, "Philips Imaging DD 001", 0x04, "CS", "O" if b > 0 else "N"),
                (0x2005, "Philips MR Imaging DD 001", 0xB0, "FL", float(g[0])),
                (0x2005, "Philips MR Imaging DD 001", 0xB1, "FL", float(g[1])),
                (0x2005, "Philips MR Imaging DD 001", 0xB2, "FL", float(g[2])),
            ]
        return elems
    return [
        (0x700D, "CANON_MEC_MR3", 0x05, "DS", ["0.240", "0.240", "0.240", "0.240"]),
        (0x700D, "CANON_MEC_MR3", 0x0C, "CS", "Y"),
    ]
