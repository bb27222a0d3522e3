"""The CPU thread policy of glasslab: one place that decides how many threads PyTorch uses.

PyTorch starts one OpenMP thread per core. On a small machine shared with another job (a
simulation, a second training, the notebook build) those threads spin while waiting for each
other and for the cores: on a 2-core machine with one other busy process, a training step of
``SE3GNN(lmax=3)`` took 38 s with PyTorch's default two threads and 5 s with one.

The rule, applied by :func:`configure` (which ``import glasslab`` calls once, and the ``glasslab``
command, the benchmarks and the book's chapters call again to print what was chosen):

1. ``GLASSLAB_THREADS=N`` (an integer ≥ 1) sets N threads; ``GLASSLAB_THREADS=auto`` leaves
   PyTorch's and OpenMP's own defaults untouched.
2. Otherwise, if ``OMP_NUM_THREADS`` is set, it is respected (glasslab changes nothing).
3. Otherwise: one thread on a machine with at most 2 cores; on a larger machine, the cores left
   free by the other load (the 1-minute load average), at least 1; PyTorch's default on an idle
   machine. When glasslab limits the threads it also sets ``OMP_WAIT_POLICY=passive`` (unless
   set) so that waiting threads sleep instead of spinning.

The choice reaches PyTorch through ``torch.set_num_threads`` when torch is already imported, and
through ``OMP_NUM_THREADS`` (inherited by the processes started from this one) otherwise.
Training is bitwise reproducible for a seed on CPU with one thread.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

ENV = "GLASSLAB_THREADS"


@dataclass(frozen=True)
class ThreadPolicy:
    """What :func:`configure` decided: ``threads`` (None: library defaults) and why."""

    threads: int | None
    reason: str

    def __str__(self) -> str:
        n = "library default" if self.threads is None else self.threads
        return f"CPU threads: {n} ({self.reason}; set {ENV}=N or {ENV}=auto to change)"


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no load average
        return None


def decide(environ=None, cores: int | None = None, load: float | None = None) -> ThreadPolicy:
    """The policy for an environment, a core count and a load average (no side effect)."""
    environ = os.environ if environ is None else environ
    cores = cores if cores is not None else (os.cpu_count() or 1)
    value = environ.get(ENV, "").strip()
    if value:
        if value.lower() == "auto":
            return ThreadPolicy(None, f"{ENV}=auto")
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"{ENV}={value!r}: expected a positive integer or 'auto'") from None
        if n < 1:
            raise ValueError(f"{ENV}={value!r}: expected a positive integer or 'auto'")
        return ThreadPolicy(n, f"{ENV}={n}")
    if environ.get("OMP_NUM_THREADS", "").strip():
        try:
            return ThreadPolicy(int(environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS is set")
        except ValueError:
            return ThreadPolicy(None, "OMP_NUM_THREADS is set")
    if cores <= 2:
        return ThreadPolicy(1, f"{cores} CPU cores: one thread per process")
    if load is not None and load >= 1.0:
        free = max(1, cores - math.ceil(load))
        if free < cores:
            return ThreadPolicy(free, f"{cores} cores, load average {load:.1f}: the free cores")
    return ThreadPolicy(None, f"{cores} cores, idle: PyTorch's default")


_applied: ThreadPolicy | None = None
_omp_set_by_glasslab = False


def configure(verbose: bool = False, environ=None) -> ThreadPolicy:
    """Apply the thread policy (see the module docstring) and return it; ``verbose`` prints it.

    Safe to call several times. ``environ`` (default ``os.environ``) is read and, when torch is
    not imported yet, receives ``OMP_NUM_THREADS`` and ``OMP_WAIT_POLICY``.
    """
    global _applied, _omp_set_by_glasslab
    environ = os.environ if environ is None else environ
    seen = dict(environ)
    if _omp_set_by_glasslab and environ is os.environ:
        seen.pop("OMP_NUM_THREADS", None)  # set by an earlier call, not by the user
    policy = decide(seen, load=_load())
    if policy.threads is not None and policy.reason != "OMP_NUM_THREADS is set":
        environ.setdefault("OMP_WAIT_POLICY", "passive")
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(policy.threads)
        else:
            environ["OMP_NUM_THREADS"] = str(policy.threads)
            _omp_set_by_glasslab = environ is os.environ
    _applied = policy
    if verbose:
        print(policy)
    return policy


def current() -> ThreadPolicy | None:
    """The policy last applied by :func:`configure` (None if it was never called)."""
    return _applied
