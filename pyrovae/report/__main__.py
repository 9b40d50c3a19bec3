"""``python -m pyrovae.report RUN_DIR``: the same as ``pyrovae-report RUN_DIR``."""

import sys

from pyrovae.cli.report import main

sys.exit(main())
