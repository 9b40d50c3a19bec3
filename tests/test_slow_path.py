"""The fast runner takes the same steps as Pyro's textbook SVI loop."""

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrovae.inference import TensorBatches, Trainer, TrainSettings, check_pair
from pyrovae.models import VAE, MLPNormalGuide, ModelSpec


def test_runner_losses_equal_svi_with_pyro_optim_and_param_store():
    spec = ModelSpec(x_dim=20, latent_dim=3, hidden=(16,), likelihood="bernoulli")
    x = torch.bernoulli(torch.full((96, 20), 0.3), generator=torch.Generator().manual_seed(1))
    batches = TensorBatches(x, 32, seed=0)

    pyro.set_rng_seed(0)
    model, guide = VAE(spec), MLPNormalGuide(spec)
    init = [{k: v.clone() for k, v in m.state_dict().items()} for m in (model, guide)]
    pyro.set_rng_seed(1)
    trainer = Trainer(model, guide, batches, TrainSettings(epochs=3, lr=1e-2, quiet=True))
    fast = []
    for epoch in range(3):
        for args in batches.epoch(epoch):
            fast.append(float(trainer.step(args, global_step=0)))

    # The slow path: pyro.module registers the networks in the global param store and
    # pyro.optim.Adam keeps one torch optimizer per parameter.
    pyro.clear_param_store()
    slow_model, slow_guide = VAE(spec), MLPNormalGuide(spec)
    slow_model.load_state_dict(init[0])
    slow_guide.load_state_dict(init[1])

    def model_fn(x):
        pyro.module("decoder", slow_model)
        slow_model(x)

    def guide_fn(x):
        pyro.module("encoder", slow_guide)
        slow_guide(x)

    pyro.set_rng_seed(1)
    with torch.no_grad():  # the Trainer's warm-up trace of the first batch draws once
        check_pair(slow_model, slow_guide, *next(iter(batches.epoch(0))))
    svi = SVI(model_fn, guide_fn, Adam({"lr": 1e-2}), Trace_ELBO())
    slow = [svi.step(*args) for epoch in range(3) for args in batches.epoch(epoch)]

    assert len(fast) == len(slow) == 9
    torch.testing.assert_close(torch.tensor(fast), torch.tensor(slow), rtol=1e-5, atol=1e-3)
    # Training moved the losses: the comparison covers optimizer steps, not just step 1.
    assert abs(fast[-1] - fast[0]) > 1.0
