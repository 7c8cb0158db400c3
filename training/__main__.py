"""``python -m training …`` (also under ``torchrun … -m training``).

``faulthandler`` prints the Python stack of every thread if a native crash
(SIGSEGV, SIGABRT from a C++ library) ends the process, so such a failure of one
rank says where it happened. A ``torchrun`` worker ends through
:func:`training.distributed.exit_worker` (see there why).
"""

import faulthandler
import os
import sys

from training.cli import main
from training.distributed import exit_worker

faulthandler.enable()
code = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    exit_worker(code)
sys.exit(code)
