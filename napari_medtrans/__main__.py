"""``python -m napari_medtrans`` runs the ``medtrans`` command line."""

import sys

from napari_medtrans.cli import main

sys.exit(main())
