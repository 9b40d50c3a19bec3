"""Pairs whose signatures take more than x: labels ``f(x, y=None)`` and conditions ``f(x, c)``.

Pyro's M2 (``tests/pyro_ss_vae_m2.py``) with ``--labels 100`` gets the built-in M2's batches
and auxiliary weight; a conditional
VAE whose model raises without its condition (``tests/conditional_vae.py``) trains, draws its
figures, reloads and diagnoses, and its test ELBO is Pyro's Trace_ELBO with each row's own
condition. Signatures the runner cannot feed are one line, before any folder is written.
"""

import pyro
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import Trace_ELBO

import pyrovae
from pyrovae.errors import PyrovaeError
from pyrovae.inference.arguments import (
    CONDITION,
    LABELS,
    X_ONLY,
    FedProgram,
    RowConditions,
    signature_kind,
    user_program,
)
from pyrovae.inference.evaluate import evaluate_elbo
from pyrovae.recipes.ssvae import SSVAERecipe
from tests.conditional_vae import CVAE
from tests.pyro_ss_vae_m2 import EnumeratedSSVAE
from tests.test_cli import assert_one_error_line, run_cli
from tests.test_pairs import write

SMALL = dict(dataset="digits", quiet=True, seed=0, batch_size=128)


# ------------------------------------------------------------------ signatures and rows


def test_signatures_say_what_is_fed():
    def x_only(x):
        pass

    def labels(xs, ys=None):
        pass

    def condition(x, c):
        pass

    def three(x, c, d):
        pass

    assert signature_kind(x_only, "f") == (X_ONLY, None)
    assert signature_kind(labels, "f") == (LABELS, "ys")
    assert signature_kind(condition, "f") == (CONDITION, "c")
    assert signature_kind(CVAE().model, "f") == (CONDITION, "c")  # bound: self is not counted
    with pytest.raises(PyrovaeError, match="nothing to pass 'd'") as info:
        signature_kind(three, "the model")
    assert "\n" not in str(info.value)


def test_row_conditions_follow_slices_subsets_and_repeats():
    x = torch.arange(24.0).reshape(8, 3)
    c = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    table = RowConditions()
    table.add(x, c)
    assert torch.equal(table.lookup(x), c)
    assert torch.equal(table.lookup(x[2:6]), c[2:6])  # a view: found by its memory
    rows = torch.tensor([7, 0, 0, 3])
    assert torch.equal(table.lookup(x[rows]), c[rows])  # a copy: found by its values
    assert torch.equal(table.lookup(x[rows].repeat(2, 1)), c[rows].repeat(2))
    with pytest.raises(PyrovaeError, match="not rows of the data set"):
        table.lookup(torch.full((2, 3), -1.0))
    with table.given(torch.tensor([2, 2])):
        assert torch.equal(table.lookup(torch.zeros(2, 3)), torch.tensor([2, 2]))


def test_a_fed_program_scales_by_the_weight_and_adds_the_auxiliary_term_with_alpha():
    def program(x, y):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", pyro.distributions.Normal(y, 1.0).to_event(1), obs=x)

    def auxiliary(x, y):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y_aux", pyro.distributions.Normal(torch.zeros(3), 1.0).to_event(1), obs=y)

    x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    weight = torch.tensor([1.0, 2.0, 0.5, 3.0])
    fed = FedProgram(program, LABELS, 3, "one-hot", auxiliary=auxiliary, alpha=7.0)
    trace = pyro.poutine.trace(fed).get_trace(x, y, weight)
    onehot = F.one_hot(y, 3).float()
    normal = torch.distributions.Normal(0.0, 1.0)
    expected = (weight * normal.log_prob(x - onehot).sum(-1)).sum()
    expected = expected + 7.0 * (weight * normal.log_prob(onehot).sum(-1)).sum()
    assert float(trace.log_prob_sum()) == pytest.approx(float(expected), rel=1e-6)
    assert user_program(fed) is program


# ------------------------------------------------------------------ Pyro's M2


