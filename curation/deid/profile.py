"""A de-identification profile: which PS3.15 options apply, and what the table leaves to the user.

A profile is data: a YAML file users copy and edit (the shipped ones are in ``profiles/``:
``basic`` is the Basic Application Level Confidentiality Profile alone; ``research`` adds the
options a training cohort usually needs). It is validated on load; an error names the file and
line. Keys:

- ``name`` (required), ``description``;
- ``options``: names of :class:`~curation.deid.standard.Option`;
- ``actions``: overrides of the table, a DICOM keyword or ``GGGGEEEE`` to an action code
  (``X``, ``Z``, ``D``, ``K``, ``C``, ``U``); an override may only keep less than the table:
  ``K`` or ``C`` over a stricter code is refused unless ``allow_retain: true`` says the profile's
  author means it;
- ``date_shift``: ``{max_days: N, keep_weekday: bool}``, how far Retain Longitudinal Temporal
  Information with Modified Dates may move a patient's dates (a keyed shift per patient);
- ``safe_private``: the allow-list Retain Safe Private keeps, each ``{creator, group, element,
  name}`` (``element`` is the creator-relative byte, as in ``0043,xx39``; ``name`` says why it is
  safe). Every other private element is removed;
- ``burned_in``: which files are inspected for burned-in text (``ocr_modalities``,
  ``ocr_sop_classes``, ``ocr_rules``: QC rules whose findings flag a series,
  ``min_text_aligned``: glyphs on one line the pixel step measured in a series), the OCR's
  ``min_confidence`` (0-100) and ``pad_px`` around each word masked, and fixed ``regions`` masked
  whatever OCR finds: ``{manufacturer, model, rows, columns, boxes: [[top, left, bottom, right]]}``
  (``model``, ``rows``, ``columns`` optional; a box in pixels, bottom/right exclusive).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from curation.cohort.spec import LineLoader, at_line, check_name, did_you_mean
from curation.deid.standard import ACTIONS, Option
from curation.errors import InputError

#: Top-level keys of a profile.
PROFILE_KEYS = (
    "name",
    "description",
    "options",
    "actions",
    "allow_retain",
    "date_shift",
    "safe_private",
    "burned_in",
)
#: Keys of ``burned_in``.
BURNED_IN_KEYS = (
    "ocr_modalities",
    "ocr_sop_classes",
    "ocr_rules",
    "min_text_aligned",
    "min_confidence",
    "pad_px",
    "regions",
)
#: Profiles shipped in the package, by name.
SHIPPED = ("basic", "research")


@dataclass(frozen=True)
class SafePrivate:
    """A private element Retain Safe Private keeps: creator + group + creator-relative element."""

    creator: str
    group: int
    element: int
    name: str


@dataclass(frozen=True)
class Region:
    """A fixed region masked in the pixels of a manufacturer's (model's) images."""

    manufacturer: str
    boxes: tuple[tuple[int, int, int, int], ...]
    model: str | None = None
    rows: int | None = None
    columns: int | None = None

    def applies(self, manufacturer: str, model: str, rows: int, columns: int) -> bool:
        """True when the region is for an image of this manufacturer, model and size."""
        return (
            self.manufacturer.upper() in manufacturer.upper()
            and (self.model is None or self.model.upper() == model.strip().upper())
            and (self.rows is None or self.rows == rows)
            and (self.columns is None or self.columns == columns)
        )


@dataclass(frozen=True)
class BurnedIn:
    """Which files are inspected for burned-in text, and how text is masked."""

    ocr_modalities: tuple[str, ...] = ("US", "OT", "XC", "ES", "GM", "SM", "DOC")
    ocr_sop_classes: tuple[str, ...] = (
        "1.2.840.10008.5.1.4.1.1.7",
        "1.2.840.10008.5.1.4.1.1.7.1",
        "1.2.840.10008.5.1.4.1.1.7.2",
        "1.2.840.10008.5.1.4.1.1.7.3",
        "1.2.840.10008.5.1.4.1.1.7.4",
    )
    ocr_rules: tuple[str, ...] = (
        "series.burned_in_annotation",
        "series.secondary_capture",
        "pixel.burned_in_text",
    )
    min_text_aligned: int = 5
    min_confidence: float = 40.0
    pad_px: int = 2
    regions: tuple[Region, ...] = ()


@dataclass(frozen=True)
class Profile:
    """A validated de-identification profile (see the module docstring for the YAML form)."""

    name: str
    options: tuple[Option, ...] = ()
    actions: dict[int, str] = field(default_factory=dict)
    description: str = ""
    max_shift_days: int = 365
    keep_weekday: bool = True
    safe_private: tuple[SafePrivate, ...] = ()
    burned_in: BurnedIn = field(default_factory=BurnedIn)
    source: str | None = None

    def has(self, option: Option) -> bool:
        """True when the profile applies ``option``."""
        return option in self.options

    @property
    def sha256(self) -> str:
        """SHA-256 of the profile file's text (of its name and options when built in Python)."""
        text = self.source if self.source is not None else f"{self.name}:{sorted(self.options)}"
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain data (recorded in ``deid_runs`` and the provenance)."""
        return {
            "name": self.name,
            "options": [str(o) for o in self.options],
            "actions": {f"{t:08X}": a for t, a in sorted(self.actions.items())},
            "date_shift": {"max_days": self.max_shift_days, "keep_weekday": self.keep_weekday},
            "safe_private": [
                f"{s.creator} ({s.group:04X},xx{s.element:02X}) {s.name}" for s in self.safe_private
            ],
            "burned_in": {
                "ocr_modalities": list(self.burned_in.ocr_modalities),
                "ocr_sop_classes": list(self.burned_in.ocr_sop_classes),
                "ocr_rules": list(self.burned_in.ocr_rules),
                "min_text_aligned": self.burned_in.min_text_aligned,
                "min_confidence": self.burned_in.min_confidence,
                "pad_px": self.burned_in.pad_px,
                "regions": len(self.burned_in.regions),
            },
        }

    def safe_private_keys(self) -> frozenset[tuple[str, int, int]]:
        """(creator, group, element byte) of every allow-listed private element."""
        return frozenset((s.creator, s.group, s.element) for s in self.safe_private)


def _fail(where: str, message: str) -> InputError:
    return InputError(f"{where}: {message}")


def _int(value: Any, where: str, what: str, lo: int = 0, hi: int = 2**31) -> int:
    if isinstance(value, str):
        try:
            value = int(value, 16) if what in ("group", "element") else int(value)
        except ValueError:
            raise _fail(where, f"{what} must be a number, not {value!r}") from None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _fail(where, f"{what} must be an integer in [{lo}, {hi}], not {value!r}")
    return value


def _str_list(raw: Any, where: str, what: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise _fail(where, f"{what} must be a list of texts")
    return tuple(raw)


def _tag(name: Any, where: str) -> int:
    from pydicom.datadict import tag_for_keyword

    if isinstance(name, int) and not isinstance(name, bool):
        return name
    text = str(name).strip().strip("()").replace(",", "")
    tag = tag_for_keyword(text)
    if tag is not None:
        return int(tag)
    if len(text) == 8:
        try:
            return int(text, 16)
        except ValueError:
            pass
    from pydicom.datadict import keyword_dict

    raise _fail(
        where,
        f"{name!r} is neither a DICOM keyword nor a tag GGGGEEEE"
        + did_you_mean(str(name), keyword_dict),
    )


def _options(raw: Any, where: str, data: Any) -> tuple[Option, ...]:
    names = _str_list(raw, at_line(where, data, key="options"), "options")
    out = []
    for i, n in enumerate(names):
        try:
            out.append(Option(n))
        except ValueError:
            raise _fail(
                at_line(where, raw, i),
                f"unknown option {n!r}" + did_you_mean(n, [o.value for o in Option]),
            ) from None
    return tuple(out)


def _actions(raw: Any, where: str, allow_retain: bool) -> dict[int, str]:
    from curation.deid.standard import lookup, resolve

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail(where, "actions must be a mapping of keyword (or GGGGEEEE) to an action code")
    out = {}
    for name, code in raw.items():
        w = at_line(where, raw, key=str(name))
        if code not in ACTIONS:
            raise _fail(w, f"action of {name!r} must be one of {', '.join(ACTIONS)}, not {code!r}")
        tag = _tag(name, w)
        listed = lookup(tag)
        if (
            code in ("K", "C")
            and listed is not None
            and resolve(listed.basic) not in ("K", "C")
            and not allow_retain
        ):
            raise _fail(
                w,
                f"{name}: {code} retains what the Basic Profile removes ({listed.basic}); "
                "set allow_retain: true if that is meant",
            )
        out[tag] = code
    return out


def _safe_private(raw: Any, where: str) -> tuple[SafePrivate, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(where, "safe_private must be a list of {creator, group, element, name}")
    out = []
    for i, item in enumerate(raw):
        w = at_line(where, raw, i) + f": safe_private[{i}]"
        if not isinstance(item, dict) or set(item) != {"creator", "group", "element", "name"}:
            raise _fail(w, "an entry is {creator: TEXT, group: 0xGGGG, element: 0xEE, name: TEXT}")
        group = _int(item["group"], w, "group", 0x0009, 0xFFFF)
        if group % 2 == 0:
            raise _fail(w, f"group {group:04X} is even: private groups are odd")
        out.append(
            SafePrivate(
                check_name(item["creator"], f"{w}: creator"),
                group,
                _int(item["element"], w, "element", 0x00, 0xFF),
                check_name(item["name"], f"{w}: name"),
            )
        )
    return tuple(out)


def _regions(raw: Any, where: str) -> tuple[Region, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(where, "regions must be a list of {manufacturer, model, rows, columns, boxes}")
    out = []
    for i, item in enumerate(raw):
        w = at_line(where, raw, i) + f": regions[{i}]"
        if not isinstance(item, dict) or "manufacturer" not in item or "boxes" not in item:
            raise _fail(w, "a region needs manufacturer and boxes")
        unknown = set(item) - {"manufacturer", "model", "rows", "columns", "boxes"}
        if unknown:
            raise _fail(w, f"unknown key(s) {sorted(map(str, unknown))}")
        boxes = item["boxes"]
        if not isinstance(boxes, list) or not boxes:
            raise _fail(w, "boxes must be a list of [top, left, bottom, right]")
        parsed = []
        for b in boxes:
            if not (isinstance(b, list) and len(b) == 4):
                raise _fail(w, f"a box is [top, left, bottom, right], not {b!r}")
            t, left, bottom, right = (_int(x, w, "a box corner", 0, 65535) for x in b)
            if bottom <= t or right <= left:
                raise _fail(w, f"box {b!r} is empty (bottom/right are exclusive)")
            parsed.append((t, left, bottom, right))
        out.append(
            Region(
                check_name(item["manufacturer"], f"{w}: manufacturer"),
                tuple(parsed),
                item.get("model"),
                _int(item["rows"], w, "rows", 1, 65535) if "rows" in item else None,
                _int(item["columns"], w, "columns", 1, 65535) if "columns" in item else None,
            )
        )
    return tuple(out)


def _burned_in(raw: Any, where: str) -> BurnedIn:
    if raw is None:
        return BurnedIn()
    if not isinstance(raw, dict):
        raise _fail(where, "burned_in must be a mapping")
    unknown = set(raw) - set(BURNED_IN_KEYS)
    if unknown:
        bad = sorted(map(str, unknown))[0]
        raise _fail(
            at_line(where, raw, key=bad),
            f"burned_in: unknown key(s) {sorted(map(str, unknown))}"
            + did_you_mean(bad, BURNED_IN_KEYS),
        )
    d = BurnedIn()
    conf = raw.get("min_confidence", d.min_confidence)
    if not isinstance(conf, int | float) or isinstance(conf, bool) or not 0 <= conf <= 100:
        raise _fail(at_line(where, raw, key="min_confidence"), "min_confidence is in [0, 100]")
    return BurnedIn(
        _str_list(raw.get("ocr_modalities", list(d.ocr_modalities)), where, "ocr_modalities"),
        _str_list(raw.get("ocr_sop_classes", list(d.ocr_sop_classes)), where, "ocr_sop_classes"),
        _str_list(raw.get("ocr_rules", list(d.ocr_rules)), where, "ocr_rules"),
        _int(
            raw.get("min_text_aligned", d.min_text_aligned),
            at_line(where, raw, key="min_text_aligned"),
            "min_text_aligned",
            1,
            10_000,
        ),
        float(conf),
        _int(raw.get("pad_px", d.pad_px), at_line(where, raw, key="pad_px"), "pad_px", 0, 64),
        _regions(raw.get("regions"), at_line(where, raw, key="regions")),
    )


def parse(data: Any, *, source: str | None = None, where: str = "profile") -> Profile:
    """Validate plain data (as loaded from YAML) into a :class:`Profile`."""
    if not isinstance(data, dict):
        raise _fail(where, "a profile is a mapping with name and options")
    unknown = set(data) - set(PROFILE_KEYS)
    if unknown:
        bad = sorted(map(str, unknown))[0]
        raise _fail(
            at_line(where, data, key=bad),
            f"unknown key(s) {sorted(map(str, unknown))}" + did_you_mean(bad, PROFILE_KEYS),
        )
    name = check_name(data.get("name"), at_line(where, data, key="name") + ": name")
    allow = data.get("allow_retain", False)
    if not isinstance(allow, bool):
        raise _fail(at_line(where, data, key="allow_retain"), "allow_retain is true or false")
    shift = data.get("date_shift") or {}
    w = at_line(where, data, key="date_shift")
    if not isinstance(shift, dict) or set(shift) - {"max_days", "keep_weekday"}:
        raise _fail(w, "date_shift is {max_days: N, keep_weekday: true|false}")
    keep_weekday = shift.get("keep_weekday", True)
    if not isinstance(keep_weekday, bool):
        raise _fail(w, "date_shift.keep_weekday is true or false")
    description = data.get("description") or ""
    return Profile(
        name=name,
        options=_options(data.get("options"), where, data),
        actions=_actions(data.get("actions"), at_line(where, data, key="actions"), allow),
        description=str(description),
        max_shift_days=_int(shift.get("max_days", 365), w, "date_shift.max_days", 1, 36500),
        keep_weekday=keep_weekday,
        safe_private=_safe_private(
            data.get("safe_private"), at_line(where, data, key="safe_private")
        ),
        burned_in=_burned_in(data.get("burned_in"), at_line(where, data, key="burned_in")),
        source=source,
    )


def load_profile(profile: str | Path) -> Profile:
    """A shipped profile by name (:data:`SHIPPED`) or a YAML profile file; messages name the line.

    Raises
    ------
    InputError
        The file cannot be read, is not YAML, or does not validate.
    """
    if isinstance(profile, str) and profile in SHIPPED:
        ref = resources.files("curation.deid").joinpath(f"profiles/{profile}.yaml")
        text, where = ref.read_text(), f"profile {profile}"
    else:
        p = Path(profile)
        if not p.is_file():
            raise InputError(
                f"{p}: no such profile file (shipped profiles: {', '.join(SHIPPED)})"
                + did_you_mean(str(profile), SHIPPED)
            )
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{p}: cannot read the profile: {exc}") from exc
        where = str(p)
    try:
        data = yaml.load(text, Loader=LineLoader)
    except yaml.YAMLError as exc:
        raise InputError(f"{where}: not valid YAML: {exc}") from exc
    return parse(data, source=text, where=where)
