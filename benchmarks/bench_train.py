"""Training throughput of the paper's model through ``glasslab.train.train``, against BapstGNN in the same run.

Writes a few paper-sized snapshots (N = 4096 uniform random particles at the Kob–Andersen density
1.2, ~165 000 edges at cutoff 2.0, random propensities) to a temporary glasslab HDF5 file, then
trains SE3GNN(lmax=3) and the BapstGNN reference for two epochs each with the real training loop
(rotation augmentation for BapstGNN, validation after every epoch, checkpoints written). The second
epoch's wall time (graphs cached, warm-up done) gives the throughput in training snapshots per
second, validation included. Prints both and their ratio; also lists the wall time and hardware
recorded by each shipped training run (``data/results``).

    python benchmarks/bench_train.py [--n 4096] [--snapshots 6] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from glasslab import threads
from glasslab import io, ka, paths
from glasslab.provenance import hardware
from glasslab.train import TrainConfig, train

MODELS = {"BapstGNN": ("bapst", {}), "SE3GNN(lmax=3)": ("se3", {"lmax": 3})}


def random_snapshots(n: int, count: int, seed: int = 0) -> list[io.Snapshot]:
    rng = np.random.default_rng(seed)
    side = (n / ka.DENSITY) ** (1 / 3)
    times = np.array([1.0, 10.0])
    return [io.Snapshot(positions=rng.uniform(0.0, side, (n, 3)), types=(rng.random(n) >= ka.FRACTION_A).astype(int),
                        box=np.full(3, side), temperature=0.64, times=times,
                        propensity=rng.gamma(2.0, 0.5, (n, len(times))))
            for _ in range(count)]


def epoch_seconds(model: str, kwargs: dict, data: Path, out: Path, device: str) -> tuple[float, int]:
    cfg = TrainConfig(name=f"bench_{model}", data=[str(data)], model=model, model_kwargs=kwargs, epochs=2,
                      patience=10)
    results = train(cfg, out_root=out, device=device, progress=False)
    history = _history(out / cfg.name)
    return history[1]["wall_s"] - history[0]["wall_s"], results["split_sizes"]["train"]


def _history(run: Path) -> list[dict]:
    lines = (run / "history.csv").read_text().splitlines()
    keys = lines[0].split(",")
    return [dict(zip(keys, map(float, line.split(",")))) for line in lines[1:]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--snapshots", type=int, default=6, help="split 50/40/10 into train/validation/test")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: glasslab's thread policy, GLASSLAB_THREADS)")
    args = parser.parse_args()
    if args.threads is not None:
        os.environ["GLASSLAB_THREADS"] = str(args.threads)
    policy = threads.configure()
    print(policy)
    device = args.device or str(paths.default_device())
    print(f"N = {args.n}, {args.snapshots} snapshots; device {device}; {hardware()}; torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = io.write_h5(tmp / "bench.h5", random_snapshots(args.n, args.snapshots))
        os.environ["GLASSLAB_CACHE"] = str(tmp / "cache")
        rates = {}
        for label, (model, kwargs) in MODELS.items():
            seconds, n_train = epoch_seconds(model, kwargs, data, tmp / "runs", device)
            rates[label] = n_train / seconds
            print(f"{label:16s} epoch {seconds:7.1f} s for {n_train} training snapshots (+ validation): "
                  f"{rates[label]:.3g} snapshots/s")
    print(f"ratio SE3GNN(lmax=3) / BapstGNN throughput: {rates['SE3GNN(lmax=3)'] / rates['BapstGNN']:.2f}")

    results_dir = paths.data_dir() / "results"
    for path in sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []:
        res = json.loads(path.read_text())
        if "wall_time_s" in res and "epochs_run" in res:
            print(f"shipped run {res['name']}: {res['epochs_run']} epochs in {res['wall_time_s'] / 60:.1f} min "
                  f"on {res['hardware']}")


if __name__ == "__main__":
    main()
