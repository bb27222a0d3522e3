"""Training and evaluation: the paper's recipe, resumable, on CPU or GPU.

The loss: mean squared error on the A particles, one output per timescale (K outputs trained
together), whole snapshots as batches. Targets are standardised per timescale with the training
set's A-particle mean and standard deviation (Pearson ρ is blind to that affine map; it only
balances the K timescales in the loss). The optimiser, schedule and regularisation come from a
named recipe (:mod:`glasslab.recipes`: ``"glasslab"`` by default, ``"paper"`` for the paper's).

A run lives in one folder: ``config.json``, ``history.csv`` (one row per epoch),
``last.pt`` (everything needed to resume, written atomically after every epoch), ``best.pt``
(the weights with the best validation score, ``monitor``) and ``results.json`` (test metrics with
provenance). Rerunning the same config continues an interrupted run where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch
from tqdm.auto import tqdm

from glasslab import _checks, distributed, metrics, provenance, recipes
from glasslab._atomic import atomic_path, write_json
from glasslab.dataset import GlassDataset, check_label_times, load_graphs, split_indices
from glasslab.analysis import closest_time
from glasslab.io import read_h5_info
from glasslab.models import MODELS, build_model
from glasslab.models.blocks import count_parameters, has_active_dropout, recalibrate_batch_norm
from glasslab.paths import data_dir, default_device
from glasslab.symmetry import CubeSymmetry, RandomRotation


@dataclasses.dataclass
class TrainConfig:
    """One training run.

    Attributes:
        name: the run's name (its folder is ``<out_root>/<name>``).
        data: data files (glasslab ``.h5``, Bapst pickles or GlassBench ``.npz``); glob
            patterns are expanded (sorted), so ``"~/bapst/T0.44/*.pickle"`` works.
        model: ``"se3"`` (SE3GNN) or ``"bapst"`` (BapstGNN); ``model_kwargs`` go to its
            constructor (``out_dim`` is set from ``timescales``).
        timescales: indices of the label columns to fit (None: all K).
        positions, node_scalars, cutoff: how graphs are built (see glasslab.dataset).
        split, split_seed: train / validation / test fractions of the snapshots and the
            seed of their shuffle (the paper's 50/40/10).
        test_data: optional other files to test on (e.g. another temperature); then the
            test metrics use all their snapshots.
        extra_train_data: optional files whose snapshots all join the training set, after
            those of the split; the split of ``data`` (its validation and test sets) is unchanged,
            so runs with and without them are scored on the same particles (learning curves).
        train_snapshots: train on only the first n snapshots of the training set (None: all).
        init_from: optional checkpoint to start from (transfer learning);
            ``train_only_head`` then freezes everything but the final linear layer.
        recipe: ``"glasslab"`` (default) or ``"paper"``: where the fields below left unset (None)
            and the model's regularisation (e.g. SE3GNN dropout) come from (see
            :mod:`glasslab.recipes`, which says where and why the default departs from the paper).
        epochs, lr, betas, weight_decay: Adam and the number of passes over the training set.
        schedule: ``"step"`` (the learning rate times ``lr_factor`` at each epoch of
            ``lr_milestones``) or ``"cosine"`` (a linear warm-up over ``warmup_epochs``, then a
            cosine decay to zero at ``epochs``, updated at every optimiser step).
        batch_size: snapshots per optimiser step (whole snapshots, batched as one graph).
        micro_batches: split each step's batch into this many forward passes whose gradients add
            up (memory; batch norms then see one micro-batch at a time). A run of W processes
            under torchrun (:mod:`glasslab.distributed`) equals the single-process run with
            ``micro_batches = W``; it sets that value when left at 1.
        grad_clip: clip the gradients' global norm to this value before each step (0: no clipping).
        monitor: the validation score that picks the weights kept (``best.pt``) and drives early
            stopping: ``"val_rho"`` (highest mean pooled validation ρ over the fitted timescales;
            the default, since ρ is the reported score) or ``"val_loss"`` (lowest).
        patience: stop when the monitored score has not improved for this many epochs.
        rotation_augmentation: ``"continuous"`` (or True: uniformly random rotations),
            ``"cube"`` (a random symmetry of the cube, as DeepMind trained the Bapst GNN) or False;
            for the default, see the recipe (the Bapst GNN's is ``"cube"``; the SE3GNN needs none).
        max_minutes: wall-clock budget; training stops after the epoch that exceeds it.
        seed: seeds the weights, the data order, dropout and augmentation.
        temperature: temperature of GlassBench files (which do not store it).
    """

    name: str
    data: list[str]
    model: str = "se3"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    timescales: list[int] | None = None
    positions: str = "thermal"
    node_scalars: list[str] = dataclasses.field(default_factory=list)
    cutoff: float = 2.0
    split: tuple[float, float, float] = (0.5, 0.4, 0.1)
    split_seed: int = 0
    test_data: list[str] | None = None
    extra_train_data: list[str] | None = None
    train_snapshots: int | None = None
    init_from: str | None = None
    train_only_head: bool = False
    epochs: int = 100
    recipe: str = "glasslab"
    lr: float | None = None
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    lr_milestones: list[int] | None = None
    lr_factor: float | None = None
    warmup_epochs: float | None = None
    batch_size: int | None = None
    micro_batches: int = 1
    grad_clip: float | None = None
    patience: int = 20
    monitor: str = "val_rho"
    rotation_augmentation: bool | str | None = None
    max_minutes: float | None = None
    seed: int = 0
    temperature: float | None = None

    def __post_init__(self):
        recipes.apply(self)  # before validation: afterwards every field holds an explicit value
        _checks.train_config(self, MODELS, MONITORS)  # types, ranges, run name, model_kwargs keys
        if isinstance(self.data, (str, Path)):
            self.data = [str(self.data)]
        if isinstance(self.test_data, (str, Path)):
            self.test_data = [str(self.test_data)]
        if isinstance(self.extra_train_data, (str, Path)):
            self.extra_train_data = [str(self.extra_train_data)]
        self.split = tuple(self.split)
        self.betas = tuple(self.betas)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose from {SCHEDULES}")
        if self.rotation_augmentation not in (True, False, *AUGMENTATIONS):
            raise ValueError(f"rotation_augmentation must be true, false or one of {AUGMENTATIONS}, "
                             f"got {self.rotation_augmentation!r}")
        if self.train_only_head and not self.init_from:
            raise ValueError("train_only_head needs init_from (a checkpoint to start from)")
        self.micro_batches = _checks.integer(self.micro_batches, "micro_batches", minimum=1)
        if self.batch_size % self.micro_batches:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of micro_batches ({self.micro_batches})")

    @classmethod
    def from_file(cls, path) -> "TrainConfig":
        """Read a config from a TOML or JSON file; relative data paths are kept as written.

        Every error (syntax, unknown key with a "did you mean", bad value) names the file."""
        path = Path(path)
        if path.is_dir() or not path.is_file():
            raise FileNotFoundError(f"{path}: {'is a directory, not a config file' if path.is_dir() else 'no such config file'}")
        try:
            text = path.read_text()
            if path.suffix == ".toml":
                import tomllib

                raw = tomllib.loads(text)
            else:
                raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
            raise ValueError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({exc})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a config must be a table of keys, got {type(raw).__name__}")
        _checks.unknown_keys(raw, [f.name for f in dataclasses.fields(cls)], str(path))
        if "name" not in raw:
            raw["name"] = path.stem
        try:
            return cls(**raw)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


MONITORS = ("val_loss", "val_rho")
SCHEDULES = ("step", "cosine")
AUGMENTATIONS = ("continuous", "cube")

RESUMABLE_CHANGES = ("epochs", "patience", "max_minutes", "monitor")
"""Config fields a resumed run may change: it can be extended or cut short (e.g. ``--epochs``
equal to the epochs already run ends it and evaluates the best weights), and its monitor
changed (the selection of the best weights then restarts at the resumed epoch); nothing else."""


def _same_run(old: dict, new: dict) -> bool:
    def identity(cfg: dict) -> dict:
        cfg = {"micro_batches": 1, **cfg}  # runs started before the field existed
        return {k: v for k, v in cfg.items() if k not in RESUMABLE_CHANGES}

    return identity(old) == identity(new)


def head_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Parameters of the model's final linear layer (``model.head``)."""
    if not hasattr(model, "head"):
        raise ValueError(f"{type(model).__name__} has no `head` (final linear layer) to retrain")
    return list(model.head.parameters())


# --------------------------------------------------------------------------- data

def expand_paths(entries) -> list[str]:
    """Data entries as files: ``~`` expanded, glob patterns (``*``, ``?``, ``[``) sorted.

    A relative ``data/...`` entry that does not exist from the working directory is looked up
    in :func:`glasslab.data_dir`, so the shipped configs and checkpoints work from any folder.
    """
    import glob

    files = []
    for entry in entries:
        entry = os.path.expanduser(str(entry))
        shipped = Path(entry).parts[:1] == ("data",) and not Path(entry).is_absolute()
        if shipped and not glob.glob(entry):
            try:
                entry = str(data_dir().joinpath(*Path(entry).parts[1:]))
            except FileNotFoundError:
                pass  # no data folder either: the reader names the missing file
        if any(ch in entry for ch in "*?["):
            matched = sorted(glob.glob(entry))
            if not matched:
                raise ValueError(f"no file matches {entry!r}")
            files += matched
        else:
            files.append(entry)
    return files


def _load(paths, cfg: TrainConfig) -> tuple[list, list[str]]:
    """The graphs of the files ``paths`` (names or globs) and the files they came from."""
    graphs, first, files = [], None, expand_paths(paths)
    for p in files:
        loaded = load_graphs(p, cutoff=cfg.cutoff, positions=cfg.positions, node_scalars=cfg.node_scalars,
                             temperature=cfg.temperature, progress=False)
        if loaded and first is None:
            first = (p, loaded[0].times[0].numpy())
        elif loaded:
            check_label_times(p, loaded[0].times[0].numpy(), first)
        graphs += loaded
    if not graphs:
        raise ValueError(f"no snapshots in {paths}")
    return _select_timescales(graphs, cfg.timescales), files


def _select_timescales(graphs, timescales):
    """Keep the label columns ``timescales`` (None: all) of every graph, in place."""
    k = graphs[0].y.shape[1]
    cols = list(range(k)) if timescales is None else list(timescales)
    if any(c < -k or c >= k for c in cols):
        raise ValueError(f"timescales {cols} out of range for K={k} label columns")
    for g in graphs:
        if g.y.shape[1] != k:
            raise ValueError("all data files must have the same number of label timescales")
        g.y = g.y[:, cols]
        g.times = g.times[:, cols]
        if "y_halves" in g:
            g.y_halves = g.y_halves[:, :, cols]
    return graphs


@dataclasses.dataclass
class Splits:
    train: list
    val: list
    test: list
    indices: dict
    files: list  # every data file read, in order: data, test_data, extra_train_data


def make_splits(cfg: TrainConfig) -> Splits:
    """Graphs of the train / validation / test sets of a config."""
    graphs, files = _load(cfg.data, cfg)
    tr, va, te = split_indices(len(graphs), cfg.split, cfg.split_seed)
    if cfg.test_data:
        (test, test_files), te_idx = _load(cfg.test_data, cfg), "all of test_data"
        files = files + test_files
    else:
        test, te_idx = [graphs[i] for i in te], te.tolist()
    indices = {"train": tr.tolist(), "val": va.tolist(), "test": te_idx}
    train_graphs = [graphs[i] for i in tr]
    if cfg.extra_train_data:
        extra, extra_files = _load(cfg.extra_train_data, cfg)
        check_label_times(extra_files[0], extra[0].times[0].numpy(), (files[0], graphs[0].times[0].numpy()))
        files = files + extra_files
        train_graphs += extra
        indices["extra_train"] = len(extra)
    if cfg.train_snapshots is not None:
        if cfg.train_snapshots > len(train_graphs):
            raise ValueError(f"train_snapshots = {cfg.train_snapshots} but the training set has {len(train_graphs)} snapshots")
        train_graphs = train_graphs[:cfg.train_snapshots]
        indices["train_snapshots"] = cfg.train_snapshots
    return Splits(train_graphs, [graphs[i] for i in va], test, indices, files)


def target_stats(graphs) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-timescale mean and standard deviation of the A-particle targets, (K,) each."""
    y = torch.cat([g.y[g.mask_a] for g in graphs]).double()
    return y.mean(0).float(), y.std(0).clamp_min(1e-12).float()


# --------------------------------------------------------------------------- loop

def _masked_mse(pred, data, mean, std):
    target = (data.y - mean) / std
    return torch.nn.functional.mse_loss(pred[data.mask_a], target[data.mask_a])


def _masked_sse(pred, data, mean, std):
    """Summed squared error of the A particles' standardised targets (:func:`_masked_mse` × count)."""
    target = (data.y - mean) / std
    return torch.nn.functional.mse_loss(pred[data.mask_a], target[data.mask_a], reduction="sum")


@torch.no_grad()
def predict(model, graphs, mean, std, device) -> list[np.ndarray]:
    """Predicted propensities (N, K) per graph, in the units of the targets."""
    model.eval()
    out = []
    for g in graphs:
        g = g.to(device)
        out.append((model(g) * std.to(device) + mean.to(device)).cpu().numpy())
    return out


def _evaluate_split(model, graphs, mean, std, device) -> tuple[float, np.ndarray, float]:
    """Validation loss, pooled ρ per timescale, and :func:`prediction_spread`."""
    preds = predict(model, graphs, mean, std, device)
    losses = [float(np.mean(((p - g.y.numpy()) / std.numpy())[g.mask_a.numpy()] ** 2)) for p, g in zip(preds, graphs)]
    masks = [g.mask_a.numpy() for g in graphs]
    rho = metrics.correlation(preds, [g.y.numpy() for g in graphs], masks).pooled
    return float(np.mean(losses)), rho, prediction_spread(preds, masks, std.numpy())


def prediction_spread(preds, masks, label_std) -> float:
    """Standard deviation of the predictions over the A particles of all graphs, in units of the
    labels' standard deviation, averaged over timescales: ≈ ρ for a well-scaled model, ≪ 1 for
    a model that predicts (nearly) the same value everywhere."""
    stacked = np.concatenate([p[m] for p, m in zip(preds, masks)])
    return float(np.mean(stacked.std(0) / np.asarray(label_std)))


class CollapseWarning(UserWarning):
    """A model whose predictions barely vary: it predicts the mean, whatever its ρ."""


COLLAPSE_SPREAD = 0.05
COLLAPSE_EPOCHS = 3
COLLAPSE_GRACE = 5


def collapse_message(history: list[dict], threshold: float = COLLAPSE_SPREAD, epochs: int = COLLAPSE_EPOCHS,
                     grace: int = COLLAPSE_GRACE) -> str | None:
    """A diagnosis when training has collapsed, else None.

    Collapsed: at least ``grace`` epochs have run, and in each of the last ``epochs`` the
    validation predictions spread over less than ``threshold`` of the labels' standard
    deviation (``val_spread``) while the training loss stayed within 5 % of 1 (the loss of
    predicting the mean of the standardised targets). Such a network's correlations measure
    whatever small bias it kept (e.g. the neighbour count), not something it learned. A slow
    start (a few flat epochs, then learning) is not flagged.
    """
    recent = history[-epochs:]
    if len(history) < max(grace, epochs) or any("val_spread" not in row for row in recent):
        return None
    if all(row["val_spread"] < threshold and row["train_loss"] > 0.95 for row in recent):
        last = recent[-1]
        return (f"collapsed: after {len(history)} epochs the predictions spread over {last['val_spread']:.3f} of "
                f"the labels' standard deviation and the training loss is {last['train_loss']:.3f} (predicting the "
                "mean gives 1.0); check the learning rate, gradient clipping and initialisation")
    return None


def augmentation(cfg: TrainConfig):
    """The training-set transform of ``cfg.rotation_augmentation`` (None: no augmentation)."""
    kind = cfg.rotation_augmentation
    if kind is True or kind == "continuous":
        return RandomRotation(seed=cfg.seed)
    if kind == "cube":
        return CubeSymmetry(seed=cfg.seed)
    return None


def make_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """The learning-rate schedule of ``cfg``: stepped once per epoch (``"step"``) or once per
    optimiser step (``"cosine"``, with its linear warm-up)."""
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.lr_milestones, gamma=cfg.lr_factor)
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _save(path, state: dict) -> None:
    buffer = _io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _write_history(path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def train(cfg: TrainConfig, out_root="runs", device=None, progress: bool = True) -> dict | None:
    """Train (or resume) the run ``cfg`` and evaluate its best weights on the test set.

    Returns the results dict also written to ``<out_root>/<name>/results.json``. Under torchrun
    (several processes, :mod:`glasslab.distributed`) rank 0 writes and returns it; the others return None.
    """
    dist, device = distributed.context(device)
    device = torch.device(device) if device is not None else default_device()
    cfg = _for_processes(cfg, dist)
    out = _run_folder(cfg, out_root)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    splits = make_splits(cfg)
    mean, std = target_stats(splits.train)
    model, params, trained_at = _build(cfg, splits.train[0].y.shape[1], device)
    optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg, len(_batches(range(len(splits.train)), cfg)))
    loop = _Loop(model, params, optimizer, scheduler, GlassDataset(splits.train, augmentation(cfg)),
                 torch.Generator().manual_seed(cfg.seed), dist)
    state = {"epoch": 0, "best_val": float("inf"), "best_epoch": -1, "stale": 0, "history": [], "wall": 0.0,
             "monitor": cfg.monitor}
    if (out / "last.pt").exists():
        state = loop.resume(out / "last.pt", cfg, device)
    dist.barrier()  # every rank has read last.pt before rank 0 writes it again
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", cfg.to_dict())  # the start succeeded: the name is now this run's
    stop_reason = _fit(cfg, out, loop, splits, mean, std, device, state, progress and dist.main)
    if not dist.main:
        return None
    return _finish(cfg, out, model, splits, mean, std, device, state, stop_reason, trained_at)


