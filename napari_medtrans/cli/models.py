"""``medtrans models [--json] [--card NAME]``: the translators the registry finds, or one model card.

The INPUTS column says which translators need the input's label map
(``image+labels(K)``: pass it with ``medtrans translate --labels FILE``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from napari_medtrans.checkpoint import TranslatorMetadata
from napari_medtrans.cli import CommandError
from napari_medtrans.model_card import card_lines
from napari_medtrans.registry import list_translators, user_dir


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` subcommand."""
    parser = subparsers.add_parser("models", help="list available translators", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects (with each model card)")
    parser.add_argument("--card", metavar="NAME", help="print the model card of translator NAME")
    parser.set_defaults(func=run)


def format_deviations(deviations: dict[str, Any]) -> str:
    """The names of a translator's deviations from its paper (values: ``--json``), or ``none``."""
    return ",".join(sorted(deviations)) or "none"


def format_inputs(metadata: TranslatorMetadata) -> str:
    """What a translator takes: ``image``, or ``image+labels(K)`` for a label-conditioned one (SPADE)."""
    return f"image+labels({metadata.label_classes})" if metadata.label_classes else "image"


def run(args: argparse.Namespace) -> int:
    """Print the translators as a table or as JSON."""
    infos = list_translators()
    if args.card:
        chosen = [i for i in infos if i.name == args.card]
        if not chosen:
            raise CommandError(
                f"no translator named {args.card!r}; known: {', '.join(i.name for i in infos) or 'none'}"
            )
        card = chosen[0].metadata.card
        print(json.dumps(card, indent=2) if args.json else "\n".join(card_lines(card)))
        return 0
    if args.json:
        print(json.dumps([info.to_dict() for info in infos], indent=2))
        return 0
    if not infos:
        print(f"no translators found (shipped demos, {user_dir()}, registered runs)")
        return 0
    rows = [("NAME", "METHOD", "SOURCE→TARGET", "INPUTS", "OUTPUTS", "REGIME", "DEVIATIONS", "ORIGIN", "PATH")]
    rows += [
        (
            i.name,
            i.metadata.method,
            f"{i.metadata.source}→{i.metadata.target}",
            format_inputs(i.metadata),
            ",".join(i.metadata.outputs),
            i.metadata.regime or "not recorded",
            format_deviations(i.metadata.deviations),
            i.origin,
            str(i.path),
        )
        for i in infos
    ]
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0
