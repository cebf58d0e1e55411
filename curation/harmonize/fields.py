"""The harmonized fields, declared once: name, unit, meaning, and per vendor where the value comes from.

Two kinds of declaration live here:

- :data:`RAW` — the elements the fields read, by private creator + creator-relative tag for private
  ones (never raw group/element), pivoted set-based from ``elements`` into one column each;
- :data:`FIELDS` — the harmonized fields. Each :class:`Source` is a SQL expression over the pivoted
  row of one image (``level='image'``: diffusion b-value and gradient) or of the first image of the
  series (``level='series'``), for one vendor or for every vendor (``'*'``, the public fallback).
  A field's value is the vendor's expression where it gives one, else the public one.

:mod:`curation.harmonize.tables` turns the declarations into its tables' SQL; ``docs/harmonize.md`` renders them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Raw:
    """An element the harmonized fields read, pivoted into column ``name``.

    ``tag`` is 'GGGGEEEE' for public elements, 'GGGGxxEE' (with ``creator``) for private ones.
    ``nested`` also looks inside sequences (enhanced multi-frame functional groups), taking the
    first occurrence in path order: the shared groups (5200,9229) sort before the per-frame ones.
    """

    name: str
    tag: str
    creator: str | None = None
    nested: bool = False


RAW: tuple[Raw, ...] = (
    # GE
    Raw("ge_b", "0043xx39", "GEMS_PARM_01"),
    Raw("ge_gx", "0019xxBB", "GEMS_ACQU_01"),
    Raw("ge_gy", "0019xxBC", "GEMS_ACQU_01"),
    Raw("ge_gz", "0019xxBD", "GEMS_ACQU_01"),
    Raw("ge_echo_spacing_us", "0043xx2C", "GEMS_PARM_01"),
    Raw("ge_asset", "0043xx83", "GEMS_PARM_01"),
    Raw("ge_pe_rc", "0043xx8A", "GEMS_PARM_01"),
    Raw("ge_n_directions", "0019xxE0", "GEMS_ACQU_01"),
    # Siemens (classic: SIEMENS MR HEADER; XA enhanced: SIEMENS MR SDI 02 inside the groups)
    Raw("sie_b", "0019xx0C", "SIEMENS MR HEADER"),
    Raw("sie_grad", "0019xx0E", "SIEMENS MR HEADER"),
    Raw("sie_bwpppe", "0019xx28", "SIEMENS MR HEADER"),
    Raw("sie_mosaic_n", "0019xx0A", "SIEMENS MR HEADER"),
    Raw("sie_slice_times_ms", "0019xx29", "SIEMENS MR HEADER"),
    Raw("sie_xa_bwpppe", "0021xx53", "SIEMENS MR SDI 02", nested=True),
    Raw("sie_xa_pe_positive", "0021xx1C", "SIEMENS MR SDI 02", nested=True),
    # Philips
    Raw("phi_b", "2001xx03", "Philips Imaging DD 001"),
    Raw("phi_gx", "2005xxB0", "Philips MR Imaging DD 001"),
    Raw("phi_gy", "2005xxB1", "Philips MR Imaging DD 001"),
    Raw("phi_gz", "2005xxB2", "Philips MR Imaging DD 001"),
    # UIH
    Raw("uih_b", "0065xx09", "Image Private Header"),
    Raw("uih_grad", "0065xx37", "Image Private Header"),
    Raw("uih_pe_displayed", "0065xx05", "Image Private Header"),
    Raw("uih_matrix", "0065xx04", "Image Private Header"),
    # public, possibly inside functional groups
    Raw("pe_rc", "00181312", nested=True),
    Raw("diffusion_b", "00189087", nested=True),
    Raw("diffusion_grad", "00189089", nested=True),
    Raw("acquisition_matrix", "00181310"),
    Raw("pe_steps", "00189231", nested=True),
    Raw("effective_echo_time", "00189082", nested=True),
    Raw("tr_nested", "00180080", nested=True),
    Raw("flip_nested", "00181314", nested=True),
    Raw("parallel_factor", "00189069", nested=True),
    Raw("echo_train_length", "00180091", nested=True),
    Raw("image_comments", "00204000"),
)


@dataclass(frozen=True)
class Source:
    """Where one vendor's value of a field comes from: words for people, SQL for DuckDB."""

    vendor: str  # a vendors.VENDORS name, or '*' for every vendor (public fallback)
    where: str
    sql: str


