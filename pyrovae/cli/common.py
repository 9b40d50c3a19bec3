"""What every command shares: an argument parser whose bad flag is one ``error:`` line, the
one line a :class:`~pyrovae.errors.PyrovaeError` (or a failed write) ends a command with, and
SIGTERM taken as an interruption like Ctrl-C."""

import argparse
import errno
import signal
import sys
import threading
from contextlib import contextmanager

from pyrovae.errors import PyrovaeError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``docker stop``, a scheduler's preemption), raised where the
    process is, so that it unwinds as Ctrl-C does: atomic writes remove their temporary files
    and the last checkpoint stays whole."""


@contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_status(exc: KeyboardInterrupt) -> int:
    """143 for SIGTERM, 130 for Ctrl-C."""
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def write_failure(exc: OSError) -> str | None:
    """What a failed write means, in one line, for the errors a user can fix (a full disk, a
    read-only or unwritable place, a quota); None for any other OSError."""
    reasons = {
        errno.ENOSPC: "no space is left on the device",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission is denied",
    }
    reason = reasons.get(exc.errno)
    if reason is None:
        return None
    where = f" writing {exc.filename}" if exc.filename else ""
    return f"{reason}{where}"


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one ``error:`` line like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def fail(exc: PyrovaeError) -> int:
    """Print ``error: <what is wrong and how to fix it>`` to stderr; the exit status."""
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_BAD_INPUT
