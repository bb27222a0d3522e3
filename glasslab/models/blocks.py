"""Pieces shared by the models: an MLP builder, the Bessel radial basis, parameter counting."""

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


def count_parameters(module: nn.Module) -> int:
    """Number of learnable scalars in ``module`` (buffers such as batch-norm statistics excluded)."""
    return sum(p.numel() for p in module.parameters())
