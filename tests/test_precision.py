"""--precision bfloat16: the training loss against float32, float32 reports, clear refusals."""

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

import pyrovae
from pyrovae.errors import PyrovaeError
from pyrovae.inference import TensorBatches, Trainer, TrainSettings
from pyrovae.models import VAE, MLPNormalGuide, ModelSpec
from pyrovae.models.ssvae import SSVAE, SSVAEGuide
from tests.test_cli import assert_one_error_line, run_cli


@pytest.mark.parametrize("which", ["vae", "ssvae"])
def test_bfloat16_step_loss_is_the_float32_loss_to_a_percent(which):
    """The same batch and draws: the bfloat16 loss differs from the float32 one (the products
    did run in bfloat16) by less than 1% (8-bit mantissas over 64-pixel rows)."""
    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(64, 64))
    spec = ModelSpec(x_dim=64, latent_dim=4, hidden=(32,), likelihood="bernoulli",
                     num_classes=10, num_data=64, options={"labels": 10})  # fmt: skip
    if which == "vae":
        model, guide, args, elbo = VAE(spec), MLPNormalGuide(spec), (x,), "trace"
    else:
        model = SSVAE(spec)
        guide, args, elbo = SSVAEGuide(spec, model), (x,), "enum"
    settings = TrainSettings(epochs=1, quiet=True, precision="bfloat16", elbo=elbo)
    trainer = Trainer(model, guide, TensorBatches(x, 64), settings)
    estimator = TraceEnum_ELBO(max_plate_nesting=1) if elbo == "enum" else Trace_ELBO()
    pyro.set_rng_seed(0)
    with trainer.precision.context():
        bf16 = estimator.loss(model, guide, *args)
    pyro.set_rng_seed(0)
    f32 = estimator.loss(model, guide, *args)
    assert bf16 != f32
    assert abs(bf16 - f32) < 0.01 * abs(f32)


def test_a_bfloat16_run_trains_and_reports_float32_elbos(tmp_path):
    """A digits VAE trained with bfloat16 products improves its test ELBO, and the ELBO in
    summary.json is the float32 ELBO of the reloaded parameters (Pyro's Trace_ELBO, 100
    particles, fixed seed)."""
    run = pyrovae.train(epochs=3, hidden=(64,), latent_dim=4, batch_size=64, quiet=True,
                        precision="bfloat16", out=str(tmp_path / "run"))  # fmt: skip
    history = run.history
    assert history[-1]["test_elbo"] > history[0]["test_elbo"]
    reloaded = pyrovae.load_run(tmp_path / "run")
    x = run.data.x_test
    pyro.set_rng_seed(0)
    elbo = (
        -Trace_ELBO(num_particles=100, vectorize_particles=True).loss(
            reloaded.model, reloaded.guide, x
        )
        / x.shape[0]
    )
    assert elbo == pytest.approx(run.summary["test_elbo"], abs=0.1)


def test_a_product_outside_a_layer_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    """A user model whose categorical site takes logits ``x @ V`` (a pyro.param) would hand
    Pyro a bfloat16 log-density under autocast: refused before training, naming the site.
    (Its Bernoulli site on ``z @ W`` is fine: that density comes out in float32.)"""
    monkeypatch.syspath_prepend(str(tmp_path))
    source = tmp_path / "raw_matmul.py"
    source.write_text(
        "import pyro, pyro.distributions as dist, torch\n"
        "def model(x):\n"
        "    w = pyro.param('w', torch.zeros(2, x.shape[1]))\n"
        "    v = pyro.param('v', torch.zeros(x.shape[1], 3))\n"
        "    with pyro.plate('data', x.shape[0]):\n"
        "        z = pyro.sample('z', dist.Normal(torch.zeros(2), 1.0).to_event(1))\n"
        "        pyro.sample('x', dist.Bernoulli(logits=z @ w).to_event(1), obs=x)\n"
        "        k = (x.sum(-1) % 3).long()\n"
        "        pyro.sample('k', dist.Categorical(logits=x @ v), obs=k)\n"
        "def guide(x):\n"
        "    loc = pyro.param('loc', torch.zeros(2))\n"
        "    with pyro.plate('data', x.shape[0]):\n"
        "        pyro.sample('z', dist.Normal(loc, 1.0).to_event(1))\n"
    )
    code, _, err = run_cli(
        ["--model", "raw_matmul:model", "--guide", "raw_matmul:guide", "--precision",
         "bfloat16", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")],
        capsys,
    )  # fmt: skip
    assert_one_error_line(code, err, "--precision bfloat16", "site k ", "float32")
    assert not (tmp_path / "run").exists()


def test_unknown_precision_and_jit_are_one_line_errors():
    with pytest.raises(PyrovaeError, match="unknown precision 'float16'"):
        TrainSettings(precision="float16")
    with pytest.raises(PyrovaeError, match="JIT"):
        TrainSettings(precision="bfloat16", elbo="jit-trace")
