"""Entry point of the ``curation`` command.

Each subcommand lives in its own module of :mod:`curation.cli` and exposes ``add_arguments(parser)``
and ``run(args) -> int``. Only the module of the subcommand being run is imported, and each imports
what its step needs when it runs, so that ``curation --help`` stays fast.

Exit codes (shared by every subcommand):

====  ==========================================================================================
0     success
1     the step ran to the end but found what the user asked to fail on (QC findings at or
      above ``--fail-on``, files that could not be read under ``crawl --strict``, failed
      expectations), or could not do all of it (``deid``: files quarantined; ``retrieve``:
      instances not stored)
2     usage error (unknown option, missing argument)
3     input error: a path, spec or option value that cannot be used (the message names it)
4     catalog error: the DuckDB file is missing, locked, cut short or damaged, or lacks a table
      the step needs (the message names the file)
5     an output cannot be written: read-only folder, disk full, a file where a folder should be
      (the message names the path)
130   interrupted (Ctrl-C); work already committed to the catalog is kept
====  ==========================================================================================
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from curation import __version__
from curation.errors import CatalogError, CurationError, InputError, OutputError, output_error

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_CATALOG = 4
EXIT_OUTPUT = 5
EXIT_INTERRUPTED = 130

#: subcommand name -> (module under curation.cli, one-line help). Add a subcommand here.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole path on the shipped sample data and print where outputs are"),
    "crawl": ("crawl", "read DICOM headers under PATHs into the catalog (incremental, parallel)"),
    "retrieve": ("retrieve", "fetch a cohort's series from a PACS into a folder, then crawl them"),
    "sample": ("sample", "generate a synthetic multi-site cohort with planted defects"),
    "qc": ("qc", "run a QC rule suite over the catalog"),
    "pixels": (
        "pixels",
        "measure pixel artifacts (noise, blur, clipping, text...) into pixel_metrics",
    ),
    "labels": ("labels", "weak labels from radiology report text into the labels table"),
    "cohort": ("cohort", "build a training cohort manifest from a spec"),
    "deid": ("deid", "de-identify a cohort's DICOM files (PS3.15 profile, OCR masking, audit)"),
    "report": ("report", "write the self-contained HTML QC report"),
    "validate": ("validate", "run great-expectations suites over the catalog"),
    "summary": ("summary", "summarize a site's catalog as identifier-free JSON (for federate)"),
    "federate": ("federate", "compare site summaries: the federated heterogeneity report"),
}


def _available() -> dict[str, tuple[str, str]]:
    found = {}
    for name, (module, help_) in SUBCOMMANDS.items():
        if importlib.util.find_spec(f"curation.cli.{module}") is not None:
            found[name] = (module, help_)
    return found


def build_parser(
    command: str | None = None, *, all_commands: bool = True
) -> argparse.ArgumentParser:
    """The argument parser of ``curation`` with every available subcommand.

    With ``all_commands=False`` only ``command`` (the one being run) is defined in full: the other
    subcommands keep their one-line help, and their modules, with what they import, are not
    imported (``curation --help`` then imports none).
    """
    parser = argparse.ArgumentParser(
        prog="curation",
        description="Turn a DICOM archive into clean, harmonized, documented training cohorts.",
        epilog="Exit codes: 0 ok, 1 failed on request (findings, unreadable files under --strict) "
        "or in part (files quarantined, instances not retrieved), 2 usage, 3 bad input, "
        "4 catalog problem, 5 output not writable, 130 interrupted.",
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
        if not all_commands and name != command:
            sub.add_parser(name, help=help_)
            continue
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
    argv = sys.argv[1:] if argv is None else list(argv)
    # The subcommand is the first word that is not an option (the global options take no value).
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command, all_commands=False)
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return EXIT_USAGE
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args._module.run(args))
    except OutputError as exc:
        print(f"curation {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_OUTPUT
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
    except BrokenPipeError as exc:
        # Whoever read our output went away (`curation qc --list | head -1`). stdout now points
        # at /dev/null, so that the interpreter's last flush of it does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(
            f"curation {args.command}: error: {output_error('standard output', exc)}",
            file=sys.stderr,
        )
        return EXIT_OUTPUT
    except OSError as exc:
        # A write the step did not wrap (its own outputs are OutputErrors): still one line.
        print(f"curation {args.command}: error: {output_error(None, exc)}", file=sys.stderr)
        return EXIT_OUTPUT
    except Exception as exc:
        if not _catalog_failure(exc):
            raise
        db = getattr(args, "db", None) or "the catalog"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(
            f"curation {args.command}: catalog error: {db}: cannot be read or written "
            f"(cut short, damaged, or its disk full?): {first}",
            file=sys.stderr,
        )
        return EXIT_CATALOG


def _catalog_failure(exc: Exception) -> bool:
    """:func:`curation.catalog.catalog_failure`, only looked at if a step imported DuckDB."""
    if "duckdb" not in sys.modules:
        return False
    from curation.catalog import catalog_failure

    return catalog_failure(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
