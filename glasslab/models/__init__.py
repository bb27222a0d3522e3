"""Models mapping a particle graph to per-particle predictions (num_nodes, K).

:class:`BapstGNN` is the message-passing baseline of Bapst et al. (2020);
:class:`SE3GNN` the SE(3)-equivariant network of Pezzicoli, Charpiat and Landes (2022).
"""

from glasslab.models.bapst import BapstGNN, GraphNetworkBlock
from glasslab.models.blocks import BesselBasis, count_parameters, has_active_dropout, mlp, recalibrate_batch_norm
from glasslab.models.se3 import EquivariantConvolution, SE3GNN, irrep_invariants, so3_irreps
from glasslab.models.tensor_product import ChannelwiseTensorProduct

__all__ = [
    "BapstGNN",
    "BesselBasis",
    "ChannelwiseTensorProduct",
    "EquivariantConvolution",
    "GraphNetworkBlock",
    "SE3GNN",
    "count_parameters",
    "has_active_dropout",
    "irrep_invariants",
    "mlp",
    "recalibrate_batch_norm",
    "so3_irreps",
]
