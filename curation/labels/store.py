"""Label the catalog's reports into the ``labels`` table.

One row per study and finding the study's reports mention (several reports of one study are
combined as the sentences of one report are: positive over uncertain over negative); a report
whose key resolves to no study gets its own rows, with a NULL StudyInstanceUID, which no cohort
criterion matches. Every run relabels every report, replacing the rows of :data:`SOURCE`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import duckdb
import polars as pl

from curation.catalog import has_table
from curation.cohort.labels import load_labels
from curation.errors import InputError
from curation.labels.context import PRECEDENCE, label_report
from curation.labels.lexicon import Lexicon, default_lexicon

log = logging.getLogger("curation.labels")

#: ``labels.source`` of the rows this labeler writes.
SOURCE = "report labeler"


@dataclass
class LabelResult:
    """What a labeling run wrote: reports read, rows written, counts per finding and value."""

    n_reports: int = 0
    n_rows: int = 0
    version: str = ""
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"{self.n_reports} reports labeled (labeler {self.version}): {self.n_rows} labels rows"
        )


def label_catalog(
    con: duckdb.DuckDBPyConnection,
    lexicon: Lexicon | None = None,
    *,
    keep_ignored_sections: bool = False,
    implied_negatives: bool = False,
) -> LabelResult:
    """Label every report of ``reports`` into ``labels`` (rows of :data:`SOURCE` replaced).

    Raises
    ------
    InputError
        The catalog holds no reports (load some with :func:`curation.labels.load_reports`).
    """
    lex = lexicon or default_lexicon()
    if not has_table(con, "reports"):
        raise InputError("the catalog holds no reports: load a report file or the SRs first")
    reports = con.execute(
        "SELECT report_key, StudyInstanceUID, PatientID, text FROM reports "
        "ORDER BY StudyInstanceUID NULLS LAST, source, source_row"
    ).fetchall()
    best: dict[tuple[str, str], tuple[int, dict[str, object]]] = {}
    for report_key, study, patient, text in reports:
        group = study if study is not None else f"\x00{report_key}"
        for finding, m in label_report(
            text,
            lex,
            keep_ignored_sections=keep_ignored_sections,
            implied_negatives=implied_negatives,
        ).items():
            rank = PRECEDENCE.index(m.value)
            cur = best.get((group, finding))
            if cur is not None and cur[0] <= rank:
                continue
            best[(group, finding)] = (
                rank,
                {
                    "PatientID": patient,
                    "StudyInstanceUID": study,
                    "label": finding,
                    "value": m.value,
                    "source": SOURCE,
                    "report_key": report_key,
                    "evidence": text[m.sentence_start : m.sentence_end],
                    "span_start": m.start,
                    "span_end": m.end,
                    "labeler_version": lex.version,
                },
            )
    rows = [r for _, r in best.values()]
    schema = {
        c: pl.Int32 if c.startswith("span_") else pl.String
        for c in (
            "PatientID", "StudyInstanceUID", "label", "value", "source", "report_key",
            "evidence", "span_start", "span_end", "labeler_version",
        )
    }  # fmt: skip
    frame = pl.DataFrame(rows, schema=schema)
    con.execute("BEGIN")
    try:
        n = load_labels(con, frame, replace_source=True)
        if frame.height == 0:
            con.execute("DELETE FROM labels WHERE source = $s", {"s": SOURCE})
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    result = LabelResult(len(reports), n, lex.version)
    if frame.height:
        for f, v, c in frame.group_by("label", "value").len().iter_rows():
            result.counts[(f, v)] = c
    return result
