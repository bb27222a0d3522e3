import numpy as np
import pytest

from glasslab import analysis, metrics


def test_radial_distribution_of_an_ideal_gas_is_one():
    rng = np.random.default_rng(0)
    box = np.array([12.0, 13.0, 14.0])
    frames = rng.uniform(0, 1, (5, 3000, 3)) * box
    r, g = analysis.radial_distribution(frames, box, r_max=5.0, n_bins=25)
    assert np.allclose(g[5:], 1.0, atol=0.05)
    types = (rng.random(3000) < 0.2).astype(int)
    _, g_ab = analysis.radial_distribution(frames, box, types=types, pair=(0, 1), r_max=5.0, n_bins=25)
    assert np.allclose(g_ab[5:], 1.0, atol=0.08)


def test_radial_distribution_of_a_simple_cubic_lattice():
    n = 8
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3).astype(float)
    r, g = analysis.radial_distribution(grid, np.full(3, float(n)), r_max=1.5, n_bins=150)
    occupied = r[g > 0]
    assert np.allclose(occupied, [1.005, 1.415])  # only the shells at 1 and sqrt(2) (bin centres)
    shell = 4 * np.pi * r**2 * (r[1] - r[0])
    assert (g * shell)[g > 0] * (len(grid) / n**3) == pytest.approx([6, 12], rel=0.02)  # 6 and 12 neighbours


def test_structure_factor_of_an_ideal_gas_is_one_and_a_lattice_has_bragg_peaks():
    rng = np.random.default_rng(1)
    box = np.full(3, 10.0)
    q, s = analysis.structure_factor(rng.uniform(0, 10, (4, 1200, 3)), box, q_max=12, n_bins=30)
    assert abs(s.mean() - 1.0) < 0.05
    n = 6
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3).astype(float)
    q, s = analysis.structure_factor(grid, np.full(3, float(n)), q_max=7.0, n_bins=700)  # bins finer than the lattice
    # |q| = 2π holds 6 Bragg vectors (S = N) and 24 vectors of type (4, 4, 2) 2π/6 (S = 0)
    assert s.max() == pytest.approx(len(grid) * 6 / 30)
    assert q[np.argmax(s)] == pytest.approx(2 * np.pi, abs=0.1)


def test_self_intermediate_scattering_of_gaussian_displacements():
    rng = np.random.default_rng(2)
    for s in (0.05, 0.15, 0.3):
        d = rng.normal(scale=s, size=(200_000, 3))
        assert analysis.self_intermediate_scattering(d, q=7.25) == pytest.approx(np.exp(-(7.25 * s) ** 2 / 2), abs=5e-3)
        assert analysis.mean_squared_displacement(d) == pytest.approx(3 * s * s, rel=0.01)


def test_closest_time_is_closest_in_log_time():
    times = [0.1, 1.0, 10.0]
    assert analysis.closest_time(times, 0.5) == 1          # |log 5| < |log 0.2|; a linear distance picks 0
    assert analysis.closest_time(times, 0.25) == 0 and analysis.closest_time(times, 400.0) == 2
    with pytest.raises(ValueError, match="positive"):
        analysis.closest_time([0.0, 1.0], 1.0)


def test_tau_alpha_interpolates_in_log_time():
    t = np.geomspace(0.01, 100, 60)
    fs = np.exp(-((t / 7.0) ** 0.8))
    assert analysis.tau_alpha(t, fs) == pytest.approx(7.0, rel=2e-3)
    assert np.isnan(analysis.tau_alpha(t, np.ones_like(t)))


def test_trajectory_dynamics_of_brownian_particles():
    rng = np.random.default_rng(3)
    steps = rng.normal(scale=0.05, size=(400, 500, 3))
    traj = np.cumsum(steps, axis=0)
    curves = analysis.trajectory_dynamics(traj, frame_time=0.1, lag_frames=[1, 10, 100])
    assert np.allclose(curves.msd, 3 * 0.05**2 * np.array([1, 10, 100]), rtol=0.05)
    assert curves.chi4.shape == (3,) and (curves.chi4 >= 0).all()
    with pytest.raises(ValueError, match="lags"):
        analysis.trajectory_dynamics(traj, 0.1, lag_frames=[500])


def test_vft_fit_recovers_its_parameters():
    temps = np.array([0.44, 0.47, 0.5, 0.56, 0.64, 0.8, 1.0])
    taus = analysis.vft(temps, 0.05, 2.5, 0.33)
    tau0, d, t0 = analysis.fit_vft(temps, taus)
    assert (tau0, d, t0) == pytest.approx((0.05, 2.5, 0.33), rel=1e-3)


