"""Neighbour graphs of particle configurations, periodic (minimum image) or open.

Conventions (as PyG's default ``source_to_target`` flow): ``edge_index[0]`` is the neighbour
``j`` (source), ``edge_index[1]`` the centre ``i`` (target), and ``edge_vec = x_j - x_i``
under the minimum image convention: the paper's ``a_ij``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch_geometric.data import Data

from glasslab import ka


def _as_numpy(pos):
    if isinstance(pos, torch.Tensor):
        return pos.detach().cpu().numpy()
    return np.asarray(pos)


def _check_positions(pos: np.ndarray, what: str = "positions") -> None:
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"{what} must have shape (N, 3), got {pos.shape}")
    if not np.issubdtype(pos.dtype, np.number):
        raise ValueError(f"{what} must be numeric, got dtype {pos.dtype}")
    bad = ~np.isfinite(pos).all(axis=1)
    if bad.any():
        raise ValueError(f"{what} hold NaN or inf for {bad.sum()} particle(s), first index {np.flatnonzero(bad)[0]}")


def check_box(box, cutoff: float | None = None) -> np.ndarray | None:
    """Validate an orthorhombic box (three positive edge lengths) against a cutoff.

    Returns the box as a float64 array of shape (3,), or None for open boundaries.
    """
    if box is None:
        return None
    box = np.asarray(_as_numpy(box), dtype=np.float64).reshape(-1)
    if box.shape != (3,) or not np.isfinite(box).all() or (box <= 0).any():
        raise ValueError(f"box must be three positive finite edge lengths, got {box.tolist()}")
    if cutoff is not None and cutoff >= 0.5 * box.min():
        raise ValueError(
            f"cutoff {cutoff} must be smaller than half the shortest box edge ({0.5 * box.min():.4g}): "
            "the minimum image would miss or double-count neighbours"
        )
    return box


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
    is_tensor = isinstance(pos, torch.Tensor)
    x = _as_numpy(pos)
    _check_positions(x)
    if not np.isfinite(cutoff) or cutoff <= 0:
        raise ValueError(f"cutoff must be a positive number, got {cutoff}")
    box_arr = check_box(box, cutoff)
    x = x.astype(np.float64, copy=False)

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
        return (
            torch.from_numpy(edge_index).to(pos.device),
            torch.from_numpy(edge_vec).to(device=pos.device, dtype=pos.dtype),
        )
    return edge_index, edge_vec.astype(np.result_type(pos.dtype, np.float32), copy=False)


def _check_types(types: np.ndarray, n: int, num_types: int) -> np.ndarray:
    if types.shape != (n,):
        raise ValueError(f"types must have shape ({n},) to match the positions, got {types.shape}")
    if types.dtype.kind == "f":
        if not np.all(np.isfinite(types)) or not np.all(types == np.round(types)):
            raise ValueError("types must be integers 0, 1, ...")
    elif types.dtype.kind not in "iub":
        raise ValueError(f"types must be integers 0, 1, ..., got dtype {types.dtype}")
    types = types.astype(np.int64)
    if n and (types.min() < 0 or types.max() >= num_types):
        raise ValueError(f"types must lie in {{0, ..., {num_types - 1}}}, got values from {types.min()} to {types.max()}")
    return types


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
    pos = _as_numpy(positions)
    _check_positions(pos)
    n = len(pos)
    types = _check_types(_as_numpy(types), n, num_types)
    box_arr = check_box(box, cutoff)
    edge_index, edge_vec = radius_graph(pos.astype(np.float64), cutoff, box=box_arr)

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
        y = np.asarray(_as_numpy(propensity), dtype=np.float64)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[0] != n:
            raise ValueError(f"propensity must have shape (N={n}, K), got {y.shape}")
        data.y = torch.as_tensor(y, dtype=dtype)
    if times is not None:
        t = np.asarray(_as_numpy(times), dtype=np.float64).reshape(-1)
        if propensity is not None and len(t) != data.y.shape[1]:
            raise ValueError(f"times has {len(t)} entries but propensity has {data.y.shape[1]} columns")
        if np.any(np.diff(t) <= 0):
            raise ValueError(f"times must be strictly ascending, got {t.tolist()}")
        data.times = torch.as_tensor(t, dtype=dtype).view(1, -1)
    if node_scalars is not None:
        s = np.asarray(_as_numpy(node_scalars), dtype=np.float64)
        if s.ndim == 1:
            s = s[:, None]
        if s.shape[0] != n or not np.isfinite(s).all():
            raise ValueError(f"node_scalars must be finite with shape (N={n}, F), got {s.shape}")
        data.node_scalars = torch.as_tensor(s, dtype=dtype)
    return data
