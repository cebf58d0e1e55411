"""Writing a federation into its own DuckDB file (``curation federate --db``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from curation.errors import writing
from curation.federate.findings import FederatedFinding
from curation.federate.merge import Federation
from curation.federate.tables import (
    FEDERATE_TABLES,
    FEDERATED_CELLS,
    FEDERATED_FINDINGS,
    FEDERATED_SITES,
)


def _frames(fed: Federation, findings: list[FederatedFinding]) -> dict[str, pl.DataFrame]:
    sites, cells = [], []
    for s in fed:
        d = s.summary.data
        t = d["totals"]
        sites.append(
            {
                "site": s.name,
                "source": s.summary.source,
                "curation_version": d["curation_version"],
                "min_count": d["min_count"],
                **{f"n_{x}": t[x] for x in ("patients", "studies", "series", "instances")},
                "cohort_spec_sha256": (d["cohort"] or {}).get("spec_sha256"),
            }
        )
        for dist in d["distributions"]:
            base = {
                "site": s.name,
                "what": dist["what"],
                "grp": json.dumps(dist["group"], sort_keys=True),
                "n_total": dist["n"],
                "n_hidden": dist["n_hidden"],
                "vocabulary": dist["vocabulary"],
            }
            for c in dist["cells"] or [{"value": None, "n": None, "suppressed": True}]:
                cells.append(
                    {
                        **base,
                        "value": c["value"],
                        "n": c["n"],
                        "suppressed": bool(c.get("suppressed")),
                    }
                )
    rows = [
        {
            "rule_id": f.rule_id,
            "certainty": f.certainty,
            "Modality": f.modality,
            "attribute": f.attribute,
            "value": f.value,
            "site": f.site,
            "message": f.message,
        }
        for f in findings
    ]

    def frame(table_rows: Sequence[Mapping[str, object]], names: list[str]) -> pl.DataFrame:
        return (
            pl.DataFrame(table_rows, schema=names, orient="row")
            if table_rows
            else pl.DataFrame(schema=dict.fromkeys(names, pl.String))
        )

    return {
        FEDERATED_SITES.name: frame(sites, FEDERATED_SITES.column_names),
        FEDERATED_CELLS.name: frame(cells, FEDERATED_CELLS.column_names),
        FEDERATED_FINDINGS.name: frame(rows, FEDERATED_FINDINGS.column_names),
    }


def write_db(fed: Federation, findings: list[FederatedFinding], db: str | Path) -> Path:
    """Replace the federation tables of the DuckDB file ``db`` with this federation's."""
    import duckdb

    path = Path(db)
    frames = _frames(fed, findings)
    with writing(path, duckdb.IOException):
        path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path))
        try:
            con.begin()
            for table in FEDERATE_TABLES:
                con.execute(table.ddl(replace=True))
                f = frames[table.name]
                con.register("_fed_in", f)
                cols = ", ".join(f'"{c}"' for c in table.column_names)
                con.execute(f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM _fed_in")
                con.unregister("_fed_in")
            con.commit()
        finally:
            con.close()
    return path
