"""From snapshot files to PyG graphs: building, on-disk caching, and reproducible splits."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch_geometric.data import Data
from tqdm.auto import tqdm

from glasslab import io, provenance
from glasslab._atomic import atomic_path
from glasslab.graph import build_graph
from glasslab.paths import cache_dir as default_cache_dir

GRAPH_CACHE_VERSION = 3
"""Bump when build_graph changes what it stores, to invalidate cached graphs."""

POSITIONS = io.POSITIONS
NODE_SCALARS = io.NODE_SCALARS


def snapshot_to_graph(snap: io.Snapshot, cutoff: float = 2.0, positions: str = "thermal",
                      node_scalars: Sequence[str] = (), dtype=torch.float32) -> Data:
    """One snapshot as a graph (see :func:`glasslab.graph.build_graph`).

    Args:
        positions: ``"thermal"`` (the configuration) or ``"inherent"`` (its inherent
            structure, revised paper).
        node_scalars: names of extra per-particle inputs, among ``("epot_is",)``.

    The graph also carries ``temperature`` (1,) and ``tau_alpha`` (1,) (the τ_α its file
    records, NaN if none) so that mixed-temperature batches know where each graph comes from,
    and ``y_halves`` (N, 2, K), the split-half propensities, when the snapshot has them (for
    the noise ceiling).
    """
    x = snap.coordinates(positions)
    scalars = None
    if node_scalars:
        cols = []
        for name in node_scalars:
            if name not in NODE_SCALARS:
                raise ValueError(f"unknown node scalar {name!r}; available: {NODE_SCALARS}")
            value = getattr(snap, name)
            if value is None:
                raise ValueError(f"this snapshot has no {name!r}")
            cols.append(value)
        scalars = np.stack(cols, axis=1)
    data = build_graph(x, snap.types, box=snap.box, cutoff=cutoff, propensity=snap.propensity,
                       times=snap.times, node_scalars=scalars, dtype=dtype)
    data.temperature = torch.tensor([snap.temperature], dtype=dtype)
    data.tau_alpha = torch.tensor([float(snap.meta.get("tau_alpha") or "nan")], dtype=torch.float64)
    if snap.propensity_halves is not None:
        data.y_halves = torch.as_tensor(snap.propensity_halves, dtype=dtype).permute(1, 0, 2)  # (N, 2, K)
    return data


def load_graphs(path, cutoff: float = 2.0, positions: str = "thermal", node_scalars: Sequence[str] = (),
                cache: bool = True, cache_dir=None, temperature: float | None = None,
                progress: bool = True) -> list[Data]:
    """All snapshots of a data file as graphs, cached on disk.

    The cache key is the file's SHA-256 plus the graph settings, so an edited file or
    other settings never return stale graphs. The cache lives in ``cache_dir``
    (default :func:`glasslab.paths.cache_dir`) and is written atomically. A cache file that
    cannot be read back (truncated, corrupted, from another version, holding other settings
    or non-finite labels) is rebuilt with a warning. Cache files are read with
    ``torch.load(weights_only=True)`` (tensors and plain containers only: no code runs), and
    data files with :func:`glasslab.io.read` (safe on untrusted files).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a data file (give a glob such as '{path}/*.h5')")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    settings = {"cutoff": cutoff, "positions": positions, "node_scalars": list(node_scalars),
                "temperature": temperature, "version": GRAPH_CACHE_VERSION}
    cache_file = None
    if cache:
        key = hashlib.sha256((provenance.sha256(path) + json.dumps(settings, sort_keys=True)).encode()).hexdigest()[:24]
        cache_file = Path(cache_dir or default_cache_dir()) / "graphs" / f"{path.stem}-{key}.pt"
        if cache_file.exists():
            graphs = _read_cache(cache_file, settings)
            if graphs is not None:
                return graphs
    snaps = io.read(path, temperature=temperature)
    graphs = []
    for i, s in enumerate(tqdm(snaps, desc=f"graphs from {path.name}", disable=not progress, leave=False)):
        try:
            graphs.append(snapshot_to_graph(s, cutoff, positions, node_scalars))
        except ValueError as exc:
            raise ValueError(f"{path}: snapshot {i}: {exc}") from None
    if cache_file is not None:
        with atomic_path(cache_file) as tmp:
            torch.save({"settings": settings, "graphs": [g.to_dict() for g in graphs]}, tmp)
    return graphs


