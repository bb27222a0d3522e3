"""Structure and dynamics of glassy liquids: g(r), S(q), MSD, F_s(q,t), τ_α, χ4, propensity.

Conventions: positions are arrays of shape (N, 3) (or (T, N, 3) for trajectories, *unwrapped*
so that displacements are real); boxes are three orthorhombic edge lengths; ``mask`` selects
the particles to average over (e.g. ``types == 0`` for A particles). Times and lengths are in
LJ units.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from glasslab import _arrays
from glasslab.neighbours import radius_graph

Q_PEAK = 7.25
"""Wavenumber of the first peak of S_AA(q) for KA at ρ = 1.2, used for F_s and τ_α."""


def _mask(n: int, mask) -> np.ndarray:
    if mask is None:
        return np.ones(n, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (n,):
        raise ValueError(f"mask must have shape ({n},), got {mask.shape}")
    if not mask.any():
        raise ValueError("mask selects no particle")
    return mask


# --------------------------------------------------------------------------- structure

def radial_distribution(positions, box, types=None, pair=None, r_max: float = 4.0, n_bins: int = 200):
    """Radial distribution function g(r), or the partial g_αβ(r) if ``pair=(α, β)``.

    ``positions`` is (N, 3) or a stack (S, N, 3) of snapshots of the same box, averaged.
    g_αβ(r) is normalised so that it tends to 1 at large r: the mean number of β particles
    in the shell [r, r + dr] around an α particle, divided by ρ_β 4π r² dr.

    Returns ``(r, g)``: bin centres and values, each of shape (n_bins,).
    """
    box = _arrays.box(box, r_max)
    frames = np.asarray(positions, dtype=float)
    frames = frames[None] if frames.ndim == 2 else frames
    n = frames.shape[1]
    types = np.zeros(n, dtype=int) if types is None else np.asarray(types)
    if pair is None:
        centres = others = np.ones(n, dtype=bool)
    else:
        centres, others = types == pair[0], types == pair[1]
    edges = np.linspace(0.0, r_max, n_bins + 1)
    counts = np.zeros(n_bins)
    for frame in frames:
        edge_index, vec = radius_graph(frame, r_max, box=box)
        j, i = edge_index
        keep = centres[i] & others[j]
        counts += np.histogram(np.linalg.norm(vec[keep], axis=1), bins=edges)[0]
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    rho_other = others.sum() / np.prod(box)
    g = counts / (len(frames) * centres.sum() * rho_other * shell)
    return 0.5 * (edges[1:] + edges[:-1]), g


def first_peak_and_minimum(r, g, smooth: int = 5):
    """Positions of the first maximum of g(r) and of the first minimum after it.

    g is smoothed by a running mean over ``smooth`` bins before locating the minimum, so
    that histogram noise does not stop the search early.
    """
    r, g = np.asarray(r), np.asarray(g)
    peak = int(np.argmax(g))
    gs = np.convolve(g, np.ones(smooth) / smooth, mode="same")
    for k in range(peak + 1, len(gs) - 1):
        if gs[k] <= gs[k - 1] and gs[k] < gs[k + 1]:
            return float(r[peak]), float(r[k])
    raise ValueError("g(r) has no minimum after its first peak within r_max")


def structure_factor(positions, box, types=None, species=None, q_max: float = 15.0, n_bins: int = 120):
    """Static structure factor S(q) = ``<|Σ_j exp(i q·x_j)|²> / N_s`` on the box's wavevectors.

    Computed directly on the reciprocal lattice q = 2π (n_x/L_x, n_y/L_y, n_z/L_z)
    (no Fourier transform of a truncated g(r)), averaged over wavevectors in shells of ``|q|``
    and over the snapshots in ``positions`` ((N, 3) or (S, N, 3)). ``species`` restricts
    the sum to one particle type (e.g. 0 for S_AA).

    Returns ``(q, S)`` for the non-empty shells between 2π/L and ``q_max``.
    """
    box = _arrays.box(box)
    frames = np.asarray(positions, dtype=float)
    frames = frames[None] if frames.ndim == 2 else frames
    n = frames.shape[1]
    sel = np.ones(n, dtype=bool) if species is None else (np.asarray(types) == species)
    n_max = np.floor(q_max * box / (2 * np.pi)).astype(int)
    grids = np.meshgrid(*[np.arange(-m, m + 1) for m in n_max], indexing="ij")
    q_vec = np.stack([g.ravel() for g in grids], axis=1) * (2 * np.pi / box)
    q_norm = np.linalg.norm(q_vec, axis=1)
    keep = (q_norm > 0) & (q_norm <= q_max)
    q_vec, q_norm = q_vec[keep], q_norm[keep]
    s_of_q = np.zeros(len(q_vec))
    for frame in frames:
        x = frame[sel]
        for start in range(0, len(q_vec), 4096):
            phase = x @ q_vec[start : start + 4096].T
            s_of_q[start : start + 4096] += np.cos(phase).sum(0) ** 2 + np.sin(phase).sum(0) ** 2
    s_of_q /= len(frames) * sel.sum()
    edges = np.linspace(2 * np.pi / box.max() * 0.999, q_max, n_bins + 1)
    which = np.digitize(q_norm, edges) - 1
    ok = (which >= 0) & (which < n_bins)
    total = np.bincount(which[ok], weights=s_of_q[ok], minlength=n_bins)
    count = np.bincount(which[ok], minlength=n_bins)
    filled = count > 0
    q_mean = np.bincount(which[ok], weights=q_norm[ok], minlength=n_bins)
    return q_mean[filled] / count[filled], total[filled] / count[filled]


# --------------------------------------------------------------------------- dynamics

def self_intermediate_scattering(displacements, q: float = Q_PEAK, mask=None) -> np.ndarray:
    """F_s(q, t) = <sin(q|Δr|)/(q|Δr|)>, the isotropic average of <exp(i q·Δr)>.

    ``displacements`` has shape (..., N, 3); the mean is over the particles in ``mask``,
    leaving the leading axes.
    """
    d = np.asarray(displacements, dtype=float)
    m = _mask(d.shape[-2], mask)
    r = np.linalg.norm(d[..., m, :], axis=-1)
    return np.sinc(q * r / np.pi).mean(axis=-1)  # np.sinc(x) = sin(πx)/(πx)


def mean_squared_displacement(displacements, mask=None) -> np.ndarray:
    """``<|Δr|²>`` over the particles in ``mask``; ``displacements`` of shape (..., N, 3)."""
    d = np.asarray(displacements, dtype=float)
    m = _mask(d.shape[-2], mask)
    return (d[..., m, :] ** 2).sum(-1).mean(-1)


def overlap(displacements, a: float = 0.3, mask=None) -> np.ndarray:
    """Self overlap Q = fraction of particles (in ``mask``) that moved less than ``a``."""
    d = np.asarray(displacements, dtype=float)
    m = _mask(d.shape[-2], mask)
    return (np.linalg.norm(d[..., m, :], axis=-1) < a).mean(-1)


@dataclasses.dataclass
class DynamicsCurves:
    """Time correlation functions of a trajectory, averaged over time origins.

    Attributes: ``lags`` (L,) times; ``msd``, ``fs`` (at wavenumber ``q``) and ``chi4``
    (dynamic susceptibility of the overlap with threshold ``a``) of shape (L,).
    """

    lags: np.ndarray
    msd: np.ndarray
    fs: np.ndarray
    chi4: np.ndarray
    q: float
    a: float


def trajectory_dynamics(trajectory, frame_time: float, lag_frames=None, mask=None, q: float = Q_PEAK,
                        a: float = 0.3, max_origins: int = 200) -> DynamicsCurves:
    """MSD, F_s(q,t) and χ4(t) of an unwrapped trajectory, averaged over time origins.

    Args:
        trajectory: (T, N, 3) unwrapped positions sampled every ``frame_time``.
        lag_frames: lags in frames (default: about 40 log-spaced lags up to T/2).
        mask: particles to average over (e.g. A particles).
        max_origins: at most this many equally spaced time origins per lag.

    χ4(t) = N_m [<Q(t)²> - <Q(t)>²] over time origins, with N_m the number of particles
    in ``mask`` and Q the self overlap (threshold ``a``).
    """
    traj = np.asarray(trajectory, dtype=float)
    n_frames = len(traj)
    m = _mask(traj.shape[1], mask)
    if lag_frames is None:
        lag_frames = np.unique(np.geomspace(1, max(1, n_frames // 2), 40).astype(int))
    lag_frames = np.asarray(lag_frames, dtype=int)
    if lag_frames.min() < 1 or lag_frames.max() >= n_frames:
        raise ValueError(f"lags must lie in 1..{n_frames - 1} frames")
    msd, fs, chi4 = (np.empty(len(lag_frames)) for _ in range(3))
    for k, lag in enumerate(lag_frames):
        origins = np.unique(np.linspace(0, n_frames - 1 - lag, min(max_origins, n_frames - lag)).astype(int))
        disp = traj[origins + lag][:, m] - traj[origins][:, m]
        msd[k] = mean_squared_displacement(disp).mean()
        fs[k] = self_intermediate_scattering(disp, q).mean()
        ov = overlap(disp, a)
        chi4[k] = m.sum() * ov.var()
    return DynamicsCurves(lag_frames * frame_time, msd, fs, chi4, q, a)


def tau_alpha(times, fs, level: float = np.exp(-1.0)) -> float:
    """Structural relaxation time: where F_s(q, t) first falls to ``level`` (1/e).

    Interpolates linearly in log(t) between the two samples around the crossing. Returns
    NaN if F_s never falls below ``level`` within ``times``.
    """
    t, f = np.asarray(times, dtype=float), np.asarray(fs, dtype=float)
    below = np.flatnonzero(f < level)
    if len(below) == 0:
        return float("nan")
    k = below[0]
    if k == 0:
        return float(t[0])
    lt0, lt1 = np.log(t[k - 1]), np.log(t[k])
    frac = (f[k - 1] - level) / (f[k - 1] - f[k])
    return float(np.exp(lt0 + frac * (lt1 - lt0)))


def closest_time(times, t: float) -> int:
    """Index of the entry of ``times`` (K,) closest to ``t`` on a logarithmic scale, e.g. the label
    time nearest τ_α (label times are log-spaced, so "closest" is a ratio, not a difference)."""
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or not len(times) or (times <= 0).any() or not t > 0:
        raise ValueError(f"closest_time needs positive times (K,) and a positive t, got {times.tolist()} and {t}")
    return int(np.argmin(np.abs(np.log(times / t))))


def vft(temperature, tau0, d, t0):
    """Vogel–Fulcher–Tammann law τ(T) = τ0 exp(D T0 / (T - T0))."""
    temperature = np.asarray(temperature, dtype=float)
    return tau0 * np.exp(d * t0 / (temperature - t0))


def fit_vft(temperatures, taus):
    """Least-squares fit of log τ_α(T) by the VFT law; returns (tau0, D, T0)."""
    from scipy.optimize import curve_fit

    t, tau = np.asarray(temperatures, float), np.asarray(taus, float)

    def log_vft(x, log_tau0, d, t0):
        return log_tau0 + d * t0 / (x - t0)

    p0 = (np.log(tau.min()) - 1.0, 2.0, 0.5 * t.min())
    (log_tau0, d, t0), _ = curve_fit(log_vft, t, np.log(tau), p0=p0,
                                     bounds=([-20, 0.0, 0.0], [20, 100.0, 0.999 * t.min()]))
    return float(np.exp(log_tau0)), float(d), float(t0)


# --------------------------------------------------------------------------- propensity

def propensity(initial, replica_positions, halves: bool = False):
    """Iso-configurational propensity: mean over replicas of ``|x_i(t) - x_i(0)|``.

    ``initial`` (N, 3); ``replica_positions`` (R, N, 3) or (R, K, N, 3) unwrapped positions
    of R replicas (at K times). Returns (N,) or (N, K). With ``halves``, returns
    ``(propensity, halves)``, ``halves`` (2, N) or (2, N, K) the propensities of the first and
    of the second half of the replicas, whose agreement measures the labels' noise
    (:func:`noise_ceiling`).
    """
    x0 = np.asarray(initial, dtype=float)
    distance = np.linalg.norm(np.asarray(replica_positions, dtype=float) - x0, axis=-1)  # (R, [K,] N)

    def mean_over_replicas(d):
        m = d.mean(axis=0)
        return m.T if m.ndim == 2 else m

    if not halves:
        return mean_over_replicas(distance)
    half = len(distance) // 2
    return mean_over_replicas(distance), np.stack([mean_over_replicas(distance[:half]),
                                                   mean_over_replicas(distance[half:])])


def pearson(x, y, axis: int = 0) -> np.ndarray:
    """Pearson correlation of x and y along ``axis`` (columns by default)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    xc = x - x.mean(axis=axis, keepdims=True)
    yc = y - y.mean(axis=axis, keepdims=True)
    return (xc * yc).sum(axis) / np.sqrt((xc**2).sum(axis) * (yc**2).sum(axis))


