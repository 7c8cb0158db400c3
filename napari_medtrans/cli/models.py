"""``medtrans models [--json]``: the translators the registry finds."""

from __future__ import annotations

import argparse
import json
from typing import Any

from napari_medtrans.registry import list_translators, user_dir


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` subcommand."""
    parser = subparsers.add_parser("models", help="list available translators", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects")
    parser.set_defaults(func=run)


def format_deviations(deviations: dict[str, Any]) -> str:
    """The names of a translator's deviations from its paper (values: ``--json``), or ``none``."""
    return ",".join(sorted(deviations)) or "none"


def run(args: argparse.Namespace) -> int:
    """Print the translators as a table or as JSON."""
    infos = list_translators()
    if args.json:
        print(json.dumps([info.to_dict() for info in infos], indent=2))
        return 0
    if not infos:
        print(f"no translators found (shipped demos, {user_dir()}, registered runs)")
        return 0
    rows = [("NAME", "METHOD", "SOURCE→TARGET", "OUTPUTS", "REGIME", "DEVIATIONS", "ORIGIN", "PATH")]
    rows += [(i.name, i.metadata.method, f"{i.metadata.source}→{i.metadata.target}",
              ",".join(i.metadata.outputs), i.metadata.regime or "not recorded",
              format_deviations(i.metadata.deviations), i.origin, str(i.path)) for i in infos]
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0