def _for_processes(cfg: TrainConfig, dist: distributed.Distributed) -> TrainConfig:
    """``cfg`` with ``micro_batches`` a multiple of the number of processes (set to it when 1)."""
    if not dist.active or cfg.micro_batches % dist.world == 0:
        return cfg
    if cfg.micro_batches != 1:
        raise ValueError(f"micro_batches ({cfg.micro_batches}) must be a multiple of the number of processes ({dist.world})")
    return dataclasses.replace(cfg, micro_batches=dist.world)


def _run_folder(cfg: TrainConfig, out_root) -> Path:
    """``<out_root>/<name>``, refused if it holds a run with another config."""
    out = Path(out_root) / _checks.run_name(cfg.name)
    _checks.inside(out, out_root, "run folder")
    config_file = out / "config.json"  # written once the run has started, so a failed start blocks no name
    if config_file.exists():
        try:
            old_config = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{config_file}: unreadable ({exc}); delete the run folder {out} to start afresh") from None
        if not _same_run(old_config, cfg.to_dict()):
            raise ValueError(f"{out}: holds a run with another config; choose another name or delete the folder")
    return out


def _build(cfg: TrainConfig, k: int, device) -> tuple[torch.nn.Module, list, float]:
    """The model (from ``init_from`` if given), the parameters to train, and the temperature its
    body was trained at (the source's for a transfer, else that of the training data: None here)."""
    model = build_model(cfg.model, out_dim=k, **cfg.model_kwargs).to(device)
    params, trained_at = list(model.parameters()), None
    if cfg.init_from:
        start = _checks.load_torch_file(cfg.init_from, "init_from checkpoint", map_location=device)
        _same_architecture(start, cfg)
        _checks.load_weights(model, start.get("model"), cfg.init_from, "init_from checkpoint")
        trained_at = training_temperature(start)
        if cfg.train_only_head:
            for p in model.parameters():
                p.requires_grad_(False)
            params = head_parameters(model)
            for p in params:
                p.requires_grad_(True)
    return model, params, trained_at


