"""The figures of a run, drawn from the trained pair and its held-out rows.

Model-agnostic: the tensors come from :mod:`pyrovae.inference.posterior` (traces of the
model and guide) and go to :mod:`pyrovae.plots`. Written into the run folder:
``training_curves.png``, ``reconstructions.png``, ``samples.png`` (decoded prior draws),
``latent_space.png`` (posterior means, PCA when k > 2), ``interpolation.png``,
``traversals.png`` (image data, one continuous latent site of 2 or more dimensions) and, for
2-D data, ``spiral.png``.
"""

from pathlib import Path

import pyro.poutine as poutine
import torch

from pyrovae import plots
from pyrovae.data import spiral_curve
from pyrovae.inference.arguments import conditioned_on, conditions_of, cycled_conditions
from pyrovae.inference.diagnostics.latents import latent_health
from pyrovae.inference.diagnostics.structure import inspect_pair, is_discrete
from pyrovae.inference.parameters import device_of
from pyrovae.inference.posterior import decode, encode, latent_site, reconstruct, sample_prior
from pyrovae.inference.runner import best_epoch


def run_figures(
    model,
    guide,
    data,
    history: list[dict],
    out_dir,
    max_points: int = 2000,
    skip=(),
    select_by: tuple[str, ...] = ("val_elbo",),
) -> list[Path]:
    """Draw every figure of the run into ``out_dir``; returns their paths.

    :param data: the run's :class:`~pyrovae.data.PreparedData` (its test rows are used).
    :param history: the per-epoch metrics rows (the training curves mark the best epoch
        and, when it is not 1 everywhere, the KL weight).
    :param max_points: test rows encoded for the latent-space figures.
    :param skip: file names (``"reconstructions.png"``) not to draw: a recipe that draws
        its own version of a figure names it here.
    :param select_by: how the runner chose the kept epoch (marked on the curves).
    """
    out_dir = Path(out_dir)
    dataset = data.dataset
    x = data.x_test[:max_points].to(device_of(model, guide))
    labels = None if data.y_test is None else data.y_test[:max_points]
    shape = dataset.image_shape
    curves = {
        "training_curves.png": lambda path: plots.plot_training_curves(
            history, path, best_epoch=best_epoch(history, select_by)
        ),
    }
    if not _has_local_latent(model, guide, x):  # global latents only: no z per row
        return [draw(out_dir / name) for name, draw in curves.items() if name not in skip]
    z = encode(model, guide, x)
    site = latent_site(model, guide, x)
    programs = (model, guide)
    # A conditioned pair decodes a row with that row's condition, the interpolation with the
    # first end's, and its prior samples with the classes in turn.
    shown = conditions_of(programs, x[:16])
    first = conditions_of(programs, x[:1])
    cycled = cycled_conditions(programs, 64, x.device)

    def interpolation(path):
        ends = interpolate(z, labels)
        with conditioned_on(programs, None if first is None else first.expand(ends.shape[0])):
            decoded = decode(model, ends, site, dataset.x_dim)
        return plots.plot_interpolation(_cpu(decoded), shape, path)

    def reconstructions(path):
        with conditioned_on(programs, shown):
            return plots.plot_reconstructions(
                _cpu(x[:16]), _cpu(reconstruct(model, guide, x[:16])), shape, path
            )

    def samples(path):
        with conditioned_on(programs, cycled):
            drawn = sample_prior(model, 64, dataset.x_dim, device=x.device)
        return plots.plot_samples(_cpu(drawn), shape, path)

    figures = {
        **curves,
        "reconstructions.png": reconstructions,
        "samples.png": samples,
        "latent_space.png": lambda path: plots.plot_latent_space(
            _cpu(z), labels, path, class_names=dataset.class_names
        ),
        "interpolation.png": interpolation,
        "traversals.png": lambda path: latent_traversals(model, guide, x, shape, path),
    }
    if dataset.x_dim == 2 and shape is None:
        true_curve = None
        if "t_range" in dataset.extras:
            true_curve = spiral_curve(torch.linspace(*dataset.extras["t_range"], 400))
        figures["spiral.png"] = lambda path: plots.plot_spiral(
            _cpu(x),
            _cpu(reconstruct(model, guide, x)),
            _cpu(decode(model, latent_sweep(z, steps=200), site, 2)),
            path,
            true_curve=true_curve,
        )
    written = [draw(out_dir / name) for name, draw in figures.items() if name not in skip]
    return [path for path in written if path is not None]  # None: the figure does not apply


