"""Spherical harmonics: the course's one convention, and its map to e3nn's.

*Complex* Y_l^m(θ, φ) are orthonormal on the unit sphere and include the Condon–Shortley
phase (-1)^m, exactly as ``scipy.special.sph_harm_y(l, m, θ, φ)`` (θ polar angle from +z,
φ azimuth from +x); Y_l^{-m} = (-1)^m conj(Y_l^m).
*Real* Y_{lm} are the orthonormal real harmonics without that phase:
Y_{l0} = Y_l^0, Y_{lm} = √2 N_lm P_l^m(cos θ) cos(mφ) (m > 0),
Y_{l,-m} = √2 N_lm P_l^m(cos θ) sin(mφ) (m > 0), with P_l^m the Legendre function
*without* the Condon–Shortley phase. They are a unitary change of basis of the complex
ones within each l: Y_l^m = (-1)^m (Y_{lm} + i Y_{l,-m}) / √2 and
Y_l^{-m} = (Y_{lm} - i Y_{l,-m}) / √2 for m > 0. Hence ``Σ_m |q_lm|²`` and the invariant q_l
are the same in both bases. Coefficients are stored per l with m = -l, ..., l
(see :func:`lm_indices`). e3nn's ``o3.spherical_harmonics`` uses another real basis (other
axis order and signs, an orthogonal change of basis within each l): with its default
``normalization="integral"`` the norm per l of any sum Σ_j w_j Y^l(r̂_j) equals ours; with
``normalization="component"`` (the default of the ``o3.SphericalHarmonics`` module) it is
larger by √(4π).

The map is a cyclic relabelling of the axes: e3nn's real harmonics of a vector (x, y, z), with
``normalization="integral"``, equal ours of the vector (z, x, y), signs included (e3nn's polar
axis is y): :func:`e3nn_spherical_harmonics` computes them that way, and a test checks it against
``e3nn.o3.spherical_harmonics`` to 1e-14. Chapter 8 teaches both; the widgets draw e3nn's.
"""

from __future__ import annotations

import numpy as np

from glasslab import _arrays

__all__ = ["lm_indices", "spherical_harmonics", "real_to_complex", "E3NN_AXES", "e3nn_spherical_harmonics"]

E3NN_AXES = (2, 0, 1)
"""e3nn's harmonics of v are ours of ``v[..., E3NN_AXES]``, i.e. of (z, x, y)."""


def lm_indices(l_values) -> tuple[np.ndarray, np.ndarray]:
    """The (l, m) of each column of the SH and q_lm arrays: per l in order, m = -l, ..., l.

    Returns two int arrays of length M = Σ_l (2l + 1).
    """
    ls = _arrays.l_values(l_values)
    l_col = np.concatenate([np.full(2 * l + 1, l) for l in ls])
    m_col = np.concatenate([np.arange(-l, l + 1) for l in ls])
    return l_col, m_col


def _legendre_normalised(z: np.ndarray, lmax: int) -> dict:
    """N_lm P_l^m(z) / sin^m θ (no Condon–Shortley phase) for 0 <= m <= l <= lmax.

    N_lm = sqrt((2l+1)/(4π) (l-m)!/(l+m)!). Uses the fully normalised recurrences, stable
    for the l (<= ~50) used here. Returns {(l, m): array like z}.
    """
    p = {}
    pmm = np.full_like(z, np.sqrt(1.0 / (4.0 * np.pi)))
    for m in range(lmax + 1):
        if m > 0:
            pmm = pmm * np.sqrt((2.0 * m + 1.0) / (2.0 * m))
        p[(m, m)] = pmm
        if m + 1 <= lmax:
            p[(m + 1, m)] = np.sqrt(2.0 * m + 3.0) * z * pmm
        for l in range(m + 2, lmax + 1):
            a = np.sqrt((4.0 * l * l - 1.0) / (l * l - m * m))
            b = np.sqrt(((l - 1.0) ** 2 - m * m) / (4.0 * (l - 1.0) ** 2 - 1.0))
            p[(l, m)] = a * (z * p[(l - 1, m)] - b * p[(l - 2, m)])
    return p


