"""The expert baseline: ridge regression of propensity on Boattini's descriptors.

* :class:`RidgeBaseline`: StandardScaler -> optional PCA -> ridge on expert features
  (:mod:`glasslab.descriptors`), one linear model (and one cross-validated penalty) per
  propensity timescale; :class:`RidgePerTargetCV` does the cross-validation over folds grouped
  by snapshot.
* :func:`ridge_experiment`: the ridge trained and tested on the networks' split of a data set.

Ridge: features standardised, α from a logarithmic grid by cross-validation, one model per
timescale, fitted on A particles; optional PCA as in Pezzicoli's thesis (Sec. 2, 10/30/100
components).

References:
    E. Boattini, F. Smallenburg, L. Filion, "Averaging local structure to predict the dynamic
    propensity in supercooled liquids", PRL 127, 088007 (2021), arXiv:2105.05921.
    F. S. Pezzicoli, "Graph neural networks for glassy materials", Master's thesis (2021).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from glasslab import _arrays, ka, provenance
from glasslab.descriptors import DEFAULT_CG_RC, DEFAULT_RADIAL_DELTA, DEFAULT_ANGULAR_L, box_grid, expert_features

__all__ = ["DEFAULT_RIDGE_ALPHAS", "RidgePerTargetCV", "RidgeBaseline", "ridge_experiment"]

DEFAULT_RIDGE_ALPHAS = np.logspace(-3, 6, 19)
"""Ridge penalties tried by cross-validation (features are standardised first)."""


class RidgePerTargetCV(RegressorMixin, BaseEstimator):
    """Ridge regression with one penalty per target, chosen by cross-validation on given folds.

    scikit-learn's RidgeCV picks one α per target only with leave-one-out, which leaks between
    neighbouring particles of one snapshot (chapter 4); here the folds are given (e.g. grouped
    by snapshot). Each fold's training set is centred and its Gram matrix diagonalised once,
    which gives the weights of every α in closed form: w(α) = V (Λ + α)⁻¹ Vᵀ Xᵀ Y.
    The final model is scikit-learn's Ridge with the chosen α per target, fitted on all rows.

    Args:
        alphas: (A,) positive penalties to try.
        splits: list of (train_rows, validation_rows) index arrays.

    Attributes (after ``fit``): ``alpha_`` (K,), ``cv_error_`` (A, K) summed validation squared
    errors, ``coef_`` (K, F) and ``intercept_`` (K,) of the final fit.
    """

    def __init__(self, alphas, splits):
        self.alphas = alphas
        self.splits = splits

    def fit(self, X, Y) -> "RidgePerTargetCV":
        from sklearn.linear_model import Ridge

        X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
        Y2 = Y[:, None] if Y.ndim == 1 else Y
        alphas = np.asarray(self.alphas, dtype=np.float64)
        err = np.zeros((len(alphas), Y2.shape[1]))
        for train, val in self.splits:
            mx, my = X[train].mean(0), Y2[train].mean(0)
            xt = X[train] - mx
            lam, v = np.linalg.eigh(xt.T @ xt)
            b = v.T @ (xt.T @ (Y2[train] - my))
            xv = (X[val] - mx) @ v
            for i, a in enumerate(alphas):
                pred = xv @ (b / (np.clip(lam, 0.0, None) + a)[:, None]) + my
                err[i] += ((pred - Y2[val]) ** 2).sum(0)
        self.cv_error_ = err
        self.alpha_ = alphas[err.argmin(0)]
        self.ridge_ = Ridge(alpha=self.alpha_ if Y.ndim > 1 else float(self.alpha_[0])).fit(X, Y)
        self.coef_, self.intercept_ = self.ridge_.coef_, self.ridge_.intercept_
        return self

    def predict(self, X) -> np.ndarray:
        return self.ridge_.predict(X)


class RidgeBaseline:
    """Linear regression of propensity on expert features: StandardScaler -> [PCA] -> RidgeCV.

    One ridge model per timescale (multi-output). Fitted on the particles of one species
    (A by default), as the paper's metrics are on A particles.

    Args:
        alphas: grid of ridge penalties (positive), tried by cross-validation.
        n_components: if given, project the standardised features on that many principal
            components first (the thesis' dimensionally reduced g_i(r)); None: no PCA.
        cv: None (default): efficient leave-one-out (generalised) cross-validation of
            scikit-learn's RidgeCV. An int k: k-fold cross-validation that keeps each
            snapshot in one fold (GroupKFold; fewer folds if there are fewer snapshots) when
            the features are given as a list of snapshots, plain KFold otherwise
            (:class:`RidgePerTargetCV`). Either way **one α per timescale**, the one of least
            validation squared error. Leave-one-out mixes particles of one snapshot between
            train and validation; grouped k-fold does not.
        train_type: species used for fitting and scoring (``ka.TYPE_A``); None: all particles.
        seed: random state of the PCA (randomised SVD for large inputs).

    Attributes (after ``fit``):
        ``model_``: the fitted scikit-learn Pipeline.
        ``alpha_``: (K,) the selected α per timescale (always an element of ``alphas``).
        ``n_features_in_``: F.
    """

    def __init__(self, alphas=DEFAULT_RIDGE_ALPHAS, n_components: int | None = None, cv: int | None = None,
                 train_type: int | None = ka.TYPE_A, seed: int = 0):
        a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
        if a.ndim != 1 or a.size == 0 or not np.isfinite(a).all() or (a <= 0).any():
            raise ValueError(f"alphas must be a non-empty 1-D sequence of positive numbers, got {alphas!r}")
        if n_components is not None and (not isinstance(n_components, (int, np.integer)) or n_components < 1):
            raise ValueError(f"n_components must be a positive integer or None, got {n_components!r}")
        if cv is not None and (not isinstance(cv, (int, np.integer)) or cv < 2):
            raise ValueError(f"cv must be None (leave-one-out) or an integer >= 2, got {cv!r}")
        self.alphas = a
        self.n_components = n_components
        self.cv = cv
        self.train_type = train_type
        self.seed = seed

    # -- data handling
    def _stack(self, features, propensity=None, types=None, need_target: bool = True):
        """Stack per-snapshot lists (or take arrays), select train_type; return X, Y, groups."""
        is_list = isinstance(features, (list, tuple))
        xs = list(features) if is_list else [features]
        xs = [np.asarray(x, dtype=np.float64) for x in xs]
        for k, x in enumerate(xs):
            if x.ndim != 2:
                raise ValueError(f"features[{k}] must have shape (N, F), got {x.shape}")
            if not np.isfinite(x).all():
                raise ValueError(f"features[{k}] hold NaN or inf")
        if len({x.shape[1] for x in xs}) != 1:
            raise ValueError(f"all feature arrays must have the same number of columns, got {[x.shape[1] for x in xs]}")

        def as_list(arr, name):
            if arr is None:
                return None
            lst = list(arr) if is_list else [arr]
            if len(lst) != len(xs):
                raise ValueError(f"{name} must be a list of {len(xs)} arrays (one per snapshot), got {len(lst)}")
            return [np.asarray(a) for a in lst]

        ys = as_list(propensity, "propensity")
        ts = as_list(types, "types")
        if need_target and ys is None:
            raise ValueError("propensity is required")
        X, Y, G = [], [], []
        for k, x in enumerate(xs):
            mask = np.ones(len(x), dtype=bool)
            if ts is not None and self.train_type is not None:
                t = _arrays.types(ts[k], len(x), max(int(self.train_type) + 1, int(np.max(ts[k], initial=0)) + 1))
                mask = t == self.train_type
            X.append(x[mask])
            G.append(np.full(int(mask.sum()), k))
            if ys is not None:
                y = np.asarray(ys[k], dtype=np.float64)
                y = y[:, None] if y.ndim == 1 else y
                if y.ndim != 2 or y.shape[0] != len(x):
                    raise ValueError(f"propensity[{k}] must have shape (N={len(x)}, K), got {y.shape}")
                if not np.isfinite(y).all():
                    raise ValueError(f"propensity[{k}] holds NaN or inf")
                Y.append(y[mask])
        if Y and len({y.shape[1] for y in Y}) != 1:
            shapes = [y.shape[1] for y in Y]
            raise ValueError(f"propensity arrays must have the same number of timescales, got {shapes}")
        X = np.concatenate(X)
        Y = np.concatenate(Y) if Y else None
        return X, Y, np.concatenate(G), is_list

    # -- API
    def fit(self, features, propensity, types=None) -> "RidgeBaseline":
        """Fit on (N, F) features and (N, K) (or (N,)) propensity, or lists of them (one per snapshot).

        ``types`` (N,) (or a list) selects the ``train_type`` particles; without it every row is used.
        """
        from sklearn.decomposition import PCA
        from sklearn.linear_model import RidgeCV
        from sklearn.model_selection import GroupKFold, KFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X, Y, groups, is_list = self._stack(features, propensity, types)
        if len(X) < 3:
            raise ValueError(f"need at least 3 training particles, got {len(X)}")
        steps = [StandardScaler()]
        if self.n_components is not None:
            if self.n_components > min(X.shape):
                raise ValueError(f"n_components={self.n_components} exceeds min(n_samples, n_features)={min(X.shape)}")
            steps.append(PCA(n_components=self.n_components, random_state=self.seed))
        if self.cv is None:
            ridge = RidgeCV(alphas=self.alphas, alpha_per_target=True)
        else:
            n_groups = len(np.unique(groups))
            if is_list and n_groups >= 2:
                splits = list(GroupKFold(n_splits=min(self.cv, n_groups)).split(X, Y, groups))
            else:
                splits = list(KFold(n_splits=self.cv, shuffle=True, random_state=self.seed).split(X))
            ridge = RidgePerTargetCV(alphas=self.alphas, splits=splits)
        self.model_ = make_pipeline(*steps, ridge).fit(X, Y)
        self.n_features_in_ = X.shape[1]
        self.n_targets_ = Y.shape[1]
        return self

    @property
    def alpha_(self) -> np.ndarray:
        """(K,) the cross-validated ridge penalty of each timescale."""
        if not hasattr(self, "model_"):
            raise AttributeError("RidgeBaseline is not fitted yet")
        return np.broadcast_to(np.asarray(self.model_[-1].alpha_, dtype=np.float64), (self.n_targets_,)).copy()

    def predict(self, features):
        """Predicted propensity (N, K) for (N, F) features, or a list of them for a list.

        Every particle is predicted (select A particles afterwards if needed).
        """
        if not hasattr(self, "model_"):
            raise AttributeError("RidgeBaseline is not fitted yet")
        is_list = isinstance(features, (list, tuple))
        xs = list(features) if is_list else [features]
        out = []
        for k, x in enumerate(xs):
            x = np.asarray(x, dtype=np.float64)
            if x.ndim != 2 or x.shape[1] != self.n_features_in_:
                raise ValueError(f"features[{k}] must have shape (N, {self.n_features_in_}), got {x.shape}")
            out.append(np.asarray(self.model_.predict(x)).reshape(len(x), self.n_targets_))
        return out if is_list else out[0]

    def score(self, features, propensity, types=None) -> np.ndarray:
        """Pearson correlation per timescale (K,) on the ``train_type`` particles, all snapshots pooled."""
        from glasslab.analysis import pearson

        X, Y, _, _ = self._stack(features, propensity, types)
        if Y.shape[1] != self.n_targets_:
            raise ValueError(f"propensity has {Y.shape[1]} timescales, the model {self.n_targets_}")
        pred = np.asarray(self.model_.predict(X)).reshape(len(X), self.n_targets_)
        return pearson(pred, Y, axis=0)

# --------------------------------------------------------------------------- experiment


def ridge_experiment(data, split_seed: int = 0, fractions=(0.5, 0.4, 0.1), positions: str = "thermal",
                     l_values=DEFAULT_ANGULAR_L, n_levels: int = 1, cv: int | None = 4, n_bootstrap: int = 1000,
                     temperature: float | None = None, predictions_out=None, extra_train=None,
                     train_snapshots: int | None = None, node_scalars=(), progress: bool = True) -> dict:
    """Ridge regression on Boattini's descriptors, trained and tested on the same split as the GNNs.

    ``data``: a file, a glob or a list of them, read in the order of
    :func:`glasslab.train.expand_paths` (the networks' order, hence their split); files must
    share their label times. Descriptors: :func:`expert_features` with the radial and angular
    grids of :func:`box_grid` (the largest Boattini grid the periodic box allows), orders
    ``l_values`` and ``n_levels`` coarse-grainings. The ridge (:class:`RidgeBaseline`, one α per
    timescale chosen by ``cv``-fold cross-validation grouped by snapshot, or leave-one-out if
    ``cv`` is None) is fitted on the A particles of the training snapshots of
    :func:`glasslab.dataset.split_indices` (validation snapshots unused) and reported on the test
    snapshots with :func:`glasslab.metrics.report`. ``predictions_out``: also write the test
    predictions as ``.npz`` (``predictions`` (S, N, K) float32, ``test_indices`` (S,)), for paired
    comparisons with other models on the same particles. ``extra_train`` and ``train_snapshots``
    work as the networks' ``extra_train_data`` and ``train_snapshots``
    (:class:`glasslab.train.TrainConfig`): files added to the training set, and a cap on its size;
    ``node_scalars`` the networks' extra per-particle inputs, appended to the descriptors (e.g.
    ``("epot_is",)``, so that a network and the ridge see the same information).
    """
    import time

    from tqdm.auto import tqdm

    from glasslab import io, metrics
    from glasslab.dataset import check_label_times, split_indices
    from glasslab.train import expand_paths

    t0 = time.time()
    def as_list(entries):
        return expand_paths([entries] if isinstance(entries, (str, Path)) else entries)

    files, extra_files = as_list(data), as_list(extra_train or [])
    snaps, n_data = [], 0
    for f in files + extra_files:
        read = io.read(f, temperature=temperature)
        if read and snaps:
            check_label_times(f, read[0].times, (files[0], snaps[0].times))
        snaps += read
        n_data += len(read) if f in files else 0
    train_idx, _, test_idx = split_indices(n_data, fractions, split_seed)
    train_idx = np.concatenate([train_idx, np.arange(n_data, len(snaps))]).astype(int)
    if train_snapshots is not None:
        if train_snapshots > len(train_idx):
            raise ValueError(f"train_snapshots = {train_snapshots} but the training set has {len(train_idx)} snapshots")
        train_idx = train_idx[:train_snapshots]
    grid = box_grid(snaps[0].box)
    wanted = sorted(set(train_idx) | set(test_idx))
    features = {}
    for i in tqdm(wanted, desc="expert features", disable=not progress):
        features[i], names = expert_features(snaps[i], radial_r=grid, angular_r=grid, l_values=l_values,
                                             n_levels=n_levels, positions=positions, node_scalars=node_scalars)
    model = RidgeBaseline(cv=cv).fit([features[i] for i in train_idx], [snaps[i].propensity for i in train_idx],
                                [snaps[i].types for i in train_idx])
    preds = [model.predict(features[i]) for i in test_idx]
    halves = [snaps[i].propensity_halves for i in test_idx] if all(snaps[i].propensity_halves is not None for i in test_idx) else None
    test = metrics.report(preds, [snaps[i].propensity for i in test_idx], [snaps[i].types == ka.TYPE_A for i in test_idx],
                          halves, n_bootstrap=n_bootstrap)
    if predictions_out is not None:
        from glasslab._atomic import atomic_path

        with atomic_path(predictions_out) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, predictions=np.stack(preds).astype(np.float32), test_indices=np.asarray(test_idx))
    return {
        "name": f"ridge_{Path(files[0]).stem}", "model": "ridge (Boattini descriptors)",
        **provenance.run_record("ridge", "trained", None, snaps[train_idx[0]].temperature, snaps[test_idx[0]].temperature,
                                files + extra_files, time.time() - t0),
        "data": files[0] if len(files) == 1 else files, "extra_train": extra_files or None,
        "test": test, "times": snaps[0].times.tolist(), "n_features": len(names), "alpha": model.alpha_.tolist(),
        "descriptors": {"r_grid": [float(grid[0]), float(grid[-1]), len(grid)], "delta": DEFAULT_RADIAL_DELTA,
                        "l_values": [int(l) for l in l_values], "n_levels": n_levels, "r_c": DEFAULT_CG_RC,
                        "positions": positions, "node_scalars": list(node_scalars)},
        "cv": "leave-one-out" if cv is None else f"{cv}-fold, grouped by snapshot",
        "split_sizes": {"train": len(train_idx), "test": len(test_idx)}, "split_seed": split_seed,
        "split_indices": {"test": [int(i) for i in test_idx]},
    }