def test_propensity_is_the_mean_replica_displacement():
    rng = np.random.default_rng(4)
    x0 = rng.uniform(0, 5, (30, 3))
    reps = x0 + rng.normal(size=(16, 4, 30, 3))
    p = analysis.propensity(x0, reps)
    assert p.shape == (30, 4)
    assert np.allclose(p[:, 2], np.linalg.norm(reps[:, 2] - x0, axis=-1).mean(0))


def test_noise_ceiling_recovers_a_known_reliability():
    rng = np.random.default_rng(5)
    n, r = 40_000, 16
    signal = rng.normal(size=(n, 1))
    replicas = signal[None] + rng.normal(scale=2.0, size=(r, n, 1))  # single-replica noise variance 4
    halves = np.stack([replicas[: r // 2].mean(0), replicas[r // 2 :].mean(0)])
    ceiling = analysis.noise_ceiling(halves)
    true_reliability = 1.0 / (1.0 + 4.0 / r)  # var(signal) / var(mean of r replicas)
    assert ceiling.reliability[0] == pytest.approx(true_reliability, abs=0.01)
    full = replicas.mean(0)[:, 0]
    assert ceiling.max_pearson[0] == pytest.approx(np.corrcoef(signal[:, 0], full)[0, 1], abs=0.01)


def test_correlation_pooled_and_per_snapshot():
    rng = np.random.default_rng(6)
    targets = [rng.normal(size=(100, 2)) for _ in range(3)]
    preds = [t + rng.normal(scale=0.5, size=t.shape) for t in targets]
    masks = [rng.random(100) < 0.8 for _ in range(3)]
    c = metrics.correlation(preds, targets, masks)
    x = np.concatenate([p[m] for p, m in zip(preds, masks)])
    y = np.concatenate([t[m] for t, m in zip(targets, masks)])
    assert np.allclose(c.pooled, [np.corrcoef(x[:, k], y[:, k])[0, 1] for k in range(2)])
    assert c.per_snapshot.shape == (3, 2)
    assert np.allclose(c.per_snapshot[1, 0], np.corrcoef(preds[1][masks[1], 0], targets[1][masks[1], 0])[0, 1])
    with pytest.raises(ValueError, match="prediction shape"):
        metrics.correlation([preds[0][:, :1]], [targets[0]])


def test_bootstrap_interval_covers_and_matches_the_analytic_error():
    rng = np.random.default_rng(7)
    n = 4000
    y = rng.normal(size=(n, 1))
    x = 0.7 * y + np.sqrt(1 - 0.49) * rng.normal(size=(n, 1))
    boot = metrics.bootstrap_pearson([x], [y], n_resamples=800, seed=1)
    rho = np.corrcoef(x[:, 0], y[:, 0])[0, 1]
    assert boot.low[0] < rho < boot.high[0]
    assert boot.std[0] == pytest.approx((1 - rho**2) / np.sqrt(n), rel=0.15)  # large-n standard error


def test_paired_bootstrap_of_a_difference_is_sharper_than_independent_errors():
    rng = np.random.default_rng(8)
    n = 3000
    y = rng.normal(size=(n, 2))
    shared = rng.normal(size=(n, 2))                     # what both models get wrong alike
    a = 0.6 * y + 0.5 * shared + 0.3 * rng.normal(size=(n, 2))
    b = 0.55 * y + 0.5 * shared + 0.3 * rng.normal(size=(n, 2))
    masks = [np.ones(n, dtype=bool)]
    diff = metrics.bootstrap_pearson_difference([a], [b], [y], masks, n_resamples=600, seed=2)
    boot_a = metrics.bootstrap_pearson([a], [y], masks, n_resamples=600, seed=2)
    boot_b = metrics.bootstrap_pearson([b], [y], masks, n_resamples=600, seed=2)
    np.testing.assert_allclose(diff.samples, boot_a.samples - boot_b.samples, atol=1e-12)  # same draws
    observed = metrics.correlation([a], [y]).pooled - metrics.correlation([b], [y]).pooled
    assert np.all((diff.low < observed) & (observed < diff.high))
    assert np.all(diff.std < 0.5 * np.hypot(boot_a.std, boot_b.std))
    same = metrics.bootstrap_pearson_difference([a], [a], [y], n_resamples=50)
    assert np.all(same.samples == 0)
    with pytest.raises(ValueError, match="differs from target shape"):
        metrics.bootstrap_pearson_difference([a], [b[:, :1]], [y])


def test_seed_spread_and_ceiling():
    s = metrics.seed_spread([0.71, 0.70, 0.72])
    assert s.mean[0] == pytest.approx(0.71) and s.min[0] == 0.70 and s.max[0] == 0.72
    assert metrics.relative_to_ceiling([0.6], [0.8])[0] == pytest.approx(0.75)
