"""Entry point of the ``curation`` command.

Each subcommand lives in its own module of :mod:`curation.cli` and exposes ``add_arguments(parser)``
and ``run(args) -> int``. Modules are imported lazily so that ``curation --help`` stays fast.

Exit codes (shared by every subcommand):

====  ==========================================================================================
0     success
1     the step ran to the end but found what the user asked to fail on (QC findings at or
      above ``--fail-on``, files that could not be read under ``crawl --strict``, failed
      expectations)
2     usage error (unknown option, missing argument)
3     input error: a path, spec or option value that cannot be used (the message names it)
4     catalog error: the DuckDB file is missing, locked, or lacks a table the step needs
130   interrupted (Ctrl-C); work already committed to the catalog is kept
====  ==========================================================================================
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from curation import __version__
from curation.errors import CatalogError, CurationError, InputError

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_CATALOG = 4
EXIT_INTERRUPTED = 130

#: subcommand name -> (module under curation.cli, one-line help). Add a subcommand here.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole path on the shipped sample data and print where outputs are"),
    "crawl": ("crawl", "read DICOM headers under PATHs into the catalog (incremental, parallel)"),
    "sample": ("sample", "generate a synthetic multi-site cohort with planted defects"),
    "qc": ("qc", "run a QC rule suite over the catalog"),
    "pixels": (
        "pixels",
        "measure pixel artifacts (noise, blur, clipping, text...) into pixel_metrics",
    ),
    "cohort": ("cohort", "build a training cohort manifest from a spec"),
    "report": ("report", "write the self-contained HTML QC report"),
    "validate": ("validate", "run great-expectations suites over the catalog"),
}


def _available() -> dict[str, tuple[str, str]]:
    found = {}
    for name, (module, help_) in SUBCOMMANDS.items():
        if importlib.util.find_spec(f"curation.cli.{module}") is not None:
            found[name] = (module, help_)
    return found


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``curation`` with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="curation",
        description="Turn a DICOM archive into clean, harmonized, documented training cohorts.",
        epilog="Exit codes: 0 ok, 1 failed on request (findings, unreadable files under --strict), "
        "2 usage, 3 bad input, 4 catalog problem, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"curation {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    # The same options after the subcommand (`curation crawl ... -q`); SUPPRESS keeps the values
    # given before it when they are not repeated.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output"
    )
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="only warnings and errors",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in _available().items():
        mod = importlib.import_module(f"curation.cli.{module}")
        p = sub.add_parser(
            name, help=help_, description=(mod.__doc__ or help_).strip(), parents=[common]
        )
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("curation")
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``curation`` command; returns the exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return EXIT_USAGE
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args._module.run(args))
    except InputError as exc:
        print(f"curation {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except CatalogError as exc:
        print(f"curation {args.command}: catalog error: {exc}", file=sys.stderr)
        return EXIT_CATALOG
    except CurationError as exc:
        print(f"curation {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print(f"curation {args.command}: interrupted; committed work is kept", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
