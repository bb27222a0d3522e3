"""The course's spherical harmonics against SciPy's and e3nn's."""

import numpy as np
import pytest
from glasslab import harmonics
from scipy_harmonics import sph_harm_complex, sph_harm_real


def test_spherical_harmonics_match_scipy():
    rng = np.random.default_rng(4)
    v = rng.normal(size=(300, 3))
    l_values = [0, 1, 2, 5, 12]
    l_col, m_col = harmonics.lm_indices(l_values)
    theta = np.arccos(v[:, 2] / np.linalg.norm(v, axis=1))
    phi = np.arctan2(v[:, 1], v[:, 0])
    for basis, ref_fn in (("complex", sph_harm_complex), ("real", sph_harm_real)):
        got = harmonics.spherical_harmonics(v, l_values, basis)
        ref = np.stack([ref_fn(int(l), int(m), theta, phi) for l, m in zip(l_col, m_col)], axis=1)
        np.testing.assert_allclose(got, ref, atol=1e-12)


def test_norms_per_l_match_e3nn():
    """The Appendix C link: per-l norms of Σ_j w_j Y^l(r̂_j) agree with e3nn's real harmonics."""
    torch = pytest.importorskip("torch")
    o3 = pytest.importorskip("e3nn.o3")
    rng = np.random.default_rng(15)
    v, w = rng.normal(size=(40, 3)), rng.uniform(0, 1, 40)
    ours = w @ harmonics.spherical_harmonics(v, [1, 2, 3, 4])
    theirs = w @ o3.spherical_harmonics([1, 2, 3, 4], torch.from_numpy(v), True, normalization="integral").numpy()
    bounds = np.cumsum([0, 3, 5, 7, 9])
    for a, b in zip(bounds[:-1], bounds[1:]):
        assert np.linalg.norm(ours[a:b]) == pytest.approx(np.linalg.norm(theirs[a:b]), rel=1e-10)


def test_e3nn_map_is_a_relabelling_of_axes():
    """e3nn's harmonics of (x, y, z) are ours of (z, x, y), component by component, signs included."""
    torch = pytest.importorskip("torch")
    o3 = pytest.importorskip("e3nn.o3")
    v = np.random.default_rng(5).normal(size=(200, 3))
    for l in range(9):
        theirs = o3.spherical_harmonics(l, torch.from_numpy(v), True, normalization="integral").numpy()
        np.testing.assert_allclose(harmonics.e3nn_spherical_harmonics(v, l), theirs, atol=1e-13)
