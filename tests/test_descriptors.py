"""Expert descriptors against direct double loops, their symmetries, and the ridge baseline."""

import freud
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from glasslab import descriptors as D
from glasslab import harmonics
from glasslab.neighbours import radius_graph
from glasslab.io import Snapshot
from scipy_harmonics import sph_harm_complex, sph_harm_real

BOX = np.array([5.3, 6.1, 7.2])  # non-cubic; half the shortest edge is 2.65


def random_config(seed, n=70, box=BOX, unwrap=True):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 1, (n, 3)) * box
    if unwrap:
        pos = pos + box * rng.integers(-2, 3, (n, 3))  # unwrapped positions, several boxes away
    types = (rng.random(n) < 0.2).astype(np.int64)
    return pos, types


def loop_pairs(pos, box, cutoff):
    """All ordered pairs (i, j != i) closer than cutoff under the minimum image: (i, j, x_j - x_i, r)."""
    out = []
    for i in range(len(pos)):
        for j in range(len(pos)):
            if i == j:
                continue
            d = pos[j] - pos[i]
            if box is not None:
                d = d - box * np.round(d / box)
            r = float(np.sqrt(d @ d))
            if r < cutoff:
                out.append((i, j, d, r))
    return out


def angles(d):
    r = np.sqrt(d @ d)
    return np.arccos(np.clip(d[2] / r, -1, 1)), np.arctan2(d[1], d[0])


# --------------------------------------------------------------------------- g_i(r)


def test_gi_matches_loop():
    pos, types = random_config(0)
    r_min, width, n_bins = 0.7, 0.05, 36  # up to 2.5
    got = D.gi_descriptors(pos, types, BOX, r_min=r_min, r_max=r_min + width * n_bins, n_bins=n_bins)
    ref = np.zeros((len(pos), 2, n_bins))
    for i, j, _, r in loop_pairs(pos, BOX, r_min + width * n_bins):
        for a in range(n_bins):
            lo = r_min + a * width
            if lo <= r < lo + width:
                ref[i, types[j], a] += 1.0 / (4 * np.pi * lo**2)
    assert ref.sum() > 0
    np.testing.assert_allclose(got, ref.reshape(len(pos), -1), rtol=1e-12, atol=1e-12)


def test_gi_defaults_and_lower_edge_normalisation():
    box = np.array([10.0, 10.5, 11.0])
    pos = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.72], [6.0, 6.0, 6.0]])  # r = 0.72 in bin [0.70, 0.75)
    types = np.array([0, 1, 0])
    g = D.gi_descriptors(pos, types, box)
    assert g.shape == (3, 160)
    np.testing.assert_allclose(D.gi_bins()[[0, 1, -1]], [0.70, 0.75, 4.70])
    assert g[0, 80 + 0] == pytest.approx(1 / (4 * np.pi * 0.70**2))  # particle 0 sees a B in bin 0
    assert g[1, 0] == pytest.approx(1 / (4 * np.pi * 0.70**2))  # particle 1 sees an A in bin 0
    assert np.count_nonzero(g) == 2


# --------------------------------------------------------------------------- radial G


