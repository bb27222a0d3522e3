"""Shared test data: random KA-like liquids and small snapshot files built from them.

``random_liquid`` is a plain function (tests import it: ``from conftest import random_liquid``)
because module-level helpers and parametrisations need it outside fixtures; the fixtures below
wrap it for tests that only need one configuration or one file.
"""

import numpy as np
import pytest

from glasslab import io, ka


def random_liquid(n: int, seed: int = 0, rng: np.random.Generator | None = None):
    """``n`` uniform random positions in a cubic periodic box at the KA density, about 20 % B.

    Returns ``(positions (n, 3), types (n,) int64, box (3,))``. Pass ``rng`` to continue a
    generator's stream (positions are drawn first, then types).
    """
    rng = np.random.default_rng(seed) if rng is None else rng
    box = np.full(3, ka.box_length(n))
    positions = rng.uniform(0.0, 1.0, (n, 3)) * box
    types = (rng.random(n) < 1.0 - ka.FRACTION_A).astype(np.int64)
    return positions, types, box


def random_snapshots(n_snap: int = 6, n: int = 120, seed: int = 0, temperature: float = 0.64,
                     times=(1.0, 10.0)) -> list[io.Snapshot]:
    """Snapshots of :func:`random_liquid` with random labels (nothing to learn)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_snap):
        positions, types, box = random_liquid(n, rng=rng)
        labels = rng.random((n, len(times))) + np.linspace(0.5, 1.0, len(times))
        out.append(io.Snapshot(positions, types, box, temperature, times=list(times), propensity=labels))
    return out


@pytest.fixture
def liquid():
    """One :func:`random_liquid` of 120 particles: ``(positions, types, box)``."""
    return random_liquid(120)


@pytest.fixture
def snapshot_file(tmp_path):
    """A glasslab HDF5 file of six :func:`random_snapshots` (120 particles, two label times)."""
    return io.write_h5(tmp_path / "snapshots.h5", random_snapshots())
