"""The expert ridge baseline: per-target cross-validation, and its experiment on a data file."""

import numpy as np
import pytest

from glasslab import ridge as R
from glasslab.descriptors import box_grid, radial_descriptors


def synthetic(seed, n=1500, f=12, k=3, noise=0.05):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)) * rng.uniform(0.1, 10, f) + rng.normal(size=f)
    w = rng.normal(size=(f, k))
    y = x @ w + noise * np.linalg.norm(x @ w, axis=0) / np.sqrt(n) * rng.normal(size=(n, k))
    return x, y


def test_ridge_recovers_linear_relation():
    x, y = synthetic(11)
    model = R.RidgeBaseline().fit(x[:1000], y[:1000])
    pred = model.predict(x[1000:])
    assert pred.shape == (500, 3)
    rho = [np.corrcoef(pred[:, k], y[1000:, k])[0, 1] for k in range(3)]
    assert min(rho) > 0.99
    assert model.alpha_.shape == (3,) and np.isin(model.alpha_, R.DEFAULT_RIDGE_ALPHAS).all()
    assert np.all(model.score(x[1000:], y[1000:]) > 0.99)


def test_ridge_on_snapshot_lists_fits_a_particles_only():
    rng = np.random.default_rng(12)
    xs, ys, ts = [], [], []
    w = rng.normal(size=(6, 2))
    for _ in range(4):
        x = rng.normal(size=(200, 6))
        t = (rng.random(200) < 0.2).astype(int)
        y = x @ w
        y[t == 1] = rng.normal(size=(int((t == 1).sum()), 2)) * 100  # B particles: unrelated, huge
        xs.append(x), ys.append(y), ts.append(t)
    alphas = [1e-3, 1e-1, 10.0]
    for cv, n_components in ((None, None), (2, 6)):
        model = R.RidgeBaseline(alphas=alphas, cv=cv, n_components=n_components).fit(xs, ys, types=ts)
        assert np.isin(model.alpha_, alphas).all() and model.alpha_.shape == (2,)
        assert np.all(model.score(xs, ys, types=ts) > 0.99)  # B particles would ruin this
        preds = model.predict(xs)
        assert isinstance(preds, list) and preds[0].shape == (200, 2)


def test_ridge_per_target_cv_matches_scikit_learn_fold_by_fold():
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 8)) + 3.0
    y = np.stack([x @ rng.normal(size=8) + 0.1 * rng.normal(size=300), rng.normal(size=300)], axis=1)
    alphas = np.logspace(-3, 5, 9)
    splits = list(KFold(4, shuffle=True, random_state=0).split(x))
    model = R.RidgePerTargetCV(alphas, splits).fit(x, y)
    brute = np.array([sum(((Ridge(alpha=a).fit(x[tr], y[tr]).predict(x[va]) - y[va]) ** 2).sum(0) for tr, va in splits)
                      for a in alphas])
    np.testing.assert_allclose(model.cv_error_, brute, rtol=1e-8)
    assert model.alpha_[0] < 1.0 and model.alpha_[1] == alphas[-1]  # signal: little penalty; pure noise: the most
    np.testing.assert_allclose(model.predict(x), Ridge(alpha=model.alpha_).fit(x, y).predict(x))


def test_ridge_refuses_bad_input():
    with pytest.raises(ValueError, match="alphas"):
        R.RidgeBaseline(alphas=[0.0, 1.0])
    x, y = synthetic(14, n=50)
    with pytest.raises(ValueError, match="propensity"):
        R.RidgeBaseline().fit(x, y[:-1])
    model = R.RidgeBaseline().fit(x, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(x[:, :-1])


def test_ridge_experiment_on_a_small_file(tmp_path):
    """End to end: descriptors on a box-limited grid, ridge on the train split, metrics on test."""
    from glasslab import io

    rng = np.random.default_rng(0)
    n, box = 300, np.full(3, (300 / 1.2) ** (1 / 3))
    snaps = []
    for _ in range(6):
        x = rng.uniform(0, 1, (n, 3)) * box
        types = (rng.random(n) < 0.2).astype(int)
        g = radial_descriptors(x, types, box, [1.0, 1.5], 0.1)
        y = np.stack([g[:, 0] + 0.1 * rng.normal(size=n), g[:, 1]], axis=1)
        snaps.append(io.Snapshot(x, types, box, 0.64, times=[1.0, 2.0], propensity=y,
                                 propensity_halves=np.stack([y, y + 0.01])))
    path = io.write_h5(tmp_path / "s.h5", snaps)
    grid = box_grid(box)
    assert grid[0] == 1.0 and grid[-1] + 5 * 0.1 < box[0] / 2
    res = R.ridge_experiment(path, l_values=[2, 4], n_levels=0, n_bootstrap=50, progress=False)
    assert res["split_sizes"] == {"train": 3, "test": 1} and res["cv"] == "4-fold, grouped by snapshot"
    assert (res["kind"], res["protocol"], res["train_temperature"], list(res["data_sha256"])) == \
        ("ridge", "trained", 0.64, [str(path)])
    loo = R.ridge_experiment(path, l_values=[2, 4], n_levels=0, cv=None, n_bootstrap=50, progress=False)
    assert loo["cv"] == "leave-one-out" and loo["test"]["rho_pooled"][1] > 0.9
    assert res["test"]["rho_pooled"][1] > 0.9 and len(res["test"]["noise_ceiling"]) == 2

    # two chunks read together split like the networks' data and store test predictions
    io.write_h5(tmp_path / "s_b.h5", snaps[:4])
    both = R.ridge_experiment(str(tmp_path / "s*.h5"), l_values=[2, 4], n_levels=0, n_bootstrap=50, progress=False,
                            predictions_out=tmp_path / "p.npz")
    assert both["data"] == [str(tmp_path / "s.h5"), str(tmp_path / "s_b.h5")] and both["split_sizes"]["test"] == 1
    stored = np.load(tmp_path / "p.npz")
    assert stored["predictions"].shape == (1, n, 2) and stored["test_indices"].tolist() == both["split_indices"]["test"]
    extra = R.ridge_experiment(path, l_values=[2, 4], n_levels=0, n_bootstrap=50, progress=False,
                             extra_train=[tmp_path / "s_b.h5"], train_snapshots=5)
    assert extra["split_indices"] == res["split_indices"] and extra["split_sizes"] == {"train": 5, "test": 1}
    io.write_h5(tmp_path / "s_c.h5", [io.Snapshot(s.positions, s.types, s.box, 0.64, times=[1.0, 3.0], propensity=s.propensity)
                                      for s in snaps[:3]])
    with pytest.raises(ValueError, match=r"s_c\.h5: label times \[1\.0, 3\.0\] differ"):
        R.ridge_experiment(str(tmp_path / "s*.h5"), l_values=[2], n_levels=0, progress=False)
