import sys

import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def fresh_pyro_state():
    """Each test starts with an empty param store and a fixed seed."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    torch.set_num_threads(2)
    yield
    pyro.clear_param_store()


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Cached classifiers (sample quality) go to a folder of the test session, not ~/.cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("PYROVAE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    patch.undo()


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A folder on sys.path for the user modules a test writes; they are forgotten after it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("user_")]:
        del sys.modules[name]
