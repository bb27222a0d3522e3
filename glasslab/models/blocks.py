"""Pieces shared by the models: an MLP builder, the Bessel radial basis, dropout, extra node inputs, parameter counting."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def mlp(sizes: Sequence[int], activate_final: bool = False) -> nn.Sequential:
    """A ReLU multi-layer perceptron, ``Linear(sizes[0], sizes[1]) -> ReLU -> ... -> Linear(sizes[-2], sizes[-1])``.

    Every linear layer has a bias. ``activate_final=True`` also puts a ReLU after the last
    layer, as sonnet's ``snt.nets.MLP(..., activate_final=True)``.

    Maps (..., sizes[0]) to (..., sizes[-1]).
    """
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least an input and an output size, got {list(sizes)}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if activate_final or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BesselBasis(nn.Module):
    r"""Bessel radial basis of the paper (Appendix A1, Eq. A1).

    .. math:: B_n(r) = \sqrt{2 / r_c}\, \sin(n \pi r / r_c) / r, \qquad n = 1, \dots, N_b.

    These are the radial parts of the l = 0 eigenfunctions of the Laplacian in a ball of
    radius ``r_c`` that vanish on its surface. Not learned (no parameters).

    Args:
        n_basis: number of functions N_b.
        cutoff: radius r_c (the graph cutoff, in σ_AA).

    Maps distances (E,) in σ_AA (strictly positive) to (E, n_basis), in units of 1/σ_AA^{3/2}.
    """

    def __init__(self, n_basis: int = 10, cutoff: float = 2.0):
        super().__init__()
        if n_basis < 1 or cutoff <= 0:
            raise ValueError(f"need n_basis >= 1 and cutoff > 0, got n_basis={n_basis}, cutoff={cutoff}")
        self.n_basis = n_basis
        self.cutoff = cutoff

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        n = torch.arange(1, self.n_basis + 1, device=r.device, dtype=r.dtype)
        r = r[..., None]
        return math.sqrt(2.0 / self.cutoff) * torch.sin(n * (math.pi / self.cutoff) * r) / r

    def extra_repr(self) -> str:
        return f"n_basis={self.n_basis}, cutoff={self.cutoff}"


def node_scalars_of(data, count: int, model: str) -> torch.Tensor:
    """``data.node_scalars`` (N, count), the extra per-particle inputs of a model built for ``count``
    of them; a ValueError naming ``model`` when they are missing or of another shape."""
    n = data.num_nodes
    scalars = getattr(data, "node_scalars", None)
    if scalars is None or scalars.shape != (n, count):
        got = None if scalars is None else tuple(scalars.shape)
        raise ValueError(f"{model}(node_scalars={count}) needs data.node_scalars of shape ({n}, {count}), got {got}")
    return scalars


def count_parameters(module: nn.Module) -> int:
    """Number of learnable scalars in ``module`` (buffers such as batch-norm statistics excluded)."""
    return sum(p.numel() for p in module.parameters())


class Dropout(nn.Dropout):
    """``nn.Dropout`` with, on a CPU, its keep-mask drawn by ``torch.rand`` instead of
    ``bernoulli_``: the same distribution (each value kept with probability 1 − p, kept values
    scaled by 1 / (1 − p)), a different random stream. Why: on a CPU torch's ``bernoulli_`` took
    7.9 ms for the (E = 40 392, 16) radial features of a N = 1000 snapshot, ``rand`` and a
    comparison 3.0 ms (one thread, measured on the machine that built glasslab); the paper's SE3GNN
    applies dropout in each of its 8 radial MLPs. Other devices keep torch's fused dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_cpu or self.inplace:
            return super().forward(x)
        if not self.training or self.p == 0:
            return x
        if self.p >= 1:
            return x * 0
        keep = (torch.rand(x.shape, dtype=torch.float32) >= self.p).to(x.dtype).div_(1 - self.p)
        return x * keep


def has_active_dropout(module: nn.Module) -> bool:
    """Whether ``module`` holds a dropout layer with a non-zero rate."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in module.modules())


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, graphs) -> None:
    """Re-estimate every batch norm's running statistics as the model is evaluated: dropout off.

    Why: in training mode, dropout in the radial MLPs (SE3GNN, Appendix A1) changes the mean
    and variance of what the later batch norms see (a ReLU after dropout shifts the mean, by
    Jensen's inequality), so running statistics gathered during training describe the
    dropout-on network. In evaluation mode dropout is off and those statistics are wrong:
    measured on the shipped lmax = 3 model (dropout 0.5), the predictions were shifted by up
    to +0.68 σ of the labels; re-estimating the statistics with dropout off removed the shift
    (``|offset| ≤ 0.09 σ``), re-estimating them with dropout on reproduced it (0.65 σ).

    The statistics become the plain average over ``graphs`` (each one forward pass, in order),
    weighting each graph equally. Works for ``torch.nn`` batch norms and e3nn's ``BatchNorm``.
    Leaves the model in evaluation mode.
    """
    from e3nn import nn as e3nn_nn

    norms = [m for m in model.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, e3nn_nn.BatchNorm))]
    saved = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.running_mean.zero_()
        m.running_var.fill_(1.0)
        m.train()
    try:
        for k, graph in enumerate(graphs):
            for m in norms:
                m.momentum = 1.0 / (k + 1)  # running = plain average of the k + 1 graphs seen
            model(graph)
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        model.eval()
