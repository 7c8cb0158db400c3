"""``medtrans train``: hands its arguments to the trainer (``python -m training``).

The flags are defined once, in :mod:`training.cli`; this module only forwards
them, and imports :mod:`training` lazily (the only arrow from the core package
into ``training``). ``medtrans train --help`` shows the trainer's help.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a translator (same flags as python -m training; --help for them)",
        add_help=False,
        prefix_chars="+",  # every "-…" argument goes to the trainer's own parser
    )
    parser.add_argument("args", nargs=argparse.REMAINDER)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from training.cli import main

    return main(args.args, prog="medtrans train")
