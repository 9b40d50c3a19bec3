"""The importance-weighted bound as a training objective, per data row (Burda et al., 2016).

    L_K = sum_i E[ log (1/K) sum_k w_ik ],   w_ik = p(x_i, z_ik) / q(z_ik | x_i),  z_ik ~ q

Pyro's ``vectorized_importance_weights`` weights whole minibatches, ``log (1/K) sum_k prod_i
w_ik``: a bound on ``log p(x_1, ..., x_B)`` whose K samples are shared by all B rows, looser
with every row; ``RenyiELBO(alpha=0)`` does the same as soon as any site lies outside the
data plate. This objective keeps one weight per row and particle
(:func:`~pyrovae.inference.diagnostics.importance.point_terms`), so it is the IWAE bound for
any minibatch. Enumerated guide sites are summed out inside each weight; global latent sites
(outside the data plate) are refused, as a per-row weight has no place for them. The
gradient is the plain reparameterized one of the bound (the IWAE estimator, not DReG).
"""

import math

import torch
from pyro.infer import ELBO

from pyrovae.errors import PyrovaeError
from pyrovae.inference.diagnostics.importance import point_terms
from pyrovae.inference.diagnostics.structure import inspect_pair


class IWAE(ELBO):
    """``-L_K`` summed over the rows of a batch, for :class:`~pyrovae.inference.Trainer`.

    :param num_particles: K, importance samples per row, drawn in one vectorized pass.
    """

    def __init__(self, num_particles: int = 5, max_plate_nesting: int = 1, **_ignored):
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self._structures: dict = {}

    def _structure(self, model, guide, x: torch.Tensor):
        key = (id(model), id(guide))
        if key not in self._structures:
            # Read off one trace without moving the random stream the training draws from.
            devices = [x.device] if x.device.type == "cuda" else []
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                structure = inspect_pair(model, guide, x)
            if not structure.guide_is_density:
                raise PyrovaeError(
                    f"--elbo iwae weights draws by q's density, but the guide draws "
                    f"{list(structure.point_mass_sites)} from a point mass; use --elbo trace"
                )
            if structure.global_sites:
                site = structure.global_sites[0]
                raise PyrovaeError(
                    f"--elbo iwae keeps one weight per row, but the pair samples {site!r} "
                    "outside the data plate (shared by all rows); use --elbo trace"
                )
            self._structures[key] = structure
        return self._structures[key]

    def per_row_bound(self, model, guide, *args) -> torch.Tensor:
        """``(B,)``: each row's K-sample bound, differentiable (nats)."""
        structure = self._structure(model, guide, args[0])
        terms = point_terms(model, guide, args[0], self.num_particles, structure, args=args[1:])
        return terms.log_weight.logsumexp(0) - math.log(self.num_particles)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        return -self.per_row_bound(model, guide, *args).sum()

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("IWAE scores rows through point_terms, not single traces")

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args))
