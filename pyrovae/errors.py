"""The one exception type that user-facing code raises for bad input."""


class PyrovaeError(Exception):
    """Bad input or a failed run, described in one line that says how to fix it.

    The command line prints ``error: <message>`` and exits with status 2 instead of
    showing a traceback; library users can catch it like any exception.
    """
