"""ArviZ, imported on first use and without its import-time notice about a coming refactor."""

import warnings


def import_arviz():
    """The ``arviz`` module (slow to import: only the diagnostics need it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz

    return arviz
