"""Where things are: the shipped data, the caches, and the compute device."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_CLONE_DATA = Path(__file__).resolve().parents[1] / "data"


def _holds_glasslab_data(folder: Path) -> bool:
    return folder.is_dir() and (any(folder.glob("ka3d_*.h5")) or (folder / "checkpoints").is_dir())


def data_dir(download: bool = True) -> Path:
    """The folder of shipped datasets, checkpoints (``checkpoints/``) and results (``results/``).

    The first of: ``$GLASSLAB_DATA``; the ``data/`` folder of the clone glasslab is installed from
    (``pip install -e .``, the Colab set-up cell); ``./data`` when it holds glasslab's files; the
    download cache ``~/.cache/glasslab/data`` (see :mod:`glasslab.data`). With ``download`` (the
    default) and none of these, the shipped files (about 61 MB) are downloaded into that cache
    once, with their SHA-256 checked; otherwise ``FileNotFoundError``.
    """
    env = os.environ.get("GLASSLAB_DATA")
    if env:
        return Path(env)
    for folder in (_CLONE_DATA, Path.cwd() / "data"):
        if _holds_glasslab_data(folder):
            return folder
    from glasslab import data

    cached = data.download_dir()
    if all((cached / name).is_file() for name in data.registry()):
        return cached
    if download:
        print(f"glasslab: downloading the shipped data (about 61 MB, once) into {cached}", file=sys.stderr)
        return data.fetch_all()
    raise FileNotFoundError(
        "glasslab's data folder was not found: work in a clone of the repository, set GLASSLAB_DATA "
        "to a folder holding the .h5 files, or run glasslab.data.fetch_all() to download them"
    )


def cache_dir() -> Path:
    """glasslab's cache (built graphs, downloads): ``$GLASSLAB_CACHE`` or ``~/.cache/glasslab``."""
    return Path(os.environ.get("GLASSLAB_CACHE", Path.home() / ".cache" / "glasslab"))


def default_device():
    """CUDA when a GPU is present, else the CPU (a ``torch.device``)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
