"""Small data files and configs for the bad-input tests (fast: seconds)."""

from conftest import random_snapshots as snapshots
from glasslab import io, train

TINY_BAPST = {"hidden": 4, "n_steps": 1}


def write_snapshots(path, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    return io.write_h5(path, snapshots(**kw))


def tiny_config(data, **kw):
    base = dict(name="tiny", data=[str(data)], model="bapst", model_kwargs=TINY_BAPST, epochs=1,
                split=(0.5, 0.25, 0.25), patience=5, seed=0)
    base.update(kw)
    return train.TrainConfig(**base)