def _read_cache(cache_file: Path, settings: dict) -> list[Data] | None:
    """The graphs of a cache file, or None (with a warning) when it is unusable and must be rebuilt."""
    try:
        stored = torch.load(cache_file, weights_only=True)
        if not isinstance(stored, dict) or stored.get("settings") != settings:
            raise ValueError("written with other settings or by another glasslab version")
        graphs = [Data(**d) for d in stored["graphs"]]
        if not graphs:
            raise ValueError("holds no graphs")
        for g in graphs:
            for name in ("pos", "y"):
                value = getattr(g, name, None)
                if value is not None and not torch.isfinite(value).all():
                    raise ValueError(f"{name} holds NaN or inf")
        return graphs
    except Exception as exc:  # truncated or corrupted files raise many types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        warnings.warn(f"{cache_file}: unusable graph cache ({reason}); rebuilding it", stacklevel=3)
        try:
            cache_file.unlink()
        except OSError:
            pass
        return None


class GlassDataset(torch.utils.data.Dataset):
    """A list of graphs (one per snapshot) with an optional transform, for PyG loaders.

    Build it from files with :meth:`from_files`, or from graphs directly.
    """

    def __init__(self, graphs: Sequence[Data], transform=None):
        self.graphs = list(graphs)
        self.transform = transform

    @classmethod
    def from_files(cls, paths, transform=None, **kwargs) -> "GlassDataset":
        """Graphs of every snapshot in ``paths`` (one path or several), see :func:`load_graphs`."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        graphs = [g for p in paths for g in load_graphs(p, **kwargs)]
        return cls(graphs, transform)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index):
        if isinstance(index, (slice, list, np.ndarray, torch.Tensor)):
            idx = range(len(self))[index] if isinstance(index, slice) else [int(i) for i in index]
            return GlassDataset([self.graphs[i] for i in idx], self.transform)
        g = self.graphs[index]
        return self.transform(g) if self.transform is not None else g


def check_label_times(path, times, reference) -> None:
    """Raise ``ValueError`` unless the label times of ``path`` equal those of ``reference``.

    ``times``: (K,) label times of ``path``; ``reference``: ``(path, times)`` of the first file.
    Files read together (chunks of one temperature) must agree, since the k-th output of a
    model fits the k-th label of every snapshot (relative tolerance 1e-6).
    """
    times, (ref_path, ref_times) = np.asarray(times, float), reference
    ref_times = np.asarray(ref_times, float)
    if times.shape != ref_times.shape or not np.allclose(times, ref_times, rtol=1e-6, atol=0):
        raise ValueError(f"{path}: label times {np.round(times, 4).tolist()} differ from those of {ref_path} "
                         f"({np.round(ref_times, 4).tolist()}); the k-th label of each file must be at the same "
                         "time to be fitted by one output (make chunks with `glasslab simulate --t-max`)")


def split_indices(n: int, fractions=(0.5, 0.4, 0.1), seed: int = 0):
    """Reproducible train / validation / test indices of ``n`` snapshots.

    Default fractions are the paper's 400 / 320 / 80 of 800 configurations. Each part gets
    at least one snapshot when ``n >= 3``. Returns three sorted integer arrays.
    """
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions.tolist()}")
    if n < 3:
        raise ValueError(f"need at least 3 snapshots to split, got {n}")
    counts = np.floor(fractions * n).astype(int)
    counts = np.maximum(counts, (fractions > 0).astype(int))
    counts[0] = n - counts[1:].sum()
    perm = np.random.default_rng(seed).permutation(n)
    train, val, test = np.split(perm, np.cumsum(counts)[:2])
    return np.sort(train), np.sort(val), np.sort(test)
