"""The ``medtrans`` command line.

Each subcommand is a module in this package that defines
``add_parser(subparsers) -> None``; the parser it adds sets ``func`` (called with
the parsed namespace, returning an exit code). Modules are discovered, so adding
a subcommand never edits this file.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence


class CommandError(Exception):
    """A user-facing error: printed as ``medtrans: error: <message>``, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(prog="medtrans", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.add_parser(subparsers)
    return parser


def _hint_dash_files(argv: Sequence[str]) -> None:
    """Say how to pass an existing file whose name starts with ``-`` (argparse reads it as a flag)."""
    dashed = [a for a in argv if a.startswith("-") and a != "-" and os.path.lexists(a)]
    if dashed and "--" not in argv:
        print(
            f"medtrans: note: {', '.join(dashed)} is a file; put file names starting with '-' after '--' "
            f"(medtrans COMMAND [options] -- {dashed[0]}) or write ./{dashed[0]}",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medtrans`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code:
            _hint_dash_files(argv)
        raise
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"medtrans: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
