"""Neighbour search in periodic (minimum image) or open boxes: who is within a cutoff of whom.

Conventions (as PyG's default ``source_to_target`` flow): ``edge_index[0]`` is the neighbour
``j`` (source), ``edge_index[1]`` the centre ``i`` (target), and ``edge_vec = x_j - x_i``
under the minimum image convention: the paper's ``a_ij``. The search itself is SciPy's
periodic k-d tree; this module adds the minimum-image vectors, both directions of each pair and
a deterministic order.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from glasslab import _arrays

__all__ = ["minimum_image", "radius_graph"]


def minimum_image(vec: np.ndarray, box: np.ndarray | None) -> np.ndarray:
    """Fold displacement vectors ``vec`` (..., 3) into the minimum image of ``box``."""
    if box is None:
        return vec
    return vec - box * np.round(vec / box)


def radius_graph(pos, cutoff: float, box=None, self_loops: bool = False):
    """Directed graph joining every pair of particles closer than ``cutoff``.

    Args:
        pos: positions, shape (N, 3), numpy array or torch tensor. With a periodic ``box``
            they may be unwrapped (outside the box).
        cutoff: neighbour distance; pairs with ``|x_j - x_i| < cutoff`` are joined in both
            directions.
        box: three edge lengths of an orthorhombic periodic box, or None for open boundaries.
        self_loops: also add the edges (i, i) with a zero vector.

    Returns:
        ``(edge_index, edge_vec)``: ``edge_index`` of shape (2, E) with rows (neighbour j,
        centre i), sorted by centre then neighbour; ``edge_vec`` of shape (E, 3) holding
        ``x_j - x_i`` (minimum image). Tensors (on ``pos``'s device, ``pos``'s dtype) if
        ``pos`` is a tensor, numpy arrays otherwise.
    """
    is_tensor = hasattr(pos, "detach")  # a torch tensor; torch is imported only then
    in_dtype = _arrays.as_numpy(pos).dtype
    x = _arrays.positions(pos)
    cutoff = _arrays.positive(cutoff, "cutoff")
    box_arr = _arrays.box(box, cutoff)

    if box_arr is None:
        tree = cKDTree(x)
    else:
        wrapped = np.mod(x, box_arr)
        wrapped[wrapped >= box_arr] = 0.0  # np.mod can round a tiny negative up to the edge
        tree = cKDTree(wrapped, boxsize=box_arr)
    pairs = tree.query_pairs(cutoff, output_type="ndarray")
    vec = minimum_image(x[pairs[:, 1]] - x[pairs[:, 0]], box_arr)
    keep = np.einsum("ij,ij->i", vec, vec) < cutoff * cutoff  # query_pairs includes distance == cutoff
    pairs, vec = pairs[keep], vec[keep]

    # both directions of each pair: (j -> i) carries x_j - x_i
    src = np.concatenate([pairs[:, 1], pairs[:, 0]])
    dst = np.concatenate([pairs[:, 0], pairs[:, 1]])
    edge_vec = np.concatenate([vec, -vec])
    if self_loops:
        loops = np.arange(len(x))
        src = np.concatenate([src, loops])
        dst = np.concatenate([dst, loops])
        edge_vec = np.concatenate([edge_vec, np.zeros((len(x), 3))])
    order = np.argsort(dst * len(x) + src)  # keys are unique: by centre, then neighbour
    edge_index = np.empty((2, len(order)), dtype=np.int64)
    edge_index[0] = src[order]
    edge_index[1] = dst[order]
    edge_vec = edge_vec[order]

    if is_tensor:
        import torch

        return (
            torch.from_numpy(edge_index).to(pos.device),
            torch.from_numpy(edge_vec).to(device=pos.device, dtype=pos.dtype),
        )
    return edge_index, edge_vec.astype(np.result_type(in_dtype, np.float32), copy=False)
