"""The declared dependencies are the imported ones: nothing imported that pip would not install, and
nothing installed that the code never imports (unless the reason is written here)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Declared, never imported by name, and still needed: the reason each is declared.
USED_INDIRECTLY = {
    # polars <-> DuckDB exchange (.pl(), .to_arrow(), registering frames) goes through Arrow.
    "pyarrow",
    # pydicom's pixel decoders for compressed transfer syntaxes: plugins pydicom finds itself.
    "pylibjpeg",
    "pylibjpeg-libjpeg",
    "pylibjpeg-openjpeg",
    "pylibjpeg-rle",
    # great-expectations' pandas datasource runs on pandas (DuckDB's .df()).
    "sqlalchemy",
    # the notebooks extra: tools around the notebooks, not imported by the package.
    "jupyterlab",
    "ipykernel",
}


#: Imported only behind an option that says it needs them (an InputError naming the package when
#: absent), declared in the dev extra.
OPTIONAL_IMPORTS = {
    # report --png: static figure export (docs/report.md, docs/ci.md say to install it)
    "kaleido",
}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    runtime = [
        *project["dependencies"],
        *(r for k in ("pixels", "expectations", "notebooks", "deid", "scale") for r in extras[k]),
    ]
    return {_name(r) for r in runtime if not r.startswith("curation")}


def _imported() -> set[str]:
    """Distributions whose top-level modules the package imports (at any depth of a module)."""
    top: set[str] = set()
    for path in (ROOT / "curation").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                top |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top.add(node.module.split(".")[0])
    top -= {*sys.stdlib_module_names, "curation"}
    dists = packages_distributions()
    return {_name(d) for t in top for d in dists.get(t, [t])}


def test_every_imported_distribution_is_declared() -> None:
    assert _imported() - _declared() - OPTIONAL_IMPORTS == set()


def test_every_declared_distribution_is_imported_or_says_why() -> None:
    assert _declared() - _imported() - USED_INDIRECTLY == set()
