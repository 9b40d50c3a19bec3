"""Posterior means as features (``pyrovae.features``) and the linear probe on them, against
the guides' closed forms and scikit-learn fitted by hand on the same rows."""

import dataclasses
import json
import warnings

import numpy as np
import pyro
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import pyrovae
from pyrovae.cli.features import main as features_main
from pyrovae.data.labels import balanced_label_split
from pyrovae.errors import PyrovaeError
from pyrovae.models import GUIDES, MODELS, ModelSpec


def quiet_train(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pyrovae.train(hidden=(32,), quiet=True, **kwargs)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vae"
    quiet_train(epochs=5, lr=1e-2, latent_dim=8, out=str(out))
    return out


@pytest.fixture(scope="module")
def run(digits_run):
    return pyrovae.load_run(digits_run)


def assert_one_error_line(code, err, *words):
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert code == 2, (code, err)


# ----------------------------------------------------------------------------- features


def test_vae_features_are_the_encoders_means_in_any_batches(run, digits_run):
    x = run.data.x_test
    with torch.no_grad():
        loc, _ = run.guide.encode(x)
    assert pyrovae.features(run, x).shape == (360, 8)
    torch.testing.assert_close(pyrovae.features(run, x), loc, rtol=0, atol=1e-6)
    # Batches of 7 rows, a numpy array, a run folder, (n, 8, 8) images: the same numbers.
    torch.testing.assert_close(pyrovae.features(run, x, batch_size=7), loc, rtol=0, atol=1e-6)
    torch.testing.assert_close(pyrovae.features(run, x.numpy()), loc, rtol=0, atol=1e-6)
    torch.testing.assert_close(pyrovae.features(digits_run, x), loc, rtol=0, atol=1e-6)
    images = x.reshape(-1, 8, 8)
    torch.testing.assert_close(pyrovae.features(run, images), loc, rtol=0, atol=1e-6)
    assert pyrovae.features(run, x[:0]).shape == (0, 8)


def test_features_restore_the_modules_mode(run):
    seen = []
    hook = run.guide.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    try:
        for mode in (True, False):
            run.guide.train(mode)
            run.model.train(mode)
            pyrovae.features(run, run.data.x_test[:5])
            assert run.guide.training is mode and run.model.training is mode
    finally:
        hook.remove()
        run.guide.eval()
        run.model.eval()
    assert seen and not any(seen)  # eval mode while encoding


def fa_pair(run, model_name: str, guide_name: str):
    """The run with an untrained FA-type pair on its data (random loadings, noise and mean)."""
    spec = ModelSpec(x_dim=64, latent_dim=3, num_data=run.data.x_train.shape[0])
    model = MODELS[model_name](spec)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter))
    return dataclasses.replace(run, model=model, guide=GUIDES[guide_name](spec, model))


def test_fa_features_are_the_exact_posterior_mean(run):
    fa = fa_pair(run, "fa", "exact-posterior")
    W, mu, psi = (t.numpy() for t in fa.model.parameters_f64())
    x = fa.data.x_test.double().numpy()
    # p(z | x) = N(M^-1 W^T Psi^-1 (x - mu), M^-1) with M = I + W^T Psi^-1 W (Bishop 12.66).
    precision = np.eye(3) + W.T @ (W / psi[:, None])
    expected = np.linalg.solve(precision, (W / psi[:, None]).T @ (x - mu).T).T
    got = pyrovae.features(fa, fa.data.x_test).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_global_latents_are_fixed_once_for_all_batches(run):
    bayesian = fa_pair(run, "bayesian-fa", "bayesian-fa")
    x = run.data.x_test[:70]
    pyro.set_rng_seed(1)
    whole = pyrovae.features(bayesian, x)
    pyro.set_rng_seed(1)
    batched = pyrovae.features(bayesian, x, batch_size=7)  # W drawn per batch would differ
    torch.testing.assert_close(batched, whole, rtol=0, atol=1e-6)
    # The plug-in W depends on the draws (so the equality above is not trivially true).
    pyro.set_rng_seed(2)
    other = pyrovae.features(bayesian, x)
    assert 0 < (other - whole).abs().max() < 0.5 * whole.abs().max()


@pytest.mark.parametrize(
    "rows, words",
    [
        (torch.rand(5, 63), ["(5, 63)", "64 values", "digits"]),
        (torch.full((5, 64), float("nan")), ["320 NaN"]),
        (255 * torch.rand(5, 64), ["[0, 1]", "Bernoulli", "digits"]),
        (np.array([["a"] * 64]), ["array of numbers"]),
    ],
)
def test_rows_the_model_cannot_take_are_one_line_errors(run, rows, words):
    with pytest.raises(PyrovaeError) as caught:
        pyrovae.features(run, rows)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


# ----------------------------------------------------------------------------- the probe


def by_hand(train, y_train, rows, test, y_test) -> float:
    with threadpool_limits(1, user_api="blas"):  # as the probe fits (spinning BLAS threads)
        scaler = StandardScaler().fit(train[rows])
        inputs = scaler.transform(train[rows])
        classifier = LogisticRegression(max_iter=1000).fit(inputs, y_train[rows])
    return float(classifier.score(scaler.transform(test), y_test))