@dataclass(frozen=True)
class Field:
    """A harmonized, vendor-neutral field of ``harmonized_series`` (or ``harmonized_images``)."""

    name: str
    sql_type: str
    unit: str
    description: str
    sources: tuple[Source, ...]
    level: str = "series"  # 'series' (first image of the series) or 'image'


def _f(v: str) -> str:
    """First value of a backslash-joined text, as DOUBLE."""
    return f"TRY_CAST(trim(split_part({v}, '\\', 1)) AS DOUBLE)"


def _vec3(v: str) -> str:
    return (
        f"CASE WHEN len(string_split({v}, '\\')) = 3 THEN "
        f"CAST(list_transform(string_split({v}, '\\'), lambda x: TRY_CAST(trim(x) AS DOUBLE)) AS DOUBLE[3]) END"
    )


def _xyz(x: str, y: str, z: str) -> str:
    return f"CASE WHEN {x} IS NOT NULL THEN [{_f(x)}, {_f(y)}, {_f(z)}]::DOUBLE[3] END"


# Phase-encoding lines of the reconstructed image: Rows for COL, Columns for ROW, divided by the
# tiles per side of a Siemens mosaic.
_RECON_PE = (
    "(CASE WHEN pe_rc_norm = 'COL' THEN \"Rows\" WHEN pe_rc_norm = 'ROW' THEN \"Columns\" END)"
    " / coalesce(ceil(sqrt(" + _f("sie_mosaic_n") + ")), 1)"
)
# AcquisitionMatrix (0018,1310) is freq rows \ freq cols \ phase rows \ phase cols: one of the
# phase values is 0.
_ACQ_PE = (
    "coalesce(nullif(greatest(TRY_CAST(split_part(acquisition_matrix, '\\', 3) AS DOUBLE), "
    "TRY_CAST(split_part(acquisition_matrix, '\\', 4) AS DOUBLE)), 0), " + _f("pe_steps") + ")"
)

# Canon writes 'b=1000(0.577,0.577,0.577)' into ImageComments: the vector, backslash-joined.
_CANON_COMMENT_VECTOR = "replace(regexp_extract(image_comments, '\\(([^)]*)\\)', 1), ',', '\\')"

