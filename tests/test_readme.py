"""The README's promises: its user-defined pair trains, and CI runs its commands."""

import json
import math
import re
import sys
from pathlib import Path

from pyrovae.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_user_pair_trains_through_the_cli(tmp_path, monkeypatch):
    code = re.search(r"```python\n(# my_pair\.py\n.*?)```", README, re.S).group(1)
    assert len(code.strip().splitlines()) <= 30
    (tmp_path / "my_pair.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_pair", None)
    out = tmp_path / "run"
    argv = ["--model", "my_pair:Model", "--guide", "my_pair:Guide", "--epochs", "20"]
    assert main([*argv, "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "my_pair:Model"
    # Better than 64 fair coins (64 log 2 = 44.4 nats): the pair has learned something.
    assert summary["test_elbo"] > -64 * math.log(2)


def test_ci_runs_the_readme_install_and_test_commands():
    block = re.search(r"## Install, run, test\n\n```bash\n(.*?)```", README, re.S).group(1)
    install, run, test = block.strip().splitlines()
    assert run == "python scripts/train_svi.py"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert install in ci
    # The quick suite exactly as the README says, then the slow tests it leaves out.
    assert ci[-2:] == [test, "python -m pytest -q -m slow"]
