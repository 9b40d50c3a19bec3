"""The README's and the own-pair guide's promises: their user-written pairs train as they say,
the recipe example works, and CI runs the README's install, test and docs commands."""

import json
import math
import re
import sys
from pathlib import Path

import pytest

import pyrovae
from pyrovae.cli.train import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
OWN_PAIR = (ROOT / "docs" / "guide" / "own-pair.md").read_text()


def block(first_line: str, page: str = OWN_PAIR) -> str:
    """The python block of ``page`` that starts with ``first_line``."""
    return re.search(rf"```python\n({re.escape(first_line)}\n.*?)```", page, re.S).group(1)


def command_for(module: str, page: str) -> list[str]:
    """The arguments of the page's train_svi.py command that uses ``module``."""
    line = re.search(rf"python scripts/train_svi.py (.*{module}:.*)\n", page).group(1)
    return line.split()


def test_the_readme_pair_is_the_guide_s_first():
    assert block("# my_vae.py", README) == block("# my_vae.py", OWN_PAIR)
    assert command_for("my_vae", README) == command_for("my_vae", OWN_PAIR)


@pytest.mark.parametrize("module", ["my_vae", "my_fns", "my_pair"])
def test_user_pairs_of_the_guide_train_through_the_cli(module, tmp_path, monkeypatch):
    code = block(f"# {module}.py")
    assert len(code.strip().splitlines()) <= 30
    (tmp_path / f"{module}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(module, None)
    out = tmp_path / "run"
    argv = [*command_for(module, OWN_PAIR), "--epochs", "20", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == argv[1]
    # Better than 64 fair coins (64 log 2 = 44.4 nats): the pair has learned something.
    assert summary["test_elbo"] > -64 * math.log(2)
    sys.modules.pop(module, None)
    loaded = pyrovae.load_run(out, trust_code=True)  # and it comes back from its folder
    assert callable(loaded.model) and callable(loaded.guide)


def test_the_guide_s_recipe_example_adds_its_option_and_summary(tmp_path, monkeypatch):
    namespace: dict = {}
    exec(block("from pyrovae.recipes import Recipe, RecipeOption, Report"), namespace)
    pair: dict = {}
    exec(block("# my_pair.py"), pair)
    run = pyrovae.train(
        model=pair["Model"],
        recipe=namespace["MyRecipe"],
        temperature=2.5,
        epochs=2,
        quiet=True,
        out=str(tmp_path / "r"),
    )
    assert run.summary["guide"] == "mlp-normal"  # the recipe's default guide
    assert run.summary["temperature"] == 2.5 and run.config.options == {"temperature": 2.5}


def test_ci_runs_the_readme_install_and_test_commands():
    commands = re.search(r"## Install, run, test\n\n```bash\n(.*?)```", README, re.S).group(1)
    install, run, test = commands.strip().splitlines()
    assert run == "python scripts/train_svi.py"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert install in ci
    # The quick suite exactly as the README says, the slow tests it leaves out, then the
    # documentation exactly as the README builds it.
    docs = re.search(r"## Documentation\n.*?```bash\n(.*?)```", README, re.S).group(1)
    docs_install, docs_build = docs.strip().splitlines()
    assert ci[-4:] == [test, "python -m pytest -q -m slow", docs_install, docs_build]
    assert docs_build == "sphinx-build -W --keep-going -b html docs docs/_build/html"
