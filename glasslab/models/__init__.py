"""Models mapping a particle graph to per-particle predictions (num_nodes, K).

:class:`BapstGNN` is the message-passing baseline of Bapst et al. (2020);
:class:`SE3GNN` the SE(3)-equivariant network of Pezzicoli, Charpiat and Landes (2022).
:data:`MODELS` names them for configuration files (``model = "se3"``); :func:`build_model`
builds one by name.
"""

from glasslab.models.bapst import BapstGNN, GraphNetworkBlock
from glasslab.models.blocks import BesselBasis, count_parameters, has_active_dropout, mlp, recalibrate_batch_norm
from glasslab.models.se3 import EquivariantConvolution, SE3GNN, irrep_invariants, so3_irreps
from glasslab.models.tensor_product import ChannelwiseTensorProduct

MODELS = {"se3": SE3GNN, "bapst": BapstGNN}
"""The models a training configuration can name."""


def build_model(name: str, out_dim: int, **kwargs):
    """The model called ``name`` in :data:`MODELS`, with ``out_dim`` outputs per particle."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name](out_dim=out_dim, **kwargs)


__all__ = [
    "MODELS",
    "BapstGNN",
    "BesselBasis",
    "ChannelwiseTensorProduct",
    "EquivariantConvolution",
    "GraphNetworkBlock",
    "SE3GNN",
    "build_model",
    "count_parameters",
    "has_active_dropout",
    "irrep_invariants",
    "mlp",
    "recalibrate_batch_norm",
    "so3_irreps",
]
