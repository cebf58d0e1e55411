"""A cohort spec: who is in the cohort, how it is split, what the manifest carries.

A spec is a YAML file or a :class:`CohortSpec` built in Python; both are validated the same way.
Each criterion filters series on one of:

- ``field``: a column of ``harmonized_series`` or of ``pixel_metrics`` (when that table exists);
- ``qc_rule``: the series (or its study) has a finding of that rule in the QC run the spec uses;
- ``qc_severity``: the series (or its study) has a finding at that severity or worse;
- ``label``: the series (or its study) has that label in the ``labels`` table (``value`` optional).

``op`` is one of :data:`OPS`. Values are always bound as query parameters; column names are
checked against the catalog before they reach SQL and quoted by :func:`curation.catalog.quote_ident`,
so nothing the user writes is pasted into a query.

The QC run is the latest finished rule-suite run (:func:`curation.qc.findings.latest_run_id`: the
runs ``curation validate`` records are not rule-suite runs), the latest run of ``qc: {suite: NAME}``,
or exactly ``qc: {run: ID}``; the provenance records which run it was and why.

A :class:`Criterion` and a :class:`CohortSpec` check themselves on construction, whether built from
YAML or in Python: an unknown kind, op or severity, a name holding a NUL byte or longer than
:data:`MAX_NAME` characters, a value of the wrong shape raise :class:`~curation.errors.InputError`
naming the spec line. What only the catalog knows (columns, rule ids, labels) is checked when the
cohort is built, with a "did you mean" suggestion.

.. code-block:: yaml

    name: ct_chest
    include:
      - {field: Modality, op: "=", value: CT}
      - {field: series_type, op: in, value: [ct_axial]}
      - {field: slice_thickness_mm, op: "<=", value: 3}
    exclude:
      - {qc_severity: error}
      - {label: pleural_effusion, value: uncertain}
    split: {ratios: {train: 0.7, val: 0.15, test: 0.15}, stratify: [vendor], seed: 0}
    labels:
      - name: pleural_effusion
        values: {positive: 1, negative: 0, uncertain: drop}   # the default map
        missing: drop                                       # the default: require the label
    qc: {suite: default}

A label of ``labels:`` is a name (the default map) or ``{name, values, missing}``
(:class:`LabelMap`): the manifest keeps the label's text, the datalist carries the number its map
gives. A series whose value maps to ``drop`` or has no number in the map, and with ``missing: drop``
a series without the label, leaves the cohort at a step of its own in the attrition
(:attr:`CohortSpec.steps`), so that every datalist entry carries a number for every label.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from curation.cohort.tables import VALUE_SYNONYMS
from curation.errors import InputError
from curation.qc.rule import Severity

#: Comparison operators a criterion may use (the allow-list: nothing else reaches SQL).
OPS: tuple[str, ...] = (
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "in",
    "not in",
    "between",
    "is null",
    "not null",
    "like",
    "contains",
)
ACTIONS: tuple[str, ...] = ("include", "exclude")
KINDS: tuple[str, ...] = ("field", "qc_rule", "qc_severity", "label")
#: QC severities, mildest first (the order :class:`curation.qc.rule.Severity` ranks them in).
SEVERITIES: tuple[str, ...] = tuple(s.value for s in sorted(Severity, key=lambda s: s.rank))
#: Longest name (column, rule, label, split, spec name) a spec may use, in characters.
MAX_NAME = 256
#: Longest text value a criterion may compare with, in characters.
MAX_VALUE = 4096

#: DICOM keywords a spec may use where a harmonized field carries the same value under another
#: name, in the field's unit (keywords that are columns of harmonized_series, such as Modality or
#: InstitutionName, are used as they are).
DICOM_KEYWORD_FIELDS: dict[str, str] = {
    "SliceThickness": "slice_thickness_mm",
    "PixelSpacing": "pixel_spacing_mm",
    "ConvolutionKernel": "kernel",
    "MagneticFieldStrength": "field_strength_t",
    "EchoTime": "echo_time_ms",
    "RepetitionTime": "repetition_time_ms",
    "InversionTime": "inversion_time_ms",
    "FlipAngle": "flip_angle_deg",
    "EchoTrainLength": "echo_train_length",
    "PixelBandwidth": "pixel_bandwidth_hz_px",
    "ImagingFrequency": "imaging_frequency_mhz",
    "InPlanePhaseEncodingDirection": "in_plane_phase_encoding",
    "DiffusionBValue": "b_values_s_mm2",
    "NumberOfTemporalPositions": "n_volumes",
}

_SCALARS = (str, int, float, bool, date, datetime)

#: What a label map says to do with a series instead of giving it a number.
DROP = "drop"
#: Label values that mean the same as another (older rows and the synthetic truth say ``negated``);
#: a map naming one names both. The labels table's own (:data:`curation.cohort.tables.VALUE_SYNONYMS`).
LABEL_SYNONYMS: dict[str, str] = VALUE_SYNONYMS
#: The map a label gets when the spec names it without one.
DEFAULT_LABEL_VALUES: dict[str, float | str] = {"positive": 1, "negative": 0, "uncertain": DROP}


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(name[:MAX_NAME], list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_name(value: Any, what: str) -> str:
    """``value`` if it can name a column, rule, label or split; else :class:`InputError`."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{what} must be a non-empty string, not {_short(value)}")
    if "\0" in value:
        raise InputError(f"{what} {_short(value)} holds a NUL byte")
    if len(value) > MAX_NAME:
        raise InputError(f"{what} is {len(value):,} characters long (at most {MAX_NAME})")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_value(value: Any, where: str) -> None:
    items = value if isinstance(value, list | tuple) else [value]
    for v in items:
        if v is not None and not isinstance(v, _SCALARS):
            raise InputError(f"{where}: a value is a number, a text or a date, not {_short(v)}")
        if isinstance(v, str) and len(v) > MAX_VALUE:
            raise InputError(
                f"{where}: a text value is {len(v):,} characters long (at most {MAX_VALUE})"
            )


