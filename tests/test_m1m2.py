"""M1 + M2 (Kingma et al., 2014): any model trained on the posterior means of a trained run
(``--features RUN_DIR``), checked against the feature run's own encoder on the same rows."""

import json
import shutil
import warnings

import pytest
import torch

import pyrovae
from pyrovae.data import load_dataset, with_features
from pyrovae.errors import PyrovaeError
from pyrovae.folder.config import TrainConfig
from pyrovae.recipes import ssvae as ssvae_recipe
from pyrovae.runs.train import prepare_data

M2 = dict(model="ssvae", labels=50, epochs=2, hidden=(16,), latent_dim=2, quiet=True)


def quiet_train(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pyrovae.train(**kwargs)


@pytest.fixture(scope="module")
def m1_dir(tmp_path_factory):
    """M1: the default VAE (dynamically binarized digits), 4 latent dimensions, 3 epochs."""
    out = tmp_path_factory.mktemp("m1") / "vae"
    quiet_train(epochs=3, hidden=(32,), latent_dim=4, lr=1e-2, quiet=True, out=str(out))
    return out


@pytest.fixture(scope="module")
def baseline_inputs():
    """What the ssvae's baseline classifier is trained on, recorded call by call."""
    return []


@pytest.fixture(scope="module")
def m2(m1_dir, tmp_path_factory, baseline_inputs):
    """M2 (ssvae) on M1's features; its baseline trains for at most 20 epochs."""
    out = tmp_path_factory.mktemp("m2") / "ssvae"
    train_classifier = ssvae_recipe.train_classifier

    def recording(network, x, y, *args, **kwargs):
        baseline_inputs.append((x.clone(), y.clone()))
        return train_classifier(network, x, y, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ssvae_recipe, "BASELINE_MAX_EPOCHS", 20)
        patch.setattr(ssvae_recipe, "train_classifier", recording)
        run = quiet_train(features=str(m1_dir), out=str(out), **M2)
    return run


def test_the_features_are_m1s_posterior_means_of_the_same_rows(m1_dir, m2):
    m1 = pyrovae.load_run(m1_dir)
    plain = prepare_data(TrainConfig(**{k: v for k, v in M2.items() if k != "labels"}))
    assert plain.dynamic_binarization  # the pixels M1 saw: binary draws of these gray levels
    rows = {
        "x_train": plain.x_train,  # gray levels (binarized batch by batch in training)
        "x_val": plain.x_val_gray,
        "x_test": plain.x_test_gray,
    }
    for name, x in rows.items():
        fed = getattr(m2.data, name)
        with torch.no_grad():
            loc, _ = m1.guide.encode(x)  # the Normal's mean, from M1's encoder itself
        torch.testing.assert_close(fed, loc, rtol=0, atol=1e-5)
        torch.testing.assert_close(fed, pyrovae.features(m1, x), rtol=0, atol=1e-6)
        assert fed.shape == (x.shape[0], 4)
    # The same rows in the same split: the labels follow them row for row.
    for name in ("y_train", "y_val", "y_test"):
        assert torch.equal(getattr(m2.data, name), getattr(plain, name)), name
    # Encoded from the gray levels, not from the test ELBO's one binarization of them.
    binarized = pyrovae.features(m1, plain.x_test)
    assert (binarized - m2.data.x_test).abs().max() > 1e-2
    # Distinct rows give distinct features (so the row-for-row equality above says something).
    assert torch.cdist(m2.data.x_train[:50], m2.data.x_train[:50]).triu(1).max() > 0.1


def test_features_are_real_valued_a_gaussian_observes_them_and_nothing_is_binarized(m2):
    assert m2.summary["likelihood"] == "Normal"
    assert m2.spec.likelihood == "gaussian"
    assert not m2.data.dynamic_binarization and m2.data.x_test_gray is None
    assert m2.data.dataset.image_shape is None and m2.data.dataset.support == "real"
    assert not bool(((m2.data.x_train == 0) | (m2.data.x_train == 1)).all())
    # Even features that lie in [0, 1] (a gumbel-vae's one-hot means) are real-valued data.
    digits = load_dataset("digits")
    unit = with_features(
        digits, torch.rand(len(digits.x_train), 3), torch.rand(len(digits.x_test), 3), {}
    )
    assert unit.support == "real" and unit.image_shape is None
    assert unit.class_names == digits.class_names and torch.equal(unit.y_test, digits.y_test)


def test_m2_on_m1_features_trains_and_reports_both_accuracies(m1_dir, m2, baseline_inputs):
    summary = json.loads((m2.folder.path / "summary.json").read_text())
    for key in ("test_accuracy", "baseline_accuracy", "val_accuracy"):
        assert 0 <= summary[key] <= 1, key
    assert "test_accuracy_binarized" not in summary  # nothing binarized
    assert summary["features"] == {
        "run": str(m1_dir),
        "model": "vae",
        "guide": "mlp-normal",
        "dim": 4,
    }
    assert summary["dataset"] == "digits" and summary["epochs"] == 2
    config = json.loads((m2.folder.path / "config.json").read_text())
    assert config["features"] == str(m1_dir)
    # The baseline: the same network on the same inputs, the features of the labelled rows.
    ((x, y),) = baseline_inputs
    labelled, _ = ssvae_recipe.SSVAERecipe().label_split(m2.data, m2.config)
    assert torch.equal(x, m2.data.x_train[labelled]) and torch.equal(y, m2.data.y_train[labelled])
    # No image shape: image figures are skipped, the others draw the features.
    figures = summary["figures"]
    for name in ("reconstructions.png", "interpolation.png", "samples.png", "accuracy.png"):
        assert name in figures and (m2.folder.path / name).stat().st_size > 0, name
    for name in ("analogies.png", "classes.png", "traversals.png"):
        assert name not in figures and not (m2.folder.path / name).exists(), name


def test_load_run_rebuilds_the_features_and_resume_goes_on(m2, tmp_path, monkeypatch):
    loaded = pyrovae.load_run(m2.folder.path)
    for name in ("x_train", "x_val", "x_test"):
        assert torch.equal(getattr(loaded.data, name), getattr(m2.data, name)), name
    with torch.no_grad():
        x = loaded.data.x_test
        assert torch.equal(loaded.model.classifier(x), m2.model.classifier(x))
    monkeypatch.setattr(ssvae_recipe, "BASELINE_MAX_EPOCHS", 5)
    copy = tmp_path / "resumed"
    shutil.copytree(m2.folder.path, copy)
    resumed = quiet_train(resume=copy, epochs=3)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert resumed.history[:2] == m2.history  # the first two epochs are the checkpoint's
    assert resumed.summary["features"] == m2.summary["features"]
    assert torch.equal(resumed.data.x_train, m2.data.x_train)


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda m1: shutil.rmtree(m1), ["--features", "no run folder"]),
        (lambda m1: (m1 / "config.json").unlink(), ["--features", "no config.json"]),
        (lambda m1: (m1 / "checkpoint.pt").write_bytes(b"garbage"), ["--features", "corrupt"]),
    ],
    ids=["missing", "not-a-run", "corrupt-checkpoint"],
)
def test_a_missing_or_broken_feature_run_is_one_line_on_load(m1_dir, m2, tmp_path, damage, words):
    m1, run = tmp_path / "m1", tmp_path / "m2"
    shutil.copytree(m1_dir, m1)
    shutil.copytree(m2.folder.path, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "features": str(m1)}))
    assert pyrovae.load_run(run).summary  # intact: it loads
    damage(m1)
    with pytest.raises(PyrovaeError) as info:
        pyrovae.load_run(run)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    for word in words:
        assert word in message, (word, message)


def test_features_of_a_thresholded_run_encode_the_thresholded_rows(tmp_path):
    m1 = quiet_train(
        epochs=1, hidden=(16,), latent_dim=3, binarize="threshold", out=str(tmp_path / "m1")
    )
    run = quiet_train(
        epochs=1, hidden=(16,), features=str(tmp_path / "m1"), out=str(tmp_path / "v")
    )
    assert run.summary["model"] == "vae" and run.summary["likelihood"] == "Normal"
    x = load_dataset("digits").x_test
    thresholded = (x > 0.5).float()
    assert not torch.equal(thresholded, x)
    torch.testing.assert_close(run.data.x_test, pyrovae.features(m1, thresholded), rtol=0, atol=0)
    assert (pyrovae.features(m1, x) - run.data.x_test).abs().max() > 1e-3


def test_a_feature_run_on_features_is_refused(m2, tmp_path):
    with pytest.raises(PyrovaeError, match="itself trained on the features of") as info:
        quiet_train(epochs=1, features=str(m2.folder.path), out=str(tmp_path / "r"))
    assert len(str(info.value).splitlines()) == 1