def test_radial_matches_loop():
    pos, types = random_config(1)
    r_values, delta = np.array([0.9, 1.15, 1.4, 1.75, 1.9]), 0.12
    got = D.radial_descriptors(pos, types, BOX, r_values, delta)
    cutoff = r_values.max() + D.GAUSSIAN_TRUNCATION * delta
    ref = np.zeros((len(pos), 2, len(r_values)))
    for i, j, _, r in loop_pairs(pos, BOX, cutoff):
        for k, rk in enumerate(r_values):
            ref[i, types[j], k] += np.exp(-((r - rk) ** 2) / (2 * delta**2))
    np.testing.assert_allclose(got, ref.reshape(len(pos), -1), rtol=1e-10, atol=1e-12)
    # the truncation at max(r) + 5δ is invisible at the 1e-4 level
    wide = D.radial_descriptors(pos, types, BOX, r_values, delta, cutoff=2.6)
    np.testing.assert_allclose(got, wide, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- bond order


@pytest.mark.parametrize("basis", ["real", "complex"])
@pytest.mark.parametrize("normalize", [True, False])
def test_bond_order_coefficients_match_loop(basis, normalize):
    pos, types = random_config(2)
    l_values, r_values, delta = [1, 2, 4, 6], np.array([1.0, 1.5, 2.0]), 0.1
    got = D.bond_order_coefficients(pos, BOX, l_values, r_values, delta, basis=basis, normalize=normalize)
    sh = sph_harm_real if basis == "real" else sph_harm_complex
    lm = [(l, m) for l in l_values for m in range(-l, l + 1)]
    ref = np.zeros((len(pos), len(r_values), len(lm)), dtype=complex)
    z = np.zeros((len(pos), len(r_values)))
    for i, j, d, r in loop_pairs(pos, BOX, r_values.max() + D.GAUSSIAN_TRUNCATION * delta):
        theta, phi = angles(d)
        y = np.array([sh(l, m, theta, phi) for l, m in lm])
        w = np.exp(-((r - r_values) ** 2) / (2 * delta**2))
        ref[i] += w[:, None] * y[None, :]
        z[i] += w
    if normalize:
        ref /= z[:, :, None]
    assert got.dtype == (np.float64 if basis == "real" else np.complex128)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    if not normalize:  # per-species channels (Pezzicoli Eq. C3) add up to the all-neighbour sum
        per_type = [D.bond_order_coefficients(pos, BOX, l_values, r_values, delta, basis=basis, normalize=False,
                                              types=types, neighbour_type=s) for s in (0, 1)]
        assert np.abs(per_type[1]).sum() > 0
        np.testing.assert_allclose(per_type[0] + per_type[1], got, rtol=1e-12, atol=1e-13)


def test_bond_order_descriptors_match_loop_and_bases_agree():
    pos, types = random_config(3)
    l_values, r_values, delta = [1, 3, 4, 6, 8], np.array([1.0, 1.4, 1.8]), 0.15
    real = D.bond_order_descriptors(pos, types, BOX, l_values, r_values, delta, basis="real")
    cplx = D.bond_order_descriptors(pos, types, BOX, l_values, r_values, delta, basis="complex")
    np.testing.assert_allclose(real, cplx, rtol=1e-12, atol=1e-13)
    # q_l(r) by a loop with scipy's complex harmonics
    cutoff = r_values.max() + D.GAUSSIAN_TRUNCATION * delta
    acc = {(i, l): np.zeros((len(r_values), 2 * l + 1), dtype=complex) for i in range(len(pos)) for l in l_values}
    z = np.zeros((len(pos), len(r_values)))
    for i, j, d, r in loop_pairs(pos, BOX, cutoff):
        theta, phi = angles(d)
        w = np.exp(-((r - r_values) ** 2) / (2 * delta**2))
        z[i] += w
        for l in l_values:
            acc[(i, l)] += w[:, None] * np.array([sph_harm_complex(l, m, theta, phi) for m in range(-l, l + 1)])[None]
    ref = np.zeros((len(pos), len(l_values), len(r_values)))
    for i in range(len(pos)):
        for a, l in enumerate(l_values):
            qlm = acc[(i, l)] / z[i][:, None]
            ref[i, a] = np.sqrt(4 * np.pi / (2 * l + 1) * (np.abs(qlm) ** 2).sum(axis=1))
    np.testing.assert_allclose(real, ref.reshape(len(pos), -1), rtol=1e-10, atol=1e-12)
    # the coefficients themselves are related by the stated unitary change of basis
    q_real = D.bond_order_coefficients(pos, BOX, l_values, r_values, delta, basis="real")
    q_cplx = D.bond_order_coefficients(pos, BOX, l_values, r_values, delta, basis="complex")
    np.testing.assert_allclose(harmonics.real_to_complex(q_real, l_values), q_cplx, atol=1e-13)


def test_invariants_are_rotation_invariant_and_coefficients_are_not():
    rng = np.random.default_rng(5)
    pos = rng.uniform(-2.5, 2.5, (80, 3))  # open cluster: rotations keep it valid
    types = (rng.random(80) < 0.2).astype(int)
    rot = Rotation.random(random_state=6).as_matrix()
    kw = dict(l_values=[1, 2, 3, 4, 6], r_values=[1.0, 1.6, 2.2], delta=0.2)
    q = D.bond_order_descriptors(pos, types, None, **kw)
    q_rot = D.bond_order_descriptors(pos @ rot.T, types, None, **kw)
    np.testing.assert_allclose(q, q_rot, rtol=1e-10, atol=1e-12)
    g = D.radial_descriptors(pos, types, None, [1.0, 1.5], 0.2)
    np.testing.assert_allclose(g, D.radial_descriptors(pos @ rot.T, types, None, [1.0, 1.5], 0.2), rtol=1e-10)
    coeff = D.bond_order_coefficients(pos, None, **kw)
    coeff_rot = D.bond_order_coefficients(pos @ rot.T, None, **kw)
    assert not np.allclose(coeff, coeff_rot, atol=1e-3)  # the q_lm themselves do rotate


def fcc(cells=3, a=1.0):
    base = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    grid = np.array([[i, j, k] for i in range(cells) for j in range(cells) for k in range(cells)])
    return ((grid[:, None, :] + base[None]) * a).reshape(-1, 3), np.full(3, cells * a)


def test_fcc_first_shell_gives_steinhardt_values():
    pos, box = fcc()
    # all 12 neighbours at 1/√2: equal Gaussian weights, so q_l is Steinhardt's q_l of the shell
    q = D.bond_order_descriptors(pos, np.zeros(len(pos), int), box, [4, 6], [1 / np.sqrt(2)], 0.02, cutoff=0.85)
    np.testing.assert_allclose(q[:, 0], 0.190941, atol=1e-6)  # q4(fcc)
    np.testing.assert_allclose(q[:, 1], 0.574524, atol=1e-6)  # q6(fcc)


def test_matches_freud_weighted_steinhardt():
    pos, types = random_config(7, unwrap=False)
    r0, delta, cutoff = 1.3, 0.25, 2.5
    ei, vec = radius_graph(pos, cutoff, box=BOX)
    j, i = ei
    w = np.exp(-((np.linalg.norm(vec, axis=1) - r0) ** 2) / (2 * delta**2))
    nlist = freud.locality.NeighborList.from_arrays(len(pos), len(pos), i, j, vec, w)
    fbox = freud.box.Box.from_box(BOX)
    ours = D.bond_order_descriptors(pos, types, BOX, [2, 4, 6], [r0], delta, cutoff=cutoff)
    for k, l in enumerate([2, 4, 6]):
        st = freud.order.Steinhardt(l, weighted=True)
        st.compute((fbox, fbox.wrap(pos - BOX / 2)), neighbors=nlist)
        np.testing.assert_allclose(ours[:, k], st.particle_order, rtol=1e-5, atol=1e-6)  # freud is float32


def test_isolated_particle_gets_zero_bond_order():
    box = np.array([10.0, 10.0, 10.0])
    pos = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 2.0], [6.0, 6.0, 6.0]])
    q = D.bond_order_descriptors(pos, np.zeros(3, int), box, [1, 2], [1.0], 0.1)
    assert np.all(np.isfinite(q)) and np.all(q[2] == 0)
    np.testing.assert_allclose(q[0], 1.0)  # a single neighbour: q_l = 1 for every l


