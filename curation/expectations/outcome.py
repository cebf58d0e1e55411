"""What running expectation suites returns: per expectation, per suite, and for the whole run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from curation.expectations.suites import SuiteFile
from curation.qc.rule import Severity, fail_threshold


@dataclass(frozen=True)
class ExpectationOutcome:
    """How one expectation went."""

    rule_id: str
    expectation_type: str
    column: str | None
    severity: str
    success: bool
    value: str | None
    message: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class SuiteOutcome:
    """How one suite went: ``status`` is ``ok``, or ``skipped`` (with ``reason``) when its source
    is absent (a catalog table not written yet, no manifest given)."""

    suite: SuiteFile
    status: str
    outcomes: tuple[ExpectationOutcome, ...] = ()
    n_rows: int = 0
    seconds: float = 0.0
    reason: str | None = None
    run_id: int | None = None

    @property
    def failures(self) -> list[ExpectationOutcome]:
        """The expectations that failed (or could not be evaluated)."""
        return [o for o in self.outcomes if not o.success]

    def __repr__(self) -> str:
        # The suite file's JSON is kilobytes: a notebook printing an outcome wants the outcome.
        if self.status == "skipped":
            return (
                f"SuiteOutcome(suite={self.suite.name!r}, status='skipped', reason={self.reason!r})"
            )
        return (
            f"SuiteOutcome(suite={self.suite.name!r}, status={self.status!r}, "
            f"expectations={len(self.outcomes)}, failures={len(self.failures)}, "
            f"rows={self.n_rows}, run_id={self.run_id})"
        )


@dataclass(frozen=True)
class ValidationResult:
    """What :func:`curation.expectations.validate` returns: one outcome per suite."""

    suites: tuple[SuiteOutcome, ...]

    @property
    def counts(self) -> dict[str, int]:
        """Failed expectations per severity."""
        out = {s.value: 0 for s in sorted(Severity, key=lambda s: s.rank, reverse=True)}
        for s in self.suites:
            for o in s.failures:
                out[o.severity] += 1
        return out

    @property
    def skipped(self) -> list[SuiteOutcome]:
        """Suites that did not run because their source is absent."""
        return [s for s in self.suites if s.status == "skipped"]

    def __str__(self) -> str:
        ran = [s for s in self.suites if s.status != "skipped"]
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        line = (
            f"{len(ran)} expectation suite(s), {sum(len(s.outcomes) for s in ran)} expectations, "
            f"failed: {counts}"
        )
        if self.skipped:
            line += f"; {len(self.skipped)} suite(s) skipped"
        return line

    def __repr__(self) -> str:
        return (
            f"ValidationResult(suites={[s.suite.name for s in self.suites]}, counts={self.counts})"
        )

    def failed(self, fail_on: str = "error") -> bool:
        """True when an expectation at or above ``fail_on`` failed (``never`` never fails).

        Raises
        ------
        InputError
            ``fail_on`` is not error, warning, info or never.
        """
        threshold = fail_threshold(fail_on)
        return threshold is not None and any(
            Severity(o.severity).rank >= threshold for s in self.suites for o in s.failures
        )
