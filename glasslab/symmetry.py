"""Rotations of graphs: random SO(3) elements, the cube's symmetry group, rotating a graph, and
augmentation by either (continuous rotations, or the cube's symmetries as DeepMind trained the
Bapst et al. graph network)."""

from __future__ import annotations

import copy
import itertools

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


def seeded_generator(seed: int | None) -> torch.Generator:
    """A torch generator seeded with ``seed``, or non-deterministically when it is None (the
    augmentations keep it as ``generator`` so that a resumed training restores its state)."""
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    return generator


class RandomRotation(BaseTransform):
    """Data augmentation: rotate each graph by a fresh uniformly random rotation.

    Teaches a non-equivariant model (e.g. :class:`glasslab.models.BapstGNN`) approximate
    rotation invariance from data; SE3GNN has it by construction and does not need it.
    """

    def __init__(self, seed: int | None = None):
        self.generator = seeded_generator(seed)

    def forward(self, data):
        return rotate_graph(data, random_rotation(self.generator))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def cube_symmetries(proper: bool = False, dtype=torch.float64) -> torch.Tensor:
    """The symmetry group of the cube as a stack of matrices (48, 3, 3), or (24, 3, 3) with ``proper=True``.

    The full group O_h is the set of signed permutation matrices: a permutation of the three
    axes times a sign on each, 3! · 2³ = 48 elements, half of them improper (determinant −1:
    reflections and the inversion). ``proper=True`` keeps the 24 rotations (determinant +1),
    the chiral octahedral group O. Every element maps the periodic cubic box onto itself, so
    a rotated configuration is still a valid configuration in the same box.

    The order is fixed (permutations in lexicographic order, then signs), and the identity
    comes first.
    """
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = torch.zeros(3, 3, dtype=torch.float64)
            for row, (col, sign) in enumerate(zip(perm, signs)):
                m[row, col] = sign
            if not proper or torch.linalg.det(m) > 0:
                mats.append(m)
    return torch.stack(mats).to(dtype)


class CubeSymmetry(BaseTransform):
    """Data augmentation: transform each graph by a uniformly drawn symmetry of the cube.

    This is the augmentation of DeepMind's ``glassy_dynamics`` code (``apply_random_rotation`` in
    ``graph_model.py``): a uniformly random permutation of the x, y, z components of every edge
    vector, then an independent random sign on each component. That draws uniformly from the 48
    signed permutation matrices of :func:`cube_symmetries`, reflections included (their
    docstring: "an element of O(3) with rotation angles multiple of pi/2"). Like
    :class:`RandomRotation` it transforms ``edge_vec`` (and ``pos``) and leaves connectivity,
    types and labels alone.

    Args:
        seed: seeds ``generator`` (None: a non-deterministic seed).
        proper: draw from the 24 rotations only (no reflections); DeepMind's recipe is ``False``.
    """

    def __init__(self, seed: int | None = None, proper: bool = False):
        self.proper = proper
        self.elements = cube_symmetries(proper=proper)
        self.generator = seeded_generator(seed)

    def forward(self, data):
        index = int(torch.randint(len(self.elements), (1,), generator=self.generator))
        return rotate_graph(data, self.elements[index])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(proper={self.proper})"
