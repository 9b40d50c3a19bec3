"""The Python API: data preparation protocol and reloading a run folder."""

from dataclasses import replace

import pytest
import torch

import pyrovae
from pyrovae.folder.config import TrainConfig
from pyrovae.runs.train import prepare_data


def test_dynamic_binarization_protocol():
    a = prepare_data(TrainConfig(dataset="digits", seed=0))
    b = prepare_data(TrainConfig(dataset="digits", seed=1))
    assert a.dynamic_binarization
    # Training rows keep their gray levels (binarized afresh in every batch) ...
    assert ((a.x_train > 0) & (a.x_train < 1)).any()
    # ... while held-out rows are binarized once, identically for every --seed.
    assert set(a.x_test.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a.x_test, b.x_test)
    # Each test pixel is 1 about as often as its gray level says.
    gray = a.dataset.x_test
    assert abs(float(a.x_test.mean() - gray.mean())) < 0.01


def test_threshold_binarization_and_continuous_bernoulli_keep_what_they_should():
    thresholded = prepare_data(TrainConfig(dataset="digits", binarize="threshold"))
    assert torch.equal(thresholded.x_test, (thresholded.dataset.x_test > 0.5).float())
    gray = prepare_data(TrainConfig(dataset="digits", likelihood="continuous-bernoulli"))
    assert torch.equal(gray.x_test, gray.dataset.x_test)
    assert not gray.dynamic_binarization


def test_load_run_rebuilds_the_trained_pair(tmp_path):
    run = pyrovae.train(
        dataset="spiral", epochs=3, hidden=(16,), quiet=True, out=str(tmp_path / "r")
    )
    loaded = pyrovae.load_run(tmp_path / "r")
    assert replace(loaded.config, device="auto") == run.config
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key])
    for key, value in run.guide.state_dict().items():
        assert torch.equal(value, loaded.guide.state_dict()[key])
    assert loaded.summary["test_elbo"] == run.summary["test_elbo"]


def test_config_of_an_older_run_folder_still_loads():
    old = {
        **{k: v for k, v in TrainConfig().to_json().items() if k not in ("options", "pair")},
        "model": "dae",
        "grey_bernoulli": True,
        "labels": None,
        "alpha": None,
        "corruption": 0.5,
        "sparsity_target": 0.05,
        "sparsity_weight": 1.0,
    }
    old.pop("gray_bernoulli")
    config = TrainConfig.from_json(old)
    assert config.gray_bernoulli and config.model == "dae"
    assert config.options == {"corruption": 0.5}  # only what was given for the model


def test_a_reloaded_factory_pair_reevaluates_to_its_summary(tmp_path):
    """Separate model and guide factories (a point-mass guide: no random draw in the loss),
    stopped early: the reloaded pair holds the best epoch's parameters exactly."""
    from pyro.infer import Trace_ELBO

    from tests.deterministic_pair import pair_options

    run = pyrovae.train(
        dataset="spiral", epochs=30, patience=2, lr=5e-2, quiet=True, out=str(tmp_path / "r"),
        **pair_options(),
    )  # fmt: skip
    loaded = pyrovae.load_run(tmp_path / "r", trust_code=True)
    x = loaded.data.x_test
    with torch.no_grad():
        elbo = -Trace_ELBO().loss(loaded.model, loaded.guide, x) / x.shape[0]
    assert elbo == pytest.approx(run.summary["test_elbo"], rel=1e-6)
    assert run.summary["best_epoch"] == max(run.history, key=lambda r: r["val_elbo"])["epoch"]