@dataclass(frozen=True)
class Criterion:
    """One inclusion or exclusion criterion, checked on construction.

    ``kind`` says what ``target`` names: a column (``field``), a rule id (``qc_rule``), a severity
    (``qc_severity``) or a label name (``label``). ``op`` and ``value`` compare the column (or the
    label's value); QC criteria take neither. ``where`` says where the criterion was written (a
    spec file and line) for messages; it is not part of the criterion's identity.

    Raises
    ------
    InputError
        An action, kind, op or severity outside the allowed ones, a name that cannot be one, a
        value of the wrong shape for the op.
    """

    action: str  # include or exclude
    kind: str
    target: str
    op: str | None = None
    value: Any = None
    name: str | None = None
    where: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        where = self.where or "criterion"
        if self.action not in ACTIONS:
            raise InputError(
                f"{where}: action must be include or exclude, not {_short(self.action)}"
            )
        if self.kind not in KINDS:
            raise InputError(
                f"{where}: unknown criterion kind {_short(self.kind)}; use one of "
                f"{', '.join(KINDS)}{did_you_mean(str(self.kind), KINDS)}"
            )
        check_name(self.target, f"{where}: {self.kind}")
        if self.name is not None:
            check_name(self.name, f"{where}: name")
        op, value = self.op, self.value
        if isinstance(value, tuple):
            value = list(value)
            object.__setattr__(self, "value", value)
        if self.kind == "qc_severity" and self.target not in SEVERITIES:
            raise InputError(
                f"{where}: qc_severity must be one of {', '.join(SEVERITIES)}, not "
                f"{_short(self.target)}{did_you_mean(self.target, SEVERITIES)}"
            )
        if self.kind in ("qc_rule", "qc_severity") and (op is not None or value is not None):
            raise InputError(f"{where}: {self.kind} criteria take no op or value")
        if self.kind == "label" and value is not None and op is None:
            op = "in" if isinstance(value, list) else "="
            object.__setattr__(self, "op", op)
        if self.kind == "field" and op is None:
            raise InputError(f"{where}: a field criterion needs an op (one of {', '.join(OPS)})")
        if op is not None and op not in OPS:
            raise InputError(
                f"{where}: unknown op {_short(op)}; use one of {', '.join(OPS)}"
                + (did_you_mean(op, OPS) if isinstance(op, str) else "")
            )
        if op in ("in", "not in") and not isinstance(value, list):
            raise InputError(f"{where}: op {op!r} needs a list value")
        if op == "between" and not (isinstance(value, list) and len(value) == 2):
            raise InputError(f"{where}: op 'between' needs [low, high]")
        if op in ("is null", "not null") and value is not None:
            raise InputError(f"{where}: op {op!r} takes no value")
        if op not in (None, "is null", "not null") and value is None:
            raise InputError(f"{where}: op {op!r} needs a value")
        _check_value(value, where)

    @property
    def title(self) -> str:
        """How the attrition table names the criterion."""
        if self.name:
            return self.name
        if self.kind == "qc_rule":
            return f"{self.action} QC finding {self.target}"
        if self.kind == "qc_severity":
            return f"{self.action} QC finding at {self.target} or worse"
        what = self.target if self.kind == "field" else f"label {self.target}"
        cmp = (
            f" {self.op} {self.value!r}"
            if self.op and self.op not in ("is null", "not null")
            else (f" {self.op}" if self.op else "")
        )
        return f"{self.action} {what}{cmp}"


