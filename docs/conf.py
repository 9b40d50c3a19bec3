"""Sphinx configuration: tutorials are MyST-markdown notebooks executed at every build
(myst-nb), the API reference comes from the docstrings (autodoc), the command-line pages
from the argparse parsers themselves (sphinx-argparse)."""

import shutil
import sys
from pathlib import Path

import pyrovae

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "pyrovae"
author = "the pyrovae developers"
copyright = "2026, the pyrovae developers"
release = version = pyrovae.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
    "run_folder_keys",
    "site_links",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md"]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Every notebook runs at every build; a cell that raises fails the build.
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}

# MathJax from the jupyter-server-mathjax package, copied into the site, so that maths renders
# offline (the default loads MathJax from a CDN).
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
myst_update_mathjax = False  # myst's setting is MathJax 3's; MathJax 2 is told here
mathjax2_config = {
    "tex2jax": {
        "processClass": "tex2jax_process|mathjax_process|math|output_area",
        "ignoreClass": "tex2jax_ignore|mathjax_ignore",
    },
    # The package ships the STIX-Web fonts only; MathJax's default (TeX) fonts are not there.
    "HTML-CSS": {"availableFonts": ["STIX-Web"], "webFont": "STIX-Web", "imageFont": None},
    "SVG": {"font": "STIX-Web"},
}


def _copy_mathjax(app, exception):
    if exception is None and app.builder.format == "html":
        import jupyter_server_mathjax

        source = Path(jupyter_server_mathjax.__file__).parent / "static"
        shutil.copytree(source, Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def setup(app):
    # Before site_links checks the built pages (default priority 500), which link to these files.
    app.connect("build-finished", _copy_mathjax, priority=100)


html_theme = "furo"
html_title = "pyrovae"
html_static_path = ["_static"]

# "--resume" stays two hyphens in the generated tables and everywhere else.
smartquotes = False
