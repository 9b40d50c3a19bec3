"""The SVI runner: learning, checkpoints and exact resumption."""

import math

import pytest
import torch

import pyrovae
from pyrovae.data import load_dataset
from pyrovae.errors import PyrovaeError
from pyrovae.inference import (
    TensorBatches,
    Trainer,
    TrainSettings,
    load_checkpoint,
    save_checkpoint,
)
from pyrovae.inference import checkpoint as checkpoint_module
from pyrovae.inference.runner import best_epoch, selection_score
from pyrovae.models import VAE, MLPNormalGuide, ModelSpec

TINY = dict(hidden=(64,), latent_dim=4, quiet=True, batch_size=64)


@pytest.fixture(scope="module")
def binary_digits():
    data = load_dataset("digits")
    gen = torch.Generator().manual_seed(0)
    return torch.bernoulli(data.x_train, generator=gen), torch.bernoulli(data.x_test, generator=gen)


def independent_pixel_loglik(x_train, x_test):
    """Test log-likelihood (nats/example) of the best model with independent pixels."""
    p = (x_train.sum(0) + 1) / (x_train.shape[0] + 2)
    return float((x_test * p.log() + (1 - x_test) * (1 - p).log()).sum(-1).mean())


def test_training_raises_heldout_elbo_above_independent_pixels(binary_digits):
    x_train, x_test = binary_digits
    spec = ModelSpec(x_dim=64, latent_dim=8, hidden=(128,), likelihood="bernoulli")
    model, guide = VAE(spec), MLPNormalGuide(spec)
    trainer = Trainer(
        model,
        guide,
        TensorBatches(x_train, 64),
        TrainSettings(epochs=40, quiet=True),
        test_x=x_test,
    )
    before = trainer.evaluate(x_test)
    history = trainer.fit()
    after = history[-1]["test_elbo"]
    baseline = independent_pixel_loglik(x_train, x_test)
    assert after > before + 10
    # A lower bound that beats the exact log-likelihood of the independent-pixel model:
    # the VAE has learned dependencies between pixels.
    assert after > baseline + 1.5, (after, baseline)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    state = {"epoch": 3, "weights": torch.randn(4, 2), "history": [{"epoch": 1, "x": 0.5}]}
    path = tmp_path / "ck.pt"
    save_checkpoint(state, path)
    raw = torch.load(path, weights_only=True)
    assert raw["epoch"] == 3
    loaded = load_checkpoint(path, require_all=False)
    assert torch.equal(loaded["weights"], state["weights"])
    assert loaded["history"] == state["history"]
    # A run's checkpoint must hold everything a resume needs: one line saying what lacks.
    with pytest.raises(PyrovaeError, match=r"lacks model, guide, param_store.*afresh") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_interrupted_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint({"epoch": 1}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2}, path)
    assert load_checkpoint(path, require_all=False)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(PyrovaeError, match="corrupt"):
        load_checkpoint(path)


def test_resume_equals_uninterrupted(tmp_path):
    common = dict(dataset="digits", seed=3, patience=2, anneal_epochs=1.5, **TINY)
    straight = pyrovae.train(epochs=5, out=str(tmp_path / "a"), **common)
    pyrovae.train(epochs=2, out=str(tmp_path / "b"), **common)
    resumed = pyrovae.train(resume=tmp_path / "b", epochs=5, quiet=True)
    assert [r["test_elbo"] for r in resumed.history] == [r["test_elbo"] for r in straight.history]
    resumed_state = resumed.model.state_dict()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed_state[key])
    ck_a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    ck_b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for key in ck_a["guide"]:
        assert torch.equal(ck_a["guide"][key], ck_b["guide"][key])
    assert resumed.summary["test_elbo"] == straight.summary["test_elbo"]


def tiny_gaussian_trainer(patience: int, **options) -> Trainer:
    """A 4-2-4 Gaussian VAE on 64 random rows (the first 8 also the validation rows), up to
    20 epochs with ``patience``; ``options`` go to the Trainer."""
    spec = ModelSpec(x_dim=4, latent_dim=2, hidden=(8,), likelihood="gaussian")
    x = torch.randn(64, 4)
    settings = TrainSettings(epochs=20, patience=patience, quiet=True)
    return Trainer(
        VAE(spec), MLPNormalGuide(spec), TensorBatches(x, 16), settings, val_x=x[:8], **options
    )


def test_early_stopping_restores_best_validation_epoch(tmp_path, monkeypatch):
    """Scripted validation ELBOs: the best is epoch 3, patience 3 stops after epoch 6, and the
    parameters of epoch 3 (modules and pyro.param sites) come back."""
    trainer = tiny_gaussian_trainer(patience=3)
    model = trainer.model
    scripted = iter([-9.0, -8.0, -7.0, -7.5, -7.2, -8.1, -6.0])
    snapshots = []
    real_evaluate = trainer.evaluate

    def evaluate(rows):
        if rows is trainer.val_x:
            snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
            return next(scripted)
        return real_evaluate(rows)

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    history = trainer.fit()
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5, 6]
    assert trainer.stopped_early and trainer.best["epoch"] == 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshots[2][key]), key
    assert not torch.equal(snapshots[5]["decoder.0.weight"], snapshots[2]["decoder.0.weight"])


def test_early_stopping_in_a_run_reports_the_kept_epoch(tmp_path):
    run = pyrovae.train(
        dataset="digits", epochs=60, patience=3, lr=3e-2, out=str(tmp_path / "r"), **TINY
    )
    val = [row["val_elbo"] for row in run.history]
    best = max(range(len(val)), key=val.__getitem__)
    assert run.summary["best_epoch"] == best + 1
    assert run.summary["stopped_early"] == (len(val) == best + 1 + 3)
    assert len(val) in (best + 1 + 3, 60)
    assert run.summary["test_elbo"] == run.history[best]["test_elbo"]


