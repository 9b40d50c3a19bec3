#!/usr/bin/env python
"""Posterior diagnostics of a trained run: ``python scripts/diagnose.py RUN_DIR --help``."""

import sys

from pyrovae.diagnosis import main

if __name__ == "__main__":
    sys.exit(main())
