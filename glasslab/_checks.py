"""Up-front validation of configs and command-line arguments: one clear ``ValueError`` per mistake.

Used by :class:`glasslab.train.TrainConfig` and the ``glasslab`` command, so that a bad value is
reported, naming the field and what is wrong, before any expensive work starts.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
from pathlib import Path


def did_you_mean(word: str, choices) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_keys(keys, known, where: str, kind: str = "config") -> None:
    """ValueError naming every key of ``keys`` not in ``known``, with a suggestion for each."""
    unknown = sorted(set(keys) - set(known))
    if unknown:
        hints = [did_you_mean(k, known) for k in unknown]
        parts = [f"{k!r}{hint}" for k, hint in zip(unknown, hints)]
        listing = "" if all(hints) else f"; known keys: {', '.join(sorted(known))}"
        raise ValueError(f"{where}: unknown {kind} keys: {', '.join(parts)}{listing}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(value, name: str, minimum: int | None = None):
    """``value`` as an int (an integral float is accepted); ValueError otherwise or below ``minimum``."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    if not _is_int(value):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def number(value, name: str, minimum: float | None = None, strict: bool = True, maximum: float | None = None,
           strict_max: bool = False) -> float:
    """``value`` as a finite float; ``minimum`` is excluded when ``strict`` (e.g. "> 0")."""
    if not _is_number(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        bound = "positive" if (strict and minimum == 0) else f"{'>' if strict else '>='} {minimum:g}"
        raise ValueError(f"{name} must be {bound}, got {value:g}")
    if maximum is not None and (value >= maximum if strict_max else value > maximum):
        raise ValueError(f"{name} must be {'<' if strict_max else '<='} {maximum:g}, got {value:g}")
    return value


def choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}{did_you_mean(value, choices)}")
    return value


def boolean(value, name: str, optional: bool = False):
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def paths(value, name: str, optional: bool = False):
    """A list of path strings (one string is accepted), non-empty."""
    if value is None and optional:
        return None
    if isinstance(value, (str, Path)):
        value = [str(value)]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, Path)) for v in value):
        raise ValueError(f"{name} must be a file path or a list of file paths, got {value!r}")
    value = [str(v) for v in value]
    if not value or any(not v.strip() for v in value):
        raise ValueError(f"{name} must name at least one file (no empty entries), got {value!r}")
    return value


