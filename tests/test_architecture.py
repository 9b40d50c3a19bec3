"""The layers of the package: the import-linter contract in pyproject.toml holds (and fails
when an import goes up a layer), no import cycle among pyrovae's modules (counting imports
inside functions), a top level of at most three files, and models that load no plotting."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pyrovae"
LINT_IMPORTS = shutil.which("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root``, with ``root``'s pyproject.toml."""
    env = {"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent)}
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )


def import_graph(root: Path) -> dict[str, set[str]]:
    """Every pyrovae module under ``root`` -> the pyrovae modules it imports (at the top or
    inside a function), read by grimp in a fresh process that sees only ``root``'s copy."""
    code = (
        "import grimp, json; g = grimp.build_graph('pyrovae', cache_dir=None); "
        "print(json.dumps({m: sorted(g.find_modules_directly_imported_by(m)) "
        "for m in g.modules}))"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return {m: set(targets) for m, targets in json.loads(out.stdout).items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's components of more than one module (or one importing itself)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, set()) & graph.keys():
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.add(w)
                if w == v:
                    break
            if len(part) > 1 or v in graph.get(v, set()):
                found.append(part)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def cycles_in(root: Path) -> list[set[str]]:
    graph = import_graph(root)
    assert "pyrovae.runs.train" in graph and graph["pyrovae.runs.train"]
    assert all(m == "pyrovae" or m.startswith("pyrovae.") for m in graph)
    return strongly_connected(graph)


def planted_copy(tmp_path: Path, module: str, source: str) -> Path:
    """A copy of the package and its pyproject.toml with ``source`` appended to ``module``."""
    shutil.copytree(PACKAGE, tmp_path / "pyrovae", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / Path(*module.split(".")).with_suffix(".py")
    path.write_text(path.read_text() + "\n\n" + source)
    return tmp_path


@pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is a dev dependency")
def test_lint_imports_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is a dev dependency")
def test_lint_imports_fails_on_an_import_up_a_layer(tmp_path):
    root = planted_copy(tmp_path, "pyrovae.folder.layout", "from pyrovae.runs import load\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "pyrovae.folder.layout -> pyrovae.runs.load" in result.stdout


@pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is a dev dependency")
def test_lint_imports_fails_on_plotting_in_the_models(tmp_path):
    root = planted_copy(tmp_path, "pyrovae.models.vae", "def f():\n    import matplotlib\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "pyrovae.models.vae -> matplotlib" in result.stdout


def test_no_import_cycle_among_pyrovae_modules():
    assert cycles_in(ROOT) == []


def test_a_cycle_through_a_function_local_import_is_found(tmp_path):
    root = planted_copy(
        tmp_path, "pyrovae.data.prepare", "def f():\n    from pyrovae.runs import train\n"
    )
    cycles = cycles_in(root)
    assert len(cycles) == 1 and {"pyrovae.data.prepare", "pyrovae.runs.train"} <= cycles[0]


def test_the_top_level_holds_at_most_three_files():
    files = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert files == ["__init__.py", "atomic.py", "errors.py"]


def test_importing_the_models_loads_no_plotting_or_training():
    code = (
        "import sys, pyrovae.models; "
        "print(sorted(m for m in sys.modules if m.startswith(('matplotlib', 'sklearn', "
        "'arviz', 'pyrovae.inference', 'pyrovae.plots', 'pyrovae.data', 'pyrovae.recipes', "
        "'pyrovae.runs', 'pyrovae.folder', 'pyrovae.report', 'pyrovae.cli'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_public_names_import_from_the_top():
    import pyrovae

    for name in pyrovae.__all__:
        assert getattr(pyrovae, name) is not None, name
    assert set(pyrovae.__all__) >= {
        "train", "load_run", "diagnose", "features", "linear_probe", "TrainConfig", "Run",
        "PyrovaeError",
    }  # fmt: skip