@dataclasses.dataclass
class NoiseCeiling:
    """How predictable a propensity measured with R replicas is, per timescale.

    Attributes:
        split_half: (K,) Pearson correlation between the propensities of two disjoint halves
            (R/2 replicas each) of the iso-configurational ensemble.
        reliability: (K,) Spearman–Brown corrected reliability of the full R-replica
            propensity, ``2 r / (1 + r)``: the fraction of its variance due to structure.
        max_pearson: (K,) ``sqrt(reliability)``: the largest Pearson correlation any
            predictor of the (infinite-replica) propensity can reach against these labels.
    """

    split_half: np.ndarray
    reliability: np.ndarray
    max_pearson: np.ndarray


def noise_ceiling(halves, mask=None) -> NoiseCeiling:
    """Noise ceiling from split-half propensities.

    ``halves`` has shape (2, N, K) for one snapshot or (S, 2, N, K) for several (pooled);
    ``mask`` (N,) or (S, N) selects the particles (e.g. A).
    """
    h = np.asarray(halves, dtype=float)
    if h.ndim == 3:
        h = h[None]
    if h.ndim != 4 or h.shape[1] != 2:
        raise ValueError(f"halves must have shape (2, N, K) or (S, 2, N, K), got {np.shape(halves)}")
    s, _, n, k = h.shape
    m = np.ones((s, n), dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), (s, n))
    a = h[:, 0][m]  # (M, K)
    b = h[:, 1][m]
    r = pearson(a, b, axis=0)
    rel = 2 * r / (1 + r)
    return NoiseCeiling(r, rel, np.sqrt(np.clip(rel, 0, None)))
