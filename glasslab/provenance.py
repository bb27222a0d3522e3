"""Where a result came from: file digests, the glasslab commit, the hardware, and the common
header every results file carries.

Every results JSON of glasslab (a trained network, a retrained head, a checkpoint tested on other
data, the ridge baseline) starts with :func:`run_record`: ``kind`` (``"se3"``, ``"bapst"`` or
``"ridge"``), ``protocol`` (``"trained"``, ``"transfer"``: head retrained at another temperature,
or ``"direct"``: a checkpoint tested as it is), ``seed``, ``train_temperature`` (where the network's body was trained: the source
temperature of a transfer), ``test_temperature``, ``data_sha256``, ``glasslab_commit``, ``hardware`` and ``wall_time_s``;
:func:`glasslab.pretrained.catalogue` reads them.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path

KINDS = ("se3", "bapst", "ridge")
PROTOCOLS = ("trained", "transfer", "direct")


def sha256(path) -> str:
    """The SHA-256 of a file (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digests(files, limit: int = 20, length: int = 16) -> dict:
    """``{file: SHA-256 prefix}`` of the first ``limit`` files (public datasets hold thousands)."""
    files = [str(f) for f in files]
    out = {f: sha256(f)[:length] for f in files[:limit]}
    if len(files) > limit:
        out["..."] = f"{len(files) - limit} more files not hashed"
    return out


def git_commit() -> str | None:
    """The short commit of the glasslab checkout this code runs from; None outside a clone."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except Exception:
        return None


def hardware() -> str:
    """One line describing where this process runs (GPU name, or CPU threads and cores)."""
    import torch

    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}; torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"CPU, {torch.get_num_threads()} threads of {os.cpu_count()} cores ({cpu}); torch {torch.__version__}"


def run_record(kind: str, protocol: str, seed: int | None, train_temperature: float, test_temperature: float,
               data_files, wall_time_s: float) -> dict:
    """The header of every results file (see the module docstring)."""
    if kind not in KINDS or protocol not in PROTOCOLS:
        raise ValueError(f"kind must be one of {KINDS} and protocol one of {PROTOCOLS}, got {kind!r}, {protocol!r}")
    return {"kind": kind, "protocol": protocol, "seed": seed,
            "train_temperature": round(float(train_temperature), 6), "test_temperature": round(float(test_temperature), 6),
            "data_sha256": digests(data_files), "glasslab_commit": git_commit(), "hardware": hardware(),
            "wall_time_s": round(float(wall_time_s), 1)}