def _batches(order, cfg: TrainConfig) -> list:
    """The snapshots of each optimiser step, in ``order``: ``batch_size`` at a time; with micro-batches
    a last, incomplete batch is dropped (it could not be split evenly), as ``DistributedSampler`` does."""
    order = list(order)
    stop = len(order) - len(order) % cfg.batch_size if cfg.micro_batches > 1 else len(order)
    return [order[start:start + cfg.batch_size] for start in range(0, stop, cfg.batch_size)]


@dataclasses.dataclass
class _Loop:
    """What one training step needs, and what a resumed run restores: weights, optimiser,
    schedule and the generators of the snapshot order and of the augmentation."""

    model: torch.nn.Module
    params: list
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_set: GlassDataset
    order_gen: torch.Generator
    dist: distributed.Distributed = distributed.Distributed()

    def epoch(self, cfg: TrainConfig, mean: torch.Tensor, std: torch.Tensor, device) -> tuple[float, float]:
        """One pass over the training set in a fresh random order: (mean loss, learning rate used)."""
        self.model.train()
        if cfg.train_only_head:
            self.model.eval()  # frozen batch-norm statistics and no dropout in the frozen body
        losses = []
        order = torch.randperm(len(self.train_set), generator=self.order_gen).tolist()
        lr_used = self.optimizer.param_groups[0]["lr"]
        for indices in _batches(order, cfg):
            # every rank draws the augmentation of every snapshot of the step, in order, and keeps its own
            batch = [self.train_set[i] for i in indices]
            self.optimizer.zero_grad(set_to_none=True)
            if cfg.micro_batches == 1:
                g = Batch.from_data_list(batch).to(device)
                loss = _masked_mse(self.model(g), g, mean, std)
                loss.backward()
            else:
                loss = self._micro_batches(batch, cfg, mean, std, device)
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            self.optimizer.step()
            if cfg.schedule == "cosine":
                self.scheduler.step()
            losses.append(loss.item())
        return float(np.mean(losses)), lr_used

    def _micro_batches(self, batch: list, cfg: TrainConfig, mean, std, device) -> torch.Tensor:
        """Forward and backward of this rank's micro-batches of one step's ``batch``, their gradients
        summed over micro-batches and ranks: the gradient of the whole batch's mean squared error.
        Returns that loss."""
        per_micro = len(batch) // cfg.micro_batches
        mine = self.dist.share(batch)
        count = sum(int(g.mask_a.sum()) for g in batch) * batch[0].y.shape[1]
        before = distributed.running_stats(self.model)
        squared = 0.0
        for k in range(0, len(mine), per_micro):
            g = Batch.from_data_list(mine[k:k + per_micro]).to(device)
            sse = _masked_sse(self.model(g), g, mean, std)
            (sse / count).backward()
            squared += sse.item()
        self.dist.sum_gradients(self.params)
        self.dist.merge_running_stats(self.model, before, len(mine) // per_micro)
        return torch.tensor(self.dist.sum(squared) / count)

    def save(self, path: Path, state: dict) -> None:
        transform = self.train_set.transform
        _save(path, {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict(), "order_rng": self.order_gen.get_state(),
                     "torch_rng": torch.get_rng_state(),
                     "augment_rng": transform.generator.get_state() if transform else None, "state": state})

    def resume(self, last: Path, cfg: TrainConfig, device) -> dict:
        """Restore everything from ``last.pt``; returns the run's state (epoch, best, history)."""
        # weights_only: last.pt holds tensors and plain containers only, so a crafted file cannot run code
        fix = f"delete {last} to restart the run from scratch (or choose another name)"
        ckpt = _checks.load_torch_file(last, "resume state", map_location=device, hint=fix)
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            self.order_gen.set_state(ckpt["order_rng"])
            torch.set_rng_state(ckpt["torch_rng"])
            if self.train_set.transform is not None:
                self.train_set.transform.generator.set_state(ckpt["augment_rng"])
            state = dict(ckpt["state"])
            state["epoch"], state["wall"] = int(state["epoch"]), float(state["wall"])
        except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"resume state {last}: does not fit this run ({type(exc).__name__}: "
                             f"{_checks._first_line(exc)}); {fix}") from None
        if state.get("monitor", "val_loss") != cfg.monitor:
            state.update(best_val=float("inf"), stale=0, monitor=cfg.monitor)
        return state