def test_batches_cover_each_row_once_per_epoch():
    x = torch.arange(10.0).unsqueeze(-1)
    batches = TensorBatches(x, batch_size=4, seed=1)
    rows = torch.cat([b[0] for b in batches.epoch(0)]).squeeze(-1)
    assert sorted(rows.tolist()) == list(range(10))
    assert len(batches) == 3
    again = torch.cat([b[0] for b in batches.epoch(0)]).squeeze(-1)
    assert torch.equal(rows, again)
    other = torch.cat([b[0] for b in batches.epoch(1)]).squeeze(-1)
    assert not torch.equal(rows, other)


def test_divergence_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    spec = ModelSpec(x_dim=3, latent_dim=2, hidden=(), likelihood="gaussian")
    model, guide = VAE(spec), MLPNormalGuide(spec)
    x = torch.randn(64, 3)
    checkpoint = tmp_path / "checkpoint.pt"
    trainer = Trainer(
        model,
        guide,
        TensorBatches(x, 16),
        TrainSettings(epochs=5, quiet=True),
        checkpoint_path=checkpoint,
    )
    trainer.fit()  # 5 good epochs
    good = load_checkpoint(checkpoint)
    trainer.settings.epochs = 7
    with torch.no_grad():
        model.decoder[0].weight.fill_(math.nan)
    with pytest.raises(PyrovaeError, match="diverged in epoch 6"):
        trainer.fit()
    kept = load_checkpoint(checkpoint)
    assert kept["epoch"] == 5
    assert torch.equal(kept["model"]["decoder.0.weight"], good["model"]["decoder.0.weight"])


def test_annealed_runs_report_the_objective_and_the_true_elbo(tmp_path):
    """With a KL weight below 1 the objective (averaged over the epoch's steps) is not the
    ELBO: train_elbo is the ELBO of the training rows (KL weight 1) at the epoch's end, as
    Pyro's Trace_ELBO gives it for the kept parameters."""
    from pyro.infer import Trace_ELBO

    run = pyrovae.train(
        dataset="digits", epochs=3, anneal_epochs=6, out=str(tmp_path / "r"), **TINY
    )
    assert all(row["beta"] < 1 for row in run.history)
    assert (
        run.summary["train_objective"]
        == run.history[run.summary["best_epoch"] - 1]["train_objective"]
    )
    loaded = pyrovae.load_run(tmp_path / "r")
    rows = loaded.data.training_rows(10_000)
    assert set(rows.unique().tolist()) <= {0.0, 1.0}  # one fixed binarization
    with torch.no_grad():
        elbo = (
            -Trace_ELBO(num_particles=100, vectorize_particles=True).loss(
                loaded.model, loaded.guide, rows
            )
            / rows.shape[0]
        )
    assert elbo == pytest.approx(run.summary["train_elbo"], abs=0.3)
    # A beta-VAE's objective pays 4 more KLs than its ELBO.
    beta = pyrovae.train(dataset="digits", epochs=2, beta=5, out=str(tmp_path / "b"), **TINY)
    for row in beta.history:
        assert row["train_objective"] < row["train_elbo"] - 1.0
    # Without annealing the two columns are the same number.
    plain = pyrovae.train(dataset="digits", epochs=1, out=str(tmp_path / "p"), **TINY)
    assert plain.history[0]["train_objective"] == plain.history[0]["train_elbo"]


def test_select_by_an_epoch_metric_keeps_its_best_epoch(monkeypatch):
    """``select_by=("val_accuracy", "val_elbo")``: scripted accuracies peak at epochs 2 and 4
    (a tie, broken by the better validation ELBO of epoch 4) while the validation ELBO keeps
    rising; patience counts epochs without a better accuracy."""
    accuracies = iter([0.5, 0.8, 0.7, 0.8, 0.6, 0.79, 0.9])
    snapshots = []

    def epoch_metrics():
        snapshots.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        return {"val_accuracy": next(accuracies)}

    trainer = tiny_gaussian_trainer(
        patience=2, epoch_metrics=epoch_metrics, select_by=("val_accuracy", "val_elbo")
    )
    model = trainer.model
    elbos = iter([-9.0, -8.0, -7.0, -6.0, -5.0, -4.0, -3.0])
    real_evaluate = trainer.evaluate
    monkeypatch.setattr(
        trainer,
        "evaluate",
        lambda rows: next(elbos) if rows is trainer.val_x else real_evaluate(rows),
    )
    history = trainer.fit()
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5, 6]
    assert trainer.stopped_early and trainer.best["epoch"] == 4
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshots[3][key]), key
    assert best_epoch(history, ("val_accuracy", "val_elbo")) == 4
    assert best_epoch(history) == 6


def test_selection_score_orders_by_the_first_key_then_the_next():
    keys = ("val_accuracy", "val_elbo")
    assert selection_score({"val_accuracy": 0.9, "val_elbo": -5.0}, keys) == (0.9, -5.0)
    assert selection_score({"val_accuracy": math.nan, "val_elbo": -5.0}, keys) is None
    assert selection_score({"val_elbo": -5.0}, keys) is None
    assert selection_score({"val_accuracy": 0.9}, keys) == (0.9, -math.inf)


def test_select_by_a_metric_the_epochs_lack_is_a_one_line_error():
    """A misspelt key would leave the run keeping no epoch and never stopping early."""
    trainer = tiny_gaussian_trainer(patience=2, select_by=("val_acc",))
    with pytest.raises(PyrovaeError, match=r"select_by names val_acc, which .* val_elbo") as err:
        trainer.fit()
    assert "\n" not in str(err.value)
