#!/usr/bin/env python
"""Train a Pyro model/guide pair by SVI: ``python scripts/train_svi.py --help``."""

import sys

if __name__ == "__main__":
    try:
        from pyrovae.cli.train import main  # torch and Pyro take seconds to import
    except KeyboardInterrupt:
        print("interrupted while starting: nothing was written", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
