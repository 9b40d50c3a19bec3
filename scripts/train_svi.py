#!/usr/bin/env python
"""Train a Pyro model/guide pair by SVI: ``python scripts/train_svi.py --help``."""

import sys

from pyrovae.cli import main

if __name__ == "__main__":
    sys.exit(main())
