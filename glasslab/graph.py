"""One snapshot as a PyG graph: the input of every model in glasslab.

Edges join particles closer than a cutoff (:func:`glasslab.neighbours.radius_graph`, with its
conventions: ``edge_index[0]`` the neighbour j, ``edge_index[1]`` the centre i,
``edge_vec = x_j - x_i`` under the minimum image: the paper's ``a_ij``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from glasslab import _arrays, ka
from glasslab.neighbours import radius_graph

__all__ = ["build_graph"]


def build_graph(
    positions,
    types,
    box=None,
    cutoff: float = 2.0,
    propensity=None,
    times=None,
    node_scalars=None,
    num_types: int = 2,
    dtype: torch.dtype = torch.float32,
) -> Data:
    """One snapshot as a PyG graph, the input of every model in glasslab.

    Args:
        positions: (N, 3) particle positions (may be unwrapped in a periodic box).
        types: (N,) integer particle types in ``{0, ..., num_types - 1}`` (0 = A, 1 = B).
        box: (3,) orthorhombic box edges, or None for an open cluster.
        cutoff: neighbour distance of the graph (2.0 in the paper).
        propensity: optional (N, K) targets, one column per timescale.
        times: optional (K,) timescales of the targets, ascending.
        node_scalars: optional (N, F) extra rotation-invariant node inputs
            (e.g. the inherent-structure potential energy).
        dtype: floating dtype of the features (``torch.float64`` for equivariance checks).

    Returns:
        ``Data`` with ``x`` (N, num_types) one-hot types, ``types`` (N,), ``pos`` (N, 3),
        ``box`` (1, 3), ``edge_index`` (2, E), ``edge_vec`` (E, 3), ``mask_a`` (N,) bool
        marking A particles, and when given ``y`` (N, K), ``times`` (1, K) and
        ``node_scalars`` (N, F). ``box`` and ``times`` keep a leading axis so that a
        ``Batch`` stacks them per graph.
    """
    pos = _arrays.positions(positions)
    n = len(pos)
    types = _arrays.types(types, n, num_types)
    box_arr = _arrays.box(box, cutoff)
    edge_index, edge_vec = radius_graph(pos, cutoff, box=box_arr)

    stored_pos = pos if box_arr is None else np.mod(pos, box_arr)
    data = Data(
        x=torch.nn.functional.one_hot(torch.from_numpy(types), num_types).to(dtype),
        types=torch.from_numpy(types),
        pos=torch.as_tensor(stored_pos, dtype=dtype),
        edge_index=torch.from_numpy(edge_index),
        edge_vec=torch.as_tensor(edge_vec, dtype=dtype),
        mask_a=torch.from_numpy(types == ka.TYPE_A),
    )
    data.box = (
        torch.as_tensor(box_arr, dtype=dtype).view(1, 3)
        if box_arr is not None
        else torch.full((1, 3), float("inf"), dtype=dtype)
    )
    if propensity is not None:
        y = np.asarray(_arrays.as_numpy(propensity), dtype=np.float64)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[0] != n:
            raise ValueError(f"propensity must have shape (N={n}, K), got {y.shape}")
        data.y = torch.as_tensor(y, dtype=dtype)
    if times is not None:
        t = np.asarray(_arrays.as_numpy(times), dtype=np.float64).reshape(-1)
        if propensity is not None and len(t) != data.y.shape[1]:
            raise ValueError(f"times has {len(t)} entries but propensity has {data.y.shape[1]} columns")
        if np.any(np.diff(t) <= 0):
            raise ValueError(f"times must be strictly ascending, got {t.tolist()}")
        data.times = torch.as_tensor(t, dtype=dtype).view(1, -1)
    if node_scalars is not None:
        s = np.asarray(_arrays.as_numpy(node_scalars), dtype=np.float64)
        if s.ndim == 1:
            s = s[:, None]
        if s.shape[0] != n or not np.isfinite(s).all():
            raise ValueError(f"node_scalars must be finite with shape (N={n}, F), got {s.shape}")
        data.node_scalars = torch.as_tensor(s, dtype=dtype)
    return data
