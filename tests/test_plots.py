"""What every figure draws, read back from its builder's ``Figure``; the writers write it.

Image grids are compared pixel by pixel with grids placed by hand (``tiled``), points and
lines with the arrays given, legends, titles and axis labels with their expected text.
"""

import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.metrics import confusion_matrix

from pyrovae import plots
from pyrovae.errors import PyrovaeError
from pyrovae.plots import core, diagnostics, ssvae

IMAGE_SHAPE = (8, 8)
PAD = 2  # white pixels between and around the tiles of a grid


# ----------------------------------------------------------------------------- helpers


def tiled(images, nrow: int, normalize: bool = False) -> np.ndarray:
    """The grid expected on screen, placed by hand: ``images (n, h, w)`` in row-major order,
    ``nrow`` per row, ``PAD`` white pixels between and around, white where a row is short.
    Values clamped to [0, 1], or each image rescaled to [0, 1] with ``normalize``."""
    images = np.asarray(images, dtype=np.float64)
    n, h, w = images.shape
    cols = min(nrow, n)
    grid = np.ones((math.ceil(n / cols) * (h + PAD) + PAD, cols * (w + PAD) + PAD))
    for k, image in enumerate(images):
        if normalize:
            image = (image - image.min()) / (image.max() - image.min())
        r, c = divmod(k, cols)
        top, left = PAD + r * (h + PAD), PAD + c * (w + PAD)
        grid[top : top + h, left : left + w] = np.clip(image, 0.0, 1.0)
    return grid


def as_images(rows) -> np.ndarray:
    """(n, 64) rows -> (n, 8, 8) images."""
    return np.asarray(rows, dtype=np.float64).reshape(-1, *IMAGE_SHAPE)


def assert_shows_grid(fig: Figure, expected: np.ndarray, title: str) -> None:
    """One axes showing exactly ``expected`` in gray on a fixed [0, 1] scale, no ticks."""
    (ax,) = fig.axes
    (image,) = ax.images
    np.testing.assert_allclose(image.get_array(), expected, rtol=1e-5, atol=1e-6)
    assert image.get_clim() == (0.0, 1.0)
    assert image.get_cmap().name == "gray"
    assert ax.get_title() == title
    assert list(ax.get_xticks()) == []


def legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def points(collection) -> np.ndarray:
    return np.asarray(collection.get_offsets())