# --------------------------------------------------------------------------- coarse-graining


def test_coarse_grain_matches_loop_and_keeps_constants():
    pos, _ = random_config(8)
    rng = np.random.default_rng(9)
    x = rng.normal(size=(len(pos), 4))
    for r_c, cutoff in ((0.75, 2.1), (2.1, None)):
        got = D.coarse_grain(x, pos, BOX, r_c=r_c, cutoff=cutoff)
        cut = r_c if cutoff is None else cutoff
        num, den = x.copy(), np.ones(len(pos))  # the self term, weight exp(0) = 1
        for i, j, _, r in loop_pairs(pos, BOX, cut):
            num[i] += np.exp(-r / r_c) * x[j]
            den[i] += np.exp(-r / r_c)
        np.testing.assert_allclose(got, num / den[:, None], rtol=1e-12, atol=1e-12)
    const = np.full(len(pos), 3.25)
    out = D.coarse_grain(const, pos, BOX, r_c=0.75, cutoff=2.1)
    assert out.shape == const.shape
    np.testing.assert_allclose(out, 3.25, rtol=1e-14)


# --------------------------------------------------------------------------- expert_features


def test_expert_features_stack_and_names():
    pos, types = random_config(10, n=90)
    snap = Snapshot(positions=pos, types=types, box=BOX, temperature=0.5)
    kw = dict(radial_r=[1.0, 1.5], radial_delta=0.1, l_values=[2, 6], angular_r=[1.0, 1.4, 1.8], angular_delta=0.1)
    x, names = D.expert_features(snap, n_levels=2, r_c=0.75, cg_cutoff=2.1, **kw)
    per_level = 2 * 2 + 2 * 3
    assert x.shape == (90, 3 * per_level) and len(names) == x.shape[1] and len(set(names)) == len(names)
    assert names[0] == "G0(s=A,r=1.00)" and names[2] == "G0(s=B,r=1.00)" and names[4] == "q0(l=2,r=1.00)"
    assert names[per_level] == "G1(s=A,r=1.00)" and names[-1] == "q2(l=6,r=1.80)"
    x0 = np.concatenate([D.radial_descriptors(pos, types, BOX, [1.0, 1.5], 0.1),
                         D.bond_order_descriptors(pos, types, BOX, [2, 6], [1.0, 1.4, 1.8], 0.1)], axis=1)
    np.testing.assert_allclose(x[:, :per_level], x0)
    x1 = D.coarse_grain(x0, pos, BOX, r_c=0.75, cutoff=2.1)
    np.testing.assert_allclose(x[:, per_level:2 * per_level], x1)
    np.testing.assert_allclose(x[:, 2 * per_level:], D.coarse_grain(x1, pos, BOX, r_c=0.75, cutoff=2.1))

    epot = np.random.default_rng(3).normal(-7.5, 0.5, 90)
    with_e, e_names = D.expert_features(Snapshot(pos, types, BOX, 0.5, epot_is=epot, positions_is=pos),
                                        n_levels=1, r_c=0.75, cg_cutoff=2.1, node_scalars=("epot_is",), **kw)
    assert e_names[per_level] == "epot_is0(self)" and e_names[-1] == "epot_is1(self)"
    np.testing.assert_allclose(with_e[:, per_level], epot)
    np.testing.assert_allclose(with_e[:, -1], D.coarse_grain(epot, pos, BOX, r_c=0.75, cutoff=2.1))
    with pytest.raises(ValueError, match="no 'epot_is'"):
        D.expert_features(snap, node_scalars=("epot_is",), **kw)


