"""``python -m training …`` (also under ``torchrun … -m training``)."""

import sys

from training.cli import main

sys.exit(main())
