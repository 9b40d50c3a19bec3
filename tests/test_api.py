"""The Python API: data preparation protocol and reloading a run folder."""

from dataclasses import replace

import torch

import pyrovae
from pyrovae.api import prepare_data
from pyrovae.config import TrainConfig


def test_dynamic_binarisation_protocol():
    a = prepare_data(TrainConfig(dataset="digits", seed=0))
    b = prepare_data(TrainConfig(dataset="digits", seed=1))
    assert a.dynamic_binarization
    # Training rows keep their grey levels (binarised afresh in every batch) ...
    assert ((a.x_train > 0) & (a.x_train < 1)).any()
    # ... while held-out rows are binarised once, identically for every --seed.
    assert set(a.x_test.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a.x_test, b.x_test)
    # Each test pixel is 1 about as often as its grey level says.
    grey = a.dataset.x_test
    assert abs(float(a.x_test.mean() - grey.mean())) < 0.01


def test_threshold_binarisation_and_continuous_bernoulli_keep_what_they_should():
    thresholded = prepare_data(TrainConfig(dataset="digits", binarize="threshold"))
    assert torch.equal(thresholded.x_test, (thresholded.dataset.x_test > 0.5).float())
    grey = prepare_data(TrainConfig(dataset="digits", likelihood="continuous-bernoulli"))
    assert torch.equal(grey.x_test, grey.dataset.x_test)
    assert not grey.dynamic_binarization


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
