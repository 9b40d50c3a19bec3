"""What the runner passes a program beyond ``x``, read from its signature.

A program ``f(x)`` gets the rows alone. Two more forms are fed:

- ``f(x, y=None)``, an optional second argument (Pyro's M2, ``examples/vae/ss_vae_M2.py``):
  with ``--labels N`` it gets the labels of the labelled batches and ``y=None`` on the
  unlabelled ones (:data:`LABELS`);
- ``f(x, c)``, a required second argument (a conditional VAE): it gets the rows' labels as its
  condition on every call, in training and in every evaluation (:data:`CONDITION`).

A fed program is wrapped in a :class:`FedProgram`, which takes the batches' argument tuples
``(x,)``, ``(x, y)`` or ``(x, y, weight)``, encodes ``y`` as the program takes it (one-hot or
class index), scales the log densities by the per-row ``weight`` (``poutine.scale``) and adds
the pair's auxiliary term when it has one. Evaluation code calls programs with ``x`` alone:
a :data:`CONDITION` program then finds each row's condition in its :class:`RowConditions`
(the data set's rows and their labels), so that traces, ELBOs and diagnostics see ``f(x)``.
"""

import inspect
from contextlib import contextmanager

import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.contrib.autoname import scope

from pyrovae.errors import PyrovaeError

X_ONLY, LABELS, CONDITION = "x", "labels", "condition"
"""How a program is fed: ``x`` alone, labels on labelled batches, a condition on every call."""


