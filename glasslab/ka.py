"""The Kob–Andersen 80:20 Lennard-Jones mixture: its constants, pair potential, energies and forces.

Everything is in Lennard-Jones reduced units of the A–A interaction
(σ_AA = ε_AA = m = k_B = 1, time unit τ = sqrt(m σ_AA² / ε_AA)).

The pair potential between types α and β is the Lennard-Jones potential truncated at
``2.5 σ_αβ`` and shifted to zero there (Kob and Andersen, PRE 51, 4626 (1995)). The
parameters are *not* Lorentz–Berthelot: σ_AB = 0.8 is smaller than (σ_AA + σ_BB)/2.
"""

from __future__ import annotations

import numpy as np

from glasslab.neighbours import radius_graph

TYPE_A = 0
TYPE_B = 1
TYPE_NAMES = ("A", "B")
FRACTION_A = 0.8
DENSITY = 1.2
MASS = 1.0

EPSILON = np.array([[1.0, 1.5], [1.5, 0.5]])
"""ε_αβ, indexed by the two particle types."""
SIGMA = np.array([[1.0, 0.8], [0.8, 0.88]])
"""σ_αβ, indexed by the two particle types."""
CUTOFF_FACTOR = 2.5
CUTOFF = CUTOFF_FACTOR * SIGMA
"""Per-pair cutoffs r_c,αβ = 2.5 σ_αβ."""
MAX_CUTOFF = float(CUTOFF.max())

GLASSBENCH_TAU_ALPHA = {0.44: 4120.0, 0.50: 217.0, 0.56: 52.0, 0.64: 16.5}
"""τ_α published with GlassBench for KA at ρ = 1.2, N = 4096 (Jung et al., "Roadmap on machine
learning glassy dynamics", arXiv:2311.14752 (2023)); chapter 3 reads them as self-overlap times."""


def _lj(r, eps, sig):
    sr6 = (sig / r) ** 6
    return 4.0 * eps * (sr6 * sr6 - sr6)


SHIFT = _lj(CUTOFF, EPSILON, SIGMA)
"""V_αβ(r_c,αβ): subtracted so that each pair potential is zero at its cutoff."""


def type_counts(n_particles: int) -> tuple[int, int]:
    """Number of A and B particles in an 80:20 mixture of ``n_particles``."""
    n_a = int(round(FRACTION_A * n_particles))
    return n_a, n_particles - n_a


def box_length(n_particles: int, density: float = DENSITY) -> float:
    """Edge of the cubic box holding ``n_particles`` at number density ``density``."""
    return float((n_particles / density) ** (1.0 / 3.0))


def pair_potential(r, type_i, type_j):
    """Truncated and shifted KA pair energy V_αβ(r) (zero beyond 2.5 σ_αβ).

    All arguments broadcast together; ``r`` in units of σ_AA, energy in units of ε_AA.
    """
    r = np.asarray(r, dtype=float)
    eps = EPSILON[type_i, type_j]
    sig = SIGMA[type_i, type_j]
    inside = r < CUTOFF[type_i, type_j]
    return np.where(inside, _lj(r, eps, sig) - SHIFT[type_i, type_j], 0.0)


def pair_derivative(r, type_i, type_j):
    """dV_αβ/dr of :func:`pair_potential` (zero beyond 2.5 σ_αβ), in ε_AA / σ_AA."""
    r = np.asarray(r, dtype=float)
    eps = EPSILON[type_i, type_j]
    sr6 = (SIGMA[type_i, type_j] / r) ** 6
    return np.where(r < CUTOFF[type_i, type_j], -24.0 * eps * (2.0 * sr6 * sr6 - sr6) / r, 0.0)


def _pairs(positions, types, box):
    """Directed pairs within the largest cutoff: centres i, neighbours j, x_j - x_i, |x_j - x_i|."""
    edge_index, vec = radius_graph(np.asarray(positions, dtype=float), MAX_CUTOFF, box=box)
    j, i = edge_index
    return i, j, vec, np.linalg.norm(vec, axis=1)


def particle_energies(positions, types, box) -> np.ndarray:
    """Potential energy of each particle, half of each of its pair energies, shape (N,).

    Their sum is the total potential energy of the configuration. ``box`` holds the three
    edges of an orthorhombic periodic box.
    """
    types = np.asarray(types)
    i, j, _, r = _pairs(positions, types, box)
    # each unordered pair appears twice (i->j and j->i): each copy gives half to its centre
    return 0.5 * np.bincount(i, weights=pair_potential(r, types[i], types[j]), minlength=len(types))


def energy_and_forces(positions, types, box) -> tuple[float, np.ndarray]:
    """Total potential energy and the forces (N, 3) on every particle, float64.

    The force on i is Σ_j V'(r_ij) (x_j - x_i) / r_ij; energy as :func:`particle_energies`.
    """
    types = np.asarray(types)
    i, j, vec, r = _pairs(positions, types, box)
    energy = 0.5 * pair_potential(r, types[i], types[j]).sum()
    forces = np.zeros((len(types), 3))
    np.add.at(forces, i, (pair_derivative(r, types[i], types[j]) / r)[:, None] * vec)
    return float(energy), forces
