"""Models trained by glasslab on its shipped data, ready to load.

Each pretrained model is a checkpoint ``data/checkpoints/<name>.pt`` (weights, config,
target statistics) with its results ``data/results/<name>.json`` (test metrics, split,
hardware, wall time). ``publish`` copies a finished training run there. A ridge baseline has
results and its test predictions (``data/results/<name>_test_predictions.npz``) instead of a
checkpoint. :func:`test_predictions` gives the predictions of any shipped run on the test
snapshots it was scored on, so that two runs can be compared on the same particles.
:func:`catalogue` answers "which runs exist, of which kind, at which temperatures" from the
common header of every results file (:func:`glasslab.provenance.run_record`).

What is safe to open: checkpoints are read with ``torch.load(weights_only=True)`` (tensors and
plain containers only), so a crafted ``.pt`` file cannot run code; it is refused with
:class:`glasslab.io.UnsafeFileError`, and a truncated or foreign one raises ``ValueError`` naming it.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Run:
    """One shipped result, as :func:`catalogue` lists it.

    ``kind``: ``"se3"``, ``"bapst"`` or ``"ridge"``; ``lmax`` for SE(3) networks (else None);
    ``protocol``: ``"trained"``, ``"transfer"`` (head retrained at ``test_temperature`` on a body
    trained at ``train_temperature``) or ``"direct"`` (a checkpoint tested as it is);
    ``node_scalars``: extra per-particle inputs (e.g. ``("epot_is",)``); ``n_train``: training
    snapshots (None for a direct test); ``checkpoint``: whether weights are shipped.
    """

    name: str
    kind: str
    protocol: str
    seed: int | None
    train_temperature: float
    test_temperature: float
    lmax: int | None = None
    node_scalars: tuple = ()
    n_train: int | None = None
    checkpoint: bool = False

    @property
    def model(self) -> str:
        """``"se3_lmax<l>"``, ``"bapst"`` or ``"ridge"``."""
        return f"se3_lmax{self.lmax}" if self.kind == "se3" else self.kind


def catalogue(**where) -> list[Run]:
    """Every shipped result with the common header, sorted by name; ``where`` keeps those whose
    :class:`Run` fields (or ``model``) equal the given values, e.g.
    ``catalogue(model="se3_lmax1", protocol="trained", train_temperature=0.64)``."""
    folder = _results()
    runs = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        res = results(path.stem)
        if "kind" not in res:  # not a run (e.g. the recipe sweep's summary)
            continue
        cfg = res.get("config", {})
        run = Run(name=path.stem, kind=res["kind"], protocol=res["protocol"], seed=res["seed"],
                  train_temperature=res["train_temperature"], test_temperature=res["test_temperature"],
                  lmax=cfg.get("model_kwargs", res.get("model_kwargs", {})).get("lmax", 3) if res["kind"] == "se3" else None,
                  node_scalars=tuple(cfg.get("node_scalars") or res.get("descriptors", {}).get("node_scalars", ())),
                  n_train=res.get("split_sizes", {}).get("train"),
                  checkpoint=(_checkpoints() / f"{path.stem}.pt").is_file())
        if all(getattr(run, key) == value for key, value in where.items()):
            runs.append(run)
    return runs


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


def test_snapshots(name: str) -> list:
    """The test snapshots (:class:`glasslab.io.Snapshot`) a shipped run was scored on, in its order."""
    from glasslab import io
    from glasslab.train import expand_paths

    res = results(name)
    cfg = res.get("config", {})
    test = res.get("split_indices", {}).get("test")
    if cfg.get("test_data"):
        data, test = cfg["test_data"], None
    else:
        data = cfg.get("data", res.get("data"))
        if test is None:
            raise ValueError(f"the results of {name!r} do not record their test split")
    files = expand_paths([data] if isinstance(data, str) else data)
    if test is not None and len(files) == 1 and io.sniff_format(files[0]) == "glasslab-h5":
        return io.read_h5(files[0], indices=test)  # only the test snapshots
    kwargs = {"temperature": cfg.get("temperature") or res.get("temperature")}
    snaps = [s for f in files for s in io.read(f, **kwargs)]
    return snaps if test is None else [snaps[i] for i in test]


def test_predictions(name: str, device="cpu") -> tuple[list, list]:
    """(predictions, snapshots): a shipped run's predicted propensities (N, K) on each of its test
    snapshots, and those snapshots. Networks are run from their checkpoint; a ridge's stored
    predictions are read."""
    import numpy as np
    import torch

    snaps = test_snapshots(name)
    stored = _results() / f"{name}_test_predictions.npz"
    if (_checkpoints() / f"{name}.pt").is_file():
        from glasslab.dataset import snapshot_to_graph
        from glasslab.train import predict

        model = load(name, device)
        cfg = model.metadata["config"]
        graphs = [snapshot_to_graph(s, cutoff=cfg.get("cutoff", 2.0), positions=cfg.get("positions", "thermal"),
                                    node_scalars=cfg.get("node_scalars", ())) for s in snaps]
        with torch.no_grad():
            preds = predict(model, graphs, model.metadata["target_mean"], model.metadata["target_std"], device)
    elif stored.is_file():
        with np.load(stored) as npz:
            if npz["test_indices"].tolist() != results(name)["split_indices"]["test"]:
                raise ValueError(f"{stored}: test indices differ from those of {name}'s results")
            preds = list(npz["predictions"].astype(np.float64))
    else:
        raise ValueError(f"{name!r} has neither a checkpoint nor stored test predictions")
    return preds, snaps


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