def run_name(value, name: str = "name") -> str:
    """A run name that stays inside the runs folder: one plain folder name."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    bad = [sep for sep in ("/", "\\", os.sep, "\0") if sep in value]
    if bad or value in (".", "..") or value.startswith("~") or value != value.strip():
        raise ValueError(f"{name} {value!r} must be a plain folder name (no '/', '\\', '..', '~' or surrounding "
                         "spaces): the run is written to <out>/<name> and must stay inside <out>")
    return value


def inside(folder, root, what: str = "run folder") -> Path:
    """``folder`` resolved, if it lies inside ``root``; ValueError otherwise."""
    folder_r, root_r = Path(folder).resolve(), Path(root).resolve()
    if folder_r != root_r and root_r not in folder_r.parents:
        raise ValueError(f"{what} {folder} is outside {root}")
    return folder_r


# --------------------------------------------------------------------------- TrainConfig



def model_kwargs(model: str, kwargs, name: str = "model_kwargs") -> dict:
    """Check ``kwargs`` against the constructor of ``model``: known names, plain value types."""
    if not isinstance(kwargs, dict):
        raise ValueError(f"{name} must be a table (dict) of constructor arguments, got {kwargs!r}")
    if "out_dim" in kwargs:
        raise ValueError(f"{name}: out_dim is set from the number of timescales fitted; remove it")
    from glasslab.models import MODELS

    cls = MODELS.get(model)
    if cls is None:
        return kwargs
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    known = [k for k, p in params.items() if k not in ("self", "out_dim") and p.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown_keys(kwargs, known, f"{name} of model {model!r} ({cls.__name__})", kind="constructor")
    for key, value in kwargs.items():
        default = params[key].default
        if default is inspect.Parameter.empty or default is None:
            continue
        if isinstance(default, bool):
            boolean(value, f"{name}.{key}")
        elif isinstance(default, int):
            integer(value, f"{name}.{key}")
        elif isinstance(default, float):
            number(value, f"{name}.{key}", minimum=None)
        elif isinstance(default, str) and not isinstance(value, str):
            raise ValueError(f"{name}.{key} must be a string, got {value!r}")
    return kwargs


def train_config(cfg, models=None, monitors=None) -> None:
    """Validate the fields of a :class:`glasslab.train.TrainConfig` in place (types and ranges).

    Integral floats are turned into ints; fields this function does not know are left alone.
    """
    def has(field):
        return hasattr(cfg, field)

    cfg.name = run_name(cfg.name)
    cfg.data = paths(cfg.data, "data")
    if has("test_data"):
        cfg.test_data = paths(cfg.test_data, "test_data", optional=True)
    if has("extra_train_data"):
        cfg.extra_train_data = paths(cfg.extra_train_data, "extra_train_data", optional=True)
    if has("train_snapshots") and cfg.train_snapshots is not None:
        cfg.train_snapshots = integer(cfg.train_snapshots, "train_snapshots", minimum=1)
    if models is not None and cfg.model not in models:
        raise ValueError(f"unknown model {cfg.model!r}; choose from {sorted(models)}{did_you_mean(cfg.model, models)}")
    if has("model_kwargs"):
        cfg.model_kwargs = model_kwargs(cfg.model, cfg.model_kwargs)
    if has("timescales") and cfg.timescales is not None:
        if not isinstance(cfg.timescales, (list, tuple)) or not cfg.timescales:
            raise ValueError(f"timescales must be a non-empty list of label column indices, got {cfg.timescales!r}")
        cfg.timescales = [integer(t, "timescales entry") for t in cfg.timescales]
        if len(set(cfg.timescales)) != len(cfg.timescales):
            raise ValueError(f"timescales must not repeat a column, got {cfg.timescales}")
    from glasslab.io import NODE_SCALARS as node_scalars, POSITIONS

    if has("positions"):
        choice(cfg.positions, "positions", POSITIONS)
    if has("node_scalars"):
        if not isinstance(cfg.node_scalars, (list, tuple)):
            raise ValueError(f"node_scalars must be a list of names among {list(node_scalars)}, got {cfg.node_scalars!r}")
        for s in cfg.node_scalars:
            choice(s, "node_scalars entry", node_scalars)
        inputs = cfg.model_kwargs.get("node_scalars", 0) if isinstance(getattr(cfg, "model_kwargs", None), dict) else 0
        if inputs != len(cfg.node_scalars):
            raise ValueError(f"node_scalars = {list(cfg.node_scalars)} reads {len(cfg.node_scalars)} extra node input(s) but "
                             f"model_kwargs.node_scalars = {inputs} builds the model for {inputs}: set "
                             f"model_kwargs.node_scalars = {len(cfg.node_scalars)}")
    if has("cutoff"):
        cfg.cutoff = number(cfg.cutoff, "cutoff", minimum=0)
    if has("split"):
        split = cfg.split
        if not isinstance(split, (list, tuple)) or len(split) != 3 or not all(_is_number(f) for f in split):
            raise ValueError(f"split must be three fractions (train, validation, test), got {split!r}")
        split = tuple(number(f, "split fraction", minimum=0, strict=False) for f in split)
        if not math.isclose(sum(split), 1.0, abs_tol=1e-6):
            raise ValueError(f"split fractions must sum to 1, got {list(split)} (sum {sum(split):g})")
        if split[0] <= 0 or split[1] <= 0:
            raise ValueError(f"split must give training and validation snapshots (first two fractions > 0), got {list(split)}")
        if split[2] <= 0 and not getattr(cfg, "test_data", None):
            raise ValueError(f"split gives no test snapshots ({list(split)}) and there is no test_data")
        cfg.split = split
    for field in ("split_seed", "seed"):
        if has(field):
            setattr(cfg, field, integer(getattr(cfg, field), field, minimum=0))
    if has("init_from") and cfg.init_from is not None:
        if not isinstance(cfg.init_from, (str, Path)) or not str(cfg.init_from).strip():
            raise ValueError(f"init_from must be a checkpoint path, got {cfg.init_from!r}")
        cfg.init_from = str(cfg.init_from)
    if has("train_only_head"):
        boolean(cfg.train_only_head, "train_only_head")
    if has("epochs"):
        cfg.epochs = integer(cfg.epochs, "epochs", minimum=1)
    if has("lr"):
        cfg.lr = number(cfg.lr, "lr", minimum=0)
    if has("betas"):
        betas = cfg.betas
        if not isinstance(betas, (list, tuple)) or len(betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        cfg.betas = tuple(number(b, "betas entry", minimum=0, strict=False, maximum=1, strict_max=True) for b in betas)
    if has("weight_decay"):
        cfg.weight_decay = number(cfg.weight_decay, "weight_decay", minimum=0, strict=False)
    if has("lr_milestones"):
        if not isinstance(cfg.lr_milestones, (list, tuple)):
            raise ValueError(f"lr_milestones must be a list of epochs, got {cfg.lr_milestones!r}")
        cfg.lr_milestones = [integer(m, "lr_milestones entry", minimum=1) for m in cfg.lr_milestones]
    if has("lr_factor"):
        cfg.lr_factor = number(cfg.lr_factor, "lr_factor", minimum=0)
    if has("patience"):
        cfg.patience = integer(cfg.patience, "patience", minimum=1)
    if monitors is not None and has("monitor") and cfg.monitor not in monitors:
        raise ValueError(f"unknown monitor {cfg.monitor!r}; choose from {list(monitors)}{did_you_mean(cfg.monitor, monitors)}")
    if has("warmup_epochs"):
        cfg.warmup_epochs = number(cfg.warmup_epochs, "warmup_epochs", minimum=0, strict=False)
    if has("batch_size"):
        cfg.batch_size = integer(cfg.batch_size, "batch_size", minimum=1)
    if has("grad_clip") and cfg.grad_clip is not None:
        cfg.grad_clip = number(cfg.grad_clip, "grad_clip", minimum=0, strict=False)
    if has("max_minutes") and cfg.max_minutes is not None:
        cfg.max_minutes = number(cfg.max_minutes, "max_minutes", minimum=0)
    if has("temperature") and cfg.temperature is not None:
        cfg.temperature = number(cfg.temperature, "temperature", minimum=0)


# --------------------------------------------------------------------------- devices

def device(value):
    """A ``torch.device`` that exists here, from ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or None (the default)."""
    import torch

    if value is None:
        from glasslab.paths import default_device

        return default_device()
    try:
        dev = torch.device(str(value))
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {value!r}; use cpu or cuda (or cuda:<index>)"
                         f"{did_you_mean(value, ['cpu', 'cuda', 'mps'])}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {value!r}: CUDA is not available here (no GPU or a CPU-only torch); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {value!r}: there are {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device {value!r}: MPS is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise ValueError(f"device {value!r} is not supported; use cpu or cuda")
    return dev


# --------------------------------------------------------------------------- checkpoints

def load_torch_file(path, what: str = "checkpoint", map_location="cpu", hint: str = "") -> dict:
    """A torch file (checkpoint, ``last.pt``) read with ``weights_only=True``: tensors and plain
    containers only, so a crafted file cannot run code. Errors name the file: a refused object
    raises :class:`glasslab.io.UnsafeFileError`, a truncated or foreign file ``ValueError``."""
    import pickle

    import torch

    from glasslab.io import UnsafeFileError

    path = Path(path)
    hint = f"; {hint}" if hint else ""
    if path.is_dir():
        raise ValueError(f"{what} {path}: is a directory, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not head.startswith(b"PK\x03\x04") and head[:1] != b"\x80":
        kind = ("an HDF5 file (a data file?)" if head.startswith(b"\x89HDF") else
                "an empty file" if not head else "not a zip archive (a text file, or a truncated download?)")
        raise ValueError(f"{what} {path}: not a PyTorch checkpoint: it is {kind}{hint}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc).lower()
        if "weights only load failed" in message or "global" in message or head[:1] == b"\x80":
            raise UnsafeFileError(f"{what} {path}: refused: it holds objects other than tensors and plain containers "
                                  f"(it may be crafted to run code); nothing was executed{hint}") from None
        raise ValueError(f"{what} {path}: not a readable PyTorch file ({_first_line(exc)}){hint}") from None
    except Exception as exc:  # truncated zip, text file, old format: many types
        raise ValueError(f"{what} {path}: not a readable PyTorch file, truncated or corrupted? "
                         f"({type(exc).__name__}: {_first_line(exc)}){hint}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{what} {path}: expected a dict, got {type(obj).__name__}{hint}")
    return obj


def load_weights(model, state_dict, path, what: str = "checkpoint") -> None:
    """``model.load_state_dict`` whose mismatch error is one line naming ``path``."""
    if not isinstance(state_dict, dict):
        raise ValueError(f"{what} {path}: has no model weights (key 'model')")
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{what} {path}: its weights do not fit a {type(model).__name__} with this config "
                         f"(a checkpoint of another model or other model_kwargs?): {_first_line(exc)}") from None


def _first_line(exc) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
    if ". " in text:  # torch's messages go on with advice that does not apply here
        text = text[:text.index(". ") + 1]
    return text[:300]
