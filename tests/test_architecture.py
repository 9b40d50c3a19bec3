"""The layers of the package, read from the source: models know nothing of how they are
trained, evaluated, plotted or saved."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pyrovae"
MODELS_MAY_IMPORT = ("pyrovae.models", "pyrovae.errors")


def pyrovae_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of a pyrovae module in ``path`` (also inside
    functions), with relative imports resolved against the file's package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module == "pyrovae":  # from pyrovae import data: the submodules themselves
                found += [(node.lineno, f"pyrovae.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return [(line, m) for line, m in found if m == "pyrovae" or m.startswith("pyrovae.")]


def test_the_import_reader_sees_every_form_of_import(tmp_path):
    package = tmp_path / "pyrovae" / "models"
    package.mkdir(parents=True)
    source = package / "probe.py"
    source.write_text(
        "import pyrovae.plots\nfrom pyrovae import data\nfrom . import vae\n"
        "from ..inference import runner\n\ndef f():\n    from pyrovae.runs.train import train\n"
    )
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "pyrovae"
    try:
        found = [m for _, m in pyrovae_imports(source)]
    finally:
        PACKAGE = saved
    assert found == [
        "pyrovae.plots", "pyrovae.data", "pyrovae.models", "pyrovae.inference", "pyrovae.runs.train"
    ]  # fmt: skip


def test_models_import_nothing_from_pyrovae_outside_models():
    files = sorted((PACKAGE / "models").glob("*.py"))
    assert len(files) >= 8
    offending = [
        f"{path.name}:{line} imports {module}"
        for path in files
        for line, module in pyrovae_imports(path)
        if not module.startswith(MODELS_MAY_IMPORT)
    ]
    assert offending == []


def test_importing_the_models_loads_no_plotting_or_training():
    import subprocess
    import sys

    code = (
        "import sys, pyrovae.models; "
        "print(sorted(m for m in sys.modules if m.startswith(('matplotlib', 'pyrovae.inference', "
        "'pyrovae.plots', 'pyrovae.data', 'pyrovae.recipes', 'pyrovae.runs.train'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