def _pyro_m2():
    torch.manual_seed(0)
    return EnumeratedSSVAE(
        input_size=64, z_dim=8, hidden_layers=(64,), config_enum="parallel",
        aux_loss_multiplier=1.0,
    )  # fmt: skip


def test_pyro_m2_gets_the_labelled_batches_and_auxiliary_term_of_the_builtin_m2(tmp_path):
    m2 = _pyro_m2()
    seen = []
    original = EnumeratedSSVAE.model_classify

    def spy(self, xs, ys=None):
        seen.append(None if ys is None else ys.clone())
        return original(self, xs, ys)

    EnumeratedSSVAE.model_classify = spy
    try:
        run = pyrovae.train(pair=m2, labels=100, epochs=1, out=str(tmp_path / "m2"), **SMALL)
    finally:
        EnumeratedSSVAE.model_classify = original
    assert run.summary["elbo"] == "enum"  # its guide enumerates y: summed out, not sampled
    assert isinstance(run.model, FedProgram) and run.model.encoding == "one-hot"
    assert run.model.alpha == pytest.approx(0.3 * 64 * run.data.x_train.shape[0] / 100)
    # Training steps: the labelled batches of the built-in M2, labels one-hot, each row's
    # label among the 100 labelled ones.
    batches = SSVAERecipe().batches(run.data, run.config, torch.device("cpu"))
    labelled = [args[1] for args in batches.epoch(0) if len(args) > 1 and args[1] is not None]
    steps = [ys for ys in seen if ys is not None and ys.shape[0] == labelled[0].shape[0]]
    assert len(steps) >= len(labelled)
    assert torch.equal(steps[-len(labelled)].argmax(-1), labelled[0])


def test_a_labelled_batch_is_checked_before_the_folder_is_written(user_dir, capsys):
    write(
        user_dir,
        "user_picky",
        """
        import pyro, pyro.distributions as dist, torch

        def model(x, y=None):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("x", dist.Bernoulli(0.5 * torch.ones_like(x)).to_event(1), obs=x)

        def guide(x, y=None):
            pyro.param("w", torch.zeros(1))
            if y is not None:
                raise ValueError("this guide cannot take labels")
        """,
    )
    out = user_dir / "run"
    argv = ["--model", "user_picky:model", "--guide", "user_picky:guide", "--labels", "100"]
    code, _, err = run_cli([*argv, "--epochs", "1", "--quiet", "--out", out], capsys)
    assert_one_error_line(code, err, "takes labels beyond x", "one-hot", "class indices")
    assert not out.exists()


# ------------------------------------------------------------------ a conditional VAE


def test_a_conditional_vae_gets_its_condition_on_every_call(tmp_path):
    out = tmp_path / "cvae"
    run = pyrovae.train(pair=CVAE(), epochs=5, lr=1e-2, out=str(out), **SMALL)
    assert {"reconstructions.png", "samples.png", "interpolation.png", "traversals.png"} <= set(
        run.summary["figures"]
    )
    cvae = user_program(run.model).__self__
    x, c = run.data.x_test, F.one_hot(run.data.y_test, 10).float()

    def trace_elbo(x, conditions, particles=1, seed=1):
        pyro.set_rng_seed(seed)
        elbo = Trace_ELBO(num_particles=particles, vectorize_particles=particles > 1)
        with torch.no_grad():
            return -elbo.loss(cvae.model, cvae.guide, x, conditions) / x.shape[0]

    # The runner's evaluation (programs called with x alone) is Trace_ELBO with each row's c.
    pyro.set_rng_seed(1)
    ours = evaluate_elbo(Trace_ELBO(), run.model, run.guide, x)
    assert ours == pytest.approx(trace_elbo(x, c), abs=1e-9)
    exact = trace_elbo(x, c, particles=50)
    assert run.summary["test_elbo"] == pytest.approx(exact, abs=0.5)
    shuffled = c[torch.randperm(c.shape[0], generator=torch.Generator().manual_seed(0))]
    assert trace_elbo(x, shuffled, particles=50) < exact - 0.5

    reloaded = pyrovae.load_run(out, trust_code=True)
    pyro.set_rng_seed(1)
    again = evaluate_elbo(Trace_ELBO(), reloaded.model, reloaded.guide, reloaded.data.x_test)
    assert again == pytest.approx(ours, abs=1e-6)
    found = pyrovae.diagnose(
        reloaded, iwae_samples=20, nuts_points=0, amortization_points=3, amortization_steps=5,
        max_points=60,
    )  # fmt: skip
    # IWAE (K = 20) is above the ELBO of the same rows with their own conditions; with
    # shuffled ones it would be below it.
    assert found["iwae_log_likelihood"] > trace_elbo(x[:60], c[:60], particles=50)
    assert trace_elbo(x[:60], shuffled[:60], particles=50) < found["iwae_log_likelihood"] - 0.5


