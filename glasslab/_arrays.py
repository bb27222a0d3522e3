"""Validation of the arrays that describe particles: positions, types, box, per-particle values.

One definition for every public entry point that takes a configuration (graphs, descriptors,
analysis, widgets), so that a bad input gets the same message wherever it enters. Each function
returns the cleaned numpy array (float64 or int64) or raises ``ValueError`` naming the problem.
"""

from __future__ import annotations

import numpy as np


def as_numpy(x) -> np.ndarray:
    """A numpy view of an array-like or of a (possibly GPU, possibly differentiable) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def positions(x, what: str = "positions") -> np.ndarray:
    """(N, 3) finite numbers -> float64 (N, 3)."""
    pos = as_numpy(x)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"{what} must have shape (N, 3), got {pos.shape}")
    if not np.issubdtype(pos.dtype, np.number):
        raise ValueError(f"{what} must be numeric, got dtype {pos.dtype}")
    pos = pos.astype(np.float64)
    bad = ~np.isfinite(pos).all(axis=1)
    if bad.any():
        raise ValueError(f"{what} hold NaN or inf for {bad.sum()} particle(s), first index {np.flatnonzero(bad)[0]}")
    return pos


def types(x, n: int, num_types: int) -> np.ndarray:
    """(n,) integers in 0..num_types-1 (integral floats accepted) -> int64 (n,)."""
    if not isinstance(num_types, (int, np.integer)) or num_types < 1:
        raise ValueError(f"num_types must be a positive integer, got {num_types!r}")
    t = as_numpy(x)
    if t.shape != (n,):
        raise ValueError(f"types must have shape ({n},) to match the positions, got {t.shape}")
    if t.dtype.kind == "f":
        if not (np.isfinite(t).all() and np.all(t == np.round(t))):
            raise ValueError("types must be integers 0, 1, ...")
    elif t.dtype.kind not in "iub":
        raise ValueError(f"types must be integers 0, 1, ..., got dtype {t.dtype}")
    t = t.astype(np.int64)
    if n and (t.min() < 0 or t.max() >= num_types):
        raise ValueError(f"types must lie in 0..{num_types - 1} (num_types={num_types}), "
                         f"got values from {t.min()} to {t.max()}")
    return t


def box(x, cutoff: float | None = None) -> np.ndarray | None:
    """Three positive edge lengths of an orthorhombic box -> float64 (3,); None (open) stays None.

    With ``cutoff``, also require ``cutoff < min(box) / 2``, without which the minimum image
    would miss or double-count neighbours.
    """
    if x is None:
        return None
    b = np.asarray(as_numpy(x), dtype=np.float64).reshape(-1)
    if b.shape != (3,) or not np.isfinite(b).all() or (b <= 0).any():
        raise ValueError(f"box must be three positive finite edge lengths, got {b.tolist()}")
    if cutoff is not None and cutoff >= 0.5 * b.min():
        raise ValueError(
            f"cutoff {cutoff} must be smaller than half the shortest box edge ({0.5 * b.min():.4g}): "
            "the minimum image would miss or double-count neighbours"
        )
    return b


def per_particle(x, n: int, name: str = "values", columns: bool = False, finite: bool = True) -> np.ndarray:
    """Numbers, one row per particle -> float64 (n,), or (n,) / (n, F) if ``columns``.

    ``finite=False`` lets NaN through (the widgets draw NaN as "no value").
    """
    arr = as_numpy(x)
    ok_shape = arr.shape == (n,) or (columns and arr.ndim == 2 and arr.shape[0] == n)
    if not ok_shape:
        wanted = f"(N={n},) or (N={n}, F)" if columns else f"({n},), one value per particle"
        raise ValueError(f"{name} must have shape {wanted}, got {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if finite and not np.isfinite(arr).all():
        raise ValueError(f"{name} hold NaN or inf")
    return arr


def l_values(x) -> np.ndarray:
    """Distinct non-negative integer orders l -> int64 (L,)."""
    ls = np.atleast_1d(np.asarray(x))
    if ls.ndim != 1 or ls.size == 0:
        raise ValueError(f"l_values must be a non-empty 1-D sequence of integers, got shape {ls.shape}")
    if ls.dtype.kind == "f" and np.all(np.isfinite(ls)) and np.all(ls == np.round(ls)):
        ls = ls.astype(np.int64)
    if ls.dtype.kind not in "iu" or (ls < 0).any():
        raise ValueError(f"l_values must be non-negative integers, got {ls.tolist()}")
    if len(np.unique(ls)) != len(ls):
        raise ValueError(f"l_values must not repeat, got {ls.tolist()}")
    return ls.astype(np.int64)


def distances(x, name: str) -> np.ndarray:
    """A non-empty 1-D grid of finite non-negative distances -> float64."""
    v = np.atleast_1d(np.asarray(x, dtype=np.float64))
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of distances, got shape {v.shape}")
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError(f"{name} must be finite and non-negative, got {v.tolist()}")
    return v


def positive(x, name: str) -> float:
    """A finite positive number -> float."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {x!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {x!r}")
    return value