def _fit(cfg: TrainConfig, out: Path, loop: _Loop, splits, mean, std, device, state: dict, progress: bool) -> str:
    """Epochs until the schedule, the patience or the time budget ends; after each, the history,
    ``best.pt`` (when the monitor improves) and ``last.pt``. Returns why it stopped."""
    model, k = loop.model, splits.train[0].y.shape[1]
    tau_alpha = graph_tau_alpha(splits.train[0])  # stored with the weights, for evaluate()
    mean_d, std_d = mean.to(device), std.to(device)
    t_start = time.time() - state["wall"]
    stop_reason = "epochs"
    bar = tqdm(total=cfg.epochs, initial=state["epoch"], desc=cfg.name, unit="epoch", disable=not progress)
    while state["epoch"] < cfg.epochs:
        train_loss, lr_used = loop.epoch(cfg, mean_d, std_d, device)
        if has_active_dropout(model) and not cfg.train_only_head:
            recalibrate_batch_norm(model, [g.to(device) for g in splits.train])  # see its docstring
        val_loss, val_rho, val_spread = _evaluate_split(model, splits.val, mean, std, device)
        row = {"epoch": state["epoch"] + 1, "lr": lr_used, "train_loss": train_loss,
               "val_loss": val_loss, **{f"val_rho_{j}": float(r) for j, r in enumerate(val_rho)},
               "val_spread": val_spread, "wall_s": round(time.time() - t_start, 1)}
        if cfg.schedule == "step":
            loop.scheduler.step()
        state["epoch"] += 1
        state["history"].append(row)
        score = val_loss if cfg.monitor == "val_loss" else -float(np.mean(val_rho))  # lower is better
        if score < state["best_val"]:
            state.update(best_val=score, best_epoch=state["epoch"], stale=0)
            if loop.dist.main:
                _save(out / "best.pt", _checkpoint_payload(model, cfg, mean, std, splits, k, state, tau_alpha))
        else:
            state["stale"] += 1
        state["wall"] = time.time() - t_start
        if loop.dist.main:
            _write_history(out / "history.csv", state["history"])
            loop.save(out / "last.pt", state)
        bar.update(1)
        bar.set_postfix(train_loss=f"{row['train_loss']:.3f}", val_rho=f"{np.mean(val_rho):.3f}")
        collapse = collapse_message(state["history"])
        if collapse and not state.get("collapse_reported"):
            state["collapse_reported"] = True
            if loop.dist.main:
                warnings.warn(f"{cfg.name}: {collapse}", CollapseWarning, stacklevel=3)
        if state["stale"] >= cfg.patience:
            stop_reason = f"early stopping (no improvement for {cfg.patience} epochs)"
            break
        over_time = cfg.max_minutes is not None and state["wall"] > 60 * cfg.max_minutes
        if loop.dist.sum(float(over_time)) > 0:  # every rank stops at the same epoch
            stop_reason = f"time budget of {cfg.max_minutes} min"
            break
    bar.close()
    return stop_reason


