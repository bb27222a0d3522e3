"""How well predicted propensities match the measured ones: Pearson ρ and its error bars.

Correlations are per timescale (one column per timescale) and, by default, on A particles.
Two aggregations are reported, and named apart because they differ:

* ``pooled``: one ρ over all test particles of all test snapshots together (the paper's
  number: its bootstrap resamples the n = 80 × 4096 × 0.8 pooled particles);
* ``per_snapshot``: the mean (and spread) of the ρ of each snapshot separately.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from glasslab.analysis import pearson


def _stack(preds, targets, masks):
    preds = [np.asarray(p, dtype=float).reshape(len(p), -1) for p in preds]
    targets = [np.asarray(t, dtype=float).reshape(len(t), -1) for t in targets]
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
    if masks is None:
        masks = [np.ones(len(t), dtype=bool) for t in targets]
    for i, (p, t, m) in enumerate(zip(preds, targets, masks)):
        if p.shape != t.shape:
            raise ValueError(f"snapshot {i}: prediction shape {p.shape} differs from target shape {t.shape}")
        if np.shape(m) != (len(t),):
            raise ValueError(f"snapshot {i}: mask shape {np.shape(m)} does not match {len(t)} particles")
    return preds, targets, [np.asarray(m, dtype=bool) for m in masks]


@dataclasses.dataclass
class Correlation:
    """Pearson ρ per timescale.

    Attributes:
        pooled: (K,) ρ over all selected particles of all snapshots together.
        per_snapshot: (S, K) ρ of each snapshot.
        per_snapshot_mean, per_snapshot_std: (K,) their mean and standard deviation.
    """

    pooled: np.ndarray
    per_snapshot: np.ndarray

    @property
    def per_snapshot_mean(self) -> np.ndarray:
        return self.per_snapshot.mean(axis=0)

    @property
    def per_snapshot_std(self) -> np.ndarray:
        return self.per_snapshot.std(axis=0)


def correlation(preds, targets, masks=None) -> Correlation:
    """Pearson ρ between predictions and targets, pooled and per snapshot.

    Args:
        preds, targets: sequences (one entry per snapshot) of (N, K) arrays.
        masks: optional sequence of (N,) boolean arrays (e.g. A particles).
    """
    preds, targets, masks = _stack(preds, targets, masks)
    pooled = pearson(np.concatenate([p[m] for p, m in zip(preds, masks)]),
                     np.concatenate([t[m] for t, m in zip(targets, masks)]))
    per = np.stack([pearson(p[m], t[m]) for p, t, m in zip(preds, targets, masks)])
    return Correlation(pooled=pooled, per_snapshot=per)


@dataclasses.dataclass
class Bootstrap:
    """Bootstrap distribution of the pooled ρ (paper, Appendix B), or of a difference of two.

    Attributes: ``samples`` (B, K); ``mean``, ``std``, ``low``, ``high`` (K,) with
    ``low``/``high`` the bounds of the central ``level`` interval.
    """

    samples: np.ndarray
    level: float

    @property
    def mean(self):
        return self.samples.mean(0)

    @property
    def std(self):
        return self.samples.std(0)

    @property
    def low(self):
        return np.quantile(self.samples, (1 - self.level) / 2, axis=0)

    @property
    def high(self):
        return np.quantile(self.samples, (1 + self.level) / 2, axis=0)


def _multiplicities(rng, n: int, b: int) -> np.ndarray:
    """(b, n) multiplicities of n items in b resamples of n draws with replacement."""
    idx = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
    return np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(float)


def _weighted_pearson(w, x, y) -> np.ndarray:
    """(b, K) ρ of the (n, K) columns of x and y, each of the b rows of w (b, n) weighting the n items."""
    n = x.shape[0]
    sx, sy = w @ x, w @ y
    cov = w @ (x * y) / n - (sx / n) * (sy / n)
    var_x = w @ (x * x) / n - (sx / n) ** 2
    var_y = w @ (y * y) / n - (sy / n) ** 2
    return cov / np.sqrt(var_x * var_y)


def _pooled(preds, targets, masks):
    preds, targets, masks = _stack(preds, targets, masks)
    return (np.concatenate([p[m] for p, m in zip(preds, masks)]),
            np.concatenate([t[m] for t, m in zip(targets, masks)]))


def bootstrap_pearson(preds, targets, masks=None, n_resamples: int = 5000, level: float = 0.95,
                      seed: int = 0, chunk: int = 64) -> Bootstrap:
    """Resample the n pooled test particles with replacement, ``n_resamples`` times.

    Each resample draws n of the n (particle, prediction, target) triples; ρ is computed
    from weighted moments (the multiplicity of each particle), in chunks to bound memory.
    """
    x, y = _pooled(preds, targets, masks)
    rng = np.random.default_rng(seed)
    out = [_weighted_pearson(_multiplicities(rng, len(x), min(chunk, n_resamples - start)), x, y)
           for start in range(0, n_resamples, chunk)]
    return Bootstrap(samples=np.concatenate(out), level=level)


def bootstrap_pearson_difference(preds_a, preds_b, targets, masks=None, n_resamples: int = 5000,
                                 level: float = 0.95, seed: int = 0, chunk: int = 64) -> Bootstrap:
    """Paired bootstrap of ρ_a − ρ_b, two models scored on the same test particles.

    Every resample draws the same particles for both models, so the test-set luck they share
    cancels: the interval is narrower than the one from two independent bootstrap errors added
    in quadrature. ``samples`` (B, K) are differences of pooled ρ.
    """
    xa, y = _pooled(preds_a, targets, masks)
    xb, _ = _pooled(preds_b, targets, masks)
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n_resamples, chunk):
        w = _multiplicities(rng, len(y), min(chunk, n_resamples - start))
        out.append(_weighted_pearson(w, xa, y) - _weighted_pearson(w, xb, y))
    return Bootstrap(samples=np.concatenate(out), level=level)


@dataclasses.dataclass
class SeedSpread:
    """ρ over independently trained models (different seeds): mean, std, min, max (K,)."""

    values: np.ndarray

    @property
    def mean(self):
        return self.values.mean(0)

    @property
    def std(self):
        return self.values.std(0, ddof=1) if len(self.values) > 1 else np.zeros(self.values.shape[1:])

    @property
    def min(self):
        return self.values.min(0)

    @property
    def max(self):
        return self.values.max(0)


def seed_spread(rhos) -> SeedSpread:
    """Spread of ρ over seeds; ``rhos`` is (n_seeds, K) or (n_seeds,)."""
    v = np.asarray(rhos, dtype=float)
    return SeedSpread(v[:, None] if v.ndim == 1 else v)


def relative_to_ceiling(rho, max_pearson):
    """ρ as a fraction of the noise ceiling (the largest ρ any predictor can reach).

    ``max_pearson`` comes from :func:`glasslab.analysis.noise_ceiling`.
    """
    return np.asarray(rho, dtype=float) / np.asarray(max_pearson, dtype=float)


def report(preds, targets, masks=None, halves=None, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """The test metrics glasslab reports for any predictor, as JSON-ready lists per timescale.

    Args:
        preds, targets, masks: as in :func:`correlation` (one entry per snapshot).
        halves: optional per-snapshot split-half propensities (2, N, K): adds the noise
            ceiling (:func:`glasslab.analysis.noise_ceiling`) and ρ relative to it.

    Returns a dict with ``rho_pooled``, ``rho_per_snapshot_mean``/``_std``, the bootstrap
    interval of the pooled ρ (``bootstrap_low``/``_high``/``_std``), ``n_particles``,
    ``n_snapshots`` and, with halves, ``noise_ceiling`` and ``rho_over_ceiling``.
    """
    from glasslab.analysis import noise_ceiling

    preds, targets, masks = _stack(preds, targets, masks)
    corr = correlation(preds, targets, masks)
    boot = bootstrap_pearson(preds, targets, masks, n_resamples=n_bootstrap, seed=seed)
    out = {
        "rho_pooled": corr.pooled.tolist(),
        "rho_per_snapshot_mean": corr.per_snapshot_mean.tolist(),
        "rho_per_snapshot_std": corr.per_snapshot_std.tolist(),
        "bootstrap_low": boot.low.tolist(), "bootstrap_high": boot.high.tolist(), "bootstrap_std": boot.std.tolist(),
        "n_particles": int(sum(m.sum() for m in masks)), "n_snapshots": len(preds),
    }
    if halves is not None:
        pooled = np.concatenate([np.asarray(h)[:, m] for h, m in zip(halves, masks)], axis=1)  # (2, M, K)
        ceiling = noise_ceiling(pooled)
        out["noise_ceiling"] = ceiling.max_pearson.tolist()
        out["rho_over_ceiling"] = relative_to_ceiling(corr.pooled, ceiling.max_pearson).tolist()
    return out
