"""Rotations of graphs: random SO(3) elements, rotating a graph, and rotation augmentation."""

from __future__ import annotations

import copy

import torch
from torch_geometric.transforms import BaseTransform


def random_rotation(generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
    """A rotation matrix (3, 3) drawn uniformly (Haar measure) from SO(3).

    Uses a normalised Gaussian quaternion, which is uniform on the 3-sphere.
    """
    q = torch.randn(4, generator=generator, dtype=torch.float64)
    w, x, y, z = q / q.norm()
    rot = torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)]),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)]),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]),
    ])
    return rot.to(dtype)


def rotate_graph(data, rotation: torch.Tensor):
    """A copy of ``data`` whose edge vectors and positions are rotated: x -> R x.

    Connectivity, types and labels are unchanged: rotating a whole configuration rotates
    every relative vector a_ij and keeps every distance. (The periodic box is not rotated;
    models only see ``edge_vec``.)
    """
    out = copy.copy(data)
    rot = rotation.to(device=data.edge_vec.device, dtype=data.edge_vec.dtype)
    out.edge_vec = data.edge_vec @ rot.T
    if getattr(data, "pos", None) is not None:
        out.pos = data.pos @ rot.T
    return out


class RandomRotation(BaseTransform):
    """Data augmentation: rotate each graph by a fresh uniformly random rotation.

    Teaches a non-equivariant model (e.g. :class:`glasslab.models.BapstGNN`) approximate
    rotation invariance from data; SE3GNN has it by construction and does not need it.
    """

    def __init__(self, seed: int | None = None):
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(seed)
        else:
            self.generator.seed()

    def forward(self, data):
        return rotate_graph(data, random_rotation(self.generator))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