@dataclass(frozen=True)
class SplitSpec:
    """Patient-level split: ratios (fractions summing to 1) or counts (patients per split).

    ``stratify`` names harmonized columns or ``label:NAME``. Checked on construction.
    """

    ratios: dict[str, float] | None = None
    counts: dict[str, int] | None = None
    stratify: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        ratios, counts = self.ratios, self.counts
        if ratios is None and counts is None:
            raise InputError("split: give ratios {train: 0.7, ...} or counts {test: 20, ...}")
        if ratios is not None:
            if (
                not isinstance(ratios, Mapping)
                or not ratios
                or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                    for v in ratios.values()
                )
            ):
                raise InputError("split.ratios: a mapping of split name to a non-negative fraction")
            if abs(sum(ratios.values()) - 1) > 1e-6:
                raise InputError(f"split.ratios must sum to 1 (they sum to {sum(ratios.values())})")
            for k in ratios:
                check_name(k, "split: a split name")
        if counts is not None:
            if not isinstance(counts, Mapping) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()
            ):
                raise InputError("split.counts: a mapping of split name to a number of patients")
            for k in counts:
                check_name(k, "split: a split name")
        stratify = self.stratify
        if isinstance(stratify, str):
            stratify = (stratify,)
        if not isinstance(stratify, list | tuple):
            raise InputError("split.stratify: a list of column names or label:NAME")
        object.__setattr__(self, "stratify", tuple(stratify))
        for key in self.stratify:
            check_name(key, "split.stratify: a key")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise InputError("split.seed must be an integer")


#: What ``--normalize`` asks for: CT from air to dense bone, other modalities by percentiles.
DEFAULT_NORMALIZE: dict[str, dict[str, tuple[float, float]]] = {
    "CT": {"window": (0.0, 2000.0)},
    "*": {"percentiles": (1.0, 99.0)},
}


