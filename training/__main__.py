"""``python -m training …`` (also under ``torchrun … -m training``).

``faulthandler`` prints the Python stack of every thread if a native crash
(SIGSEGV, SIGABRT from a C++ library) ends the process, so such a failure of one
rank says where it happened. The process ends through
:func:`training.distributed.exit_process` (a ``torchrun`` worker skips the
interpreter's teardown; see there why).
"""

import faulthandler

from training.cli import main
from training.distributed import exit_process

faulthandler.enable()
exit_process(main())
