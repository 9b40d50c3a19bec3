"""Sample quality in the feature space of a classifier trained on the data set itself.

Inception features mean little on 8x8 digits or 28x28 gray images (and its weights cannot be
downloaded everywhere), so, as is the practice for MNIST-like data, the features are the
penultimate layer of a small MLP trained on the data set's own labelled training rows
(:func:`feature_classifier`). It is trained once per data set: the trained weights are cached
under ``$PYROVAE_CACHE`` (default ``~/.cache/pyrovae``), named by the SHA-256 of the training
rows, labels and training settings, written atomically and loaded with
``torch.load(weights_only=True)``; a cache file that cannot be read or does not fit is
replaced by a fresh training, never trusted.

In those features, between real images R (test rows) and generated ones G:

- the Fréchet distance ``||mu_R - mu_G||^2 + Tr(S_R + S_G - 2 (S_R S_G)^(1/2))`` of Gaussians
  fitted to the two sets (torchmetrics' ``FrechetInceptionDistance`` with the features given
  as they are; lower is better);
- precision and recall (Kynkäänniemi et al., 2019): the share of G inside the k-NN manifold
  of R (samples look real) and the share of R inside the k-NN manifold of G (samples cover
  the data), where a set's manifold is the union of balls around its points with radius the
  distance to their k-th nearest neighbor in the set.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from pyrovae.atomic import atomic_write
from pyrovae.errors import PyrovaeError

CACHE_VARIABLE = "PYROVAE_CACHE"
"""The environment variable naming the cache folder (default ``~/.cache/pyrovae``)."""
HIDDEN = (256, 64)
"""Widths of the classifier's hidden layers; the last is the feature dimension."""
STEPS = 2000
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
NEAREST = 3
"""k of the k-NN manifolds of precision and recall."""
_VERSION = "mlp-v1"  # part of the cache key: change it when the classifier changes


class FeatureClassifier(nn.Module):
    """An MLP ``x (n, D) -> logits (n, classes)``; :meth:`features` is its penultimate layer
    ``(n, HIDDEN[-1])``."""

    def __init__(self, x_dim: int, classes: int, hidden: tuple[int, ...] = HIDDEN):
        super().__init__()
        layers, width = [], x_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def cache_dir() -> Path:
    """``$PYROVAE_CACHE``, or ``~/.cache/pyrovae``."""
    value = os.environ.get(CACHE_VARIABLE)
    return Path(value) if value else Path.home() / ".cache" / "pyrovae"