def check_normalize(value: Any, where: str) -> dict[str, dict[str, tuple[float, float]]]:
    """``value`` as a normalization map: modality (or ``*``) -> ``{window: [level, width]}`` or
    ``{percentiles: [low, high]}``; else :class:`InputError` naming ``where``."""
    if not isinstance(value, dict):
        raise InputError(
            f"{where}: normalize: a mapping of modality to {{window: [level, width]}} or "
            "{percentiles: [low, high]}, such as {CT: {window: [-600, 1500]}}"
        )
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for modality, how in value.items():
        if not isinstance(modality, str) or not isinstance(how, dict) or len(how) != 1:
            raise InputError(
                f"{where}: normalize: {modality!r}: one of {{window: [level, width]}} or "
                "{percentiles: [low, high]}"
            )
        ((kind, pair),) = how.items()
        ok = (
            kind in ("window", "percentiles")
            and isinstance(pair, list | tuple)
            and len(pair) == 2
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in pair)
        )
        if ok and kind == "window":
            ok = pair[1] > 0
        if ok and kind == "percentiles":
            ok = 0 <= pair[0] < pair[1] <= 100
        if not ok:
            want = {"window": "[level, width > 0]", "percentiles": "[low, high] within 0..100"}
            raise InputError(
                f"{where}: normalize: {modality}: {kind}: {pair!r} is not {want[kind]}"
                if kind in want
                else f"{where}: normalize: {modality}: {kind!r} is not window or percentiles"
            )
        out[modality] = {kind: (float(pair[0]), float(pair[1]))}
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v  # NaN is no label


@dataclass(frozen=True)
class LabelMap:
    """How one label's text values become the numbers a training job reads.

    ``values`` maps a value of the ``labels`` table (``positive``, ``negative``, ``uncertain``,
    ...) to a number or to ``drop``; ``negated`` is read as ``negative``
    (:data:`LABEL_SYNONYMS`). A value the map does not name is dropped like ``drop``. ``missing``
    is the number a series without the label gets, or ``drop`` (the default): the label is
    required. Checked on construction.
    """

    name: str
    values: dict[str, float | str] = field(default_factory=lambda: dict(DEFAULT_LABEL_VALUES))
    missing: float | str = DROP
    where: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        where = self.where or f"labels: {self.name!r}"
        check_name(self.name, f"{where}: name")
        if not isinstance(self.values, Mapping) or not self.values:
            raise InputError(
                f"{where}: values: a mapping of label value to a number or {DROP!r}, "
                "such as {positive: 1, negative: 0, uncertain: drop}"
            )
        values: dict[str, float | str] = {}
        for k, v in self.values.items():
            check_name(k, f"{where}: values: a label value")
            if not (_is_number(v) or v == DROP):
                raise InputError(
                    f"{where}: values: {k}: {_short(v)} is neither a number nor {DROP!r}"
                )
            canon = LABEL_SYNONYMS.get(k, k)
            if canon in values and values[canon] != v:
                raise InputError(f"{where}: values: {k!r} and {canon!r} mean the same label value")
            values[canon] = v
        object.__setattr__(self, "values", values)
        if not (_is_number(self.missing) or self.missing == DROP):
            raise InputError(
                f"{where}: missing: {_short(self.missing)} is neither a number nor {DROP!r}"
            )
        if not self.numbered:
            raise InputError(f"{where}: values: no value gives a number, so every series drops")

    @property
    def numbered(self) -> list[str]:
        """The label values that give a number, and their synonyms (as the table may hold them)."""
        kept = [k for k, v in self.values.items() if v != DROP]
        return kept + [s for s, c in LABEL_SYNONYMS.items() if c in kept and s not in kept]

    @property
    def integer(self) -> bool:
        """True when every number of the map (and ``missing``) is a whole number."""
        numbers = [v for v in (*self.values.values(), self.missing) if v != DROP]
        return all(float(v).is_integer() for v in numbers)

    @property
    def required(self) -> bool:
        """True when a series without the label leaves the cohort."""
        return self.missing == DROP

    def steps(self) -> tuple[Criterion, ...]:
        """The criteria this map adds to the attrition, after the spec's own."""
        shown = ", ".join(f"{k} {v}" for k, v in self.values.items())
        out = [
            Criterion(
                "exclude",
                "label",
                self.name,
                "not in",
                self.numbered,
                name=f"exclude {self.name} values without a number ({shown})",
                where=self.where,
            )
        ]
        if self.required:
            out.append(
                Criterion(
                    "include",
                    "label",
                    self.name,
                    name=f"require a {self.name} label (missing: drop)",
                    where=self.where,
                )
            )
        return tuple(out)

    def sql(self, ref: str, p: str) -> tuple[str, dict[str, Any]]:
        """SQL of the number for the text value ``ref`` (NULL: no number), and its parameters
        (named ``p`` and a suffix)."""
        params: dict[str, Any] = {}
        whens = []
        for i, (k, v) in enumerate(self.values.items()):
            if v == DROP:
                continue
            names = [k, *(s for s, c in LABEL_SYNONYMS.items() if c == k)]
            params[f"{p}_{i}"], params[f"{p}_{i}v"] = names, float(v)
            whens.append(f"WHEN list_contains(${p}_{i}, {ref}) THEN ${p}_{i}v")
        missing = "NULL" if self.missing == DROP else str(float(self.missing))
        return f"CASE WHEN {ref} IS NULL THEN {missing} {' '.join(whens)} END", params


