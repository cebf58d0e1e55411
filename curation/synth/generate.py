"""Generating a synthetic cohort: plan, write every series (in parallel if asked), write the tables.

Output layout under ``out``::

    dicom/<site>/<PatientID>/<StudyDate>_<AccessionNumber>/<SeriesNumber>_<description>/<file>
    reports/<AccessionNumber>.txt
    ground_truth.parquet  series.parquet  reports.parquet  cohort.json

Crawl ``out/dicom``: the reports and tables beside it are not part of the archive.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from curation.errors import InputError
from curation.synth.plan import PROFILES, Profile, SeriesSpec, plan_cohort
from curation.synth.truth import truth_row, write_tables
from curation.synth.writer import SeriesResult, write_junk, write_series

log = logging.getLogger("curation.synth")

GENERATOR_VERSION = "1"


@dataclass(frozen=True)
class CohortSummary:
    """What :func:`generate_cohort` wrote."""

    root: Path
    dicom_dir: Path
    profile: str
    seed: int
    n_patients: int
    n_studies: int
    n_series: int
    n_defective_series: int
    n_files: int
    n_bytes: int
    #: defect kind -> number of ground-truth rows
    truth_rows_by_kind: dict[str, int]
    #: defect kind -> number of series (or junk files, for not_dicom) it was planted in
    occurrences_by_kind: dict[str, int]
    ground_truth: Path
    series_table: Path
    reports_table: Path
    elapsed_s: float

    @property
    def files_per_s(self) -> float:
        """Generation throughput."""
        return self.n_files / self.elapsed_s if self.elapsed_s > 0 else float("nan")


def _write_one(args: tuple[SeriesSpec, Path, Profile]) -> SeriesResult:
    return write_series(*args)


def generate_cohort(
    out: str | Path,
    *,
    patients: int | None = None,
    seed: int = 0,
    profile: str = "small",
    defect_rate: float = 0.3,
    workers: int = 1,
    progress: bool | None = None,
) -> CohortSummary:
    """Generate a synthetic multi-site DICOM cohort with planted defects and its ground truth.

    Parameters
    ----------
    out
        Directory to write into; created if missing, must be empty if it exists.
    patients
        Number of patients; the profile's default when None (small: 40, bench: 200).
    seed
        Seed of every random choice: the same seed, profile and patients give the same bytes.
    profile
        ``small`` (256x256 CT, 128x128 MR, short stacks, mostly RLE: a few MB) or ``bench``
        (512x512 CT with full coverage, mostly uncompressed: about 500 files per patient).
    defect_rate
        Fraction of eligible series that get a defect. Unless it is 0 (a clean cohort, junk
        files aside), every defect kind is planted at least a few times regardless (see
        :class:`~curation.synth.plan.Profile`); clean series always stay the majority.
    workers
        Processes writing series in parallel (the bytes do not depend on it).
    progress
        Show a progress bar; None shows it when stderr is a terminal.

    Returns
    -------
    CohortSummary
        Counts and paths of what was written.

    Raises
    ------
    InputError
        If ``out`` is a non-empty directory or a file, or an option is out of range.
    """
    if profile not in PROFILES:
        raise InputError(f"--profile {profile!r}: choose one of {', '.join(PROFILES)}")
    prof = PROFILES[profile]
    n_patients = prof.default_patients if patients is None else patients
    if n_patients < 1:
        raise InputError(f"--patients {n_patients}: need at least 1")
    if not 0.0 <= defect_rate <= 1.0:
        raise InputError(f"defect_rate {defect_rate}: must be within [0, 1]")
    root = Path(out)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InputError(f"{root}: exists and is not an empty directory")
    root.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    plan = plan_cohort(patients=n_patients, seed=seed, profile=prof, defect_rate=defect_rate)
    planned_files = sum(_planned_files(s) for s in plan.series)
    log.info(
        "planned %d series (%d with a defect), about %d files, into %s",
        len(plan.series),
        sum(1 for s in plan.series if s.defect),
        planned_files,
        root,
    )
    results: list[SeriesResult] = []
    bar = tqdm(
        total=planned_files,
        unit="file",
        desc="sample",
        disable=None if progress is None else not progress,
    )
    with bar:
        for result in _run(plan.series, root, prof, workers):
            results.append(result)
            bar.update(result.n_files)

    truth = [row for r in results for row in r.truth]
    junk_bytes = 0
    series_by_dir = {s.series_dir: s for s in plan.series}
    for path, kind in plan.junk:
        junk_bytes += write_junk(root, path, kind, seed)
        s = series_by_dir.get(path.rsplit("/", 1)[0])
        truth.append(
            truth_row(
                level="file",
                kind="not_dicom",
                PatientID=s.study.PatientID if s else None,
                StudyInstanceUID=s.study.StudyInstanceUID if s else None,
                SeriesInstanceUID=s.SeriesInstanceUID if s else None,
                path=path,
                params={"junk": kind},
            )
        )
    (root / "reports").mkdir(exist_ok=True)
    for rep in plan.reports:
        (root / rep["report_path"]).write_text(rep["report_text"], encoding="utf-8")
    tables = write_tables(root, truth, [r.series_row for r in results], list(plan.reports))

    rows_by_kind = Counter(row["kind"] for row in truth)
    occurrences = Counter(s.defect for s in plan.series if s.defect)
    occurrences["not_dicom"] = len(plan.junk)
    n_files = sum(r.n_files for r in results) + len(plan.junk)
    provenance: dict[str, Any] = {
        "generator": "curation.synth",
        "generator_version": GENERATOR_VERSION,
        "profile": profile,
        "patients": n_patients,
        "seed": seed,
        "defect_rate": defect_rate,
        "n_series": len(results),
        "n_files": n_files,
        "occurrences_by_kind": dict(sorted(occurrences.items())),
        "truth_rows_by_kind": dict(sorted(rows_by_kind.items())),
    }
    (root / "cohort.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    elapsed = time.perf_counter() - started
    summary = CohortSummary(
        root=root,
        dicom_dir=root / "dicom",
        profile=profile,
        seed=seed,
        n_patients=n_patients,
        n_studies=len(plan.reports),
        n_series=len(results),
        n_defective_series=sum(1 for s in plan.series if s.defect),
        n_files=n_files,
        n_bytes=sum(r.n_bytes for r in results) + junk_bytes,
        truth_rows_by_kind=dict(sorted(rows_by_kind.items())),
        occurrences_by_kind=dict(sorted(occurrences.items())),
        ground_truth=tables["ground_truth"],
        series_table=tables["series"],
        reports_table=tables["reports"],
        elapsed_s=elapsed,
    )
    log.debug(  # the caller prints the summary (the CLI on stdout)
        "wrote %d files (%.1f MB) in %.1f s (%.0f files/s)",
        summary.n_files,
        summary.n_bytes / 1e6,
        elapsed,
        summary.files_per_s,
    )
    return summary


def _planned_files(spec: SeriesSpec) -> int:
    volumes = 1 + spec.n_directions if spec.b_values else 1
    return spec.n_positions * volumes


def _run(
    specs: tuple[SeriesSpec, ...], root: Path, profile: Profile, workers: int
) -> Iterator[SeriesResult]:
    if workers <= 1:
        for spec in specs:
            yield write_series(spec, root, profile)
        return
    workers = min(workers, os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_write_one, [(s, root, profile) for s in specs], chunksize=1)