def spherical_harmonics(vectors, l_values, basis: str = "real") -> np.ndarray:
    """Orthonormal spherical harmonics of the directions of ``vectors``.

    Args:
        vectors: (E, 3) non-zero vectors (only their direction matters).
        l_values: orders l to compute.
        basis: ``"real"`` (float64) or ``"complex"`` (complex128, Condon–Shortley phase,
            equal to ``scipy.special.sph_harm_y(l, m, θ, φ)``); see the module docstring.

    Returns:
        (E, M) array, columns ordered as :func:`lm_indices` (per l, m = -l..l).
    """
    if basis not in ("real", "complex"):
        raise ValueError(f"basis must be 'real' or 'complex', got {basis!r}")
    ls = _arrays.l_values(l_values)
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vectors must have shape (E, 3), got {v.shape}")
    norm = np.sqrt(np.einsum("ij,ij->i", v, v))
    if v.shape[0] and not (np.isfinite(norm).all() and norm.min() > 0):
        raise ValueError("vectors must be finite and non-zero to define a direction")
    x, y, z = (v / norm[:, None]).T if v.shape[0] else (np.zeros(0),) * 3
    lmax = int(ls.max())
    p = _legendre_normalised(z, lmax)
    # (x + i y)^m = sin^m θ e^{imφ}: real part c_m = sin^m θ cos mφ, imaginary s_m = sin^m θ sin mφ
    cos_m, sin_m = [np.ones_like(x)], [np.zeros_like(x)]
    for _ in range(lmax):
        c, s = cos_m[-1], sin_m[-1]
        cos_m.append(c * x - s * y)
        sin_m.append(s * x + c * y)
    if basis == "real":  # the √2 of the real harmonics with m != 0
        cos_m = [cos_m[0]] + [np.sqrt(2.0) * c for c in cos_m[1:]]
        sin_m = [sin_m[0]] + [np.sqrt(2.0) * s for s in sin_m[1:]]
    dtype = np.float64 if basis == "real" else np.complex128
    out = np.empty((len(x), int(np.sum(2 * ls + 1))), dtype=dtype)
    col = 0
    for l in ls:
        for m in range(-l, l + 1):
            a = abs(m)
            if basis == "real":
                if m == 0:
                    out[:, col] = p[(l, 0)]
                elif m > 0:
                    np.multiply(p[(l, a)], cos_m[a], out=out[:, col])
                else:
                    np.multiply(p[(l, a)], sin_m[a], out=out[:, col])
            else:
                sign = -1.0 if (m > 0 and m % 2) else 1.0  # (-1)^m for m > 0; Y_l^{-m} carries none
                im = sin_m[a] if m >= 0 else -sin_m[a]
                out[:, col] = sign * p[(l, a)] * (cos_m[a] + 1j * im)
            col += 1
    return out


def real_to_complex(q_real: np.ndarray, l_values) -> np.ndarray:
    """Coefficients in the real basis -> the complex (Condon–Shortley) basis, last axis (M)."""
    l_col, m_col = lm_indices(l_values)
    out = np.empty(q_real.shape, dtype=np.complex128)
    col_of = {(int(l), int(m)): k for k, (l, m) in enumerate(zip(l_col, m_col))}
    for (l, m), k in col_of.items():
        if m == 0:
            out[..., k] = q_real[..., k]
        else:
            a = abs(m)
            pos, neg = q_real[..., col_of[(l, a)]], q_real[..., col_of[(l, -a)]]
            if m > 0:
                out[..., k] = (-1.0) ** a * (pos + 1j * neg) / np.sqrt(2.0)
            else:
                out[..., k] = (pos - 1j * neg) / np.sqrt(2.0)
    return out


def e3nn_spherical_harmonics(vectors, l: int) -> np.ndarray:
    """e3nn's real harmonics of degree ``l`` (``normalization="integral"``), shape (E, 2l + 1).

    Equal to ``e3nn.o3.spherical_harmonics(l, vectors, normalize=True, normalization="integral")``
    (columns m = -l..l), computed as ours at the relabelled axes :data:`E3NN_AXES`.
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vectors must have shape (E, 3), got {v.shape}")
    return spherical_harmonics(v[:, list(E3NN_AXES)], [l])