def _finish(cfg: TrainConfig, out: Path, model, splits, mean, std, device, state: dict, stop_reason: str,
            trained_at: float | None) -> dict:
    """Test the best weights; write ``results.json`` and the results' summary into ``best.pt``."""
    if not (out / "best.pt").is_file():  # no epoch gave a finite validation score
        raise ValueError(f"{out}: no epoch gave a finite {cfg.monitor} (training diverged? last train_loss "
                         f"{state['history'][-1]['train_loss'] if state['history'] else 'none'}); lower lr or "
                         f"set grad_clip, and delete {out} to start afresh")
    best = torch.load(out / "best.pt", map_location=device, weights_only=True)
    model.load_state_dict(best["model"])
    results = evaluate_graphs(model, splits.test, mean, std, device)
    results.update({
        "name": cfg.name, "config": cfg.to_dict(), "model_parameters": count_parameters(model),
        "split_sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "split_indices": splits.indices, "times": splits.train[0].times[0].tolist(),
        "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "stopped_by": stop_reason,
        "collapsed": collapse_message(state["history"]),
        "history": state["history"], "device": str(device),
        **provenance.run_record(cfg.model, "transfer" if cfg.train_only_head else "trained", cfg.seed,
                                trained_at if trained_at is not None else float(splits.train[0].temperature),
                                float(splits.test[0].temperature),
                                splits.files, state["wall"]),
    })
    best["metadata"] = {k: results[k] for k in ("name", "times", "test", "split_sizes", "hardware", "wall_time_s")}
    _save(out / "best.pt", best)
    write_json(out / "results.json", results)
    return results


