"""The estimate of log p(x, y) behind benchmarks/ssvae_teacher.py, against a closed form."""

import importlib.util
import math
from pathlib import Path

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch

from pyrovae.inference.diagnostics.structure import inspect_pair

CLASSES = 3


def _teacher():
    path = Path(__file__).parents[1] / "benchmarks" / "ssvae_teacher.py"
    spec = importlib.util.spec_from_file_location("ssvae_teacher", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model(x, y=None):
    """A one-dimensional M2: y ~ Cat(1/K), z ~ N(0, 1), x ~ N(z + y, 1), and for labelled
    rows an auxiliary term 5 log q(y|x) (q uniform) that log p(x, y) must leave out."""
    with pyro.plate("data", x.shape[0]):
        labelled = y is not None
        y = pyro.sample("y", dist.Categorical(logits=x.new_zeros(CLASSES)), obs=y)
        z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
        pyro.sample("x", dist.Normal(z + y, 1.0), obs=x)
        if labelled:
            with poutine.scale(scale=5.0):
                pyro.sample("y_aux", dist.Categorical(logits=x.new_zeros(CLASSES)), obs=y)


def guide_of_scale(scale: float):
    """q(y|x) uniform (enumerated) and q(z | x, y) = N((x - y) / 2, scale^2); the exact
    posterior p(z | x, y) at ``scale = sqrt(1/2)``."""

    def guide(x, y=None):
        with pyro.plate("data", x.shape[0]):
            if y is None:
                y = pyro.sample(
                    "y",
                    dist.Categorical(logits=x.new_zeros(CLASSES)),
                    infer={"enumerate": "parallel"},
                )
            pyro.sample("z", dist.Normal((x - y) / 2, scale))

    return guide


def log_joint(guide, x, y, samples):
    structure = inspect_pair(model, guide, x)
    return _teacher().log_joint(model, guide, x, y, samples, structure)


def test_log_joint_equals_the_closed_form_under_the_exact_posterior():
    x = torch.tensor([-1.3, 0.2, 2.5, 4.0])
    y = torch.tensor([0, 2, 1, 2])
    estimate = log_joint(guide_of_scale(math.sqrt(0.5)), x, y, samples=3)
    # p(x | y) = N(x; y, 2) once z is integrated out.
    exact = math.log(1 / CLASSES) + dist.Normal(y.double(), math.sqrt(2.0)).log_prob(x.double())
    torch.testing.assert_close(estimate.double(), exact, rtol=0, atol=1e-5)


def test_log_joint_under_a_wider_guide_converges_to_the_closed_form():
    torch.manual_seed(0)
    draws = 20_000  # one row each: their logsumexp is the estimate with 20,000 samples
    x, y = torch.full((draws,), 0.7), torch.ones(draws, dtype=torch.int64)
    marginal = dist.Normal(1.0, math.sqrt(2.0))  # p(x | y = 1)
    exact = math.log(1 / CLASSES) + float(marginal.log_prob(torch.tensor(0.7)))
    single = log_joint(guide_of_scale(1.5), x, y, samples=1).double()
    pooled = float(single.logsumexp(0) - math.log(draws))
    # The single-sample estimates are below log p(x, y) on average (Jensen), by a clear margin.
    assert float(single.mean()) < exact - 0.1
    assert abs(pooled - exact) < 0.02


def test_runs_scores_a_finished_run_as_its_summary_does(tmp_path, monkeypatch, capsys):
    """``--runs`` reloads a run folder: q(y|x) on the fixed binarization of the test rows
    classifies as the trained run's own summary says (``test_accuracy_binarized``), so the
    kept epoch's parameters were restored; the kept and baseline columns are the summary's."""
    import pyrovae
    from pyrovae.recipes import ssvae as ssvae_recipe

    monkeypatch.setattr(ssvae_recipe, "BASELINE_MAX_EPOCHS", 2)
    folder = tmp_path / "run"
    summary = pyrovae.train(
        model="ssvae", labels=50, epochs=2, hidden=(16,), latent_dim=2, seed=0, quiet=True,
        out=str(folder),
    ).summary  # fmt: skip
    _teacher().main(["--runs", str(folder), "--samples", "2"])
    row = capsys.readouterr().out.strip().splitlines()[-1]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    labels, latent_dim, q_accuracy, generative, agreement, kept, baseline = cells
    assert (int(labels), int(latent_dim)) == (50, 2)
    assert float(q_accuracy) == round(summary["test_accuracy_binarized"], 4)
    assert float(kept) == round(summary["test_accuracy"], 4)
    assert float(baseline) == round(summary["baseline_accuracy"], 4)
    assert 0 < float(generative) <= 1 and 0 < float(agreement) <= 1