FIELDS: tuple[Field, ...] = (
    # -- image level: diffusion -----------------------------------------------------------------
    Field(
        "b_value_s_mm2",
        "DOUBLE",
        "s/mm2",
        "Diffusion weighting of the image",
        (
            Source(
                "GE",
                "GEMS_PARM_01 (0043,xx39) first value modulo 1e9 (MR29+ software adds 1e9)",
                "TRY_CAST(trim(split_part(ge_b, '\\', 1)) AS BIGINT) % 1000000000",
            ),
            Source(
                "Siemens",
                "SIEMENS MR HEADER (0019,xx0C); CSA image header B_value; XA: MR Diffusion (0018,9087)",
                f"coalesce({_f('sie_b')}, csa_b_value)",
            ),
            Source("Philips", "Philips Imaging DD 001 (2001,xx03)", _f("phi_b")),
            Source("UIH", "Image Private Header (0065,xx09)", _f("uih_b")),
            Source(
                "Canon",
                "public Diffusion b-value (0018,9087); else ImageComments 'b=1000(x,y,z)'",
                f"coalesce({_f('diffusion_b')}, TRY_CAST(regexp_extract(image_comments, '^b=([0-9.]+)', 1) AS DOUBLE))",
            ),
            Source(
                "*",
                "public Diffusion b-value (0018,9087), per frame for enhanced objects",
                _f("diffusion_b"),
            ),
        ),
        level="image",
    ),
    Field(
        "diffusion_gradient",
        "DOUBLE[3]",
        "unit vector",
        "Diffusion gradient direction of the image as the vendor states it (patient LPS for Siemens, "
        "Philips, UIH, Canon and the public tag; GE's own frame, see docs/harmonize.md); NULL for b=0 "
        "images without one",
        (
            Source("GE", "GEMS_ACQU_01 (0019,xxBB/xxBC/xxBD)", _xyz("ge_gx", "ge_gy", "ge_gz")),
            Source(
                "Siemens",
                "SIEMENS MR HEADER (0019,xx0E); CSA DiffusionGradientDirection; XA: (0018,9089)",
                f"coalesce({_vec3('sie_grad')}, csa_gradient)",
            ),
            Source(
                "Philips",
                "Philips MR Imaging DD 001 (2005,xxB0/xxB1/xxB2) (RL, AP, FH)",
                _xyz("phi_gx", "phi_gy", "phi_gz"),
            ),
            Source("UIH", "Image Private Header (0065,xx37)", _vec3("uih_grad")),
            Source(
                "Canon",
                "public Diffusion Gradient Orientation (0018,9089); else ImageComments 'b=1000(x,y,z)'",
                "coalesce(" + _vec3("diffusion_grad") + ", " + _vec3(_CANON_COMMENT_VECTOR) + ")",
            ),
            Source(
                "*", "public Diffusion Gradient Orientation (0018,9089)", _vec3("diffusion_grad")
            ),
        ),
        level="image",
    ),
    # -- series level ---------------------------------------------------------------------------
    Field(
        "field_strength_t",
        "DOUBLE",
        "T",
        "Magnetic field strength; values above 100 are taken as gauss (older Philips/GE) and divided by 10,000",
        (
            Source(
                "*",
                "Magnetic Field Strength (0018,0087)",
                'CASE WHEN "MagneticFieldStrength" > 100 THEN "MagneticFieldStrength" / 10000 ELSE "MagneticFieldStrength" END',
            ),
        ),
    ),
    Field(
        "echo_time_ms",
        "DOUBLE",
        "ms",
        "Echo time",
        (
            Source(
                "*",
                "Echo Time (0018,0081); enhanced: Effective Echo Time (0018,9082) in MR Echo (0018,9114)",
                f'coalesce("EchoTime", {_f("effective_echo_time")})',
            ),
        ),
    ),
    Field(
        "repetition_time_ms",
        "DOUBLE",
        "ms",
        "Repetition time",
        (
            Source(
                "*",
                "Repetition Time (0018,0080), at the top level or in MR Timing and Related Parameters (0018,9112)",
                f'coalesce("RepetitionTime", {_f("tr_nested")})',
            ),
        ),
    ),
    Field(
        "inversion_time_ms",
        "DOUBLE",
        "ms",
        "Inversion time",
        (Source("*", "Inversion Time (0018,0082)", '"InversionTime"'),),
    ),
    Field(
        "flip_angle_deg",
        "DOUBLE",
        "degrees",
        "Flip angle",
        (
            Source(
                "*",
                "Flip Angle (0018,1314), at the top level or in MR Timing and Related Parameters",
                f'coalesce("FlipAngle", {_f("flip_nested")})',
            ),
        ),
    ),
    Field(
        "echo_train_length",
        "BIGINT",
        "echoes",
        "Echo train length",
        (
            Source(
                "*",
                "Echo Train Length (0018,0091)",
                f'coalesce("EchoTrainLength", CAST({_f("echo_train_length")} AS BIGINT))',
            ),
        ),
    ),
    Field(
        "pixel_bandwidth_hz_px",
        "DOUBLE",
        "Hz/pixel",
        "Receiver bandwidth per pixel along the readout",
        (Source("*", "Pixel Bandwidth (0018,0095)", '"PixelBandwidth"'),),
    ),
    Field(
        "imaging_frequency_mhz",
        "DOUBLE",
        "MHz",
        "Imaging (Larmor) frequency",
        (Source("*", "Imaging Frequency (0018,0084)", '"ImagingFrequency"'),),
    ),
    Field(
        "in_plane_phase_encoding",
        "VARCHAR",
        "ROW or COL",
        "In-plane phase-encoding direction in the DICOM image (COLUMN in XA objects is written COL)",
        (
            Source(
                "GE",
                "public (0018,1312); else GEMS_PARM_01 (0043,xx8A)",
                "coalesce(pe_rc_norm, ge_pe_rc)",
            ),
            Source(
                "*",
                "In-plane Phase Encoding Direction (0018,1312), top level or MR FOV/Geometry (0018,9125)",
                "pe_rc_norm",
            ),
        ),
    ),
    Field(
        "phase_encoding_axis",
        "VARCHAR",
        "i or j",
        "Phase-encoding axis in BIDS terms (i: along rows of the NIfTI image, j: along columns), "
        "without polarity",
        (
            Source(
                "*",
                "from in_plane_phase_encoding: ROW is i, COL is j",
                "CASE coalesce(pe_rc_norm, ge_pe_rc) WHEN 'ROW' THEN 'i' WHEN 'COL' THEN 'j' END",
            ),
        ),
    ),
    Field(
        "phase_encoding_direction",
        "VARCHAR",
        "i, i-, j or j-",
        "Phase-encoding direction with polarity in BIDS terms, where the vendor states the polarity "
        "(NULL otherwise: GE keeps it in binary user data, Philips, Canon and UIH do not write it)",
        (
            Source(
                "Siemens",
                "CSA image header PhaseEncodingDirectionPositive (classic); XA: SIEMENS MR SDI 02 "
                "(0021,xx1C) in the frame groups. ROW: positive is i; COL: positive is j- (BIDS "
                "images flip the DICOM rows)",
                "CASE WHEN pe_rc_norm = 'ROW' THEN CASE pe_positive WHEN 1 THEN 'i' WHEN 0 THEN 'i-' END "
                "WHEN pe_rc_norm = 'COL' THEN CASE pe_positive WHEN 1 THEN 'j-' WHEN 0 THEN 'j' END END",
            ),
        ),
    ),
    Field(
        "acquisition_matrix_pe",
        "DOUBLE",
        "lines",
        "Phase-encoding lines acquired (before parallel imaging)",
        (
            Source(
                "*",
                "Acquisition Matrix (0018,1310) phase value; enhanced: MR Acquisition Phase Encoding "
                "Steps in-plane (0018,9231)",
                _ACQ_PE,
            ),
        ),
    ),
    Field(
        "recon_matrix_pe",
        "DOUBLE",
        "pixels",
        "Pixels of the reconstructed image along the phase-encoding direction (per mosaic tile)",
        (
            Source(
                "UIH",
                "Image Private Header (0065,xx04) 'rows*columns' of one mosaic tile",
                "TRY_CAST(split_part(uih_matrix, '*', CASE pe_rc_norm WHEN 'COL' THEN 1 ELSE 2 END) AS DOUBLE)",
            ),
            Source(
                "*",
                "Rows (COL) or Columns (ROW); Siemens mosaics: divided by ceil(sqrt(NumberOfImagesInMosaic (0019,xx0A)))",
                _RECON_PE,
            ),
        ),
    ),
    Field(
        "parallel_reduction_factor_in_plane",
        "DOUBLE",
        "factor",
        "In-plane parallel imaging acceleration (GRAPPA, SENSE, ASSET)",
        (
            Source(
                "GE",
                "1 / first value of GEMS_PARM_01 (0043,xx83) ASSET R factors",
                f"1 / nullif({_f('ge_asset')}, 0)",
            ),
            Source("*", "Parallel Reduction Factor In-plane (0018,9069)", _f("parallel_factor")),
        ),
    ),
    Field(
        "effective_echo_spacing_s",
        "DOUBLE",
        "s",
        "Effective echo spacing (time between phase-encoding lines, divided by the acceleration)",
        (
            Source(
                "Siemens",
                "1 / (BandwidthPerPixelPhaseEncode x recon_matrix_pe); BWPPPE from SIEMENS MR "
                "HEADER (0019,xx28) or, XA, SIEMENS MR SDI 02 (0021,xx53)",
                f"1 / (coalesce({_f('sie_bwpppe')}, {_f('sie_xa_bwpppe')}) * ({_RECON_PE}))",
            ),
            Source(
                "GE",
                "GEMS_PARM_01 (0043,xx2C) in us x (acquired lines - 1) / (recon_matrix_pe - 1)",
                f"{_f('ge_echo_spacing_us')} * 1e-6 * (round(({_ACQ_PE}) * coalesce({_f('ge_asset')}, 1)) - 1) / (({_RECON_PE}) - 1)",
            ),
        ),
    ),
    Field(
        "total_readout_time_s",
        "DOUBLE",
        "s",
        "Total readout time in the FSL/BIDS sense: effective echo spacing x (recon_matrix_pe - 1)",
        (
            Source(
                "Siemens",
                "(recon_matrix_pe - 1) / (BandwidthPerPixelPhaseEncode x recon_matrix_pe)",
                f"(({_RECON_PE}) - 1) / (coalesce({_f('sie_bwpppe')}, {_f('sie_xa_bwpppe')}) * ({_RECON_PE}))",
            ),
            Source(
                "GE",
                "GEMS_PARM_01 (0043,xx2C) in us x (AcquisitionMatrixPE x ASSET factor (0043,xx83) - 1)",
                f"{_f('ge_echo_spacing_us')} * 1e-6 * (round(({_ACQ_PE}) * coalesce({_f('ge_asset')}, 1)) - 1)",
            ),
        ),
    ),
    Field(
        "slice_timing_s",
        "DOUBLE[]",
        "s",
        "Acquisition time of each slice relative to the first, in the order the vendor lists them",
        (
            Source(
                "Siemens",
                "classic: SIEMENS MR HEADER MosaicRefAcqTimes (0019,xx29) in ms; XA enhanced: "
                "Frame Acquisition DateTime (0018,9074) of the first object's frames, relative to the earliest",
                "coalesce(list_transform(string_split(sie_slice_times_ms, '\\'), lambda x: TRY_CAST(x AS DOUBLE) / 1000), item_times_s)",
            ),
            Source(
                "UIH",
                "AcquisitionDateTime (0008,002A) of each item of Image Private Header (0065,xx51), relative to the earliest",
                "item_times_s",
            ),
        ),
    ),
    Field(
        "mosaic_images",
        "BIGINT",
        "images",
        "Siemens mosaic: slices tiled in each image; NULL when not a mosaic",
        (
            Source(
                "Siemens",
                "SIEMENS MR HEADER NumberOfImagesInMosaic (0019,xx0A)",
                f"CAST({_f('sie_mosaic_n')} AS BIGINT)",
            ),
        ),
    ),
)

FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}


@dataclass(frozen=True)
class Inference:
    """A rule that sets ``b_value_s_mm2`` to 0 where the tags give no b-value or a wrong one.

    ``sql`` is a condition over a ``harmonized_images`` row (its fields, the raw columns, and
    ``series_max_b``: the largest b-value of any image of the series); where it holds, the image
    is a b=0 image and ``b_value_inferred`` is true.
    """

    vendor: str  # a vendors.VENDORS name, or '*' for every vendor
    where: str
    sql: str


#: When an image is b=0 although its tags do not say so, as dcm2niix decides (its sources,
#: ``nii_dicom.cpp``/``nii_dicom_batch.cpp``, and its output on the corpus with the b=0 tags
#: removed; docs/harmonize.md has the details).
B0_INFERENCES: tuple[Inference, ...] = (
    Inference(
        "*",
        "No b-value at all (tag absent or empty) in a series where another image has b > 0: a "
        "diffusion series whose b=0 images carry no diffusion tags (Toshiba/Canon classic DTI "
        "writes DiffusionBValue only where a gradient is applied). dcm2niix starts every image at "
        "b=0, gradient 0 and overwrites that only from a tag.",
        "b_value_s_mm2 IS NULL AND series_max_b > 0",
    ),
    Inference(
        "GE",
        "b > 0 with a zero gradient (0019,xxBB-BD all 0) in a series whose "
        "NumberOfDiffusionDirection, GEMS_ACQU_01 (0019,xxE0), is above 0: a raw b=0 image "
        "carrying the series' nominal b-value (with 0 directions it is a derived trace image and "
        "keeps its b-value).",
        "b_value_s_mm2 > 0 AND diffusion_gradient = [0.0, 0.0, 0.0]::DOUBLE[3] "
        f"AND {_f('ge_n_directions')} > 0",
    ),
)


