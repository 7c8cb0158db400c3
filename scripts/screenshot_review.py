"""Screenshot of the "Review pseudo labels" widget → docs/screenshot_review.png.

Run (with a display, or under ``xvfb-run``)::

    python scripts/screenshot_review.py [--summary DIR/summary.json | --translator NAME] [--out PNG]

Without ``--summary`` it first runs ``medtrans pseudolabel --strategy tutorship
--phantom`` with ``--translator`` (small settings). The review works on a
temporary copy, so no real review sidecar is touched; two slices are accepted
and one rejected before the window is captured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pseudolabels(translator: str, out: Path) -> Path:
    """Run the tutorship pipeline on two phantoms and return its summary.json."""
    from napari_medtrans.cli import main

    argv = [
        "pseudolabel",
        "--strategy",
        "tutorship",
        "--translator",
        translator,
        "--phantom",
        "--phantom-sources",
        "2",
        "--phantom-targets",
        "1",
        "--phantom-shape",
        "16",
        "96",
        "96",
        "--iterations",
        "400",
        "--out",
        str(out),
    ]
    if main(argv) != 0:
        raise SystemExit("medtrans pseudolabel failed")
    return out / "summary.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", type=Path, help="summary.json of a medtrans pseudolabel run")
    parser.add_argument("--translator", default="t1-ct-resnet", help="used when --summary is not given")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot_review.png")
    args = parser.parse_args()
    # no notification banners over the canvas (an environment override, not saved to the user's settings)
    os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "error")

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_medtrans._widgets.review import ReviewWidget

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "pseudolabels"
        if args.summary:
            shutil.copytree(args.summary.parent, work)
            summary = work / args.summary.name
        else:
            summary = pseudolabels(args.translator, work)
        viewer = napari.Viewer(title="napari-medtrans: review pseudo labels")
        viewer.window._qt_window.resize(1500, 900)
        widget = ReviewWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Review pseudo labels", area="right")
        widget.reviewer.setText("annotator")
        widget.show_uncertainty.setChecked(True)  # the optional faint overlay, shown for the screenshot
        widget.open_summary(summary)
        widget.accept()
        widget.accept()
        widget.reject()
        for _ in range(10):
            QApplication.processEvents()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(args.out), canvas_only=False, flash=False)
        viewer.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
