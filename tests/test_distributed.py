"""Data-parallel training (torchrun, gloo on CPU) equals the single-process run it stands for."""

import json
import os
import subprocess
import sys

import pytest
import torch

from test_train import TINY_SE3, write_dataset

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def run(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLASSLAB_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def test_two_processes_equal_one_process_with_two_micro_batches(tmp_path):
    data = write_dataset(tmp_path / "d.h5", n_snap=12)
    base = dict(data=[str(data)], model="se3", model_kwargs=TINY_SE3, epochs=3, split=[0.5, 0.25, 0.25],
                patience=50, seed=5, batch_size=2, rotation_augmentation="continuous")
    (tmp_path / "ddp.json").write_text(json.dumps({**base, "name": "ddp"}))
    (tmp_path / "single.json").write_text(json.dumps({**base, "name": "single", "micro_batches": 2}))
    run(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "glasslab.cli",
         "train", "ddp.json", "--out", "runs"], tmp_path)
    run(["-m", "glasslab.cli", "train", "single.json", "--out", "runs"], tmp_path)

    ddp, single = (json.loads((tmp_path / "runs" / name / "results.json").read_text()) for name in ("ddp", "single"))
    assert ddp["config"]["micro_batches"] == 2  # what the two processes stand for, recorded
    for a, b in zip(ddp["history"], single["history"]):
        for key in ("train_loss", "val_loss", "val_rho_0", "val_rho_1"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (key, a, b)
    assert ddp["test"]["rho_pooled"] == pytest.approx(single["test"]["rho_pooled"], rel=1e-5)
    weights = [torch.load(tmp_path / "runs" / name / "last.pt", weights_only=True)["model"] for name in ("ddp", "single")]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:  # parameters and the batch norms' running statistics
        if weights[0][key].is_floating_point():
            assert torch.allclose(weights[0][key], weights[1][key], rtol=1e-4, atol=1e-6), key
    assert not (tmp_path / "runs" / "ddp" / "results.json.tmp").exists()


def test_micro_batches_must_divide_the_batch():
    from glasslab import train

    with pytest.raises(ValueError, match="multiple of micro_batches"):
        train.TrainConfig(name="x", data=["x.h5"], batch_size=3, micro_batches=2)
