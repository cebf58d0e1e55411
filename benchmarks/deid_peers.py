"""`curation deid` next to maintained peers on the same files: leaked identifiers and files/s.

    pip install dicognito deid      # the peers, from PyPI (not dependencies of curation)
    python benchmarks/deid_peers.py [--series-per-kind 3] [--real 40] [--work DIR]

Files: synthetic series with planted privacy defects (identifiers in free text, BurnedInAnnotation
YES, text burned into the pixels: ``--series-per-kind`` of each) plus other synthetic series, and
``--real`` files of each vendor of ../shared/dicom (compressed, enhanced, private tags). They are
crawled into a catalog and built into a one-split cohort, then de-identified by:

- ``curation``: :func:`curation.deid.deidentify`, the Basic Profile (header, private tags, keyed
  UIDs, OCR masking of burned-in text), one process;
- ``dicognito``: ``Anonymizer().anonymize(ds)`` then ``save_as``, one process;
- ``deid``: pydicom's deid with its default recipe (``replace_identifiers``), one process;
- ``copy``: pydicom read + write with no change (the same-run baseline of the speed ratios).

Each output folder is searched by the same scanner the tests use (:mod:`curation.deid.scan`):
every identifier of the source files in the catalog, in every spelling, in every byte. Burned-in
text is measured against the synthetic ground truth: the share of the planted text pixels left
unchanged. Speeds are files/s and ratios to ``copy``, measured in this run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pydicom

from curation import catalog, crawl, pseudonym
from curation.cohort import build_cohort, parse
from curation.deid import deidentify, scan

ROOT = Path(__file__).resolve().parents[1]
SYN = ROOT / "sample_data" / "synthetic"
SHARED = (ROOT.parent / "shared" / "dicom").resolve()
KEY = b"benchmark-key-0123456789-deid"


def _files(per_kind: int, real: int) -> list[Path]:
    truth = pl.read_parquet(SYN / "ground_truth.parquet")
    series = pl.read_parquet(SYN / "series.parquet").sort("SeriesInstanceUID")
    out: list[Path] = []
    for kind in ("phi_in_header", "burned_in_annotation_flag", "burned_in_text"):
        uids = truth.filter(pl.col("kind") == kind)["SeriesInstanceUID"].unique().to_list()
        for row in series.filter(pl.col("SeriesInstanceUID").is_in(uids)).head(per_kind).iter_rows(named=True):  # fmt: skip
            out += sorted((SYN / row["series_dir"]).glob("*"))
    clean = series.filter(pl.col("defect").is_null()) if "defect" in series.columns else series
    for row in clean.head(per_kind * 2).iter_rows(named=True):
        out += sorted((SYN / row["series_dir"]).glob("*"))
    if SHARED.is_dir() and real:
        listing = (SHARED / "_DICOM_FILES.tsv").read_text().splitlines()[1:]
        by_source: dict[str, list[Path]] = {}
        for line in listing:
            rel = line.split("\t")[0]
            by_source.setdefault(rel.split("/")[0], []).append(SHARED / rel.split("/", 1)[1])
        for files in by_source.values():
            out += sorted(files)[: max(1, real // len(by_source))]
    return [p for p in out if p.is_file()]


def _dicognito(src: list[str], out: Path) -> None:
    from dicognito.anonymizer import Anonymizer

    anon = Anonymizer()
    for i, p in enumerate(src):
        ds = pydicom.dcmread(p, force=True)
        anon.anonymize(ds)
        ds.save_as(out / f"{i:06d}.dcm")


def _deid(src: list[str], out: Path) -> None:
    from deid.dicom import get_identifiers, replace_identifiers

    for i, p in enumerate(src):
        items = get_identifiers([p])
        parsed = replace_identifiers(dicom_files=[p], ids=items, save=False)
        parsed[0].save_as(out / f"{i:06d}.dcm")


def _copy(src: list[str], out: Path) -> None:
    for i, p in enumerate(src):
        pydicom.dcmread(p, force=True).save_as(out / f"{i:06d}.dcm")


def _text_left(src: list[str], outputs: dict[str, Path]) -> float | None:
    """Share of the planted burned-in text pixels unchanged in the outputs (None: none written)."""
    from curation.synth.burnin import draw_text

    truth = pl.read_parquet(SYN / "ground_truth.parquet").filter(pl.col("kind") == "burned_in_text")
    params = {str((SYN / r["path"]).resolve()): json.loads(r["params"]) for r in truth.to_dicts()}
    left = total = 0
    for s in src:
        p = params.get(str(Path(s).resolve()))
        out = outputs.get(s)
        if p is None or out is None or not out.exists():
            continue
        a = pydicom.dcmread(s).pixel_array
        b = pydicom.dcmread(out).pixel_array
        rows, cols = a.shape
        mask = np.zeros(a.shape)
        draw_text(mask, p["lines"], int(rows * p["row_fraction"]), int(cols * p["col_fraction"]), 1.0, max(1, rows // 128))  # fmt: skip
        text = mask > 0
        left += int((a[text] == b[text]).sum())
        total += int(text.sum())
    return left / total if total else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series-per-kind", type=int, default=3)
    ap.add_argument("--real", type=int, default=40)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="deid_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    files = _files(args.series_per_kind, args.real)
    db = work / "catalog.duckdb"
    db.unlink(missing_ok=True)
    crawl(files, db, workers=1, progress=False)
    from curation.pixels.compute import compute

    compute(db, workers=1, progress=False)  # the pixel step flags burned-in text for the OCR
    cohort = work / "cohort"
    shutil.rmtree(cohort, ignore_errors=True)
    build_cohort(db, parse({"name": "bench", "split": {"ratios": {"train": 1.0}}}), cohort, key=KEY)  # fmt: skip
    with catalog.opened(db, read_only=True) as con:
        src = [
            str(r[0])
            for r in con.sql(
                """SELECT i.path FROM instances i JOIN cohort_members m USING (SeriesInstanceUID)
                QUALIFY row_number() OVER (PARTITION BY i.SOPInstanceUID ORDER BY i.path) = 1
                ORDER BY i.path"""
            ).fetchall()
        ]
        needles = scan.identifiers(con, src)
    print(f"{len(src)} files, {len(needles)} identifier spellings searched; work in {work}")
    key_file = work / "key"
    key_file.write_bytes(KEY)
    rows: list[dict[str, Any]] = []
    outputs: dict[str, dict[str, Path]] = {}
    for tool in ("copy", "curation", "dicognito", "deid"):
        out = work / tool
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        t = time.perf_counter()
        written = len(src)
        try:
            if tool == "curation":
                result = deidentify(db, cohort, out, key_file=key_file, progress=False)
                written = result.n_written
                by_key = {pseudonym.pseudonym(s, KEY): s for s in src}
                outputs[tool] = {
                    by_key[r["file_key"]]: out / r["out_path"]
                    for r in result.files.filter(pl.col("status") == "written").iter_rows(
                        named=True
                    )
                }
            else:
                {"copy": _copy, "dicognito": _dicognito, "deid": _deid}[tool](src, out)
                outputs[tool] = {s: out / f"{i:06d}.dcm" for i, s in enumerate(src)}
        except ImportError as exc:
            print(f"{tool}: not installed ({exc}); pip install dicognito deid")
            continue
        seconds = time.perf_counter() - t
        leaks = scan.scan(out, needles)
        files_leaking = len({x.path for x in leaks if x.path.endswith(".dcm")})
        kinds = Counter(x.kind for x in leaks)
        rows.append(
            {
                "tool": tool,
                "files_written": written,
                "seconds": seconds,
                "files_per_s": written / seconds,
                "leaks": len(leaks),
                "files_with_leaks": files_leaking,
                "by_kind": dict(sorted(kinds.items())),
                "burned_in_text_left": _text_left(src, outputs[tool]),
            }
        )
    base = next(r for r in rows if r["tool"] == "copy")["files_per_s"]
    print(
        "| tool | files written | leaked identifiers (files) | by kind | burned-in text pixels left | files/s | vs copy |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        left = r["burned_in_text_left"]
        print(
            f"| {r['tool']} | {r['files_written']} | {r['leaks']} ({r['files_with_leaks']}) | "
            f"{', '.join(f'{k} {v}' for k, v in r['by_kind'].items()) or '-'} | "
            f"{'-' if left is None else f'{100 * left:.0f}%'} | {r['files_per_s']:.1f} | "
            f"{r['files_per_s'] / base:.2f} |"
        )


if __name__ == "__main__":
    main()
