"""Build the API reference from the docstrings (HTML, with pdoc).

Usage: ``python scripts/build_docs.py [--out docs/api]``. The reference covers
every module of ``napari_medtrans`` and ``training`` (the napari faces in
``napari_medtrans._widgets`` and ``_napari`` too); what docstrings cannot say
lives in docs/architecture.md.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("napari_medtrans", "training")


def modules() -> list[str]:
    """Every module of the two packages except ``python -m`` entry points and the shipped data.

    Listed one by one: pdoc would otherwise follow ``__all__``, which names no submodules.
    """
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "_shipped" not in parts and parts[-1] != "__main__":
                names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def build(out: Path) -> Path:
    """Write the HTML reference to ``out`` and return its index page."""
    import pdoc
    import pdoc.render

    sys.path.insert(0, str(ROOT))
    pdoc.render.configure(docformat="google", show_source=True, search=True)
    with warnings.catch_warnings():  # a package spec already adds its submodules: repeats are fine
        warnings.filterwarnings("ignore", message="The module specification", category=UserWarning)
        pdoc.pdoc(*modules(), output_directory=out)
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and build."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "api", help="output folder (default docs/api)")
    args = parser.parse_args(argv)
    index = build(args.out)
    print(f"API reference written to {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
