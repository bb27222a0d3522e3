"""The channel-wise Clebsch–Gordan product of the paper's convolution (Eq. 10), fast on CPU.

:class:`ChannelwiseTensorProduct` is e3nn's ``o3.TensorProduct`` with one ``"uvu"`` instruction
per triplet (l_I, l_F, l_O) and one output slot per instruction — the same map, with the same
coefficients, weight layout and output layout — evaluated differently.

Why not call e3nn's module directly: its generic implementation evaluates each of the 38
instructions (l_max = 3) as a separate contraction on slices of the inputs and weights, and
on a CPU the many small operations and the backward pass of those slices dominate a training
step (profiled on an N = 1000 Kob–Andersen snapshot: 40 % of the time spent filling zero
gradients). Here all the instructions of one input irrep are evaluated together: one dense
matrix product contracts the spherical harmonics with their stacked coefficients, one
batched product contracts the channels, and one permutation puts the columns in e3nn's order.

The coefficients are not re-derived: they are read off the e3nn module itself (its response to
basis vectors), so the normalisation conventions are e3nn's by construction; tests check the
outputs against ``o3.TensorProduct`` to round-off.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn


def uvu_instructions(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_out: o3.Irreps):
    """One ``"uvu"`` instruction per triplet allowed by the coupling rule whose output irrep is in
    ``irreps_out``, each writing to its own output slot. Returns (instructions, slot irreps)."""
    instructions, slots = [], []
    for i_in, (mul, ir_in) in enumerate(irreps_in):
        for i_sh, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in irreps_out:
                    instructions.append((i_in, i_sh, len(slots), "uvu", True))
                    slots.append((mul, ir_out))
    return instructions, o3.Irreps(slots)


class ChannelwiseTensorProduct(nn.Module):
    """Channel-wise CG product with per-edge weights: ``(x (E, irreps_in.dim), y (E, irreps_sh.dim),
    weights (E, weight_numel)) -> (E, irreps_out.dim)``.

    Attributes mirror ``o3.TensorProduct``: ``irreps_in1``, ``irreps_in2``, ``irreps_out``
    (one slot per instruction), ``instructions``, ``weight_numel``. ``reference()`` builds the
    equivalent e3nn module. The input ``y`` must have multiplicity one per irrep (spherical
    harmonics).
    """

    def __init__(self, irreps_in, irreps_sh, irreps_out):
        super().__init__()
        self.irreps_in1 = o3.Irreps(irreps_in)
        self.irreps_in2 = o3.Irreps(irreps_sh)
        if any(mul != 1 for mul, _ in self.irreps_in2):
            raise ValueError(f"irreps_sh must hold each irrep once, got {self.irreps_in2}")
        instructions, self.irreps_out = uvu_instructions(self.irreps_in1, self.irreps_in2, o3.Irreps(irreps_out))
        reference = o3.TensorProduct(self.irreps_in1, self.irreps_in2, self.irreps_out, instructions,
                                     internal_weights=False, shared_weights=False)
        self.instructions = reference.instructions
        self.weight_numel = reference.weight_numel
        self._instruction_args = instructions

        # Evaluation plan. For each input irrep and each output dimension d, the paths
        # ("members") are evaluated together: coefficients (d_in, sh_dim, n_paths * d) read
        # from the e3nn module's response to basis vectors. Their columns come out in the order
        # (group, channel u, path, m); ``output_order`` maps them to e3nn's layout (slot k
        # holds (u, m)), a permutation that callers may apply after summing over edges.
        self._groups = []
        layout = []
        slots = self.irreps_out.slices()
        for b, (mul, _) in enumerate(self.irreps_in1):
            block = [k for k, ins in enumerate(self.instructions) if ins.i_in1 == b]
            for d in sorted({self.irreps_out[self.instructions[k].i_out].ir.dim for k in block}):
                members = [k for k in block if self.irreps_out[self.instructions[k].i_out].ir.dim == d]
                name = f"coefficients_{len(self._groups)}"
                self.register_buffer(name, torch.cat([self._coefficients(reference, k) for k in members], dim=2),
                                     persistent=False)
                self._groups.append((b, members, d, name))
                for u in range(mul):
                    for k in members:
                        start = slots[self.instructions[k].i_out].start + u * d
                        layout.extend(range(start, start + d))
        order = torch.empty(len(layout), dtype=torch.long)
        order[torch.tensor(layout)] = torch.arange(len(layout))
        self.register_buffer("output_order", order, persistent=False)
        self._weight_sizes = [ins.path_shape[0] for ins in self.instructions]  # "uvu" with mul_sh = 1

    @torch.no_grad()
    def _coefficients(self, reference, k: int) -> torch.Tensor:
        """Coefficients (d_in, sh_dim, d_out) of instruction ``k`` for one channel: its response
        to unit inputs on channel 0 with a unit weight on (k, channel 0)."""
        ins = self.instructions[k]
        dtype = torch.get_default_dtype()
        d_in = self.irreps_in1[ins.i_in1].ir.dim
        in_start = self.irreps_in1[: ins.i_in1].dim
        sh_dim = self.irreps_in2.dim
        n = d_in * sh_dim
        a, b = torch.meshgrid(torch.arange(d_in), torch.arange(sh_dim), indexing="ij")
        x = torch.zeros(n, self.irreps_in1.dim, dtype=dtype)
        y = torch.zeros(n, sh_dim, dtype=dtype)
        x[torch.arange(n), in_start + a.reshape(-1)] = 1.0
        y[torch.arange(n), b.reshape(-1)] = 1.0
        w = torch.zeros(n, reference.weight_numel, dtype=dtype)
        w[:, sum(i.path_shape[0] for i in self.instructions[:k])] = 1.0
        out = reference(x, y, w)
        slot = self.irreps_out.slices()[ins.i_out]
        d_out = self.irreps_out[ins.i_out].ir.dim
        return out[:, slot][:, :d_out].reshape(d_in, sh_dim, d_out)

    def instruction_coefficients(self, k: int) -> torch.Tensor:
        """Coefficients (d_in, sh_dim, d_out) of instruction ``k`` for one channel (path weight
        included), as evaluated by this module: ``out[u, m] = Σ_{a,b} x[u, a] y[b] C[a, b, m] w[u]``."""
        for _, members, d, name in self._groups:
            if k in members:
                i = members.index(k)
                return getattr(self, name)[:, :, i * d:(i + 1) * d]
        raise IndexError(f"no instruction {k}")

    def reference(self) -> o3.TensorProduct:
        """The equivalent ``e3nn.o3.TensorProduct`` (for checks and teaching)."""
        return o3.TensorProduct(self.irreps_in1, self.irreps_in2, self.irreps_out, self._instruction_args,
                                internal_weights=False, shared_weights=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, e3nn_layout: bool = True) -> torch.Tensor:
        """The product (E, irreps_out.dim); with ``e3nn_layout=False`` its columns are left in the
        evaluation order, to be put in e3nn's layout later with ``[..., self.output_order]``
        (e.g. after a sum over edges, on far fewer rows)."""
        edges = x.shape[0]
        x_parts = torch.split(x, [mul * ir.dim for mul, ir in self.irreps_in1], dim=-1)
        w_parts = torch.split(weights, self._weight_sizes, dim=-1)
        pieces = []
        for b, members, d, name in self._groups:
            mul, ir_in = self.irreps_in1[b]
            coefficients = getattr(self, name).to(y.dtype)  # (d_in, sh_dim, n_paths * d)
            # the spherical harmonics first: (E, sh_dim) @ (sh_dim, d_in * n_paths * d)
            t = (y @ coefficients.transpose(0, 1).reshape(y.shape[1], -1)).reshape(edges, ir_in.dim, -1)
            products = torch.bmm(x_parts[b].reshape(edges, mul, ir_in.dim), t)  # (E, mul, n_paths * d)
            w = torch.stack([w_parts[k] for k in members], dim=2)  # (E, mul, n_paths)
            pieces.append((products.reshape(edges, mul, len(members), d) * w[..., None]).reshape(edges, -1))
        out = torch.cat(pieces, dim=-1)
        return out[:, self.output_order] if e3nn_layout else out

    def extra_repr(self) -> str:
        return f"{self.irreps_in1} x {self.irreps_in2} -> {len(self.instructions)} paths, weight_numel={self.weight_numel}"