def data_digest(x: torch.Tensor, y: torch.Tensor) -> str:
    """SHA-256 of the training rows, their labels and the classifier's settings."""
    digest = hashlib.sha256()
    settings = f"{_VERSION} {HIDDEN} {STEPS} {BATCH_SIZE} {LEARNING_RATE} {tuple(x.shape)}"
    digest.update(settings.encode())
    digest.update(x.detach().float().cpu().contiguous().numpy().tobytes())
    digest.update(y.detach().long().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _train(x: torch.Tensor, y: torch.Tensor, classes: int, seed: int) -> FeatureClassifier:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = FeatureClassifier(x.shape[1], classes)
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    for _ in range(STEPS):
        batch = torch.randint(0, x.shape[0], (min(BATCH_SIZE, x.shape[0]),), generator=generator)
        loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


def _load(path: Path, x_dim: int, classes: int) -> FeatureClassifier | None:
    """The cached classifier at ``path``, or None when it is missing, unreadable or does not
    fit (a hostile or corrupt file is never unpickled: ``weights_only=True``)."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = FeatureClassifier(x_dim, classes)
        net.load_state_dict(state)
    except Exception:  # any unreadable or foreign file: train afresh
        return None
    return net.eval()


def feature_classifier(
    x_train: torch.Tensor, y_train: torch.Tensor, classes: int, *, seed: int = 0
) -> tuple[FeatureClassifier, bool]:
    """``(classifier, from_cache)``: the MLP trained on ``x_train (n, D)`` with labels
    ``y_train (n,)`` in ``0..classes-1``, from the cache when it holds it."""
    if y_train is None or x_train.shape[0] != y_train.shape[0] or x_train.shape[0] < 2:
        raise PyrovaeError("sample quality needs labelled training rows (one label per row)")
    x = x_train.detach().float().cpu()
    y = y_train.detach().long().cpu()
    path = cache_dir() / f"classifier-{data_digest(x, y)}.pt"
    net = _load(path, x.shape[1], classes)
    if net is not None:
        return net, True
    with torch.enable_grad():
        net = _train(x, y, classes, seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_symlink():
            atomic_write(path, lambda f: torch.save(net.state_dict(), f))
    except OSError:
        pass  # an unwritable cache only costs a training next time
    return net, False


@torch.no_grad()
def embed(net: FeatureClassifier, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    """Penultimate features ``(n, HIDDEN[-1])`` float64 of the images ``x (n, D)``."""
    x = x.detach().float().cpu()
    return torch.cat([net.features(x[i : i + batch]) for i in range(0, len(x), batch)]).double()


class _GivenFeatures(nn.Identity):
    """torchmetrics' FID with features computed beforehand: the 'extractor' passes them on."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to the features ``real (n, d)`` and
    ``fake (m, d)`` (unbiased covariances), by torchmetrics."""
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise PyrovaeError("the Fréchet distance needs at least 2 rows on each side")
    metric = FrechetInceptionDistance(feature=_GivenFeatures(real.shape[1]), normalize=True)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def _kth_radius(points: torch.Tensor, k: int, batch: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest other point of the set, ``(n,)``."""
    radii = []
    for i in range(0, len(points), batch):
        d = torch.cdist(points[i : i + batch], points)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the 1st is the point itself
    return torch.cat(radii)


def _inside(queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor, batch: int):
    """Whether each query lies in a ball of ``points`` with those ``radii``, ``(m,)``."""
    hits = []
    for i in range(0, len(queries), batch):
        d = torch.cdist(queries[i : i + batch], points)
        hits.append((d <= radii[None]).any(1))
    return torch.cat(hits)


def precision_recall(
    real: torch.Tensor, fake: torch.Tensor, k: int = NEAREST, batch: int = 1024
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019) of ``fake (m, d)`` against
    ``real (n, d)`` with k-NN manifolds.

    Written by hand with ``torch.cdist``: torchmetrics has no precision/recall for
    generative models.
    """
    if min(len(real), len(fake)) <= k:
        raise PyrovaeError(f"precision and recall need more than k = {k} rows on each side")
    real, fake = real.double(), fake.double()
    precision = _inside(fake, real, _kth_radius(real, k, batch), batch).double().mean()
    recall = _inside(real, fake, _kth_radius(fake, k, batch), batch).double().mean()
    return float(precision), float(recall)


@dataclass
class QualityRow:
    """One comparison with the test images: ``frechet_distance`` (squared feature units),
    ``precision`` and ``recall`` (shares in [0, 1])."""

    name: str
    frechet_distance: float
    precision: float
    recall: float

    def summary(self) -> dict:
        return {
            "frechet_distance": self.frechet_distance,
            "precision": self.precision,
            "recall": self.recall,
        }


def compare(net: FeatureClassifier, real: torch.Tensor, sets: dict[str, torch.Tensor]):
    """A :class:`QualityRow` for each named set of images against the ``real`` images, in
    the classifier's features."""
    reference = embed(net, real)
    rows = []
    for name, images in sets.items():
        features = embed(net, images)
        precision, recall = precision_recall(reference, features)
        rows.append(QualityRow(name, frechet_distance(reference, features), precision, recall))
    return rows


@torch.no_grad()
def accuracy(net: FeatureClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of the rows ``x (n, D)`` whose label ``y (n,)`` the classifier predicts."""
    return float((net(x.float().cpu()).argmax(-1) == y.cpu()).double().mean())