def inferred_b0_sql() -> str:
    """SQL condition: the image is b=0 by one of :data:`B0_INFERENCES` (vendor-specific ones for their vendor)."""
    conds = [
        f"({i.sql})" if i.vendor == "*" else f"(vendor = '{i.vendor}' AND {i.sql})"
        for i in B0_INFERENCES
    ]
    return "coalesce(" + " OR ".join(conds) + ", false)"


def field_sql(field: Field) -> str:
    """The SQL of one field: the vendor's expression where it gives a value, else the public one."""
    vendor = [s for s in field.sources if s.vendor != "*"]
    public = [s.sql for s in field.sources if s.vendor == "*"]
    expr = ""
    if vendor:
        whens = " ".join(f"WHEN '{s.vendor}' THEN ({s.sql})" for s in vendor)
        expr = f"CASE vendor {whens} END"
    if public and expr:
        return f"coalesce({expr}, {public[0]})"
    return expr or public[0]


def render_inferences() -> str:
    """The b=0 inference rules as a markdown table (for docs/harmonize.md)."""
    out = ["| vendor | when an image is taken as b=0 |", "|---|---|"]
    for i in B0_INFERENCES:
        out.append(f"| {'any' if i.vendor == '*' else i.vendor} | {i.where} |")
    return "\n".join(out)


def render_markdown() -> str:
    """Every harmonized field with its unit and, per vendor, where it comes from (for docs/harmonize.md)."""
    out = ["| field | unit | vendor | source |", "|---|---|---|---|"]
    for f in FIELDS:
        for i, s in enumerate(f.sources):
            name = f"`{f.name}`" if i == 0 else ""
            unit = f.unit if i == 0 else ""
            vendor = "any (public)" if s.vendor == "*" else s.vendor
            out.append(f"| {name} | {unit} | {vendor} | {s.where} |")
    return "\n".join(out)