def signature_kind(program, what: str) -> tuple[str, str | None]:
    """``(kind, name)``: how ``program`` is fed and the name of its second argument.

    A third required argument (or a required keyword-only one) is a one-line error: the
    runner has nothing to pass it.
    """
    try:
        signature = inspect.signature(program)
    except (TypeError, ValueError):  # a callable whose signature Python cannot read
        return X_ONLY, None
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    keyword_only = [p for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    unfed = required[2:] + keyword_only
    if unfed:
        raise PyrovaeError(
            f"{what} takes {signature}: the runner passes the rows x and at most one more "
            f"argument (labels or a condition), so it has nothing to pass "
            f"{unfed[0].name!r}; give {unfed[0].name!r} a default value, or set it when "
            "building the pair (functools.partial or a constructor argument)"
        )
    if len(positional) < 2:
        return X_ONLY, None
    return (CONDITION if len(required) == 2 else LABELS), positional[1].name


def one_hot(y: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """Class indices ``y: (n,)`` as one-hot rows ``(n, K)`` of ``like``'s dtype."""
    return F.one_hot(y.long(), num_classes).to(like.dtype)


class RowConditions:
    """The condition of each row of a data set: blocks of rows ``X: (n, D)`` with their
    labels ``C: (n,)``, looked up for the rows a program is called with.

    Rows that are slices of a registered block (``x_test[:500]``) are found by where their
    memory lies; any other rows (a subset, rows repeated, a copy on another device) by their
    values. Rows found in no block are a one-line error.
    """

    def __init__(self):
        self.blocks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.by_value: dict[int, list[tuple[int, int]]] = {}
        self.pinned: torch.Tensor | None = None

    def add(self, x: torch.Tensor, c: torch.Tensor | None) -> None:
        """Register the rows ``x: (n, D)`` with their labels ``c: (n,)`` (None: skipped)."""
        if c is None or x.shape[0] == 0:
            return
        x, c = x.detach(), c.detach()
        block = len(self.blocks)
        self.blocks.append((x, c))
        for i, row in enumerate(x.cpu().numpy()):
            self.by_value.setdefault(hash(row.tobytes()), []).append((block, i))

    def _slice_of(self, x: torch.Tensor) -> torch.Tensor | None:
        for block, c in self.blocks:
            same_layout = (
                block.device == x.device
                and block.dtype == x.dtype
                and block.shape[1:] == x.shape[1:]
                and block.stride() == x.stride()
                and block.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
            )
            if not same_layout or block.stride(0) == 0:
                continue
            offset = x.storage_offset() - block.storage_offset()
            start, rest = divmod(offset, block.stride(0))
            if rest == 0 and 0 <= start and start + x.shape[0] <= block.shape[0]:
                return c[start : start + x.shape[0]]
        return None

    def lookup(self, x: torch.Tensor) -> torch.Tensor:
        """The labels ``(n,)`` of the rows ``x: (n, D)`` (see the class)."""
        if self.pinned is not None and self.pinned.shape[0] == x.shape[0]:
            return self.pinned.to(x.device)
        found = self._slice_of(x)
        if found is not None:
            return found.to(x.device)
        labels = []
        for row in x.detach().cpu().numpy():
            match = None
            for block, i in self.by_value.get(hash(row.tobytes()), ()):
                rows, c = self.blocks[block]
                if torch.equal(rows[i].cpu(), torch.from_numpy(row)):
                    match = c[i]
                    break
            if match is None and self.pinned is not None and x.shape[0] < self.pinned.shape[0]:
                return self.pinned[: x.shape[0]].to(x.device)  # e.g. a one-row shape probe
            if match is None:
                raise PyrovaeError(
                    "the conditional program was called with rows that are not rows of the "
                    "data set, so their condition is unknown; call it as f(x, c)"
                )
            labels.append(match.to(x.device))
        return torch.stack(labels) if labels else x.new_zeros(0, dtype=torch.long)

    @contextmanager
    def given(self, c: torch.Tensor):
        """Within the block, calls with ``c.shape[0]`` rows get the labels ``c`` (rows made up
        by figures and decoders, e.g. a template of zeros), and calls with fewer rows not of
        the data set its first labels."""
        before, self.pinned = self.pinned, c
        try:
            yield
        finally:
            self.pinned = before


class FedProgram:
    """A program ``f(x, ...)`` called as the runner calls programs: ``(x, y=None, weight=None)``.

    :param program: the user's program (kept as ``__wrapped__``, so records name it).
    :param kind: :data:`X_ONLY`, :data:`LABELS` or :data:`CONDITION`.
    :param num_classes: K, for one-hot labels.
    :param encoding: ``"one-hot"`` or ``"index"``: how the program takes labels.
    :param conditions: where a :data:`CONDITION` program called with ``x`` alone finds its rows'
        labels.
    :param auxiliary: ``f(x, y)`` added on labelled batches under ``poutine.scale(alpha)``
        (Pyro's ``model_classify`` / ``guide_classify``), its sites named ``auxiliary/...``.
    :param alpha: the weight of ``auxiliary`` per labelled row.
    """

    def __init__(
        self,
        program,
        kind: str,
        num_classes: int = 0,
        encoding: str = "index",
        conditions: RowConditions | None = None,
        auxiliary=None,
        alpha: float = 0.0,
    ):
        self.__wrapped__ = program
        self.kind, self.num_classes, self.encoding = kind, num_classes, encoding
        self.conditions, self.auxiliary, self.alpha = conditions, auxiliary, alpha

    def encode(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Labels ``y: (n,)`` as the program takes them."""
        return one_hot(y, self.num_classes, x) if self.encoding == "one-hot" else y

    def __call__(self, x, y=None, weight=None):
        program = self.__wrapped__
        if y is None and self.kind == CONDITION and self.conditions is not None:
            y = self.conditions.lookup(x)
        value = None if y is None else self.encode(y, x)
        with poutine.scale(scale=1.0 if weight is None else weight):
            if value is None or self.kind == X_ONLY:
                result = program(x)
            else:
                result = program(x, value)
            if self.auxiliary is not None and value is not None and self.alpha > 0:
                # Its sites (and a plate it enters again) are named "auxiliary/...".
                with poutine.scale(scale=self.alpha), scope(prefix="auxiliary"):
                    self.auxiliary(x, value)
        return result

    def __repr__(self) -> str:
        return f"FedProgram({self.__wrapped__!r}, {self.kind})"


def user_program(program):
    """The program a user gave: ``program`` with any :class:`FedProgram` taken off."""
    while isinstance(program, FedProgram):
        program = program.__wrapped__
    return program


@contextmanager
def conditioned_on(programs, c: torch.Tensor | None):
    """Calls of the :data:`CONDITION` programs among ``programs`` with ``c.shape[0]`` rows get
    the labels ``c`` (a no-op for other programs, or without ``c``)."""
    tables = {
        id(p.conditions): p.conditions
        for p in programs
        if isinstance(p, FedProgram) and p.kind == CONDITION and p.conditions is not None
    }
    if c is None or not tables:
        yield
        return
    table = next(iter(tables.values()))
    with table.given(c):
        yield


def conditions_of(programs, x: torch.Tensor) -> torch.Tensor | None:
    """The labels the :data:`CONDITION` programs among ``programs`` give the rows ``x``; None
    when none is conditioned."""
    for p in programs:
        if isinstance(p, FedProgram) and p.kind == CONDITION and p.conditions is not None:
            return p.conditions.lookup(x)
    return None


def cycled_conditions(programs, n: int, device=None) -> torch.Tensor | None:
    """Labels ``0, 1, ..., K-1, 0, ...`` for ``n`` made-up rows of the :data:`CONDITION`
    programs among ``programs`` (e.g. prior samples); None when none is conditioned."""
    for p in programs:
        if isinstance(p, FedProgram) and p.kind == CONDITION:
            return torch.arange(n, device=device) % p.num_classes
    return None


def add_conditions(programs, x: torch.Tensor, c: torch.Tensor) -> None:
    """Register the rows ``x: (n, D)`` with their labels ``c: (n,)`` with the
    :data:`CONDITION` programs among ``programs`` (a no-op for others)."""
    for p in programs:
        if isinstance(p, FedProgram) and p.kind == CONDITION and p.conditions is not None:
            p.conditions.add(x, c)
            return
