"""Small data files and configs for the bad-input tests (fast: seconds)."""

import numpy as np

from glasslab import io, train

TINY_BAPST = {"hidden": 4, "n_steps": 1}


def snapshots(n_snap=6, n=120, seed=0, temperature=0.64):
    rng = np.random.default_rng(seed)
    box = np.full(3, (n / 1.2) ** (1 / 3))
    out = []
    for _ in range(n_snap):
        x = rng.uniform(0, 1, (n, 3)) * box
        types = (rng.random(n) < 0.2).astype(int)
        y = rng.random((n, 2)) + np.array([0.5, 1.0])
        out.append(io.Snapshot(x, types, box, temperature, times=[1.0, 10.0], propensity=y))
    return out


def write_snapshots(path, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    return io.write_h5(path, snapshots(**kw))


def tiny_config(data, **kw):
    base = dict(name="tiny", data=[str(data)], model="bapst", model_kwargs=TINY_BAPST, epochs=1,
                split=(0.5, 0.25, 0.25), patience=5, seed=0)
    base.update(kw)
    return train.TrainConfig(**base)
