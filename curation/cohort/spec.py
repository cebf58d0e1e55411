"""A cohort spec: who is in the cohort, how it is split, what the manifest carries.

A spec is a YAML file or a :class:`CohortSpec` built in Python; both are validated the same way.
Each criterion filters series on one of:

- ``field``: a column of ``harmonized_series`` or of ``pixel_metrics`` (when that table exists);
- ``qc_rule``: the series (or its study) has a finding of that rule in the latest QC run;
- ``qc_severity``: the series (or its study) has a finding at that severity or worse;
- ``label``: the series (or its study) has that label in the ``labels`` table (``value`` optional).

``op`` is one of :data:`OPS`. Values are always bound as query parameters; column names are
checked against the catalog before they reach SQL, so nothing the user writes is pasted into a query.

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
    labels: [pleural_effusion]
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curation.errors import InputError

#: Comparison operators a criterion may use.
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
KINDS: tuple[str, ...] = ("field", "qc_rule", "qc_severity", "label")
SEVERITIES: tuple[str, ...] = ("info", "warning", "error")


@dataclass(frozen=True)
class Criterion:
    """One inclusion or exclusion criterion.

    ``kind`` says what ``target`` names: a column (``field``), a rule id (``qc_rule``), a severity
    (``qc_severity``) or a label name (``label``). ``op`` and ``value`` compare the column (or the
    label's value); QC criteria take neither.
    """

    action: str  # include or exclude
    kind: str
    target: str
    op: str | None = None
    value: Any = None
    name: str | None = None

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
    """Patient-level split: ratios (fractions summing to 1) or counts (patients per split)."""

    ratios: dict[str, float] | None = None
    counts: dict[str, int] | None = None
    stratify: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class CohortSpec:
    """A validated cohort spec (see the module docstring for the YAML form)."""

    name: str
    criteria: tuple[Criterion, ...] = ()
    split: SplitSpec = field(
        default_factory=lambda: SplitSpec(ratios={"train": 0.7, "val": 0.15, "test": 0.15})
    )
    labels: tuple[str, ...] = ()
    source: str | None = None  # the YAML text it was read from, if any

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (recorded in the provenance sidecar)."""
        d = asdict(self)
        d.pop("source")
        return d

    @property
    def sha256(self) -> str:
        """SHA-256 of the spec file's text, or of its canonical YAML when built in Python."""
        text = (
            self.source
            if self.source is not None
            else yaml.safe_dump(self.to_dict(), sort_keys=True)
        )
        return hashlib.sha256(text.encode()).hexdigest()


def _criterion(action: str, raw: Any, where: str) -> Criterion:
    if not isinstance(raw, dict):
        raise InputError(
            f"{where}: a criterion is a mapping such as {{field: Modality, op: '=', value: CT}}"
        )
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) != 1:
        raise InputError(f"{where}: give exactly one of {', '.join(KINDS)} (got {sorted(raw)})")
    unknown = set(raw) - {*KINDS, "op", "value", "name"}
    if unknown:
        raise InputError(f"{where}: unknown key(s) {sorted(unknown)}")
    kind = kinds[0]
    target = raw[kind]
    if not isinstance(target, str) or not target:
        raise InputError(f"{where}: {kind} must be a non-empty string")
    op, value = raw.get("op"), raw.get("value")
    if kind == "qc_severity" and target not in SEVERITIES:
        raise InputError(f"{where}: qc_severity must be one of {SEVERITIES}, not {target!r}")
    if kind in ("qc_rule", "qc_severity") and (op or value is not None):
        raise InputError(f"{where}: {kind} criteria take no op or value")
    if kind == "label" and value is not None and op is None:
        op = "in" if isinstance(value, list) else "="
    if kind == "field" and op is None:
        raise InputError(f"{where}: a field criterion needs an op (one of {', '.join(OPS)})")
    if op is not None and op not in OPS:
        raise InputError(f"{where}: unknown op {op!r}; use one of {', '.join(OPS)}")
    if op in ("in", "not in") and not isinstance(value, list):
        raise InputError(f"{where}: op {op!r} needs a list value")
    if op == "between" and not (isinstance(value, list) and len(value) == 2):
        raise InputError(f"{where}: op 'between' needs [low, high]")
    if op in ("is null", "not null") and value is not None:
        raise InputError(f"{where}: op {op!r} takes no value")
    if op not in (None, "is null", "not null") and value is None:
        raise InputError(f"{where}: op {op!r} needs a value")
    return Criterion(action, kind, target, op, value, raw.get("name"))


def _split(raw: Any) -> SplitSpec:
    if raw is None:
        return SplitSpec(ratios={"train": 0.7, "val": 0.15, "test": 0.15})
    if not isinstance(raw, dict) or not ({"ratios", "counts"} & set(raw)):
        raise InputError("split: give ratios {train: 0.7, ...} or counts {test: 20, ...}")
    ratios, counts = raw.get("ratios"), raw.get("counts")
    if ratios is not None:
        if not isinstance(ratios, dict) or not all(
            isinstance(v, int | float) and v >= 0 for v in ratios.values()
        ):
            raise InputError("split.ratios: a mapping of split name to a non-negative fraction")
        if abs(sum(ratios.values()) - 1) > 1e-6:
            raise InputError(f"split.ratios must sum to 1 (they sum to {sum(ratios.values())})")
    if counts is not None and (
        not isinstance(counts, dict)
        or not all(isinstance(v, int) and v >= 0 for v in counts.values())
    ):
        raise InputError("split.counts: a mapping of split name to a number of patients")
    stratify = raw.get("stratify") or []
    if isinstance(stratify, str):
        stratify = [stratify]
    seed = raw.get("seed", 0)
    if not isinstance(seed, int):
        raise InputError("split.seed must be an integer")
    return SplitSpec(ratios, counts, tuple(stratify), seed)


def parse(data: Any, *, source: str | None = None, where: str = "spec") -> CohortSpec:
    """Validate plain data (as loaded from YAML) into a :class:`CohortSpec`."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: a cohort spec is a mapping with name, include, exclude, split")
    unknown = set(data) - {"name", "include", "exclude", "split", "labels", "description"}
    if unknown:
        raise InputError(f"{where}: unknown key(s) {sorted(unknown)}")
    criteria = []
    for action in ("include", "exclude"):
        items = data.get(action) or []
        if not isinstance(items, list):
            raise InputError(f"{where}: {action} must be a list of criteria")
        criteria += [_criterion(action, c, f"{where}: {action}[{i}]") for i, c in enumerate(items)]
    labels = data.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise InputError(f"{where}: labels must be a list of label names")
    return CohortSpec(
        str(data.get("name") or "cohort"),
        tuple(criteria),
        _split(data.get("split")),
        tuple(labels),
        source,
    )


def load(path: str | Path) -> CohortSpec:
    """Read and validate a YAML spec file."""
    p = Path(path)
    try:
        text = p.read_text()
        data = yaml.safe_load(text)
    except OSError as exc:
        raise InputError(f"{p}: cannot read the cohort spec: {exc}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{p}: not valid YAML: {exc}") from exc
    return parse(data, source=text, where=str(p))