@dataclass(frozen=True)
class CohortSpec:
    """A validated cohort spec (see the module docstring for the YAML form).

    ``qc_suite`` / ``qc_run`` choose the QC run that ``qc_rule`` and ``qc_severity`` criteria read
    (default: the latest finished rule-suite run). Checked on construction.
    """

    name: str
    criteria: tuple[Criterion, ...] = ()
    split: SplitSpec = field(
        default_factory=lambda: SplitSpec(ratios={"train": 0.7, "val": 0.15, "test": 0.15})
    )
    labels: tuple[str, ...] = ()
    source: str | None = None  # the YAML text it was read from, if any
    qc_suite: str | None = None
    qc_run: int | None = None
    where: str | None = field(default=None, compare=False, repr=False)
    #: Where each of ``labels`` was written (file:line), for messages.
    label_where: tuple[str, ...] = field(default=(), compare=False, repr=False)
    #: How each of ``labels`` becomes a number (default :class:`LabelMap` for those not given).
    label_maps: tuple[LabelMap, ...] = ()
    #: How exported volumes are normalized, per modality (:func:`check_normalize`); empty: they
    #: keep their modality units. ``curation cohort --normalize`` / ``--ct-window`` override it.
    normalize: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = self.where or "spec"
        check_name(self.name, f"{where}: name")
        criteria = self.criteria
        if not isinstance(criteria, list | tuple) or not all(
            isinstance(c, Criterion) for c in criteria
        ):
            raise InputError(f"{where}: criteria must be Criterion objects")
        object.__setattr__(self, "criteria", tuple(criteria))
        if not isinstance(self.split, SplitSpec):
            raise InputError(f"{where}: split must be a SplitSpec")
        labels = self.labels
        if isinstance(labels, str) or not isinstance(labels, list | tuple):
            raise InputError(f"{where}: labels must be a list of label names")
        for x in labels:
            check_name(x, f"{where}: labels: a label name")
        if len(set(labels)) != len(labels):
            raise InputError(f"{where}: labels: a label is listed twice")
        object.__setattr__(self, "labels", tuple(labels))
        maps = {m.name: m for m in self.label_maps if isinstance(m, LabelMap)}
        if len(maps) != len(self.label_maps) or set(maps) - set(labels):
            raise InputError(f"{where}: label_maps: one LabelMap for each of labels, at most")
        object.__setattr__(
            self,
            "label_maps",
            tuple(
                maps.get(x)
                or LabelMap(x, where=self.label_where[i] if i < len(self.label_where) else None)
                for i, x in enumerate(labels)
            ),
        )
        object.__setattr__(self, "normalize", check_normalize(self.normalize, where))
        if self.qc_suite is not None:
            check_name(self.qc_suite, f"{where}: qc.suite")
        if self.qc_run is not None and (
            not isinstance(self.qc_run, int) or isinstance(self.qc_run, bool) or self.qc_run < 1
        ):
            raise InputError(f"{where}: qc.run must be a run id (a positive integer)")
        if self.qc_suite is not None and self.qc_run is not None:
            raise InputError(f"{where}: qc: give a suite or a run, not both")

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (recorded in the provenance sidecar)."""
        d = asdict(self)
        d.pop("source")
        d.pop("where")
        d.pop("label_where")
        for c in d["criteria"]:
            c.pop("where")
        for m in d["label_maps"]:
            m.pop("where")
        return d

    @property
    def steps(self) -> tuple[Criterion, ...]:
        """The attrition's criteria: the spec's own, then those of its label maps."""
        return self.criteria + tuple(c for m in self.label_maps for c in m.steps())

    @property
    def sha256(self) -> str:
        """SHA-256 of the spec file's text, or of its canonical YAML when built in Python."""
        text = (
            self.source
            if self.source is not None
            else yaml.safe_dump(self.to_dict(), sort_keys=True)
        )
        return hashlib.sha256(text.encode()).hexdigest()