def main_axes(fig: Figure) -> list:
    """The figure's axes without its color bars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def colorbar_labels(fig: Figure) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]


def keep_figures(monkeypatch, module) -> dict[str, Figure]:
    """Make ``module``'s writers also keep each figure they write (by file name), since
    ``save_figure`` clears a figure once written: for tests of figures drawn by a run."""
    kept = {}

    def save_and_keep(fig: Figure, path) -> Path:
        path = Path(path)
        kept[path.name] = fig
        fig.savefig(path, dpi=core.DPI, format="png")
        return path

    monkeypatch.setattr(module, "save_figure", save_and_keep)
    return kept


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


# ----------------------------------------------------------------------------- core


def test_as_matrix_shapes_and_errors():
    assert core.as_matrix(torch.arange(3), "a").shape == (3, 1)
    assert core.as_matrix(np.zeros((4, 2, 3)), "a").shape == (4, 6)
    assert core.as_matrix([[1, 2]], "a").dtype == np.float64
    with pytest.raises(PyrovaeError, match="images must have shape"):
        core.as_matrix(np.zeros((0, 3)), "images")


def test_tile_images_places_each_image(gen):
    images = 2 * torch.rand(5, 64, generator=gen) - 0.5  # half the pixels need clamping
    grid = core.tile_images(images.numpy(), IMAGE_SHAPE, nrow=2)
    np.testing.assert_allclose(grid, tiled(as_images(images), 2), atol=1e-6)
    normalized = core.tile_images(images.numpy(), IMAGE_SHAPE, nrow=2, normalize=True)
    np.testing.assert_allclose(normalized, tiled(as_images(images), 2, True), atol=1e-6)


def test_metric_series_reads_missing_as_nan():
    rows = [{"a": 1}, {"a": None}, {}, {"a": float("nan")}, {"a": "2.5"}]
    np.testing.assert_array_equal(core.metric_series(rows, "a"), [1, np.nan, np.nan, np.nan, 2.5])


# ----------------------------------------------------------------------------- training curves


def test_training_curves_draw_each_series_where_it_has_values():
    metrics = [
        {
            "epoch": e,
            "train_elbo": -100.0 + 5 * e,
            "val_elbo": -102.0 + 4 * e,
            "test_elbo": None if e < 3 else -101.0 + e,
            "seconds": 1.5,
        }
        for e in range(1, 6)
    ]
    fig = plots.training_curves_figure(metrics)
    (ax,) = fig.axes
    train, val, test = ax.lines
    np.testing.assert_array_equal(train.get_xydata(), [[e, -100 + 5 * e] for e in range(1, 6)])
    np.testing.assert_array_equal(val.get_xydata(), [[e, -102 + 4 * e] for e in range(1, 6)])
    np.testing.assert_array_equal(test.get_xydata(), [[3, -98], [4, -97], [5, -96]])
    assert legend(ax) == ["train", "validation", "test"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "ELBO (nats / example)")
    assert ax.get_title() == "ELBO per example"


def test_training_curves_leave_out_a_series_with_no_value():
    fig = plots.training_curves_figure([{"epoch": 1, "train_elbo": -90.0, "val_elbo": math.nan}])
    (ax,) = fig.axes
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_xydata(), [[1, -90]])
    assert legend(ax) == ["train"]


def test_training_curves_empty_raises(tmp_path):
    with pytest.raises(PyrovaeError):
        plots.plot_training_curves([], tmp_path / "x.png")


def test_training_curves_mark_the_best_epoch_and_draw_the_kl_weight():
    betas = [0.25, 0.5, 0.75, 1.0, 1.0]
    metrics = [
        {"epoch": e, "train_elbo": -90.0 + e, "val_elbo": -91.0 + e, "beta": b}
        for e, b in enumerate(betas, start=1)
    ]
    fig = plots.training_curves_figure(metrics, best_epoch=3)
    ax, ax_beta = fig.axes
    *_, best = ax.lines
    np.testing.assert_array_equal(best.get_xdata(), [3, 3])
    assert legend(ax) == ["train", "validation", "best epoch 3"]
    kl, best_below = ax_beta.lines
    np.testing.assert_array_equal(kl.get_xydata(), [[e, b] for e, b in enumerate(betas, 1)])
    np.testing.assert_array_equal(best_below.get_xdata(), [3, 3])
    assert ax_beta.get_ylabel() == "KL weight" and ax_beta.get_xlabel() == "epoch"
    assert ax_beta.get_ylim()[0] == 0 and ax_beta.get_ylim()[1] >= 1


def test_training_curves_leave_out_the_kl_panel_when_the_weight_is_one():
    metrics = [{"epoch": e, "train_elbo": -90.0 + e, "beta": 1.0} for e in (1, 2)]
    (ax,) = plots.training_curves_figure(metrics).axes
    (line,) = ax.lines  # no best-epoch line without a best epoch
    assert ax.get_xlabel() == "epoch"


def test_training_curves_draw_a_constant_kl_weight_other_than_one():
    metrics = [{"epoch": e, "train_elbo": -90.0 + e, "beta": 4.0} for e in (1, 2)]
    _, ax_beta = plots.training_curves_figure(metrics).axes
    (kl,) = ax_beta.lines
    np.testing.assert_array_equal(kl.get_xydata(), [[1, 4.0], [2, 4.0]])


# ----------------------------------------------------------------------------- reconstructions


def test_reconstructions_of_images_two_rows_of_the_first_items(gen):
    x = torch.rand(20, 64, generator=gen)
    x_recon = x + 0.3 * torch.randn(x.shape, generator=gen)  # some pixels outside [0, 1]
    fig = plots.reconstructions_figure(x, x_recon, IMAGE_SHAPE, max_items=6)
    expected = tiled(as_images(torch.cat([x[:6], x_recon[:6]])), nrow=6)
    assert_shows_grid(fig, expected, "Reconstructions")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["input", "reconstruction"]
    np.testing.assert_allclose(ax.get_yticks(), [expected.shape[0] / 4, 3 * expected.shape[0] / 4])


def test_reconstructions_of_points_join_every_point_to_its_reconstruction(gen):
    x = torch.randn(20, 2, generator=gen)
    x_recon = x + 0.1 * torch.randn(x.shape, generator=gen)
    fig = plots.reconstructions_figure(x, x_recon, None, max_items=6)  # points: all 20 drawn
    (ax,) = fig.axes
    segments, inputs, outputs = ax.collections
    np.testing.assert_allclose(np.stack(segments.get_segments()), np.stack([x, x_recon], 1))
    np.testing.assert_allclose(points(inputs), x)
    np.testing.assert_allclose(points(outputs), x_recon)
    assert legend(ax) == ["input", "reconstruction"]
    assert ax.get_title() == "Reconstructions"


def test_reconstructions_of_vectors_two_heat_maps_on_one_scale(gen):
    x = torch.randn(20, 5, generator=gen)
    x_recon = 2 * x
    fig = plots.reconstructions_figure(x, x_recon, None, max_items=6)
    ax_in, ax_out = main_axes(fig)
    assert len(fig.axes) == 3  # and one color bar
    np.testing.assert_allclose(ax_in.images[0].get_array(), x[:6].double())
    np.testing.assert_allclose(ax_out.images[0].get_array(), x_recon[:6].double())
    both = torch.cat([x[:6], x_recon[:6]])
    for ax in (ax_in, ax_out):
        np.testing.assert_allclose(ax.images[0].get_clim(), [both.min(), both.max()], rtol=1e-6)
    assert (ax_in.get_title(), ax_out.get_title()) == ("input", "reconstruction")
    assert (ax_in.get_xlabel(), ax_in.get_ylabel()) == ("dimension", "item")


def test_reconstructions_accept_numpy(gen):
    x = torch.rand(4, 64, generator=gen)
    fig = plots.reconstructions_figure(x.numpy(), x.numpy(), IMAGE_SHAPE)
    assert_shows_grid(fig, tiled(as_images(torch.cat([x, x])), nrow=4), "Reconstructions")


def test_reconstructions_shape_errors(tmp_path, gen):
    x = torch.rand(4, 64, generator=gen)
    with pytest.raises(PyrovaeError, match="same shape"):
        plots.plot_reconstructions(x, x[:3], IMAGE_SHAPE, tmp_path / "a.png")
    with pytest.raises(PyrovaeError, match="49 pixels"):
        plots.plot_reconstructions(x, x, (7, 7), tmp_path / "b.png")


# ----------------------------------------------------------------------------- samples


def test_samples_of_images_square_grid(gen):
    samples = torch.rand(10, 64, generator=gen)
    fig = plots.samples_figure(samples, IMAGE_SHAPE)
    assert_shows_grid(fig, tiled(as_images(samples), nrow=4), "Samples from the prior")


def test_samples_of_points_scatter(gen):
    samples = torch.randn(10, 2, generator=gen)
    fig = plots.samples_figure(samples, None, title="prior")
    (ax,) = fig.axes
    (scatter,) = ax.collections
    np.testing.assert_allclose(points(scatter), samples)
    assert ax.get_title() == "prior"


def test_samples_of_vectors_heat_map(gen):
    samples = torch.randn(10, 5, generator=gen)
    fig = plots.samples_figure(samples, None)
    (ax,) = main_axes(fig)
    np.testing.assert_allclose(ax.images[0].get_array(), samples.double())
    assert ax.get_title() == "Samples from the prior"
    assert len(colorbar_labels(fig)) == 1


# ----------------------------------------------------------------------------- latent space


def test_latent_space_1d_labeled_strip_per_class(gen):
    z = torch.randn(60, 1, generator=gen)
    labels = torch.randint(0, 4, (60,), generator=gen)
    (ax,) = plots.latent_space_figure(z, labels).axes
    (strip,) = ax.collections
    xy = points(strip)
    np.testing.assert_allclose(xy[:, 0], z[:, 0])
    np.testing.assert_array_equal(np.round(xy[:, 1]), labels)
    assert np.abs(xy[:, 1] - labels.numpy()).max() <= 0.25
    tab10 = colormaps["tab10"]
    np.testing.assert_allclose(
        strip.get_facecolors()[:, :3], [tab10(c)[:3] for c in labels.tolist()]
    )
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z", "class")
    assert ax.get_title() == "Latent space (posterior means)"


def test_latent_space_1d_unlabeled_histogram(gen):
    z = torch.randn(60, 1, generator=gen)
    (ax,) = plots.latent_space_figure(z, None).axes
    heights = [bar.get_height() for bar in ax.patches]
    assert len(heights) == int(math.sqrt(60))  # bins: sqrt(n) within [5, 50]
    assert sum(heights) == 60
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z", "count")


def test_latent_space_2d_one_scatter_and_legend_entry_per_class(gen):
    z = torch.randn(60, 2, generator=gen)
    labels = torch.randint(0, 4, (60,), generator=gen)
    (ax,) = plots.latent_space_figure(z, labels, title="t").axes
    assert len(ax.collections) == 4
    for c, scatter in enumerate(ax.collections):
        np.testing.assert_allclose(points(scatter), z[labels == c])
    assert legend(ax) == ["0", "1", "2", "3"]
    assert ax.get_legend().get_title().get_text() == "class"
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("z[0]", "z[1]", "t")


def test_latent_space_2d_unlabeled_one_scatter(gen):
    z = torch.randn(60, 2, generator=gen)
    (ax,) = plots.latent_space_figure(z, None).axes
    (scatter,) = ax.collections
    np.testing.assert_allclose(points(scatter), z)
    assert ax.get_legend() is None


def test_latent_space_more_dims_principal_components(gen):
    z = torch.randn(60, 5, generator=gen) * torch.tensor([4.0, 2.0, 1.0, 0.5, 0.1])
    (ax,) = plots.latent_space_figure(z, None).axes
    pca = PCA(n_components=2).fit(z.double().numpy())
    np.testing.assert_allclose(
        np.abs(points(ax.collections[0])), np.abs(pca.transform(z.double().numpy())), atol=1e-8
    )
    share = 100 * pca.explained_variance_ratio_
    assert ax.get_xlabel() == f"PC1 ({share[0]:.0f}% var)"
    assert ax.get_ylabel() == f"PC2 ({share[1]:.0f}% var)"
    assert ax.get_title() == "Latent space (posterior means), PCA of 5 dims"


def test_latent_space_many_classes_color_bar_not_legend():
    rng = np.random.default_rng(0)
    z, labels = rng.normal(size=(80, 3)), rng.integers(0, 15, size=80)
    fig = plots.latent_space_figure(z, labels)
    (ax,) = main_axes(fig)
    (scatter,) = ax.collections
    np.testing.assert_array_equal(scatter.get_array(), labels)
    assert ax.get_legend() is None
    assert colorbar_labels(fig) == ["class"]


def test_latent_space_label_count_must_match():
    with pytest.raises(PyrovaeError, match="labels has 3 entries"):
        plots.latent_space_figure(np.zeros((4, 2)), [0, 1, 2])


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


# ----------------------------------------------------------------------------- traversals


def test_traversals_one_labeled_row_per_dimension_one_column_per_value(gen):
    images = torch.rand(3 * 5, 64, generator=gen)
    values = (-2.0, -1.0, 0.0, 1.0, 2.0)
    fig = plots.traversals_figure(images, IMAGE_SHAPE, ["z[4]", "z[0]", "z[2]"], values)
    (ax,) = fig.axes
    (image,) = ax.images
    np.testing.assert_allclose(image.get_array(), tiled(as_images(images), nrow=5), atol=1e-6)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["z[4]", "z[0]", "z[2]"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["-2.0", "-1.0", "+0.0", "+1.0", "+2.0"]
    # each tick sits at the middle of its row / column of tiles
    # pixel i spans [i - 0.5, i + 0.5]; the tiles of row 0 are pixels 2..9, of row 1 12..19
    np.testing.assert_allclose(ax.get_yticks(), [5.5, 15.5, 25.5])
    np.testing.assert_allclose(ax.get_xticks(), [5.5, 15.5, 25.5, 35.5, 45.5])


def test_traversals_need_rows_times_values_images(gen):
    with pytest.raises(PyrovaeError, match="2 x 3 images, got 5"):
        plots.traversals_figure(
            torch.rand(5, 64, generator=gen), IMAGE_SHAPE, ["a", "b"], (0, 1, 2)
        )


# ----------------------------------------------------------------------------- interpolation


def test_interpolation_of_images_one_row(gen):
    decoded = torch.rand(7, 64, generator=gen)
    fig = plots.interpolation_figure(decoded, IMAGE_SHAPE)
    expected = tiled(as_images(decoded), nrow=7)
    assert expected.shape == (8 + 2 * PAD, 7 * (8 + PAD) + PAD)
    assert_shows_grid(fig, expected, "Latent interpolation")


def test_interpolation_of_points_path_with_marked_ends(gen):
    decoded = torch.randn(7, 2, generator=gen)
    (ax,) = plots.interpolation_figure(decoded, None).axes
    (path,) = ax.lines
    np.testing.assert_allclose(path.get_xydata(), decoded)
    start, end = ax.collections
    np.testing.assert_allclose(points(start), decoded[:1])
    np.testing.assert_allclose(points(end), decoded[-1:])
    assert legend(ax) == ["start", "end"]


def test_interpolation_of_vectors_heat_map_one_row_per_step(gen):
    decoded = torch.randn(7, 5, generator=gen)
    fig = plots.interpolation_figure(decoded, None, title="walk")
    (ax,) = main_axes(fig)
    np.testing.assert_allclose(ax.images[0].get_array(), decoded.double())
    assert (ax.get_title(), ax.get_ylabel()) == ("walk", "step")


# ----------------------------------------------------------------------------- spiral


def spiral_data(gen, n: int = 100):
    t = torch.linspace(0, 3 * np.pi, n, dtype=torch.float64)
    curve = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)
    return curve + 0.3 * torch.randn(curve.shape, generator=gen, dtype=torch.float64), curve


def test_spiral_three_panels(gen):
    x, curve = spiral_data(gen)
    x_recon, path = 0.9 * x, curve[::5]
    fig = plots.spiral_figure(x, x_recon, path, true_curve=curve.numpy())
    ax_data, ax_rec, ax_path = main_axes(fig)
    assert [ax.get_title() for ax in main_axes(fig)] == [
        "data",
        "reconstructions",
        "decoded latent path",
    ]
    assert fig.get_suptitle() == "Spiral"
    np.testing.assert_allclose(points(ax_data.collections[0]), x)
    np.testing.assert_allclose(ax_data.lines[0].get_xydata(), curve)
    assert legend(ax_data) == ["true curve"]
    segments, inputs, outputs = ax_rec.collections
    np.testing.assert_allclose(np.stack(segments.get_segments()), np.stack([x, x_recon], 1))
    background, colored = ax_path.collections
    np.testing.assert_allclose(points(background), x)
    np.testing.assert_allclose(points(colored), path)
    np.testing.assert_allclose(colored.get_array(), np.linspace(0, 1, 20))
    np.testing.assert_allclose(ax_path.lines[0].get_xydata(), path)
    assert colorbar_labels(fig) == ["position along path"]


def test_spiral_without_true_curve_draws_no_curve(gen):
    x, curve = spiral_data(gen)
    ax_data = plots.spiral_figure(x, x, curve[::5], title="s").axes[0]
    assert len(ax_data.lines) == 0 and ax_data.get_legend() is None


def test_spiral_needs_2d_points(gen):
    with pytest.raises(PyrovaeError, match="2-D points"):
        plots.spiral_figure(np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((5, 2)))


def sweep_panel(title: str, scale: float) -> dict:
    s = np.linspace(-2.0, 2.0, 41)
    x = np.stack([np.arange(6.0), np.ones(6)], axis=1)
    return {
        "title": title,
        "x": x,
        "x_recon": scale * x,
        "points": np.stack([s, scale * s**2], axis=1),
        "s": s,
        "inside": np.abs(s) <= 1.0,
        "distance": np.exp(scale * s),
    }


def test_spiral_sweeps_one_row_of_three_panels_per_pair():
    panels = [sweep_panel("AE", 1.0), sweep_panel("VAE", 2.0)]
    curve = np.stack([np.linspace(0, 1, 30), np.linspace(1, 0, 30)], axis=1)
    fig = plots.spiral_sweeps_figure(panels, curve)
    assert len(fig.axes) == 6
    for row, panel in enumerate(panels):
        ax_rec, ax_sweep, ax_dist = fig.axes[3 * row : 3 * row + 3]
        inside = panel["inside"]
        assert ax_rec.get_title() == f"{panel['title']}: test data and reconstructions"
        np.testing.assert_allclose(points(ax_rec.collections[1]), panel["x"])
        np.testing.assert_allclose(points(ax_rec.collections[2]), panel["x_recon"])
        np.testing.assert_allclose(ax_sweep.lines[0].get_xydata(), curve)
        _, over, beyond = ax_sweep.collections
        np.testing.assert_allclose(points(over), panel["points"][inside])
        np.testing.assert_allclose(over.get_array(), np.linspace(0, 1, inside.sum()))
        np.testing.assert_allclose(points(beyond), panel["points"][~inside])
        assert legend(ax_sweep) == ["true curve", "beyond"]
        np.testing.assert_allclose(
            ax_dist.lines[0].get_xydata(), np.stack([panel["s"], panel["distance"]], 1)
        )
        (span,) = ax_dist.patches
        assert span.get_x() == pytest.approx(-1.0) and span.get_width() == pytest.approx(2.0)
        assert ax_dist.get_yscale() == "log"
        assert (ax_dist.get_xlabel(), ax_dist.get_ylabel()) == ("z", "distance to true curve")
        assert legend(ax_dist) == ["code range"]


# ----------------------------------------------------------------------------- image grids


@pytest.mark.parametrize("normalize", [False, True])
def test_image_grid_clamps_or_rescales_each_image(gen, normalize):
    images = 10 * torch.randn(12, 64, generator=gen)
    fig = plots.image_grid_figure(images, IMAGE_SHAPE, title="g", nrow=4, normalize=normalize)
    assert_shows_grid(fig, tiled(as_images(images), 4, normalize), "g")


def test_image_grid_accepts_3d_batch(gen):
    images = torch.rand(5, 8, 8, generator=gen)
    fig = plots.image_grid_figure(images, IMAGE_SHAPE)
    assert_shows_grid(fig, tiled(images, nrow=3), "")


def test_loadings_of_images_each_rescaled(gen):
    loadings = torch.randn(6, 64, generator=gen)
    fig = plots.loadings_figure(loadings, IMAGE_SHAPE, title="Loadings")
    assert_shows_grid(fig, tiled(as_images(loadings), 3, normalize=True), "Loadings")


def test_loadings_of_vectors_heat_map(gen):
    loadings = torch.randn(3, 5, generator=gen)
    fig = plots.loadings_figure(loadings, None, title="W")
    (ax,) = main_axes(fig)
    np.testing.assert_allclose(ax.images[0].get_array(), loadings.double())
    assert ax.get_title() == "W"
    assert len(colorbar_labels(fig)) == 1


# ----------------------------------------------------------------------------- ssvae figures


def test_analogies_top_row_sources_then_one_row_per_class(gen):
    sources = torch.rand(4, 64, generator=gen)
    generated = 1.5 * torch.rand(3, 4, 64, generator=gen)
    fig = ssvae.analogies_figure(sources, generated, IMAGE_SHAPE, title="A")
    expected = tiled(as_images(torch.cat([sources, generated.reshape(12, 64)])), nrow=4)
    assert expected.shape == (4 * (8 + PAD) + PAD, 4 * (8 + PAD) + PAD)
    assert_shows_grid(fig, expected, "A")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["input (z)", "y = 0", "y = 1", "y = 2"]
    with pytest.raises(PyrovaeError, match="generated must have shape"):
        ssvae.analogies_figure(sources, generated[:, :3], IMAGE_SHAPE)


def test_class_rows_one_labelled_row_of_images_per_class(gen):
    images = 1.5 * torch.rand(3, 5, 64, generator=gen) - 0.2  # clamped to [0, 1] on screen
    fig = ssvae.class_rows_figure(images, IMAGE_SHAPE, ["y = a", "y = b", "y = c"], "C", "z")
    expected = tiled(as_images(images.reshape(15, 64)), nrow=5)
    assert expected.shape == (3 * (8 + PAD) + PAD, 5 * (8 + PAD) + PAD)
    assert_shows_grid(fig, expected, "C")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["y = a", "y = b", "y = c"]
    row_height = expected.shape[0] / 3
    assert list(ax.get_yticks()) == pytest.approx([(i + 0.5) * row_height for i in range(3)])
    assert ax.get_xlabel() == "z"
    with pytest.raises(PyrovaeError, match="3 rows of images but 2 row labels"):
        ssvae.class_rows_figure(images, IMAGE_SHAPE, ["a", "b"])
    with pytest.raises(PyrovaeError, match="must have shape"):
        ssvae.class_rows_figure(images[0], IMAGE_SHAPE, ["a"])


def test_confusion_matrix_shares_counts_and_accuracy():
    y_true = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = torch.tensor([0, 0, 1, 1, 1, 2, 0, 2, 2])
    fig = ssvae.confusion_matrix_figure(y_true, y_pred, num_classes=4)
    (ax,) = main_axes(fig)
    counts = confusion_matrix(y_true, y_pred, labels=range(4))
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)  # class 3: a row of zeros
    np.testing.assert_allclose(ax.images[0].get_array(), share)
    shown = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert shown == {((j, i), str(counts[i, j])) for i, j in np.argwhere(counts)}
    assert ax.get_title() == "Confusion matrix (accuracy 0.778)"  # 7 of 9
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert colorbar_labels(fig) == ["share of the true class"]
    with pytest.raises(PyrovaeError, match="differ in length"):
        ssvae.confusion_matrix_figure(y_true, y_pred[:3], num_classes=4)


ACCURACY_METRICS = [
    {"epoch": 1, "val_accuracy": 0.5, "test_accuracy": 0.45},
    {"epoch": 2, "val_accuracy": 0.6, "test_accuracy": None},
    {"epoch": 3, "val_accuracy": 0.7, "test_accuracy": 0.65},
]


def test_accuracy_curves_with_baseline_and_kept_epoch():
    fig = ssvae.accuracy_curves_figure(ACCURACY_METRICS, baseline=0.55, best_epoch=3)
    (ax,) = fig.axes
    val, test, baseline, kept = ax.lines
    np.testing.assert_allclose(val.get_xydata(), [[1, 0.5], [2, 0.6], [3, 0.7]])
    np.testing.assert_allclose(test.get_xydata(), [[1, 0.45], [3, 0.65]])
    np.testing.assert_allclose(baseline.get_ydata(), [0.55, 0.55])
    np.testing.assert_allclose(kept.get_xdata(), [3, 3])
    expected = ["M2 validation", "M2 test", "baseline test (labels only)", "kept epoch 3"]
    assert legend(ax) == expected
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "accuracy")


def test_accuracy_curves_without_baseline_or_kept_epoch():
    (ax,) = ssvae.accuracy_curves_figure(ACCURACY_METRICS, baseline=math.nan).axes
    assert len(ax.lines) == 2
    assert legend(ax) == ["M2 validation", "M2 test"]


# ----------------------------------------------------------------------------- diagnostics


def test_khat_points_thresholds_and_shares_above():
    khat = np.array([-np.inf, 0.1, 0.3, 0.55, 0.65, 0.75, 0.95, 0.2])
    (ax,) = diagnostics.khat_figure(khat).axes
    floor = -0.1  # 0.1 below the smallest finite k-hat or 0, whichever is lower
    np.testing.assert_allclose(
        points(ax.collections[0]), np.stack([np.arange(8), np.where(khat > -1, khat, floor)], 1)
    )
    assert [line.get_ydata()[0] for line in ax.lines] == [0.5, 0.7]
    assert legend(ax) == ["k = 0.5: 50.0% above", "k = 0.7: 25.0% above"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("data point (test row)", "Pareto k-hat")
    with pytest.raises(PyrovaeError, match="khat must have shape"):
        diagnostics.khat_figure(np.zeros((2, 2)))


def test_iwae_vs_k_error_bars_and_elbo_line():
    ks, estimates, errors = [1, 10, 100], [-60.0, -58.0, -57.5], [0.5, 0.3, 0.2]
    (ax,) = diagnostics.iwae_vs_k_figure(ks, estimates, errors, elbo=-61.0).axes
    (bars,) = ax.containers
    data_line, _, (whiskers,) = bars.lines
    np.testing.assert_allclose(data_line.get_xydata(), np.stack([ks, estimates], 1))
    np.testing.assert_allclose(
        np.stack(whiskers.get_segments()),
        [[[k, e - s], [k, e + s]] for k, e, s in zip(ks, estimates, errors, strict=True)],
    )
    assert ax.get_xscale() == "log"
    assert sorted(legend(ax)) == ["IWAE bound, mean over points", "test ELBO of the run (-61.00)"]
    assert ax.get_xlabel() == "importance samples K"


def test_kl_per_dim_sorted_bars_gray_when_inactive():
    kl = {"z": [0.1, 2.0, 0.5, 0.0], "y": None, "w": [1.0, 3.0]}
    variance = {"z": [0.5, 0.9, 0.3, 0.001]}
    fig = diagnostics.kl_per_dim_figure(kl, variance)
    ax_z, ax_w = fig.axes  # the site without a per-dimension KL has no panel
    assert [bar.get_height() for bar in ax_z.patches] == [2.0, 0.5, 0.1, 0.0]
    assert [t.get_text() for t in ax_z.get_xticklabels()] == ["1", "2", "0", "3"]
    colors = [bar.get_facecolor() for bar in ax_z.patches]
    assert colors == [to_rgba("tab:blue")] * 3 + [to_rgba("lightgray")]
    assert ax_z.get_title() == (
        "z: KL per dimension, total 2.60 nats; 3 of 4 active (gray: inactive)"
    )
    assert [bar.get_height() for bar in ax_w.patches] == [3.0, 1.0]
    assert ax_w.get_title().endswith("2 of 2 active (gray: inactive)")
    assert ax_z.get_ylabel() == "KL (nats / example)"


def test_nuts_vs_q_columns_are_the_dimensions_that_differ_most():
    rng = np.random.default_rng(0)
    nuts = rng.normal(size=(2, 200, 2, 3))
    guide = rng.normal(size=(1, 300, 2, 3))
    guide[..., 0, 2] += 3.0  # point 7: z[2] then z[1] (shifted less)
    guide[..., 0, 1] += 1.5
    guide[..., 1, 0] -= 2.0  # point 11: z[0] first
    fig = diagnostics.nuts_vs_q_figure(nuts, guide, rows=[7, 11], site="z", max_dims=2)
    assert len(fig.axes) == 4
    titles = [ax.get_title().split(":")[0] for ax in fig.axes]
    assert titles[:3] == ["point 7, z[2]", "point 7, z[1]", "point 11, z[0]"]
    p, q = nuts.reshape(-1, 2, 3)[:, 0, 2], guide.reshape(-1, 2, 3)[:, 0, 2]
    assert fig.axes[0].get_title().endswith(f"{abs(q.mean() - p.mean()) / p.std():.2f} sd")
    first = fig.axes[0]
    assert legend(first) == ["NUTS", "q"]
    (nuts_bars,) = first.containers  # q is drawn as one step outline, not bars
    assert len(nuts_bars) == 39
    assert sum(bar.get_height() * bar.get_width() for bar in nuts_bars) == pytest.approx(1.0)
    assert all(ax.get_legend() is None for ax in fig.axes[1:])
    assert fig.get_suptitle().startswith("p(z | x) by NUTS against q(z | x)")


# ----------------------------------------------------------------------------- writers


def writer_cases():
    """(writer, builder, positional arguments, keyword arguments) for every figure."""
    g = torch.Generator().manual_seed(1)
    images, pts = torch.rand(6, 64, generator=g), torch.randn(30, 2, generator=g)
    metrics = [{"epoch": e, "train_elbo": -e, "val_elbo": -2 * e} for e in (1, 2, 3)]
    curve = np.stack([np.linspace(0, 1, 30), np.linspace(1, 0, 30)], axis=1)
    return [
        (plots.plot_training_curves, plots.training_curves_figure, (metrics,), {}),
        (
            plots.plot_reconstructions,
            plots.reconstructions_figure,
            (images, images.flip(0), IMAGE_SHAPE),
            {"max_items": 4},
        ),
        (plots.plot_samples, plots.samples_figure, (pts, None), {"title": "s"}),
        (
            plots.plot_latent_space,
            plots.latent_space_figure,
            (pts, torch.arange(30) % 3),
            {"title": "l"},
        ),
        (plots.plot_interpolation, plots.interpolation_figure, (images, IMAGE_SHAPE), {}),
        (plots.plot_spiral, plots.spiral_figure, (pts, pts, pts[:5]), {"true_curve": curve}),
        (
            plots.plot_spiral_sweeps,
            plots.spiral_sweeps_figure,
            ([sweep_panel("AE", 1.0)], curve),
            {},
        ),
        (
            plots.plot_image_grid,
            plots.image_grid_figure,
            (images, IMAGE_SHAPE),
            {"title": "g", "nrow": 2, "normalize": True},
        ),
        (plots.plot_loadings, plots.loadings_figure, (images, IMAGE_SHAPE), {"title": "W"}),
        (
            plots.plot_traversals,
            plots.traversals_figure,
            (images[:6], IMAGE_SHAPE, ["a", "b"], (-1.0, 0.0, 1.0)),
            {},
        ),
        (
            ssvae.plot_analogies,
            ssvae.analogies_figure,
            (images[:2], images.reshape(3, 2, 64), IMAGE_SHAPE),
            {},
        ),
        (
            ssvae.plot_class_rows,
            ssvae.class_rows_figure,
            (images.reshape(2, 3, 64), IMAGE_SHAPE, ["a", "b"]),
            {"title": "r", "xlabel": "z"},
        ),
        (
            ssvae.plot_confusion_matrix,
            ssvae.confusion_matrix_figure,
            ([0, 1, 1], [0, 1, 0], 2),
            {"title": "c"},
        ),
        (
            ssvae.plot_accuracy_curves,
            ssvae.accuracy_curves_figure,
            (ACCURACY_METRICS,),
            {"baseline": 0.5, "best_epoch": 2},
        ),
        (diagnostics.plot_khat, diagnostics.khat_figure, ([0.1, 0.6, 0.9],), {"title": "k"}),
        (
            diagnostics.plot_iwae_vs_k,
            diagnostics.iwae_vs_k_figure,
            ([1, 10], [-3.0, -2.0], [0.1, 0.1]),
            {"elbo": -4.0},
        ),
        (
            diagnostics.plot_kl_per_dim,
            diagnostics.kl_per_dim_figure,
            ({"z": [1.0, 0.0]}, {"z": [1.0, 0.0]}),
            {"threshold": 0.5},
        ),
        (
            diagnostics.plot_nuts_vs_q,
            diagnostics.nuts_vs_q_figure,
            (np.arange(24.0).reshape(2, 3, 2, 2), np.ones((1, 3, 2, 2)), [4, 5]),
            {"site": "u", "max_dims": 1},
        ),
    ]


WRITER_CASES = writer_cases()


@pytest.mark.parametrize(
    "writer, builder, args, kwargs", WRITER_CASES, ids=[case[0].__name__ for case in WRITER_CASES]
)
def test_each_writer_writes_its_builders_figure(tmp_path, writer, builder, args, kwargs):
    out = tmp_path / "sub" / "figure.png"
    written = writer(*args, str(out), **kwargs)
    assert isinstance(written, Path) and written == out
    assert out.read_bytes()[:4] == b"\x89PNG"
    reference = core.save_figure(builder(*args, **kwargs), tmp_path / "reference.png")
    pixels = mpimg.imread(out)
    np.testing.assert_array_equal(pixels, mpimg.imread(reference))
    width, height = builder(*args, **kwargs).get_size_inches() * core.DPI
    assert pixels.shape[:2] == (int(height), int(width))
    assert np.ptp(pixels[..., :3]) > 0


def test_save_figure_clears_the_figure(tmp_path):
    fig = plots.samples_figure(np.zeros((3, 2)), None)
    core.save_figure(fig, tmp_path / "f.png")
    assert fig.axes == []


def test_no_pyplot_figures_leak(tmp_path, gen):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plots.plot_samples(torch.rand(4, 64, generator=gen), IMAGE_SHAPE, tmp_path / "s.png")
    plots.plot_latent_space(torch.randn(10, 2, generator=gen), None, tmp_path / "l.png")
    assert plt.get_fignums() == before


# ----------------------------------------------------------------------------- class names


def test_named_classes_label_the_legend_ticks_and_rows():
    from pyrovae.data.idx import FASHION_MNIST_CLASSES as NAMES
    from pyrovae.plots import run as run_plots
    from pyrovae.plots import ssvae as ssvae_plots

    labels = torch.arange(40) % 10
    fig = run_plots.latent_space_figure(torch.randn(40, 3), labels, class_names=NAMES)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == list(NAMES)
    fig = run_plots.latent_space_figure(torch.randn(40, 1), labels, class_names=NAMES)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(NAMES)
    fig = ssvae_plots.confusion_matrix_figure(labels, labels, 10, class_names=NAMES)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(NAMES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(NAMES)
    sources, generated = torch.rand(3, 4), torch.rand(10, 3, 4)
    fig = ssvae_plots.analogies_figure(sources, generated, (2, 2), class_names=NAMES)
    rows = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert rows == ["input (z)", *(f"y = {name}" for name in NAMES)]
    # Without names the classes are their numbers.
    fig = run_plots.latent_space_figure(torch.randn(40, 3), labels)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == list("0123456789")


# ----------------------------------------------------------------------------- traversals of a run


class FixedPosterior(torch.nn.Module):
    """z ~ N(0, I_4) per row, x ~ N(W z, I) with a fixed (64, 4) W; the guide is the same
    N(m, diag s^2) for every row, so the KL of each dimension is known in closed form."""

    def __init__(self, loc, scale):
        super().__init__()
        self.weight = torch.linspace(-1.0, 1.0, 64 * 4).reshape(64, 4)
        self.loc, self.scale = torch.tensor(loc), torch.tensor(scale)

    def model(self, x):
        import pyro
        import pyro.distributions as dist

        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(4), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.weight.T, 1.0).to_event(1), obs=x)

    def guide(self, x):
        import pyro
        import pyro.distributions as dist

        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.loc, self.scale).expand([x.shape[0], 4]).to_event(1))


def test_a_run_traverses_the_dimensions_in_order_of_closed_form_kl(tmp_path, monkeypatch):
    from pyrovae.recipes import figures

    loc, scale = [0.0, 1.5, 0.2, 0.0], [1.0, 0.3, 0.9, 0.05]
    kl = [0.5 * (s**2 + m**2 - 1) - math.log(s) for m, s in zip(loc, scale, strict=True)]
    pair = FixedPosterior(loc, scale)
    drawn = {}

    def capture(images, image_shape, labels, values, path):
        drawn.update(images=images, labels=labels, values=values)
        return Path(path)

    monkeypatch.setattr(plots, "plot_traversals", capture)
    x = torch.rand(50, 64)
    figures.latent_traversals(pair.model, pair.guide, x, IMAGE_SHAPE, tmp_path / "t.png")
    order = sorted(range(4), key=lambda d: -kl[d])
    assert order == [3, 1, 2, 0]
    assert drawn["labels"] == [f"z[{d}], KL {kl[d]:.2f}" for d in order]
    values = torch.tensor(drawn["values"])
    images = torch.as_tensor(drawn["images"]).reshape(4, len(values), 64)
    for row, d in enumerate(order):
        codes = torch.tensor(loc).repeat(len(values), 1)
        codes[:, d] = values
        torch.testing.assert_close(images[row], codes @ pair.weight.T)


def test_no_traversals_without_images_or_with_a_one_dimensional_latent(tmp_path):
    from pyrovae.recipes import figures

    pair = FixedPosterior([0.0] * 4, [1.0] * 4)
    x = torch.rand(10, 64)
    assert figures.latent_traversals(pair.model, pair.guide, x, None, tmp_path / "t.png") is None
    assert not (tmp_path / "t.png").exists()
