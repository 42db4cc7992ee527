"""``python -m core``: the operator's commands (see :mod:`core.cli`)."""

import sys

from core.cli import main

sys.exit(main())
