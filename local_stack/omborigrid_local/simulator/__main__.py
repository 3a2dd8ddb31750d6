"""``python -m omborigrid_local.simulator``: the same CLI as ``omborigrid-export simulate``."""

import sys

from .cli import main

sys.exit(main())
