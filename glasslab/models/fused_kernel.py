"""The compiled CPU kernel of the fused convolution (``fused_kernel.cpp``), and when it is used.

:func:`~glasslab.models.fused.fused_convolution` written with torch ops materialises, in every
layer, the E × (U, d_O, P) per-edge products of every coupling pair, weights them, scatters them
and reads them back in the backward pass: memory traffic, not arithmetic, bounds it (see
``benchmarks/README.md``). The kernel keeps those products in a per-edge buffer and writes only
the per-centre sums, computing

    S_k[i, m, u, p] = Σ_{e: centre(e) = i} ReLU(w[e, u, p]) Σ_a x[j(e), u, a] G[e, a, (m, p)]

for every pair k = (l_I, l_O), and their gradients. It also applies the radial MLP's last
``Linear`` and its final ReLU per edge, w[e] = ReLU(b + A h[e]) from the MLP's hidden features h
(E, H), H = 16 in the paper: the E × W radial weights (W = 144 per hidden layer at lmax = 3) are never written, nor their
gradient; the gradients of A and b are summed per thread in the kernel. Why hand-written: no
library offers a channel-wise ("uvu") contraction with a *precomputed* per-edge coupling block
on the CPU (cuEquivariance's kernels are CUDA-only and recompute the CG product with Y).

It is compiled with PyTorch's C++ extension loader the first time it is needed (about a minute,
then cached by torch in ``~/.cache/torch_extensions``, one build per kernel source and CPU model:
it is compiled for the CPU it runs on, with AVX-512 code where the CPU has it); it needs a C++
compiler and ninja. Where it cannot be built, or on a GPU, or when gradients must flow into the
geometry (forces), the torch-op path runs instead: the same numbers to round-off.
``GLASSLAB_KERNEL=0`` switches the kernel off.
"""

from __future__ import annotations

import hashlib
import os
import platform
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("fused_kernel.cpp")
_state: dict = {}


def load():
    """The compiled extension, built on first call; None where it is switched off or cannot be
    built (the reason is warned once)."""
    if "module" not in _state:
        _state["module"] = None
        if os.environ.get("GLASSLAB_KERNEL", "1") == "0":
            return None
        try:
            from torch.utils.cpp_extension import load as load_extension

            # one build per source text and CPU type: versions of glasslab never share a stale build
            digest = hashlib.sha256(_SOURCE.read_bytes() + _cpu_model().encode()).hexdigest()[:12]
            _state["module"] = load_extension(name=f"glasslab_fused_kernel_{digest}", sources=[str(_SOURCE)],
                                              extra_cflags=["-O3", "-march=native", "-fopenmp-simd"], verbose=False)
        except Exception as error:  # no compiler, no ninja, no headers: the torch path still works
            warnings.warn(f"glasslab: the fused convolution's CPU kernel could not be built ({error}); "
                          "using the torch-op path (same results, slower)", RuntimeWarning, stacklevel=2)
    return _state["module"]


