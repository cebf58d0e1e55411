"""Precision and recall of the QC rules against the synthetic cohort's ground truth.

For every defect kind some rule ``detects`` (see :attr:`curation.qc.rule.Rule.detects`), the findings of
those rules are compared with the planted defects on the kind's unit: the series for series-level
truth, the SOP instance for instance-level truth, the file path for file-level truth.

Planted junk files whose name the crawl knows as never DICOM (``Thumbs.db``, ``.DS_Store``, a
``.jpg`` thumbnail) are cataloged by the crawl as ``skipped`` (``files.status``), like the sidecars of
a real export; no rule reports skipped files (the rule and the crawl agree), so they are not counted
as defects a rule should find.

A finding on a unit without that defect is a false positive. Those that land on a unit carrying
another planted defect are counted apart as ``collateral`` (a zero-byte file inside a stack does leave
a missing slice): ``precision`` counts them as false, ``precision_clean`` does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from curation.qc.rule import all_rules

if TYPE_CHECKING:
    import duckdb

_UNIT = {"series": "SeriesInstanceUID", "instance": "SOPInstanceUID", "file": "path"}


@dataclass(frozen=True)
class KindScore:
    """Precision and recall of the rules that detect one defect kind."""

    kind: str
    rules: tuple[str, ...]
    n_truth: int
    tp: int
    fp: int
    collateral: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def precision_clean(self) -> float:
        clean_fp = self.fp - self.collateral
        return self.tp / (self.tp + clean_fp) if self.tp + clean_fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_truth if self.n_truth else 1.0


def score(
    con: duckdb.DuckDBPyConnection,
    ground_truth: str | Path | pl.DataFrame,
    run_id: int,
    root: str | Path | None = None,
) -> list[KindScore]:
    """Score the findings of ``run_id`` against ``ground_truth`` (the parquet file or its frame).

    ``root`` is the folder the truth's relative paths start from (default: the parquet's folder).
    """
    if root is None and not isinstance(ground_truth, pl.DataFrame):
        root = Path(ground_truth).parent
    truth = (
        ground_truth if isinstance(ground_truth, pl.DataFrame) else pl.read_parquet(ground_truth)
    )
    found = con.sql(
        "SELECT rule_id, SeriesInstanceUID, SOPInstanceUID, "
        "CASE WHEN $root <> '' AND starts_with(path, $root) THEN path[length($root) + 1:] "
        "ELSE path END AS path FROM qc_findings WHERE run_id = $r",
        params={"r": run_id, "root": "" if root is None else str(Path(root).resolve()) + "/"},
    ).pl()
    skipped = set(
        con.sql(
            "SELECT CASE WHEN $root <> '' AND starts_with(path, $root) THEN path[length($root) + 1:] "
            "ELSE path END FROM files WHERE status = 'skipped'",
            params={"root": "" if root is None else str(Path(root).resolve()) + "/"},
        )
        .pl()
        .to_series()
        .to_list()
    )
    # every unit that carries any planted defect, for telling collateral from clean false positives
    defective = {col: set(truth.get_column(col).drop_nulls().to_list()) for col in _UNIT.values()}
    kinds: dict[str, list[str]] = {}
    for rule in all_rules().values():
        for k in rule.detects:
            kinds.setdefault(k, []).append(rule.id)
    out = []
    for kind, rule_ids in sorted(kinds.items()):
        rows = truth.filter(pl.col("kind") == kind)
        level = rows.get_column("level")[0] if rows.height else "series"
        unit = _UNIT[level]
        want = set(rows.get_column(unit).drop_nulls().to_list())
        if level == "file":
            want -= skipped
        got = set(
            found.filter(pl.col("rule_id").is_in(rule_ids)).get_column(unit).drop_nulls().to_list()
        )
        fp = got - want
        out.append(
            KindScore(
                kind=kind,
                rules=tuple(rule_ids),
                n_truth=len(want),
                tp=len(got & want),
                fp=len(fp),
                collateral=len(fp & defective[unit]),
                fn=len(want - got),
            )
        )
    return out


def markdown(scores: list[KindScore]) -> str:
    """The scores as a Markdown table."""
    lines = [
        "| defect kind | rule(s) | planted | TP | FP (collateral) | FN | precision | "
        "precision w/o collateral | recall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        lines.append(
            f"| {s.kind} | {', '.join(f'`{r}`' for r in s.rules)} | {s.n_truth} | {s.tp} | "
            f"{s.fp} ({s.collateral}) | {s.fn} | {s.precision:.3f} | {s.precision_clean:.3f} | "
            f"{s.recall:.3f} |"
        )
    return "\n".join(lines)


def score_series(
    con: duckdb.DuckDBPyConnection,
    truth: pl.DataFrame,
    run_id: int,
    by: str | None = None,
    ignore: dict[str, set[str]] | None = None,
) -> pl.DataFrame:
    """Series-level precision and recall per planted kind, over the series ``truth`` lists.

    ``truth`` has one row per series: ``SeriesInstanceUID``, ``kind`` (null for a clean series)
    and, when ``by`` is given, that column (e.g. ``modality``): the scores are then per kind and
    value. A finding of a kind's rules on a listed series without that kind is a false positive
    (``collateral`` when the series carries another kind); series not listed are ignored. Kinds no
    rule detects are left out. ``ignore`` maps a kind to series left out of its scoring (series
    that already had the defect before anything was planted).
    """
    found = con.sql(
        "SELECT DISTINCT rule_id, SeriesInstanceUID FROM qc_findings WHERE run_id = $r",
        params={"r": run_id},
    ).pl()
    detecting: dict[str, list[str]] = {}
    for rule in all_rules().values():
        for k in rule.detects:
            detecting.setdefault(k, []).append(rule.id)
    groups = [None] if by is None else sorted(set(truth.get_column(by).to_list()))
    rows = []
    for kind in sorted({k for k in truth.get_column("kind").to_list() if k in detecting}):
        for g in groups:
            part = truth if g is None else truth.filter(pl.col(by) == g)  # type: ignore[arg-type]
            part = part.filter(
                ~pl.col("SeriesInstanceUID").is_in(list((ignore or {}).get(kind, ())))
            )
            listed = set(part.get_column("SeriesInstanceUID").to_list())
            want = set(part.filter(pl.col("kind") == kind).get_column("SeriesInstanceUID"))
            if not want:
                continue
            other = set(part.filter(pl.col("kind").is_not_null()).get_column("SeriesInstanceUID"))
            got = (
                set(
                    found.filter(pl.col("rule_id").is_in(detecting[kind])).get_column(
                        "SeriesInstanceUID"
                    )
                )
                & listed
            )
            fp = got - want
            tp = len(got & want)
            rows.append(
                {
                    "kind": kind,
                    **({} if by is None else {by: g}),
                    "rules": ", ".join(detecting[kind]),
                    "planted": len(want),
                    "TP": tp,
                    "FP": len(fp),
                    "collateral": len(fp & other),
                    "FN": len(want) - tp,
                    "precision": round(tp / (tp + len(fp)), 3) if tp + len(fp) else 1.0,
                    "recall": round(tp / len(want), 3),
                }
            )
    return pl.DataFrame(rows)