def _has_local_latent(model, guide, x: torch.Tensor) -> bool:
    if getattr(model, "latent_site", None) is not None:
        return True
    with torch.no_grad():
        return bool(inspect_pair(model, guide, x).local_sites)


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().float().cpu()


def interpolation_ends(labels: torch.Tensor | None) -> tuple[int, int]:
    """The rows an interpolation joins: the first row and the next one, or, when labels are
    known, the first row of another class than the first row's (if there is one)."""
    first, second = 0, 1
    if labels is not None:
        different = (labels != labels[0]).nonzero()
        if len(different):
            second = int(different[0])
    return first, second


def interpolate(z: torch.Tensor, labels: torch.Tensor | None, steps: int = 10) -> torch.Tensor:
    """Latent path ``(steps, k)`` between two rows of ``z: (n, k)``: the first two, or the
    first two of different classes when labels are known (:func:`interpolation_ends`)."""
    first, second = interpolation_ends(labels)
    w = torch.linspace(0, 1, steps, device=z.device).unsqueeze(-1)
    return (1 - w) * z[first] + w * z[second]


def latent_sweep(z: torch.Tensor, steps: int = 200, extend: float = 0.0) -> torch.Tensor:
    """A straight latent path ``(steps, k)`` along the main axis of the codes ``z: (n, k)``,
    covering their range, widened by ``extend`` times that range on each side."""
    center = z.mean(0)
    if z.shape[1] == 1:
        direction = torch.ones(1, device=z.device)
    else:
        direction = torch.linalg.svd(z - center, full_matrices=False).Vh[0]
    proj = (z - center) @ direction
    lo, hi = float(proj.min()), float(proj.max())
    margin = extend * (hi - lo)
    s = torch.linspace(lo - margin, hi + margin, steps, device=z.device).unsqueeze(-1)
    return center + s * direction


TRAVERSAL_DIMS = 8
TRAVERSAL_VALUES = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


@torch.no_grad()
def latent_traversals(model, guide, x: torch.Tensor, image_shape, path):
    """``traversals.png``: each of the (up to 8) latent dimensions with the largest KL
    (largest variance of the posterior means for a point-mass guide), swept over -3..3 with
    the others at the first row's posterior mean; None where it does not apply (no images,
    several latent sites, a discrete or 1-D latent)."""

    if image_shape is None:
        return None
    structure = inspect_pair(model, guide, x)
    if len(structure.local_sites) != 1 or structure.global_sites:
        return None
    site = structure.local_sites[0]
    if is_discrete(poutine.trace(guide).get_trace(x[:2]).nodes[site]["fn"]):
        return None
    z = encode(model, guide, x[:1])[0]  # (k,)
    if z.dim() != 1 or z.shape[0] < 2:
        return None
    health = latent_health(model, guide, x[:500], structure, num_particles=4)
    kl = health.kl_per_dim.get(site)
    score = kl if kl is not None else health.mean_variance.get(site)
    if score is None or len(score) != z.shape[0]:
        return None
    order = sorted(range(len(score)), key=lambda d: -score[d])[:TRAVERSAL_DIMS]
    values = torch.tensor(TRAVERSAL_VALUES, dtype=z.dtype, device=z.device)
    codes = z.repeat(len(order), len(values), 1)  # (dims, values, k)
    for row, d in enumerate(order):
        codes[row, :, d] = values
    codes = codes.reshape(-1, z.shape[0])
    first = conditions_of((model, guide), x[:1])
    with conditioned_on((model, guide), None if first is None else first.expand(codes.shape[0])):
        images = decode(model, codes, site, x.shape[-1])
    measure = "KL" if kl is not None else "var"
    labels = [f"{site}[{d}], {measure} {score[d]:.2f}" for d in order]
    return plots.plot_traversals(_cpu(images), image_shape, labels, TRAVERSAL_VALUES, path)