# -- YAML ---------------------------------------------------------------------------------------


class _Mapping(dict[Any, Any]):
    """A YAML mapping that remembers the line it starts on, and the line of each key."""

    line: int | None = None
    key_lines: dict[str, int]


class _Sequence(list[Any]):
    """A YAML sequence that remembers the line of each item."""

    lines: list[int]


class _LineLoader(yaml.SafeLoader):
    """yaml's safe loader, keeping line numbers for messages."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Mapping:
    m = _Mapping(loader.construct_mapping(node, deep=True))
    m.line = node.start_mark.line + 1
    m.key_lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    return m


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _Sequence:
    seq = _Sequence(loader.construct_sequence(node, deep=True))
    seq.lines = [n.start_mark.line + 1 for n in node.value]
    return seq


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _at(where: str, obj: Any, index: int | None = None, key: str | None = None) -> str:
    """``where`` with the line ``obj`` (or its item ``index``, or its key ``key``) is on, when known."""
    line = None
    if index is not None and isinstance(obj, _Sequence) and index < len(obj.lines):
        line = obj.lines[index]
    elif isinstance(obj, _Mapping):
        line = obj.key_lines.get(key, obj.line) if key is not None else obj.line
    return f"{where}:{line}" if line is not None else where


def _criterion(action: str, raw: Any, where: str) -> Criterion:
    if not isinstance(raw, dict):
        raise InputError(
            f"{where}: a criterion is a mapping such as {{field: Modality, op: '=', value: CT}}"
        )
    kinds = [k for k in KINDS if k in raw]
    unknown = set(raw) - {*KINDS, "op", "value", "name"}
    if unknown:
        bad = sorted(map(str, unknown))[0]
        raise InputError(
            f"{where}: unknown key(s) {sorted(map(str, unknown))}"
            + did_you_mean(bad, (*KINDS, "op", "value", "name"))
        )
    if len(kinds) != 1:
        raise InputError(f"{where}: give exactly one of {', '.join(KINDS)} (got {sorted(raw)})")
    kind = kinds[0]
    return Criterion(
        action, kind, raw[kind], raw.get("op"), raw.get("value"), raw.get("name"), where
    )


def _split(raw: Any, where: str) -> SplitSpec:
    if raw is None:
        return SplitSpec(ratios={"train": 0.7, "val": 0.15, "test": 0.15})
    if not isinstance(raw, dict) or not ({"ratios", "counts"} & set(raw)):
        raise InputError(
            f"{where}: split: give ratios {{train: 0.7, ...}} or counts {{test: 20, ...}}"
        )
    unknown = set(raw) - {"ratios", "counts", "stratify", "seed"}
    if unknown:
        raise InputError(f"{where}: split: unknown key(s) {sorted(map(str, unknown))}")
    try:
        return SplitSpec(
            raw.get("ratios"), raw.get("counts"), raw.get("stratify") or (), raw.get("seed", 0)
        )
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


#: Top-level keys of a spec.
SPEC_KEYS: tuple[str, ...] = (
    "name",
    "description",
    "include",
    "exclude",
    "split",
    "labels",
    "qc",
    "normalize",
)


#: Top-level keys people write for a key the spec spells otherwise, and what to write instead.
_KEY_HINTS = {
    "qc_run": "use `qc: {run: N}`",
    "qc_suite": "use `qc: {suite: NAME}`",
    "qc_run_id": "use `qc: {run: N}`",
}


def parse(data: Any, *, source: str | None = None, where: str = "spec") -> CohortSpec:
    """Validate plain data (as loaded from YAML) into a :class:`CohortSpec`."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: a cohort spec is a mapping with name, include, exclude, split")
    unknown = set(data) - set(SPEC_KEYS)
    if unknown:
        bad = sorted(map(str, unknown))[0]
        hint = f" ({_KEY_HINTS[bad]})" if bad in _KEY_HINTS else did_you_mean(bad, SPEC_KEYS)
        raise InputError(
            f"{_at(where, data, key=bad)}: unknown key(s) {sorted(map(str, unknown))}" + hint
        )
    criteria = []
    for action in ACTIONS:
        items = data.get(action) or []
        if not isinstance(items, list):
            raise InputError(f"{where}: {action} must be a list of criteria")
        criteria += [
            _criterion(action, c, _at(where, items, i) + f": {action}[{i}]")
            for i, c in enumerate(items)
        ]
    raw_labels = data.get("labels") or []
    if not isinstance(raw_labels, list):
        raise InputError(f"{where}: labels must be a list of label names")
    label_where = tuple(f"{_at(where, raw_labels, i)}: labels[{i}]" for i in range(len(raw_labels)))
    labels, maps = [], []
    for x, w in zip(raw_labels, label_where, strict=True):
        maps.append(_label_map(x, w))
        labels.append(maps[-1].name)
    qc = data.get("qc") or {}
    if not isinstance(qc, dict) or set(qc) - {"suite", "run"}:
        raise InputError(f"{_at(where, qc)}: qc: a mapping with suite: NAME or run: ID")
    name = data.get("name") or "cohort"
    return CohortSpec(
        name if isinstance(name, str) else str(name),
        tuple(criteria),
        _split(data.get("split"), _at(where, data.get("split"))),
        tuple(labels),
        source,
        qc.get("suite"),
        qc.get("run"),
        where,
        label_where,
        tuple(maps),
        check_normalize(data.get("normalize") or {}, _at(where, data, key="normalize")),
    )