def test_a_signature_the_runner_cannot_feed_is_one_line(user_dir, capsys):
    write(
        user_dir,
        "user_unfed",
        """
        import pyro, pyro.distributions as dist, torch

        def model(x, c, temperature):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("x", dist.Bernoulli(0.5 * torch.ones_like(x)).to_event(1), obs=x)

        def guide(x, c, temperature):
            pyro.param("w", torch.zeros(1))

        def conditioned(x, c):
            model(x, c, 1.0)

        def guide2(x, c):
            pyro.param("w", torch.zeros(1))

        def alone(x):
            model(x, None, 1.0)

        def guide_alone(x):
            pyro.param("w", torch.zeros(1))
        """,
    )
    out = user_dir / "run"
    tail = ["--epochs", "1", "--quiet", "--out", out]
    cases = [
        (["--model", "user_unfed:model", "--guide", "user_unfed:guide"], ["'temperature'"]),
        (
            [
                "--model",
                "user_unfed:conditioned",
                "--guide",
                "user_unfed:guide2",
                "--dataset",
                "spiral",
                "--likelihood",
                "bernoulli",
            ],
            ["requires 'c'", "spiral has none"],
        ),  # fmt: skip
        (
            ["--model", "user_unfed:alone", "--guide", "user_unfed:guide_alone", "--labels", "100"],
            ["--labels 100", "take x alone"],
        ),  # fmt: skip
    ]
    for argv, words in cases:
        code, _, err = run_cli([*argv, *tail], capsys)
        assert_one_error_line(code, err, *words)
        assert not out.exists()


class _Log(torch.nn.Module):
    def forward(self, p):
        return p.log()


class _Classifier(torch.nn.Module):
    def __init__(self, network):
        super().__init__()
        self.classifier = network


@pytest.mark.slow
def test_pyro_m2_with_100_labels_beats_its_classifier_trained_on_the_labels_alone(tmp_path):
    """Pyro's ss_vae_M2 as written (its defaults: z 50, hidden 500, aux_loss_multiplier 46),
    60 epochs on digits with 100 labels, against the same q(y|x) network from the same
    initial weights trained on the 100 labelled rows alone (the built-in M2's baseline)."""
    import copy

    from pyrovae.inference.classifier import accuracy
    from pyrovae.recipes.ssvae import classifier_inputs

    torch.manual_seed(0)
    m2 = EnumeratedSSVAE(input_size=64, config_enum="parallel", aux_loss_multiplier=1.0)
    untrained = copy.deepcopy(m2.encoder_y)
    run = pyrovae.train(
        pair=m2, epochs=60, labels=100, alpha=46, seed=0, out=str(tmp_path / "m2"), quiet=True
    )
    _, x_test = classifier_inputs(run.data, torch.device("cpu"))
    m2_accuracy = accuracy(torch.nn.Sequential(m2.encoder_y, _Log()), x_test, run.data.y_test)
    baseline = SSVAERecipe().train_baseline(
        _Classifier(torch.nn.Sequential(untrained, _Log())), run.data, run.config
    )["baseline_accuracy"]
    assert m2_accuracy > baseline + 0.01, (m2_accuracy, baseline)
