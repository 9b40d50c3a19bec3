"""Every plotting function, every data-kind branch: a real, non-blank PNG comes out."""

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from pyrovae import plots
from pyrovae.errors import PyrovaeError

IMAGE_SHAPE = (8, 8)


def assert_png(path, expected) -> None:
    """The returned Path is the destination and holds a readable, non-blank PNG."""
    assert isinstance(path, Path)
    assert path == Path(expected)
    assert path.read_bytes()[:4] == b"\x89PNG"
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert np.ptp(pixels[..., :3]) > 0


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def data(kind: str, n: int, gen) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """(n, D) random data for one kind plus the image_shape the functions expect."""
    if kind == "image":
        return torch.rand(n, 64, generator=gen), IMAGE_SHAPE
    if kind == "points":
        return torch.randn(n, 2, generator=gen), None
    return torch.randn(n, 5, generator=gen), None


KINDS = ["image", "points", "vector"]


def test_training_curves_all_series(tmp_path):
    metrics = [
        {
            "epoch": e,
            "train_elbo": -100.0 + 5 * e,
            "val_elbo": -102.0 + 4 * e,
            "test_elbo": None if e < 3 else -101.0,
            "seconds": 1.5,
        }
        for e in range(1, 6)
    ]
    out = tmp_path / "curves.png"
    assert_png(plots.plot_training_curves(metrics, out), out)


def test_training_curves_single_epoch_with_nan(tmp_path):
    metrics = [{"epoch": 1, "train_elbo": -90.0, "val_elbo": float("nan")}]
    out = tmp_path / "one.png"
    assert_png(plots.plot_training_curves(metrics, str(out)), out)


def test_training_curves_empty_raises(tmp_path):
    with pytest.raises(PyrovaeError):
        plots.plot_training_curves([], tmp_path / "x.png")


@pytest.mark.parametrize("kind", KINDS)
def test_reconstructions(tmp_path, gen, kind):
    x, shape = data(kind, 20, gen)
    x_recon = x + 0.1 * torch.randn(x.shape, generator=gen)
    out = tmp_path / "sub" / f"recon_{kind}.png"
    assert_png(plots.plot_reconstructions(x, x_recon, shape, out, max_items=6), out)


def test_reconstructions_accept_numpy(tmp_path, gen):
    x, shape = data("image", 4, gen)
    out = tmp_path / "recon_np.png"
    assert_png(plots.plot_reconstructions(x.numpy(), x.numpy(), shape, out), out)


def test_reconstructions_shape_errors(tmp_path, gen):
    x, _ = data("image", 4, gen)
    with pytest.raises(PyrovaeError):
        plots.plot_reconstructions(x, x[:3], IMAGE_SHAPE, tmp_path / "a.png")
    with pytest.raises(PyrovaeError):
        plots.plot_reconstructions(x, x, (7, 7), tmp_path / "b.png")


@pytest.mark.parametrize("kind", KINDS)
def test_samples(tmp_path, gen, kind):
    samples, shape = data(kind, 10, gen)
    out = tmp_path / f"samples_{kind}.png"
    assert_png(plots.plot_samples(samples, shape, out), out)


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("labelled", [True, False])
def test_latent_space(tmp_path, gen, k, labelled):
    z = torch.randn(60, k, generator=gen)
    labels = torch.randint(0, 4, (60,), generator=gen) if labelled else None
    out = tmp_path / f"latent_{k}_{labelled}.png"
    assert_png(plots.plot_latent_space(z, labels, out), out)


def test_latent_space_many_classes_numpy(tmp_path):
    rng = np.random.default_rng(0)
    z, labels = rng.normal(size=(80, 3)), rng.integers(0, 15, size=80)
    out = tmp_path / "latent_many.png"
    assert_png(plots.plot_latent_space(z, labels, out), out)


def test_project_2d_matches_pca_variance():
    rng = np.random.default_rng(0)
    stds = np.array([5.0, 3.0, 1.0, 0.1])
    z = rng.normal(size=(4000, 4)) * stds
    xy, ratios = plots.project_2d(torch.as_tensor(z))
    assert xy.shape == (4000, 2)
    total = (stds**2).sum()
    np.testing.assert_allclose(ratios, [25 / total, 9 / total], rtol=0.05)
    reference = PCA(n_components=2).fit(z)
    np.testing.assert_allclose(ratios, reference.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(np.abs(xy), np.abs(reference.transform(z)), atol=1e-8)


def test_project_2d_passes_2d_through():
    z = np.arange(10.0).reshape(5, 2)
    xy, ratios = plots.project_2d(z)
    np.testing.assert_array_equal(xy, z)
    assert ratios is None


@pytest.mark.parametrize("kind", KINDS)
def test_interpolation(tmp_path, gen, kind):
    decoded, shape = data(kind, 7, gen)
    out = tmp_path / f"interp_{kind}.png"
    assert_png(plots.plot_interpolation(decoded, shape, out), out)


def test_spiral(tmp_path, gen):
    t = torch.linspace(0, 3 * np.pi, 100)
    curve = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)
    x = curve + 0.3 * torch.randn(curve.shape, generator=gen)
    out = tmp_path / "spiral.png"
    assert_png(plots.plot_spiral(x, curve, curve[::5], out, true_curve=curve.numpy()), out)


@pytest.mark.parametrize("normalize", [False, True])
def test_image_grid(tmp_path, gen, normalize):
    images = 10 * torch.randn(12, 64, generator=gen)
    out = tmp_path / "grid.png"
    assert_png(
        plots.plot_image_grid(images, IMAGE_SHAPE, out, title="g", nrow=4, normalize=normalize),
        out,
    )


def test_image_grid_accepts_3d_batch(tmp_path, gen):
    out = tmp_path / "grid3d.png"
    assert_png(plots.plot_image_grid(torch.rand(5, 8, 8, generator=gen), IMAGE_SHAPE, out), out)


def test_no_pyplot_figures_leak(tmp_path, gen):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    x, shape = data("image", 4, gen)
    plots.plot_samples(x, shape, tmp_path / "s.png")
    plots.plot_latent_space(torch.randn(10, 2, generator=gen), None, tmp_path / "l.png")
    assert plt.get_fignums() == before
