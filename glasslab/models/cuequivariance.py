"""An optional cuEquivariance path for the convolutions of :class:`~glasslab.models.SE3GNN`.

NVIDIA's cuEquivariance (``pip install cuequivariance-torch``, with ``cuequivariance-ops-torch-cu12``
for its CUDA kernels) has a channel-wise tensor product, the "uvu" product of Eq. (10), whose call
also takes the gather of the neighbour features and the sum of the messages over centres.
``SE3GNN(cuequivariance=True)`` evaluates every convolution with it:
:func:`cuequivariance_convolution` maps glasslab's parameters onto it and its output back, so the
model, its parameters and its checkpoints are the same.

The two libraries build the same 38 paths (lmax = 3) in the same loop order, with the same
normalisation (each path √(2 l_O + 1) times unit-norm Clebsch–Gordan coefficients) and e3nn's
``mul_ir`` layout; cuEquivariance then sorts its output slots by irrep (stably) and moves their
weight blocks with them. So only two index maps are needed, no factor: the radial weights'
columns into cuEquivariance's slot order, and its output columns back into the tensor product's.
Equal to glasslab's per-layer path in float64 (measured 2e-16 relative; the tests assert 1e-12 for
outputs and 1e-10 for gradients), on a CPU, where cuEquivariance runs its pure-PyTorch ``"naive"``
method.

On a GPU it asks for cuEquivariance's ``"uniform_1d"`` kernel where the layer allows it (all input
blocks of one width: the first layer) and ``"fused_tp"`` otherwise; in cuequivariance-torch 0.13
``"fused_tp"`` gathers and scatters with torch ops around its kernel (E × dim messages in memory),
and without ``cuequivariance-ops-torch`` both fall back to ``"naive"`` with a warning. Its speed
on a GPU was not measured: no GPU was lent to the sessions that built glasslab.
"""

from __future__ import annotations

import importlib.util
import weakref

import torch

_plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # conv -> {(device, dtype): CuePlan}


def available() -> bool:
    """Whether ``cuequivariance_torch`` can be imported."""
    return importlib.util.find_spec("cuequivariance_torch") is not None


def require() -> None:
    if not available():
        raise ImportError("SE3GNN(cuequivariance=True) needs NVIDIA's cuEquivariance: pip install cuequivariance-torch "
                          "(and cuequivariance-ops-torch-cu12 for its CUDA kernels)")


class CuePlan:
    """cuEquivariance's channel-wise tensor product of one convolution, on one device and dtype,
    and the index maps between its layout and glasslab's.

    Attributes:
        module: ``cuequivariance_torch.ChannelWiseTensorProduct`` (no parameters of its own).
        weight_index: (weight_numel,) its weight column c is glasslab's radial weight ``weight_index[c]``.
        output_index: (irreps_out.dim,) glasslab's tensor-product output column c (e3nn layout, one
            slot per instruction) is its output column ``output_index[c]``.
    """

    def __init__(self, tensor_product, irreps_out, device: torch.device, dtype: torch.dtype):
        require()
        import cuequivariance as cue
        import cuequivariance_torch as cuet

        def cue_irreps(irreps):
            return cue.Irreps(cue.O3, [(mul, cue.O3(ir.l, ir.p)) for mul, ir in irreps])

        options = dict(layout=cue.mul_ir, shared_weights=False, internal_weights=False, device=device, dtype=dtype,
                       math_dtype=dtype)
        arguments = (cue_irreps(tensor_product.irreps_in1), cue_irreps(tensor_product.irreps_in2),
                     [cue.O3(ir.l, ir.p) for _, ir in irreps_out])
        if device.type == "cuda":
            try:
                self.module = cuet.ChannelWiseTensorProduct(*arguments, method="uniform_1d", **options)
            except ValueError:  # blocks of different widths: the one-hot types beside the hidden channels
                self.module = cuet.ChannelWiseTensorProduct(*arguments, method="fused_tp", **options)
        else:
            self.module = cuet.ChannelWiseTensorProduct(*arguments, method="naive", **options)

        slots = tensor_product.irreps_out  # one slot per instruction, in instruction order
        sorted_slots = cue_irreps(slots).sort()
        if str(sorted_slots.irreps) != str(self.module.irreps_out) or self.module.weight_numel != tensor_product.weight_numel:
            raise RuntimeError(f"cuEquivariance built other paths than glasslab: outputs {self.module.irreps_out} "
                               f"against {sorted_slots.irreps}, {self.module.weight_numel} weights against "
                               f"{tensor_product.weight_numel}")
        weight_start = [0]
        for ins in tensor_product.instructions:
            weight_start.append(weight_start[-1] + ins.path_shape[0])
        self.weight_index = torch.cat([torch.arange(weight_start[k], weight_start[k + 1]) for k in sorted_slots.inv]).to(device)
        cue_start = [0]
        for mul, ir in self.module.irreps_out:
            cue_start.append(cue_start[-1] + mul * ir.dim)
        output_index = torch.empty(slots.dim, dtype=torch.long)
        for j, k in enumerate(sorted_slots.inv):
            output_index[slots.slices()[k]] = torch.arange(cue_start[j], cue_start[j + 1])
        self.output_index = output_index.to(device)


def cuequivariance_convolution(conv, h: torch.Tensor, edge_index: torch.Tensor, edge_sh: torch.Tensor,
                               edge_basis: torch.Tensor) -> torch.Tensor:
    """Eqs. (10)–(11) with cuEquivariance: the same map as ``conv(h, edge_index, edge_sh, edge_basis)``
    for an :class:`~glasslab.models.se3.EquivariantConvolution` ``conv``; ``h`` (N, irreps_in.dim),
    ``edge_index`` (2, E) (row 0 neighbour j, row 1 centre i), returns (N, irreps_out.dim).
    The plan is built on first use per device and dtype and kept beside ``conv``, not in it (the
    model's parameters, ``state_dict`` and pickles do not change; it goes with the module)."""
    key = (h.device, h.dtype)
    plans = _plans.setdefault(conv, {})
    if key not in plans:
        plans[key] = CuePlan(conv.tensor_product, conv.irreps_out, h.device, h.dtype)
    plan = plans[key]
    neighbour, centre = edge_index
    weights = conv.radial(edge_basis).index_select(1, plan.weight_index)
    summed = plan.module(h, edge_sh, weights, indices_1=neighbour, indices_out=centre, size_out=h.shape[0])
    return conv.mix(summed.index_select(1, plan.output_index))
