"""``python -m rewrap_local.emulator``."""

import sys

from .cli import main

sys.exit(main())