TRAINING_ONLY_KWARGS = ("dropout",)
"""Model arguments that change training, not the function a trained network computes."""


def _same_architecture(checkpoint: dict, cfg: TrainConfig) -> None:
    """Refuse to start from a checkpoint built with other model arguments: its weights would load
    (same shapes) into a network that computes something else (e.g. BapstGNN's ``readout_norm``)."""
    old = checkpoint.get("config", {}) if isinstance(checkpoint.get("config"), dict) else {}
    if old.get("model", cfg.model) != cfg.model:
        raise ValueError(f"init_from {cfg.init_from}: a {old['model']!r} model, but this config trains {cfg.model!r}")
    before = {k: v for k, v in old.get("model_kwargs", {}).items() if k not in TRAINING_ONLY_KWARGS}
    after = {k: v for k, v in cfg.model_kwargs.items() if k not in TRAINING_ONLY_KWARGS}
    if before != after:
        raise ValueError(f"init_from {cfg.init_from}: built with model_kwargs {before}, this config has {after}; "
                         "give the config the checkpoint's model_kwargs")


def _checkpoint_payload(model, cfg, mean, std, splits, k, state, tau_alpha) -> dict:
    return {"model": model.state_dict(), "config": cfg.to_dict(), "target_mean": mean, "target_std": std,
            "out_dim": k, "epoch": state["epoch"], "times": splits.train[0].times[0].tolist(),
            "tau_alpha": tau_alpha, "temperature": float(splits.train[0].temperature)}


