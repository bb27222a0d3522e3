"""glasslab: graph neural networks for glassy liquids, and the course that teaches them.

Modules (one job each): :mod:`glasslab.ka` (Kob–Andersen constants), :mod:`glasslab.simulate`
(OpenMM data engine), :mod:`glasslab.io` (snapshots and files), :mod:`glasslab.graph`
(neighbour graphs), :mod:`glasslab.dataset` (graphs, caching, splits),
:mod:`glasslab.analysis` (g(r), S(q), MSD, F_s, τ_α, χ4, noise ceiling),
:mod:`glasslab.features` (expert descriptors), :mod:`glasslab.models` (BapstGNN, SE3GNN),
:mod:`glasslab.train`, :mod:`glasslab.metrics`, :mod:`glasslab.pretrained`,
:mod:`glasslab.viz` (plots and 3D widgets) and :mod:`glasslab.cli`.
"""

__version__ = "0.1.0"

from glasslab import pretrained  # noqa: E402  (light: torch is imported only when a model is loaded)
from glasslab.paths import data_dir, default_device  # noqa: E402

__all__ = ["__version__", "data_dir", "default_device", "pretrained"]
