#!/usr/bin/env python
"""Latent means of a trained run as features, against raw pixels:
``python scripts/features.py RUN_DIR --help``."""

import sys

if __name__ == "__main__":
    try:
        from pyrovae.cli.features import main  # torch, Pyro and scikit-learn take seconds to import
    except KeyboardInterrupt:
        print("interrupted while starting: nothing was written", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