def training_temperature(ckpt: dict) -> float:
    """The temperature a checkpoint was trained at (checkpoints before it was stored: from its data)."""
    if ckpt.get("temperature") is not None:
        return float(ckpt["temperature"])
    if ckpt["config"].get("temperature") is not None:
        return float(ckpt["config"]["temperature"])
    return float(read_h5_info(expand_paths(ckpt["config"]["data"])[0])["temperature"])


def graph_tau_alpha(graph) -> float | None:
    """The τ_α (LJ time units) a graph's data file records (:func:`glasslab.dataset.snapshot_to_graph`); None if none."""
    tau = float(graph.tau_alpha[0]) if "tau_alpha" in graph else math.nan
    return None if math.isnan(tau) else tau


def match_outputs(model_times, model_tau, data_times, data_tau) -> tuple[list[int], str]:
    """For each label time of the data, the index of the model output to score against it.

    glasslab's label times run from t = 0.1 to a multiple of τ_α, so at another temperature the
    k-th label is not at the same t/τ_α as the k-th output. With both τ_α known, each label is
    matched to the output nearest in log(t/τ_α) ("t/tau_alpha"); otherwise output k scores
    label k ("index"), which needs as many outputs as labels.

    Returns (indices, how).
    """
    model_times, data_times = np.asarray(model_times, float), np.asarray(data_times, float)
    if model_tau and data_tau:
        return [closest_time(model_times / model_tau, t / data_tau) for t in data_times], "t/tau_alpha"
    if len(model_times) != len(data_times):
        raise ValueError(f"the model has {len(model_times)} outputs and the data {len(data_times)} label times, "
                         "and without tau_alpha for both they cannot be matched")
    return list(range(len(data_times))), "index"