def _label_map(raw: Any, where: str) -> LabelMap:
    """A ``labels:`` item: a name, or ``{name, values, missing}``."""
    if not isinstance(raw, dict):
        return LabelMap(check_name(raw, where), where=where)
    unknown = set(raw) - {"name", "values", "missing"}
    if unknown:
        bad = sorted(map(str, unknown))[0]
        raise InputError(
            f"{_at(where, raw, key=bad)}: unknown key(s) {sorted(map(str, unknown))}"
            + did_you_mean(bad, ("name", "values", "missing"))
        )
    if "name" not in raw:
        raise InputError(f"{where}: a label needs a name")
    return LabelMap(
        raw["name"],
        raw.get("values", dict(DEFAULT_LABEL_VALUES)),
        raw.get("missing", DROP),
        where=where,
    )


def load_spec(path: str | Path) -> CohortSpec:
    """Read and validate a YAML spec file; messages name the file and line."""
    p = Path(path)
    try:
        text = p.read_text()
        data = yaml.load(text, Loader=_LineLoader)
    except OSError as exc:
        raise InputError(f"{p}: cannot read the cohort spec: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: the cohort spec is not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{p}: not valid YAML: {exc}") from exc
    return parse(data, source=text, where=str(p))


#: The YAML loader that keeps line numbers, and the helper that turns a location and an object
#: into ``file:line``: shared by every YAML spec of the package (cohort specs, deid profiles).
LineLoader = _LineLoader
at_line = _at
