"""What every number of a run folder means, read from ``keys.toml`` beside this module.

``SUMMARY_KEYS`` (``summary.json``), ``DIAGNOSTICS_KEYS`` (``diagnostics.json``) and
``FIGURE_CAPTIONS`` (the ``*.png`` files, by stem) are the one source of these words: both
``report.html`` and the documentation's run-folder page are built from them.
"""

import sys
from importlib import resources
from typing import NamedTuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BEST = "best"  # taken at the best epoch (the kept parameters)
RUN = "run"  # a number of the whole run
SETTING = "setting"  # what the run was given or built with, not a measurement


class Described(NamedTuple):
    """What a number is: ``text`` in plain language, its ``units``, and ``when`` it is
    taken (:data:`BEST`, :data:`RUN`, :data:`SETTING`, or any phrase shown as it is)."""

    text: str
    units: str = ""
    when: str = ""


def _read() -> dict:
    text = resources.files("pyrovae.report").joinpath("keys.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


_KEYS = _read()
SUMMARY_KEYS: dict[str, Described] = {k: Described(**v) for k, v in _KEYS["summary"].items()}
DIAGNOSTICS_KEYS: dict[str, Described] = {
    k: Described(**v) for k, v in _KEYS["diagnostics"].items()
}
FIGURE_CAPTIONS: dict[str, str] = dict(_KEYS["figures"])