# --------------------------------------------------------------------------- bad input


def test_bad_input_raises_clear_errors():
    pos, types = random_config(13)
    with pytest.raises(ValueError, match=r"positions must have shape \(N, 3\)"):
        D.radial_descriptors(pos[:, :2], types, BOX, [1.0], 0.1)
    with pytest.raises(ValueError, match="types must have shape"):
        D.gi_descriptors(pos, types[:-1], BOX, r_max=2.0, n_bins=10)
    with pytest.raises(ValueError, match="types must lie in"):
        D.radial_descriptors(pos, types + 1, BOX, [1.0], 0.1)
    with pytest.raises(ValueError, match="half the shortest box edge"):
        D.radial_descriptors(pos, types, BOX, [2.5], 0.1)  # cutoff 3.0 > 2.65
    with pytest.raises(ValueError, match="half the shortest box edge"):
        D.gi_descriptors(pos, types, BOX)  # r_max = 4.7
    with pytest.raises(ValueError, match="half the shortest box edge"):
        D.coarse_grain(np.ones(len(pos)), pos, BOX, r_c=3.0)
    with pytest.raises(ValueError, match="delta must be a positive number"):
        D.bond_order_descriptors(pos, types, BOX, [2], [1.0], -0.1)
    with pytest.raises(ValueError, match="l_values must be non-negative integers"):
        D.bond_order_descriptors(pos, types, BOX, [-1, 2], [1.0], 0.1)
    with pytest.raises(ValueError, match="features must have shape"):
        D.coarse_grain(np.ones((len(pos) + 1, 2)), pos, BOX)
    with pytest.raises(ValueError, match="NaN"):
        D.radial_descriptors(np.where(np.arange(len(pos))[:, None] == 3, np.nan, pos), types, BOX, [1.0], 0.1)
    with pytest.raises(ValueError, match="r_min < r_max"):
        D.gi_descriptors(pos, types, BOX, r_min=2.0, r_max=1.0)
    with pytest.raises(ValueError, match="coincide"):
        D.radial_descriptors(np.vstack([pos, pos[:1]]), np.append(types, 0), BOX, [1.0], 0.1)
    snap = Snapshot(positions=pos, types=types, box=BOX, temperature=0.5)
    with pytest.raises(ValueError, match="inherent"):
        D.expert_features(snap, positions="inherent")
