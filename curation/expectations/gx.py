"""Running one suite with great-expectations: the only module that imports it.

How it runs (see ../shared/docs/GX-DUCKDB.md): GX's SQL datasource cannot read DuckDB through public
API, so each source is queried by DuckDB into pandas (only the columns the suite names, unless a
table-level expectation needs them all) and validated by GX's pandas datasource in an ephemeral
context (no ``gx/`` folder, no analytics, no progress bars). ``great_expectations`` is imported
inside the functions: the import alone takes seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from curation import catalog
from curation.errors import InputError
from curation.expectations.outcome import ExpectationOutcome, SuiteOutcome
from curation.expectations.suites import SEVERITIES, SuiteFile, rule_id

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

#: Columns whose values never go into a finding's message (identifiers stay inside the catalog).
IDENTIFYING_COLUMNS = frozenset(
    {
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "OtherPatientIDs",
        "OtherPatientNames",
        "AccessionNumber",
        "path",
    }
)


def _load_frame(
    con: duckdb.DuckDBPyConnection, suite: SuiteFile, relation: str, available: list[str]
) -> pd.DataFrame:
    wanted = suite.columns()
    cols = available if wanted is None else [c for c in wanted if c in available]
    # A suite naming only missing columns still needs the rows (its column-existence checks fail).
    select = ", ".join(catalog.quote_ident(c) for c in cols) if cols else "1 AS __row"
    return con.sql(f"SELECT {select} FROM {relation}").df()


def _summary(result: dict[str, Any], column: str | None) -> tuple[str | None, str]:
    """(value, text) of a failed expectation's result, without identifying values."""
    if "unexpected_count" in result:
        n, total = result.get("unexpected_count") or 0, result.get("element_count") or 0
        pct = result.get("unexpected_percent") or 0.0
        text = f"{n} of {total} rows unexpected ({pct:.2f}%)"
        sample = result.get("partial_unexpected_list") or []
        if sample and column not in IDENTIFYING_COLUMNS:
            shown = ", ".join(repr(v) for v in list(dict.fromkeys(map(str, sample)))[:5])
            text += f", e.g. {shown}"
        return str(n), text
    if "observed_value" in result:
        observed = result["observed_value"]
        if column in IDENTIFYING_COLUMNS:
            return None, "observed value withheld (identifying column)"
        return str(observed)[:200], f"observed {str(observed)[:200]}"
    return None, "failed"


def _raised(info: dict[str, Any]) -> str | None:
    """The message of the exception GX caught while evaluating an expectation, or None.

    GX 1.x keys ``exception_info`` by the metric that raised (one entry per metric); a flat
    ``{"raised_exception": ...}`` is the older shape.
    """
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            return str(entry.get("exception_message") or "raised")
    return None


def _outcomes(suite: SuiteFile, gx_results: Iterable[Any]) -> list[ExpectationOutcome]:
    order = {rule_id(suite.name, e): i for i, e in enumerate(suite.data["expectations"])}
    out = []
    for r in gx_results:
        d = r.to_json_dict()
        config = d["expectation_config"]
        kwargs = {k: v for k, v in config.get("kwargs", {}).items() if k != "batch_id"}
        rid = config.get("meta", {}).get("__rule_id") or rule_id(suite.name, config)
        column = kwargs.get("column")
        severity = SEVERITIES.get(str(config.get("severity", "critical")), "error")
        raised_by = _raised(d.get("exception_info") or {})
        raised = raised_by is not None
        if raised_by is not None:
            error = raised_by
            value, message = None, f"could not be evaluated: {error.splitlines()[0][:300]}"
        else:
            error = None
            value, message = (None, "ok") if d["success"] else _summary(d["result"] or {}, column)
            if not d["success"] and config["type"] == "expect_column_to_exist":
                message = "the column is missing"
        where = f" on {column}" if column else ""
        out.append(
            ExpectationOutcome(
                rule_id=rid,
                expectation_type=str(config["type"]),
                column=column,
                severity=severity,
                success=bool(d["success"]) and not raised,
                value=value,
                message=f"{suite.name}: {config['type']}{where}: {message}",
                kwargs=kwargs,
                error=error,
            )
        )
    out.sort(key=lambda o: order.get(o.rule_id, len(order)))
    return out


def expectation_types() -> set[str]:
    """The expectation types the installed great-expectations knows (``expect_...``)."""
    import great_expectations as gx

    types = (getattr(c, "expectation_type", None) for c in vars(gx.expectations).values())
    return {t for t in types if isinstance(t, str)}


def context() -> Any:
    """An ephemeral GX context: nothing written to disk, no analytics, no progress bars."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        analytics_enabled=False,  # no network: CI and hospital machines are often offline
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def run_suite(
    con: duckdb.DuckDBPyConnection,
    suite: SuiteFile,
    relation: str,
    available: list[str],
    gx_context: Any,
) -> SuiteOutcome:
    """Validate the rows of ``relation`` (whose columns are ``available``) against ``suite``.

    Raises
    ------
    InputError
        The suite names an expectation type GX does not know, or GX rejects its arguments.
    """
    import great_expectations as gx

    t0 = time.perf_counter()
    frame = _load_frame(con, suite, relation, available)
    data = json.loads(json.dumps(suite.data))
    for e in data["expectations"]:
        # Carry the stable rule id through GX (results come back in GX's order, not the file's).
        e.setdefault("meta", {})["__rule_id"] = rule_id(suite.name, e)
    data.pop("meta", None)
    data["name"] = suite.name
    # GX logs and drops an expectation of unknown type instead of raising: a typo would silently
    # switch a check off, so unknown types are refused before GX sees them.
    unknown = sorted({e["type"] for e in data["expectations"]} - expectation_types())
    if unknown:
        raise InputError(
            f"{suite.path}: unknown expectation type(s) {', '.join(unknown)} "
            f"(great_expectations {gx.__version__})"
        )
    try:
        gx_suite = gx_context.suites.add(gx.ExpectationSuite(**data))
    except Exception as exc:  # GX rejects bad kwargs here
        raise InputError(f"{suite.path}: great-expectations rejects the suite: {exc}") from exc
    if len(gx_suite.expectations) != len(data["expectations"]):
        raise InputError(f"{suite.path}: great-expectations dropped some of the expectations")
    asset = gx_context.data_sources.add_pandas(f"ds_{suite.name}").add_dataframe_asset(suite.source)
    batch = asset.add_batch_definition_whole_dataframe("all")
    definition = gx_context.validation_definitions.add(
        gx.ValidationDefinition(name=f"vd_{suite.name}", data=batch, suite=gx_suite)
    )
    result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    outcomes = _outcomes(suite, result.results)
    return SuiteOutcome(
        suite, "ok", tuple(outcomes), n_rows=len(frame), seconds=time.perf_counter() - t0
    )
