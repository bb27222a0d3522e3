"""Where things are: the shipped data, the graph cache, and the compute device."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The folder of shipped datasets, checkpoints and results.

    ``$GLASSLAB_DATA`` if set, else the ``data/`` folder of the repository glasslab was
    installed from (``pip install -e .`` or the Colab set-up cell).
    """
    env = os.environ.get("GLASSLAB_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[1] / "data"
    if here.is_dir():
        return here
    raise FileNotFoundError(
        "glasslab's data folder was not found: install glasslab from a clone of its repository "
        "(pip install -e .) or set GLASSLAB_DATA to the folder holding the .h5 files"
    )


def cache_dir() -> Path:
    """Cache of built graphs: ``$GLASSLAB_CACHE`` or ``~/.cache/glasslab``."""
    return Path(os.environ.get("GLASSLAB_CACHE", Path.home() / ".cache" / "glasslab"))


def default_device():
    """CUDA when a GPU is present, else the CPU (a ``torch.device``)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