def test_probe_accuracies_are_sklearn_fitted_by_hand_on_the_same_rows(run):
    out = pyrovae.linear_probe(run, labels=(100, 1000, "all"), seed=3, write=False)
    data = run.data
    x_train, x_test = data.x_train, data.x_test_gray  # gray levels under dynamic binarization
    with torch.no_grad():
        z_train, z_test = run.guide.encode(x_train)[0].numpy(), run.guide.encode(x_test)[0].numpy()
    y_train, y_test = data.y_train.numpy(), data.y_test.numpy()
    assert [r["labels"] for r in out["results"]] == [100, 1000, "all"]
    for result in out["results"]:
        if result["labels"] == "all":
            rows = np.arange(len(y_train))
        else:
            rows = balanced_label_split(data.y_train, result["labels"], 10, seed=3)[0].numpy()
            assert np.bincount(y_train[rows]).tolist() == [result["labels"] // 10] * 10
        assert result["num_labels"] == len(rows)
        latent = by_hand(z_train, y_train, rows, z_test, y_test)
        pixel = by_hand(x_train.numpy(), y_train, rows, x_test.numpy(), y_test)
        assert result["latent_accuracy"] == pytest.approx(latent, abs=1e-12), result
        assert result["pixel_accuracy"] == pytest.approx(pixel, abs=1e-12), result
    assert (out["latent_dim"], out["pixel_dim"]) == (8, 64)
    assert (out["num_train"], out["num_test"], out["rows"]) == (1293, 360, "gray levels")
    last = out["results"][-1]
    # Logistic regression on the digits' pixels is a known strong baseline; the 8-d latent of a
    # 5-epoch VAE already separates the classes far better than chance (0.1).
    assert last["pixel_accuracy"] > 0.9
    assert last["latent_accuracy"] > 0.5


def test_binarized_probe_uses_the_fixed_binarization(run):
    out = pyrovae.linear_probe(run, labels=("all",), binarized=True, write=False)
    data = run.data
    x_train = data.training_rows(data.x_train.shape[0])
    assert set(x_train.unique().tolist()) == {0.0, 1.0}
    rows = np.arange(len(data.y_train))
    pixel = by_hand(
        x_train.numpy(), data.y_train.numpy(), rows, data.x_test.numpy(), data.y_test.numpy()
    )
    assert out["rows"] == "one fixed binarization"
    assert out["results"][0]["pixel_accuracy"] == pytest.approx(pixel, abs=1e-12)


def test_label_counts_above_the_training_rows_are_skipped(run):
    out = pyrovae.linear_probe(run, labels=["100", 5000, "all", 100], write=False)
    assert [r["labels"] for r in out["results"]] == [100, "all"]
    assert out["notes"] == ["skipped 5000 labels: more than the 1293 training rows"]


@pytest.mark.parametrize(
    "labels, words",
    [((0,), ["positive"]), (("many",), ["'many'"]), ((105,), ["105", "10 classes"]), ((), [])],
)
def test_bad_label_counts_are_one_line_errors(run, labels, words):
    with pytest.raises(PyrovaeError) as caught:
        pyrovae.linear_probe(run, labels=labels, write=False)
    assert "\n" not in str(caught.value) and "--labels" in str(caught.value)
    for word in words:
        assert word in str(caught.value)


def test_a_data_set_without_labels_is_refused(tmp_path):
    spiral = quiet_train(dataset="spiral", epochs=1, latent_dim=1, out=str(tmp_path / "s"))
    assert pyrovae.features(spiral, spiral.data.x_test).shape == (500, 1)
    with pytest.raises(PyrovaeError, match="spiral has no labels"):
        pyrovae.linear_probe(spiral)
    code = features_main([str(tmp_path / "s")])
    assert code == 2
    assert not (tmp_path / "s" / "features.json").exists()


# ----------------------------------------------------------------------------- the command


def test_command_prints_the_table_and_writes_features_json(digits_run, capsys):
    assert features_main([str(digits_run), "--labels", "100", "all", "--seed", "1"]) == 0
    printed = capsys.readouterr().out.splitlines()
    saved = json.loads((digits_run / "features.json").read_text())
    assert saved["seed"] == 1 and saved["dataset"] == "digits"
    assert [r["labels"] for r in saved["results"]] == [100, "all"]
    for result, line in zip(saved["results"], printed[3:5], strict=True):
        labels = "100" if result["labels"] == 100 else "all (1293)"
        expected = [*labels.split(), f"{result['latent_accuracy']:.4f}"]
        assert line.split() == [*expected, f"{result['pixel_accuracy']:.4f}"]
    assert "latent means" in printed[1] and "raw pixels" in printed[1]
    assert printed[-1].endswith("features.json")
    assert not [p for p in digits_run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["nowhere"], ["no run folder"]),
        (["RUN", "--labels", "many"], ["--labels", "'many'"]),
        (["RUN", "--labels", "105"], ["--labels 105", "10 classes"]),
        (["RUN", "--max-iter", "0"], ["--max-iter"]),
        (["RUN", "--seed", "x"], ["--seed"]),
    ],
)
def test_command_errors_are_one_line(digits_run, tmp_path, capsys, argv, words):
    places = {"RUN": str(digits_run), "nowhere": str(tmp_path / "nowhere")}
    try:
        code = features_main([places.get(a, a) for a in argv])
    except SystemExit as exit_:  # argparse's errors (OneLineErrorParser) exit
        code = exit_.code
    assert_one_error_line(code, capsys.readouterr().err, *words)
