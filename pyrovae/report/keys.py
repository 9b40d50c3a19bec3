"""What every number of a run folder means, read from ``keys.toml`` beside this module.

``RUN_FILES`` (every file of a run folder), ``SUMMARY_KEYS`` (``summary.json``),
``DIAGNOSTICS_KEYS`` (``diagnostics.json``), ``FIGURE_CAPTIONS`` (the ``*.png`` files, by
stem) and :func:`config_keys` (``config.json``: the help of TrainConfig's fields and of every
recipe's options) are the one source of these words: both ``report.html`` and the
documentation's run-folder page are built from them.
"""

import sys
from dataclasses import fields
from importlib import resources
from typing import NamedTuple

from pyrovae.folder.config import TrainConfig
from pyrovae.recipes import RECIPES

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
RUN_FILES: dict[str, str] = dict(_KEYS["files"])


def when_phrase(described: Described, best: str = "best epoch") -> str:
    """When a number is taken, in words (``best``: how the best epoch is named)."""
    return {BEST: best, RUN: "whole run", SETTING: "setting"}.get(described.when, described.when)


def config_keys() -> dict[str, Described]:
    """``key`` -> its help text, for every TrainConfig field and every built-in recipe's
    option (``options.<name>``)."""
    # argparse help escapes % as %%
    helps = {
        f.name: Described(f.metadata.get("help", "").replace("%%", "%"))
        for f in fields(TrainConfig)
    }
    for recipe in RECIPES.values():
        for option in recipe.options:
            helps.setdefault(f"options.{option.name}", Described(option.help))
    return helps


KEY_TABLE_HEADERS = {
    "files": ("file", "what it holds"),
    "config": ("key", "what it is"),
    "summary": ("key", "what it is", "units", "taken at"),
    "diagnostics": ("key", "what it is", "units"),
    "figures": ("figure", "what it shows"),
}
"""The column headers of each table of the documentation's run-folder page."""


def key_rows(kind: str) -> list[tuple[str, ...]]:
    """``(name, text, ...)`` per file or key of ``kind`` (a key of
    :data:`KEY_TABLE_HEADERS`), in the order of keys.toml: the rows of the run-folder page."""
    if kind == "files":
        return list(RUN_FILES.items())
    if kind == "figures":
        return [(f"{stem}.png", text) for stem, text in FIGURE_CAPTIONS.items()]
    if kind == "config":
        return [(key, d.text) for key, d in config_keys().items()]
    if kind == "summary":
        return [(k, d.text, d.units, when_phrase(d)) for k, d in SUMMARY_KEYS.items()]
    if kind == "diagnostics":
        return [(k, d.text, d.units) for k, d in DIAGNOSTICS_KEYS.items()]
    raise ValueError(f"key_rows takes one of {', '.join(KEY_TABLE_HEADERS)}, got {kind!r}")
