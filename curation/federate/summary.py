"""One site's summary: an aggregate, identifier-free profile of its catalog, as versioned JSON.

What it holds (every count a count of series unless said otherwise; see docs/federated.md):

* ``totals``: patients, studies, series, instances (standalone counts);
* ``distributions``: series by modality, then per modality by every attribute of
  :data:`curation.federate.bins.ATTRIBUTES` (categorical values, or numeric values on fixed bins);
  QC: per rule of the latest rule-suite run, series flagged / not flagged; labels: per label and
  vendor, series by label value class (:data:`VALUE_CLASSES`);
* ``parameter_locations``: instances storing each acquisition parameter in each declared location
  (:data:`curation.qc.rules.heterogeneity.PARAMETER_LOCATIONS`);
* ``cohort`` (given a spec): series and patients left after each criterion of the spec.

Nothing else: no UID, name, ID, date finer than the year, path or free text. Every count goes
through :mod:`curation.federate.suppress` with the site's ``min_count``. All counting is done by
DuckDB (one ``GROUP BY`` per kind of count); Python only arranges the aggregated cells.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation import __version__
from curation.catalog import has_table
from curation.errors import CatalogError, InputError, writing
from curation.federate import bins
from curation.federate.suppress import (
    DEFAULT_MIN_COUNT,
    Protected,
    protect,
    protect_count,
    protect_nested,
    protect_sequence,
)
from curation.qc.rules.heterogeneity import PARAMETER_LOCATIONS

if TYPE_CHECKING:
    import duckdb

    from curation.cohort.spec import CohortSpec

log = logging.getLogger("curation.federate")

#: Name of the summary format, and its version (a reader refuses any other).
FORMAT = "curation-site-summary"
SCHEMA_VERSION = 1

#: Label values counted per class, first matching class wins per series (case-insensitive).
VALUE_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("positive", ("positive", "present", "yes", "true", "1")),
    ("uncertain", ("uncertain", "possible", "probable", "indeterminate", "equivocal")),
    ("negative", ("negative", "negated", "absent", "no", "false", "0")),
)
#: Class of any other label value (a number, a free-text value): its text never leaves.
OTHER_CLASS = "other"

#: What a label name may look like to leave a site; others are left out (and logged).
_LABEL_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
#: Site names: short, no path separators, nothing a file name or HTML would trip on.
SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: Longest open-vocabulary value shown (Manufacturer, model, software, kernel).
_MAX_VALUE = 64


def _series_view(con: duckdb.DuckDBPyConnection) -> list[bins.Attribute]:
    """Create temp view ``_fed_series`` and return the attributes the catalog can give."""
    pixel = has_table(con, "pixel_metrics")
    cols = [
        "h.vendor",
        "h.series_type",
        "h.body_part",
        "h.kernel_class",
        "h.max_b_value_s_mm2",
        "year(coalesce(s.SeriesDate, st.StudyDate)) AS acquisition_year",
    ]
    joins = [
        "LEFT JOIN harmonized_series h ON h.SeriesInstanceUID = s.SeriesInstanceUID",
        "LEFT JOIN studies st ON st.StudyInstanceUID = s.StudyInstanceUID",
    ]
    if pixel:
        cols += [f"pm.{a.sql}" for a in bins.ATTRIBUTES if a.needs == "pixel_metrics"]
        joins.append(
            "LEFT JOIN (SELECT * FROM pixel_metrics QUALIFY row_number() OVER "
            "(PARTITION BY SeriesInstanceUID) = 1) pm ON pm.SeriesInstanceUID = s.SeriesInstanceUID"
        )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW _fed_series AS SELECT s.*, {', '.join(cols)} "
        f"FROM series s {' '.join(joins)}"
    )
    return [a for a in bins.ATTRIBUTES if a.needs is None or (a.needs == "pixel_metrics" and pixel)]


def _open_value(value: str) -> str:
    """An open-vocabulary value as shown: control characters dropped, at most 64 characters."""
    clean = "".join(ch for ch in value if ch.isprintable()).strip()
    return clean[:_MAX_VALUE] or "(blank)"


def _label(value: str, closed: bool) -> str:
    return value if closed or value == bins.NOT_RECORDED else _open_value(value)


def _distribution(
    what: str,
    group: dict[str, str],
    counts: dict[str, int],
    k: int,
    *,
    closed: bool,
    unit: str = "series",
    protected: Protected | None = None,
) -> dict[str, Any]:
    if not closed:
        merged: dict[str, int] = defaultdict(int)
        for v, c in counts.items():
            merged[_label(v, closed)] += c
        counts = dict(merged)
    p = protected if protected is not None else protect(counts, k, closed=closed)
    cells: list[dict[str, Any]] = [
        {"value": v, "n": c} for v, c in sorted(p.visible.items(), key=lambda x: (-x[1], x[0]))
    ]
    cells += [{"value": v, "n": None, "suppressed": True} for v in p.hidden]
    out: dict[str, Any] = {
        "what": what,
        "group": group,
        "unit": unit,
        "vocabulary": "closed" if closed else "open",
        "n": sum(counts.values()),
        "cells": cells,
        "n_hidden": p.n_hidden,
    }
    if p.withheld:
        out["withheld"] = True
    return out


def _attribute_distributions(
    con: duckdb.DuckDBPyConnection, attributes: list[bins.Attribute], k: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Series by modality, and per shown modality by every attribute."""
    modality = bins.modality_sql("Modality")
    by_modality = dict(
        con.sql(f"SELECT {modality} AS m, count(*) FROM _fed_series GROUP BY ALL").fetchall()
    )
    modality_dist = _distribution("Modality", {}, by_modality, k, closed=True)
    shown = {c["value"] for c in modality_dist["cells"] if c["n"] is not None}
    shown.discard(bins.NOT_RECORDED)
    parts = [
        f"SELECT {modality} AS m, '{a.name}' AS attribute, "
        f"coalesce({a.value_sql()}, '{bins.NOT_RECORDED}') AS v FROM _fed_series"
        for a in attributes
    ]
    rows = (
        con.sql(
            f"SELECT m, attribute, v, count(*) FROM ({' UNION ALL '.join(parts)}) "
            "WHERE list_contains($shown, m) GROUP BY ALL",
            params={"shown": sorted(shown)},
        ).fetchall()
        if shown
        else []
    )
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for m, attribute, v, n in rows:
        counts[(m, attribute)][v] = n
    nested = _nested(con, shown, k)
    out = []
    for m in sorted(shown):
        for a in attributes:
            cells = counts.get((m, a.name), {})
            if set(cells) <= {bins.NOT_RECORDED}:
                continue  # nothing recorded: the distribution says nothing
            out.append(
                _distribution(
                    a.name,
                    {"Modality": m},
                    cells,
                    k,
                    closed=a.closed,
                    protected=nested.get((m, a.name)),
                )
            )
    return modality_dist, out


