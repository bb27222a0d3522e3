"""Models trained by glasslab on its shipped data, ready to load.

Each pretrained model is a checkpoint ``data/checkpoints/<name>.pt`` (weights, config,
target statistics) with its results ``data/results/<name>.json`` (test metrics, split,
hardware, wall time). ``publish`` copies a finished training run there.

What is safe to open: checkpoints are read with ``torch.load(weights_only=True)`` (tensors and
plain containers only), so a crafted ``.pt`` file cannot run code; it is refused with
:class:`glasslab.io.UnsafeFileError`, and a truncated or foreign one raises ``ValueError`` naming it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from glasslab._atomic import atomic_path
from glasslab.paths import data_dir


def _checkpoints() -> Path:
    return data_dir() / "checkpoints"


def _results() -> Path:
    return data_dir() / "results"


def available() -> list[str]:
    """Names of the shipped pretrained models, sorted."""
    folder = _checkpoints()
    return sorted(p.stem for p in folder.glob("*.pt")) if folder.is_dir() else []


def results(name: str) -> dict:
    """The results (test ρ per timescale, bootstrap, split, config, provenance) of a model."""
    path = _results() / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"no results for {name!r}; available: {available()}")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); restore it from the repository") from None


def load(name: str, device="cpu"):
    """A pretrained model in eval mode; ``model.metadata`` holds what it was trained on.

    ``metadata`` keys: ``name``, ``config`` (the TrainConfig: data, split, model),
    ``times`` (the timescales of its K outputs), ``target_mean``/``target_std`` (multiply
    and add to turn outputs into propensities), ``results`` (reported test ρ and more).
    """
    from glasslab.train import load_checkpoint

    path = _checkpoints() / f"{name}.pt"
    if not path.is_file():
        raise ValueError(f"no pretrained model {name!r}; available: {available()}")
    model, ckpt = load_checkpoint(path, device)
    model.metadata = {
        "name": name,
        "config": ckpt["config"],
        "times": ckpt["times"],
        "target_mean": ckpt["target_mean"],
        "target_std": ckpt["target_std"],
        "results": results(name) if (_results() / f"{name}.json").is_file() else None,
    }
    return model


def publish(run_dir, name: str | None = None) -> str:
    """Copy a finished run's best checkpoint and results into the shipped data folder."""
    run_dir = Path(run_dir)
    name = name or run_dir.name
    for src, dst in ((run_dir / "best.pt", _checkpoints() / f"{name}.pt"),
                     (run_dir / "results.json", _results() / f"{name}.json")):
        if not src.is_file():
            raise ValueError(f"{run_dir}: missing {src.name}; is the run finished?")
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    return name