def evaluate_graphs(model, graphs, mean, std, device, n_bootstrap: int = 1000, seed: int = 0,
                    outputs: list[int] | None = None) -> dict:
    """Test metrics of a model on graphs (:func:`glasslab.metrics.report`), with the noise
    ceiling when every graph carries split-half propensities. ``outputs[k]`` is the model
    output scored against label k (default: output k)."""
    preds = predict(model, graphs, mean, std, device)
    if outputs is not None:
        preds = [p[:, outputs] for p in preds]
    halves = [g.y_halves.numpy().transpose(1, 0, 2) for g in graphs] if all("y_halves" in g for g in graphs) else None
    test = metrics.report(preds, [g.y.numpy() for g in graphs], [g.mask_a.numpy() for g in graphs], halves,
                          n_bootstrap=n_bootstrap, seed=seed)
    return {"test": test}


def load_checkpoint(path, device="cpu"):
    """A trained model (eval mode) and its checkpoint dict (config, target statistics, metadata).

    Read with ``weights_only=True`` (tensors and plain containers: a crafted file cannot run code);
    a truncated, foreign or mismatched checkpoint raises ``ValueError`` naming the file."""
    ckpt = _checks.load_torch_file(path, "checkpoint", map_location=device)
    missing = [k for k in ("model", "config", "out_dim", "times", "target_mean", "target_std") if k not in ckpt]
    if missing or not isinstance(ckpt["config"], dict) or "model" not in ckpt["config"]:
        raise ValueError(f"checkpoint {path}: not a glasslab checkpoint (missing {missing or ['config.model']}); "
                         "give a best.pt written by glasslab train")
    cfg = ckpt["config"]
    try:
        model = build_model(cfg["model"], out_dim=ckpt["out_dim"], **cfg.get("model_kwargs", {}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint {path}: its config does not build a model ({exc})") from None
    _checks.load_weights(model, ckpt["model"], path, "checkpoint")
    return model.to(device).eval(), ckpt


def evaluate(checkpoint, data, temperature: float | None = None, device=None) -> dict:
    """Metrics of a checkpoint on every snapshot of the files ``data`` (see evaluate_graphs).

    Each label time of the data is scored against the output of the nearest t/τ_α when both
    the training data and ``data`` record τ_α (glasslab ``.h5`` files), else by index (see
    :func:`match_outputs`); the results list the ``outputs`` used and their ``output_times``.
    """
    t0 = time.time()
    device = torch.device(device) if device is not None else default_device()
    model, ckpt = load_checkpoint(checkpoint, device)
    paths = [str(data)] if isinstance(data, (str, Path)) else [str(p) for p in data]
    cfg = TrainConfig(**{**ckpt["config"], "data": paths, "test_data": None, "init_from": None,
                         "train_only_head": False, "temperature": temperature, "timescales": None})
    graphs, files = _load(cfg.data, cfg)
    model_tau, data_tau = ckpt.get("tau_alpha"), graph_tau_alpha(graphs[0])
    if not (model_tau and data_tau) and ckpt["config"]["timescales"]:  # matched by index: the training's columns
        graphs = _select_timescales(graphs, ckpt["config"]["timescales"])
    data_times = graphs[0].times[0].tolist()
    outputs, matched_by = match_outputs(ckpt["times"], model_tau, data_times, data_tau)
    results = evaluate_graphs(model, graphs, ckpt["target_mean"], ckpt["target_std"], device, outputs=outputs)
    results.update({"checkpoint": str(checkpoint), "data": paths, "times": data_times,
                    "outputs": outputs, "output_times": [ckpt["times"][k] for k in outputs], "matched_by": matched_by,
                    "tau_alpha": {"model": model_tau, "data": data_tau}, "model_kwargs": ckpt["config"]["model_kwargs"],
                    **provenance.run_record(ckpt["config"]["model"], "direct", ckpt["config"].get("seed"),
                                            training_temperature(ckpt), float(graphs[0].temperature), files,
                                            time.time() - t0)})
    return results