def _nested(
    con: duckdb.DuckDBPyConnection, modalities: set[str], k: int
) -> dict[tuple[str, str], Protected]:
    """Manufacturer and its coarsening, the harmonized vendor, protected together per modality
    (see :func:`curation.federate.suppress.protect_nested`)."""
    if not modalities:
        return {}
    nr = bins.NOT_RECORDED
    rows = con.sql(
        f"SELECT {bins.modality_sql('Modality')} AS m, coalesce(Manufacturer, '{nr}'), "
        f"coalesce(vendor, '{nr}'), count(*) FROM _fed_series "
        "WHERE list_contains($shown, m) GROUP BY ALL",
        params={"shown": sorted(modalities)},
    ).fetchall()
    fine: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    coarse_of: dict[str, dict[str, str]] = defaultdict(dict)
    for m, manufacturer, vendor, n in rows:
        label = _label(manufacturer, closed=False)
        fine[m][label] += n
        coarse_of[m].setdefault(label, vendor)
    out = {}
    for m in fine:
        pf, pc = protect_nested(fine[m], coarse_of[m], k, fine_closed=False, coarse_closed=True)
        out[(m, "Manufacturer")] = pf
        out[(m, "vendor")] = pc
    return out


def _qc_distributions(
    con: duckdb.DuckDBPyConnection, n_series: int, k: int
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Per rule of the latest rule-suite run: series flagged and not flagged."""
    if not (has_table(con, "qc_runs") and has_table(con, "qc_findings")):
        return None, []
    from curation.qc.findings import latest_run_id

    run = latest_run_id(con)
    if run is None:
        return None, []
    rows = con.execute(
        """WITH f AS (SELECT * FROM qc_findings WHERE run_id = $r),
        flagged AS (
            SELECT f.rule_id, s.SeriesInstanceUID FROM f JOIN series s USING (SeriesInstanceUID)
            UNION
            SELECT f.rule_id, s.SeriesInstanceUID FROM f JOIN series s
                ON f.SeriesInstanceUID IS NULL AND f.StudyInstanceUID = s.StudyInstanceUID
        )
        SELECT r.rule_id, any_value(r.level), any_value(r.severity), count(fl.SeriesInstanceUID)
        FROM qc_rule_runs r LEFT JOIN flagged fl USING (rule_id)
        WHERE r.run_id = $r AND r.status = 'ok' GROUP BY r.rule_id ORDER BY r.rule_id""",
        {"r": run},
    ).fetchall()
    suite = con.execute("SELECT suite_name FROM qc_runs WHERE run_id = $r", {"r": run}).fetchall()
    out = []
    for rule_id, level, severity, flagged in rows:
        d = _distribution(
            "qc",
            {"rule_id": rule_id, "level": level, "severity": severity},
            {"flagged": flagged, "not flagged": n_series - flagged},
            k,
            closed=True,
        )
        out.append(d)
    suite_name = suite[0][0] if suite else None
    meta = {"suite": suite_name if suite_name and _LABEL_NAME.match(suite_name) else "(custom)"}
    return meta, out


def _value_class_sql() -> str:
    whens = " ".join(
        f"WHEN list_contains({list(values)!r}, lower(trim(value))) THEN {i}"
        for i, (_, values) in enumerate(VALUE_CLASSES)
    )
    return f"CASE {whens} ELSE {len(VALUE_CLASSES)} END"


def _label_distributions(con: duckdb.DuckDBPyConnection, k: int) -> list[dict[str, Any]]:
    """Per label: labelled series by vendor and value class; small vendor groups left out."""
    if not has_table(con, "labels"):
        return []
    names = [*(c for c, _ in VALUE_CLASSES), OTHER_CLASS]
    rows = con.sql(
        f"""WITH l AS (SELECT label, value, SeriesInstanceUID, StudyInstanceUID FROM labels),
        per AS (
            SELECT s.SeriesInstanceUID, l.label, {_value_class_sql()} AS cls
            FROM l JOIN series s USING (SeriesInstanceUID)
            UNION ALL
            SELECT s.SeriesInstanceUID, l.label, {_value_class_sql()} AS cls
            FROM l JOIN series s
                ON l.SeriesInstanceUID IS NULL AND l.StudyInstanceUID = s.StudyInstanceUID
        ),
        one AS (SELECT SeriesInstanceUID, label, min(cls) AS cls FROM per GROUP BY ALL)
        SELECT o.label, coalesce(h.vendor, '{bins.NOT_RECORDED}'), o.cls, count(*)
        FROM one o LEFT JOIN harmonized_series h USING (SeriesInstanceUID) GROUP BY ALL"""
    ).fetchall()
    groups: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    dropped = set()
    for label, vendor, cls, n in rows:
        if label is None or not _LABEL_NAME.match(label):
            dropped.add(label)
            continue
        groups[label][vendor][names[cls]] = n
    if dropped:
        log.warning("%d label name(s) are not plain names and are left out", len(dropped))
    out = []
    for label in sorted(groups):
        by_vendor = {v: sum(c.values()) for v, c in groups[label].items()}
        if sum(by_vendor.values()) < k:
            continue  # fewer than k labelled series: the label is not mentioned at all
        # Vendor groups are distributions with a published total; the label's total is published
        # too, so the groups left out are one hidden bucket that must hold at least k series.
        p = protect(by_vendor, k, closed=False)
        # the label's series by vendor (below) is that distribution; each shown vendor group is
        # a distribution of its own, by value class
        for vendor in sorted(p.visible):
            out.append(
                _distribution(
                    "label",
                    {"label": label, "vendor": vendor},
                    groups[label][vendor],
                    k,
                    closed=True,
                )
            )
        total = _distribution("label_vendor", {"label": label}, by_vendor, k, closed=False)
        out.append(total)
    return out


def _parameter_locations(con: duckdb.DuckDBPyConnection, k: int) -> list[dict[str, Any]]:
    """Instances per declared location of each acquisition parameter (as the rule finds them)."""
    if not has_table(con, "elements"):
        return []
    values = ", ".join(
        f"({i}, {'NULL' if c is None else repr(c)}, '{t}')"
        for i, (_, c, t) in enumerate(PARAMETER_LOCATIONS)
    )
    rows = con.sql(
        f"""WITH loc(i, creator, element) AS (VALUES {values}),
        hits AS (
            SELECT l.i, e.file_id FROM elements e JOIN loc l ON e.tag = l.element
            WHERE l.creator IS NULL AND e.private_creator IS NULL AND e.value IS NOT NULL
            UNION ALL
            SELECT l.i, e.file_id FROM elements e JOIN loc l
                ON e.private_creator = l.creator AND e.private_element = l.element
            WHERE e.value IS NOT NULL
        )
        SELECT i, count(DISTINCT file_id) FROM hits GROUP BY i ORDER BY i"""
    ).fetchall()
    out = []
    for i, n in rows:
        parameter, creator, element = PARAMETER_LOCATIONS[i]
        shown = protect_count(n, k)
        out.append(
            {
                "parameter": parameter,
                "location": ("public " if creator is None else creator + " ") + element,
                "n_instances": shown,
                **({"suppressed": True} if shown is None else {}),
            }
        )
    return out


def _cohort(con: duckdb.DuckDBPyConnection, spec: CohortSpec, k: int) -> dict[str, Any]:
    """Series and patients left after each criterion of ``spec`` (nothing written to the catalog)."""
    from curation.cohort import attrition as attr

    compiled = attr.compile_spec(con, spec)
    attr.evaluate(con, spec, compiled)
    rows = con.sql(attr.attrition_sql(spec)).fetchall()
    series = protect_sequence([r[4] for r in rows], k)
    patients = protect_sequence([r[2] for r in rows], k)
    return {
        "spec_sha256": spec.sha256,
        "n_criteria": len(spec.criteria),
        "steps": [
            {"step": int(r[0]), "n_series": s, "n_patients": p}
            for r, s, p in zip(rows, series, patients, strict=True)
        ],
    }


def build_summary(
    con: duckdb.DuckDBPyConnection,
    *,
    site: str = "site",
    min_count: int = DEFAULT_MIN_COUNT,
    cohort: CohortSpec | str | Path | None = None,
) -> dict[str, Any]:
    """The summary of the catalog behind ``con``, as a JSON-ready dict (see the module docstring).

    ``harmonized_series`` is built if the catalog lacks it (as ``curation cohort`` does); nothing
    else is written to the catalog.

    Parameters
    ----------
    con
        Open catalog connection.
    site
        Name of the site in the federation (letters, digits, ``_ . -``; at most 64).
    min_count
        ``k``: counts under it (but not 0) are suppressed, and complemented (see
        :mod:`curation.federate.suppress`).
    cohort
        A cohort spec (or its YAML path) whose attrition at this site the summary reports.

    Raises
    ------
    InputError
        A site name or ``min_count`` that cannot be used; a cohort spec that does not fit.
    CatalogError
        The catalog has no ``series`` table.
    """
    if not SITE_NAME.match(site):
        raise InputError(
            f"site name {site!r}: use 1 to 64 letters, digits, '_', '.' or '-' (starting with a "
            "letter or digit)"
        )
    if min_count < 1:
        raise InputError(f"min_count must be at least 1, not {min_count}")
    if not has_table(con, "series"):
        raise CatalogError("the catalog has no series table: run `curation crawl` first")
    if not has_table(con, "harmonized_series"):
        from curation import harmonize

        harmonize.build(con)
    spec = None
    if cohort is not None:
        from curation.cohort.spec import CohortSpec, load_spec

        spec = cohort if isinstance(cohort, CohortSpec) else load_spec(cohort)
    k = min_count
    attributes = _series_view(con)
    totals = con.sql(
        "SELECT (SELECT count(DISTINCT PatientID) FROM series), "
        "(SELECT count(DISTINCT StudyInstanceUID) FROM series), (SELECT count(*) FROM series), "
        "(SELECT coalesce(sum(n_instances), 0) FROM series)"
    ).fetchall()[0]
    n_series = int(totals[2])
    modality, per_modality = _attribute_distributions(con, attributes, k)
    qc_meta, qc = _qc_distributions(con, n_series, k)
    summary: dict[str, Any] = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "site": site,
        "curation_version": __version__,
        "min_count": k,
        "bins_version": bins.BINS_VERSION,
        "bins": bins.bins_json(),
        "attributes": [a.name for a in attributes],
        "totals": {
            name: protect_count(int(n), k)
            for name, n in zip(("patients", "studies", "series", "instances"), totals, strict=True)
        },
        "distributions": [modality, *per_modality, *qc, *_label_distributions(con, k)],
        "qc": qc_meta,
        "parameter_locations": _parameter_locations(con, k),
        "cohort": _cohort(con, spec, k) if spec is not None else None,
    }
    if summary["totals"]["series"] is None:
        # Every distribution's total is a part of the series total: none of them can be shown.
        summary["distributions"] = []
    return summary


def dumps(value: Any, indent: str = "") -> str:
    """JSON that reads by eye: objects and lists one item a line, down to the leaves (a cell, a
    bin's edges, a group), which stay on one line each."""
    leaf = not isinstance(value, dict | list) or all(
        not isinstance(v, dict | list)
        or (isinstance(v, list) and not v)
        or (isinstance(v, dict) and all(not isinstance(x, dict | list) for x in v.values()))
        for v in (value.values() if isinstance(value, dict) else value)
    )
    if leaf or not value:
        return json.dumps(value, ensure_ascii=False)
    inner = indent + " "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    return "[\n" + ",\n".join(inner + dumps(v, inner) for v in value) + "\n" + indent + "]"


def write_summary(summary: dict[str, Any], path: str | Path) -> Path:
    """Validate ``summary`` against the schema and write it to ``path`` (indented JSON)."""
    from curation.federate.format import validate

    validate(summary, "the summary being written")
    out = Path(path)
    text = dumps(summary)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(out)
    return out
