#!/usr/bin/env python
"""Posterior diagnostics of a trained run: ``python scripts/diagnose.py RUN_DIR --help``."""

import sys

if __name__ == "__main__":
    try:
        from pyrovae.cli.diagnose import main  # torch, Pyro and ArviZ take seconds to import
    except KeyboardInterrupt:
        print("interrupted while starting: nothing was written", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
