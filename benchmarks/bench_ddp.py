"""Data-parallel training: W processes under torchrun against one process doing the same arithmetic, in one run.

Both train the same SE3GNN on the same snapshots (N uniform random particles at the Kob–Andersen
density, random propensities, ``bench_train.random_snapshots``) with ``batch_size = W``: the
reference is one process with ``micro_batches = W`` (the W micro-batches one after another), the
other W processes of one micro-batch each (``torchrun --nproc-per-node W``, gloo on CPUs, NCCL on
GPUs). Their results are equal (``tests/test_distributed.py``); this measures the wall time of the
second epoch (graphs cached) of each and prints the speed-up, the thread setting and the hardware.
On a CPU each process uses ``--threads`` threads (default 1): W processes need W free cores.

    python benchmarks/bench_ddp.py [--processes 2] [--n 1000] [--snapshots 16] [--lmax 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_train import _history, random_snapshots

from glasslab import io
from glasslab.provenance import hardware


def epoch_seconds(config: Path, out: Path, processes: int, env: dict) -> float:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] if processes > 1 else []
    subprocess.run([sys.executable, *launcher, "-m", "glasslab.cli", "train", str(config), "--out", str(out)],
                   env=env, check=True, capture_output=True)
    history = _history(out / json.loads(config.read_text())["name"])
    return history[1]["wall_s"] - history[0]["wall_s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--snapshots", type=int, default=16, help="split 50/40/10 into train/validation/test")
    parser.add_argument("--lmax", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (GLASSLAB_THREADS)")
    args = parser.parse_args()
    w = args.processes
    print(f"{w} processes vs one; N = {args.n}, {args.snapshots} snapshots, SE3GNN(lmax={args.lmax}); "
          f"{args.threads} torch thread(s) per process; {hardware()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = io.write_h5(tmp / "bench.h5", random_snapshots(args.n, args.snapshots))
        env = {**os.environ, "GLASSLAB_CACHE": str(tmp / "cache"), "GLASSLAB_THREADS": str(args.threads),
               "OMP_NUM_THREADS": str(args.threads)}
        base = {"data": [str(data)], "model": "se3", "model_kwargs": {"lmax": args.lmax}, "epochs": 2,
                "batch_size": w, "micro_batches": w, "patience": 10}
        seconds = {}
        for label, processes in (("one process", 1), (f"{w} processes", w)):
            config = tmp / f"p{processes}.json"
            config.write_text(json.dumps({**base, "name": f"p{processes}"}))
            seconds[label] = epoch_seconds(config, tmp / "runs", processes, env)
            print(f"{label:12s} epoch {seconds[label]:7.1f} s (training and validation)")
    print(f"speed-up of {w} processes: {seconds['one process'] / seconds[f'{w} processes']:.2f}")


if __name__ == "__main__":
    main()
