"""What every command shares: an argument parser whose bad flag is one ``error:`` line, and
the one line a :class:`~pyrovae.errors.PyrovaeError` ends a command with."""

import argparse
import sys

from pyrovae.errors import PyrovaeError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one ``error:`` line like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def fail(exc: PyrovaeError) -> int:
    """Print ``error: <what is wrong and how to fix it>`` to stderr; the exit status."""
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_BAD_INPUT