def _cpu_model() -> str:
    """The CPU's model name (the kernel is compiled for the CPU it runs on: ``-march=native``)."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        return platform.processor() or platform.machine()


@dataclass
class EdgeOrder:
    """The edges of a graph grouped by centre (CSR), the order of the kernel's loops.

    Attributes:
        centre_ptr: (N + 1,) int64; the edges of centre i are
            ``by_centre[centre_ptr[i]:centre_ptr[i + 1]]``.
        by_centre: (E,) int64 edge indices (``arange(E)`` for a graph already sorted by centre).
        neighbour: (E,) int64, row 0 of ``edge_index``.
    """

    centre_ptr: torch.Tensor
    by_centre: torch.Tensor
    neighbour: torch.Tensor


def edge_order(edge_index: torch.Tensor, n_nodes: int) -> EdgeOrder:
    """:class:`EdgeOrder` of ``edge_index`` (2, E) (row 0 neighbour j, row 1 centre i)."""
    neighbour, centre = (row.contiguous().to(torch.int64) for row in edge_index)
    centre_ptr = torch.zeros(n_nodes + 1, dtype=torch.int64, device=centre.device)
    torch.cumsum(torch.bincount(centre, minlength=n_nodes), 0, out=centre_ptr[1:])
    return EdgeOrder(centre_ptr, torch.argsort(centre, stable=True), neighbour)


@dataclass
class KernelPlan:
    """A :class:`~glasslab.models.fused.FusedPlan` as the kernel reads it: one block per input
    order l_I (``plan.orders_in``), all its pairs (l_I, l_O) at once.

    Attributes:
        table: (blocks, 6) int64: column offset of the block in x, channels U, 2l_I+1, coupling
            width R, first column of the block's radial weights, weights per channel W_b (Σ P).
        local: per block, (R,) int32: coupling column c = (l_O, m, p) of channel u is weighted by
            radial weight ``u · W_b + local[c]`` of the block.
        weight_order: (weight_numel,) the radial-MLP output columns in the kernel's order: per
            block, per channel u, per l_O, per p (each channel's weights contiguous).
        pair_columns: per pair of ``plan.pairs``, (block, first coupling column, 2l_O+1, P).
    """

    table: torch.Tensor
    local: list
    weight_order: torch.Tensor
    pair_columns: list

    @classmethod
    def of(cls, plan) -> "KernelPlan":
        x_offsets = dict(zip(plan.orders_in, accumulate(plan.block_widths, initial=0)))
        pair_offsets = list(accumulate(plan.pair_widths, initial=0))   # of each pair in plan.weight_order: (pair, u, p)
        rows, local, order, pair_columns = [], [], [], []
        for k, l_in in enumerate(plan.orders_in):  # plan.pairs runs over l_I, then l_O, ascending
            pairs = [(pair, offset) for pair, offset in zip(plan.pairs, pair_offsets) if pair[0] == l_in]
            n_channels, width = pairs[0][0][3], sum(plan.chunk_widths[l_in])
            rows.append([x_offsets[l_in], n_channels, 2 * l_in + 1, width, len(order), sum(pair[4] for pair, _ in pairs)])
            block_local, column, first_weight = [], 0, 0
            for (_, l_out, _, _, n_paths), _ in pairs:
                block_local += [first_weight + p for _ in range(2 * l_out + 1) for p in range(n_paths)]
                pair_columns.append((k, column, 2 * l_out + 1, n_paths))
                column += (2 * l_out + 1) * n_paths
                first_weight += n_paths
            local.append(torch.tensor(block_local, dtype=torch.int32))
            for u in range(n_channels):
                for (*_, n_paths), offset in pairs:
                    order += [offset + u * n_paths + p for p in range(n_paths)]
        weight_order = plan.weight_order.index_select(0, torch.tensor(order, dtype=torch.long))
        return cls(torch.tensor(rows, dtype=torch.int64), local, weight_order, pair_columns)

    def flops(self, edges: int, hidden: int) -> tuple[int, int]:
        """Floating-point operations of the kernel on ``edges`` edges with a radial MLP of
        ``hidden`` features before its last Linear (a multiply-add counts 2): (forward, backward).
        Per block and edge, with n = U·R: forward (2 d_I + 2) n (the coupled messages, then the
        weighted sum); backward (4 d_I + 3) n (the messages again, the weight gradient, the
        weighted output gradient, the feature gradient). Per edge, the last Linear: forward 2 H W,
        backward 6 H W + W (recomputed, then the hidden, weight and bias gradients)."""
        forward = backward = 0
        for _, n_channels, d_in, width, _, _ in self.table.tolist():
            n = n_channels * width
            forward += (2 * d_in + 2) * n
            backward += (4 * d_in + 3) * n
        n_weights = self.weight_order.numel()
        forward += 2 * hidden * n_weights
        backward += 6 * hidden * n_weights + n_weights
        return forward * edges, backward * edges


def usable(x: torch.Tensor, coupling) -> bool:
    """Whether the kernel runs for these inputs: CPU tensors, geometry without gradients, a
    kernel that could be built, not inside :func:`disabled`."""
    return (x.device.type == "cpu" and not _state.get("disabled") and not any(g.requires_grad for g in coupling)
            and load() is not None)


@contextmanager
def disabled():
    """Run the torch-op path inside this block (to compare both paths in one process)."""
    before = _state.get("disabled", False)
    _state["disabled"] = True
    try:
        yield
    finally:
        _state["disabled"] = before


class _BlockSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, hidden, weight, bias, order, plan, *coupling):
        ctx.save_for_backward(x, hidden, weight, bias)
        ctx.order, ctx.plan, ctx.coupling = order, plan, coupling
        sums = load().forward(x, list(coupling), hidden, weight, bias, order.centre_ptr, order.by_centre,
                              order.neighbour, plan.table, plan.local)
        ctx.shapes = [s.shape for s in sums]
        return tuple(sums)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grad_sums):
        x, hidden, weight, bias = ctx.saved_tensors
        grads = [x.new_zeros(shape) if g is None else g for g, shape in zip(grad_sums, ctx.shapes)]
        o, plan = ctx.order, ctx.plan
        grad_x, grad_hidden, grad_weight, grad_bias = load().backward(
            grads, x, list(ctx.coupling), hidden, weight, bias, o.centre_ptr, o.by_centre, o.neighbour, plan.table,
            plan.local)
        return (grad_x, grad_hidden, grad_weight, grad_bias, None, None) + (None,) * len(ctx.coupling)


def pair_sums(x: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, coupling,
              order: EdgeOrder, plan: KernelPlan) -> list:
    """Per pair of the layer's plan, the radial-weighted CG-coupled messages summed over each
    centre's neighbours, (N, d_O, U·P) as :func:`glasslab.models.fused.pair_sums` returns them,
    differentiable in ``x`` (N, D), the regrouped node features, ``hidden`` (E, H), the radial
    MLP's features before its last Linear, and that Linear's ``weight`` (weight_numel, H) and
    ``bias`` (weight_numel,) or None. The kernel applies the Linear and the final ReLU per edge (no
    E × weight_numel tensor in either pass); ``coupling`` is the list of coupling blocks in
    ``orders_in`` order."""
    kernel_order = plan.weight_order.to(x.device)
    weight = weight.index_select(0, kernel_order)                                          # (W, H), kernel order
    bias = x.new_zeros(kernel_order.numel()) if bias is None else bias.index_select(0, kernel_order)
    sums = _BlockSums.apply(x.contiguous(), hidden.contiguous(), weight, bias, order, plan, *coupling)  # (N, U, R)
    nodes = x.shape[0]
    return [sums[k][:, :, first:first + d_out * n_paths].reshape(nodes, -1, d_out, n_paths).transpose(1, 2)
            .reshape(nodes, d_out, -1) for k, first, d_out, n_paths in plan.pair_columns]
