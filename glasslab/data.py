"""The shipped data (datasets, pretrained checkpoints, their results) outside a clone.

A clone of the repository holds them in ``data/``. A ``pip install glasslab`` holds code only:
:func:`fetch` downloads a file with `pooch <https://www.fatiando.org/pooch>`_ into the download
cache ``~/.cache/glasslab/data`` (``$GLASSLAB_CACHE/data``), checks its SHA-256 against the
registry shipped with the package (``glasslab/registry.txt``, the sums of ``data/README.md``),
and returns its local path; a file already present in :func:`glasslab.data_dir` is returned as is.

``$GLASSLAB_DATA_URL`` replaces the download address (a mirror, or a local server in the tests).

>>> from glasslab import data, io
>>> snaps = io.read(data.fetch("ka3d_T0.64.h5"))          # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from glasslab import provenance

REPOSITORY = "https://github.com/glasslab-course/glasslab"
BASE_URL = f"{REPOSITORY}/raw/main/data/"
"""Default download address: the repository's ``data/`` folder (raw files)."""

_REGISTRY = Path(__file__).with_name("registry.txt")
PATTERNS = ("*.h5", "checkpoints/*.pt", "results/*.json")
"""The files of ``data/`` that the registry lists (relative to the data folder)."""


def registry() -> dict[str, str]:
    """``{relative name: sha256}`` of every file that can be fetched."""
    entries = {}
    for line in _REGISTRY.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, digest = line.split()
            entries[name] = digest
    return entries


def download_dir() -> Path:
    """Where :func:`fetch` puts downloads: ``<cache_dir>/data`` (``~/.cache/glasslab/data``)."""
    from glasslab.paths import cache_dir

    return cache_dir() / "data"


def _name(name) -> str:
    name = str(name).replace("\\", "/").removeprefix("data/")
    known = registry()
    if name in known:
        return name
    for folder in ("checkpoints/", "results/"):
        if folder + name in known:
            return folder + name
    raise ValueError(f"{name!r} is not a glasslab data file; known: {sorted(known)}")


def fetch(name: str, progress: bool = False) -> Path:
    """The local path of a shipped file (``"ka3d_T0.64.h5"``, ``"checkpoints/<model>.pt"``).

    Looks in :func:`glasslab.data_dir` first (a clone, ``$GLASSLAB_DATA``, ``./data``); otherwise
    downloads it once into :func:`download_dir` and checks its SHA-256.
    """
    from glasslab.paths import data_dir

    name = _name(name)
    try:
        local = data_dir(download=False) / name
    except FileNotFoundError:
        local = None
    if local is not None and local.is_file():
        return local
    return _download(name, progress)


def _download(name: str, progress: bool = False) -> Path:
    try:
        import pooch
    except ImportError:  # pragma: no cover - pooch is a dependency
        raise ImportError("glasslab.data.fetch needs pooch: pip install pooch") from None
    base = os.environ.get("GLASSLAB_DATA_URL", BASE_URL)
    if not base.endswith("/"):
        base += "/"
    known = registry()
    fetcher = pooch.create(path=download_dir(), base_url=base,
                           registry={k: f"sha256:{v}" for k, v in known.items()})
    return Path(fetcher.fetch(name, progressbar=progress))


def fetch_all(progress: bool = False) -> Path:
    """Every registered file (about 61 MB) downloaded into :func:`download_dir` if missing; returns it."""
    for name in registry():
        if not (download_dir() / name).is_file():
            _download(name, progress)
    return download_dir()


def write_registry(folder=None) -> Path:
    """Regenerate ``glasslab/registry.txt`` from a data folder (after new data or checkpoints)."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parents[1] / "data"
    lines = ["# SHA-256 of the files glasslab.data.fetch can download (python -m glasslab.data to update)"]
    for pattern in PATTERNS:
        for path in sorted(folder.glob(pattern)):
            lines.append(f"{path.relative_to(folder).as_posix()} {provenance.sha256(path)}")
    _REGISTRY.write_text("\n".join(lines) + "\n")
    return _REGISTRY


if __name__ == "__main__":
    print(write_registry())
