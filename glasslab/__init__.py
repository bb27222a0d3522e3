"""glasslab: graph neural networks for glassy liquids, and the course that teaches them.

Modules (one job each): :mod:`glasslab.ka` (Kob–Andersen constants), :mod:`glasslab.simulate`
(OpenMM data engine), :mod:`glasslab.io` (snapshots and files), :mod:`glasslab.neighbours`
(periodic neighbour search), :mod:`glasslab.graph` (a snapshot as a PyG graph),
:mod:`glasslab.dataset` (graphs, caching, splits), :mod:`glasslab.analysis` (g(r), S(q), MSD,
F_s, τ_α, χ4, noise ceiling), :mod:`glasslab.harmonics` (spherical harmonics, one convention),
:mod:`glasslab.descriptors` (expert descriptors), :mod:`glasslab.ridge` (the expert ridge
baseline), :mod:`glasslab.models` (BapstGNN, SE3GNN),
:mod:`glasslab.train`, :mod:`glasslab.metrics`, :mod:`glasslab.pretrained`, :mod:`glasslab.provenance`,
:mod:`glasslab.viz` (plots and 3D widgets), :mod:`glasslab.data` (the shipped data, downloaded
outside a clone), :mod:`glasslab.threads` (the CPU thread policy) and :mod:`glasslab.cli`.

Importing glasslab applies its CPU thread policy once (:func:`glasslab.threads.configure`: one
thread per process on a machine with at most 2 cores or a busy one, unless ``OMP_NUM_THREADS``
is set; ``GLASSLAB_THREADS=N`` or ``GLASSLAB_THREADS=auto`` to choose).
"""

__version__ = "0.1.0"

import warnings  # noqa: E402

from glasslab import threads  # noqa: E402

try:
    threads.configure()
except ValueError as _exc:  # a mistyped GLASSLAB_THREADS must not make glasslab unimportable
    warnings.warn(f"{_exc}; the thread policy was not applied", stacklevel=2)

from glasslab import data, pretrained  # noqa: E402  (light: torch is imported only when a model is loaded)
from glasslab.paths import cache_dir, data_dir, default_device  # noqa: E402

__all__ = ["__version__", "cache_dir", "data", "data_dir", "default_device", "pretrained", "threads"]
