r"""The SE(3)-equivariant GNN of Pezzicoli, Charpiat and Landes (2022), built with e3nn.

Node features are direct sums of SO(3) irreps. Every irrep is given even parity
(``0e + 1e + 2e + 3e``): the paper counts triplets (l_I, l_F, l_O) by the triangle rule
alone, i.e. it works with SO(3), not O(3), and its parameter counts (23 177 for l_max = 3,
5 381 for l_max = 1) are reproduced exactly only this way.
"""

from __future__ import annotations

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch import nn
from torch_geometric.nn import MessagePassing

from glasslab.models.blocks import BesselBasis, Dropout, node_scalars_of
from glasslab.models.cuequivariance import cuequivariance_convolution
from glasslab.models.cuequivariance import require as require_cuequivariance
from glasslab.models.fused import EdgeGeometry, FusedPlan, GeometryCache, build_coupling, edge_vec_key, fused_convolution
from glasslab.models.fused_kernel import edge_order
from glasslab.models.tensor_product import ChannelwiseTensorProduct


def so3_irreps(channels: int, lmax: int) -> o3.Irreps:
    """``channels`` copies of every l = 0..lmax, all with even parity: ``4x0e+4x1e+...``."""
    return o3.Irreps([(channels, (l, 1)) for l in range(lmax + 1)])


def radial_mlp(n_basis: int, hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    r"""Radial filter of Appendix A1: φ = ReLU(W₂ · Dropout(BatchNorm(ReLU(W₁ · B(r))))).

    Layer sizes (n_basis, hidden, n_out), biases on both linear layers, batch norm over the
    edges of the batch (PyTorch's default momentum). Maps (E, n_basis) to (E, n_out).
    """
    return nn.Sequential(
        nn.Linear(n_basis, hidden),
        nn.ReLU(),
        nn.BatchNorm1d(hidden),
        Dropout(dropout),
        nn.Linear(hidden, n_out),
        nn.ReLU(),
    )


class EquivariantConvolution(MessagePassing):
    r"""One convolution layer, Eqs. (10) and (11) of the paper.

    Eq. (10), channel-wise Clebsch–Gordan product of the neighbour's features with the
    spherical harmonics of the edge direction, weighted by a learned radial filter, summed
    over the neighbours j of i:

    .. math:: h'^{l_O}_{i,c,l_I l_F} = \sum_{j} φ(|a_{ij}|)^{l_O}_{l_I l_F, c}\,
              Y^{l_F}(\hat a_{ij})\, C^{l_O}_{l_I l_F}\, h^{l_I}_{j,c}

    The product is e3nn's ``TensorProduct`` in mode ``"uvu"`` (channel c of the input goes to
    channel c of the output) with one path per triplet (l_I, l_F, l_O), l_O ≤ the largest l of
    ``irreps_out``; each path writes to its own output slot, so the triplets stay separate
    (evaluated by :class:`~glasslab.models.tensor_product.ChannelwiseTensorProduct`, the same
    map contracted faster). Its weights, one per (path, channel) and per edge, come from
    :func:`radial_mlp`.

    Eq. (11), node-wise ``o3.Linear`` without bias mixing channels and triplets that share l_O
    back to ``irreps_out``.

    Args:
        irreps_in: node features h_j (the hidden features ⊕ the one-hot types, or the one-hot
            types alone in the first layer).
        irreps_sh: spherical harmonics of the edges, ``0e+1e+...+lmax e``.
        irreps_out: the hidden features.
        n_basis, radial_hidden, dropout: sizes and dropout rate of the radial MLP.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, \dim \text{irreps\_in})`, edge
          indices :math:`(2, |\mathcal{E}|)` (row 0 neighbour j, row 1 centre i), edge harmonics
          :math:`(|\mathcal{E}|, \dim \text{irreps\_sh})`, edge radial basis
          :math:`(|\mathcal{E}|, \text{n\_basis})`
        - **output:** node features :math:`(|\mathcal{V}|, \dim \text{irreps\_out})`

    :meth:`forward` is PyG's message passing (:meth:`message`: Eq. (10) on every edge; sum;
    :meth:`update`: Eq. (11)). :meth:`fused`, the same map for static geometry, does not go
    through ``propagate``: it interleaves the sum over neighbours with the contraction, block by
    block, so that no (E, all paths) message tensor is ever formed (see
    :mod:`glasslab.models.fused`).
    """

    def __init__(self, irreps_in, irreps_sh, irreps_out, n_basis: int, radial_hidden: int, dropout: float):
        super().__init__(aggr="sum", node_dim=0)
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_sh = o3.Irreps(irreps_sh)
        self.irreps_out = o3.Irreps(irreps_out)
        self.tensor_product = ChannelwiseTensorProduct(self.irreps_in, self.irreps_sh, self.irreps_out)
        self.radial = radial_mlp(n_basis, radial_hidden, self.tensor_product.weight_numel, dropout)
        self.mix = o3.Linear(self.tensor_product.irreps_out, self.irreps_out)
        self.plan = FusedPlan(self.tensor_product, self.mix)  # index plan of the fused path (no parameters)

    def fused(self, h: torch.Tensor, edge_index: torch.Tensor, geometry: EdgeGeometry, order=None) -> torch.Tensor:
        """The same map as :meth:`forward` from precomputed geometry (see
        :func:`glasslab.models.fused.fused_convolution`; ``order``, the graph's
        :class:`~glasslab.models.fused_kernel.EdgeOrder`, enables the compiled kernel):
        (N, irreps_in.dim) -> (N, irreps_out.dim)."""
        return fused_convolution(self, h, edge_index, geometry, order)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_sh: torch.Tensor, edge_basis: torch.Tensor) -> torch.Tensor:
        """Convolve node features ``h`` (N, irreps_in.dim) along ``edge_index`` (2, E) (row 0
        neighbour j, row 1 centre i), with ``edge_sh`` (E, irreps_sh.dim) and radial basis
        ``edge_basis`` (E, n_basis). Returns (N, irreps_out.dim)."""
        return self.propagate(edge_index, h=h, edge_sh=edge_sh, edge_basis=edge_basis, size=(h.shape[0], h.shape[0]))

    def message(self, h_j: torch.Tensor, edge_sh: torch.Tensor, edge_basis: torch.Tensor) -> torch.Tensor:
        return self.tensor_product(h_j, edge_sh, self.radial(edge_basis), e3nn_layout=False)

    def update(self, summed: torch.Tensor) -> torch.Tensor:
        return self.mix(summed[:, self.tensor_product.output_order])  # e3nn's layout, on N rows not E


def irrep_invariants(h: torch.Tensor, irreps: o3.Irreps) -> torch.Tensor:
    """Rotation invariants of features ``h`` (N, irreps.dim): the l = 0 channels as they are,
    the Euclidean norm of every l > 0 channel. Returns (N, irreps.num_irreps), in the order of
    ``irreps``.

    The norm is ``torch.linalg.vector_norm``, whose gradient at a zero vector is zero (not NaN).
    """
    pieces = []
    for (mul, ir), part in zip(irreps, irreps.slices()):
        field = h[:, part]
        if ir.l == 0:
            pieces.append(field)
        else:
            pieces.append(torch.linalg.vector_norm(field.reshape(-1, mul, ir.dim), dim=-1))
    return torch.cat(pieces, dim=-1)


class SE3GNN(nn.Module):
    r"""SE(3)-equivariant GNN predicting per-particle propensity (Pezzicoli et al. 2022, Fig. 4).

    - Node input: the one-hot particle types ``data.x`` (``num_types x 0e``), optionally
      followed by ``node_scalars`` more invariant inputs ``data.node_scalars`` (F x 0e, e.g. the
      inherent-structure potential energy).
    - Edge embedding, shared by all layers: real spherical harmonics Y^l(â_ij), l = 0..lmax, of
      the edge direction with e3nn's ``"component"`` normalization (each l-block has squared
      norm 2l + 1, i.e. unit mean square per component, the scale e3nn's tensor products and
      batch norm assume), and the Bessel basis ``B_n(|a_ij|)``, n = 1..n_basis, with r_c = cutoff.
    - ``n_layers`` :class:`EquivariantConvolution` layers with residual connections and
      equivariant batch norm (Appendix A2): h⁽¹⁾ = BN(conv₀(onehot)) and
      h⁽ᴸ⁺¹⁾ = BN(h⁽ᴸ⁾ + conv_L(h⁽ᴸ⁾ ⊕ onehot)) for L ≥ 1. BN is e3nn's ``BatchNorm``
      (Eqs. 12–13): scalars centred and scaled, l > 0 channels scaled by their component-
      normalised mean square norm; momentum 0.5; a weight per channel, a bias per scalar channel.
    - Read-out: :func:`irrep_invariants` of the last hidden features (channels·(lmax+1) values:
      the l = 0 channels and the norms of the l > 0 channels), then ``model.head``, an
      ``nn.Linear`` to K outputs (the only layer retrained in the paper's transfer experiment).

    Hidden features: ``channels`` copies of each l ≤ lmax (``model.irreps_hidden``). The only
    non-linearities are in the radial MLPs.

    Parameter count. Let C = channels, n₀ = num_types + node_scalars, H = radial_hidden,
    N_b = n_basis, and T the number of triplets (l_I, l_F, l_O), all ≤ lmax, obeying the
    triangle rule ``|l_I − l_F| ≤ l_O ≤ l_I + l_F`` (T = 1, 5, 15, 34 for lmax = 0, 1, 2, 3).

    - Edge weights of a layer L > 0: P = C·T from the hidden channels (every triplet) plus
      n₀·(lmax + 1) from the scalar inputs (l_I = 0, l_O = l_F); first layer P₀ = n₀·(lmax + 1).
    - Radial MLP: (N_b + 1)·H + 2H (batch-norm affine) + (H + 1)·P = 208 + 17·P.
    - Mixing (Eq. 11): each of the P tensor-product output channels feeds the C hidden
      channels of its l_O: C·P = 4·P.  So a layer has 208 + 21·P parameters.
    - Each equivariant batch norm: C·(lmax + 1) weights + C biases = C·(lmax + 2).
    - Read-out: (C·(lmax + 1) + 1)·K.

    Total = (n_layers − 1)(208 + 21P) + (208 + 21P₀) + n_layers·C(lmax + 2) + (C(lmax + 1) + 1)K.

    - lmax = 3: P = 4·34 + 2·4 = 144, P₀ = 8:
      7·3232 + 376 + 8·20 + 17 = 22 624 + 376 + 160 + 17 = **23 177** (Appendix A1: radial MLPs
      7·2656 + 344 = 18 936, mixing 7·576 + 32 = 4 064).
    - lmax = 1: P = 4·5 + 2·2 = 24, P₀ = 4: 7·712 + 292 + 8·12 + 9 = **5 381**.
    - lmax = 2: P = 66, P₀ = 6: 11 633.  lmax = 0: P = 6, P₀ = 2: 2 657.

    Args:
        lmax: largest rotational order of the hidden features and spherical harmonics (3).
        channels: channels per l (4).
        n_layers: number of convolution layers (8).
        n_basis: number of Bessel functions (10).
        cutoff: Bessel cutoff r_c, the graph cutoff, in σ_AA (2.0).
        radial_hidden: hidden width of the radial MLPs (16).
        dropout: dropout rate in the radial MLPs (0.5).
        out_dim: number K of predicted timescales (1).
        node_scalars: number F of extra invariant node inputs read from ``data.node_scalars`` (0).
        num_types: number of particle types, the width of ``data.x`` (2).
        fused: evaluate the convolutions with :func:`~glasslab.models.fused.fused_convolution`
            from per-graph :class:`~glasslab.models.fused.EdgeGeometry` (True, the fast path), or
            with today's per-layer tensor product (False, the reference). Same parameters, same
            outputs to round-off; an attribute, ``model.fused``, that can be switched at any time.
        geometry_cache_bytes: budget of ``model.geometry_cache``, the per-snapshot geometry kept
            between calls, keyed on the content of ``edge_vec`` (≈ 120 MB for an N = 1000 snapshot
            at lmax = 3 in float32; 0 keeps none: geometry is then built once per forward).
        cuequivariance: evaluate the convolutions with NVIDIA's cuEquivariance instead
            (:mod:`glasslab.models.cuequivariance`; needs ``cuequivariance-torch``; meant for a GPU).
            Same parameters, same outputs to round-off; an attribute, ``model.cuequivariance``,
            that takes precedence over ``fused``.
    """

    def __init__(
        self,
        lmax: int = 3,
        channels: int = 4,
        n_layers: int = 8,
        n_basis: int = 10,
        cutoff: float = 2.0,
        radial_hidden: int = 16,
        dropout: float = 0.5,
        out_dim: int = 1,
        node_scalars: int = 0,
        num_types: int = 2,
        fused: bool = True,
        geometry_cache_bytes: int = 1 << 30,
        cuequivariance: bool = False,
    ):
        super().__init__()
        if lmax < 0 or channels < 1 or n_layers < 1 or node_scalars < 0 or num_types < 1:
            raise ValueError(
                f"need lmax >= 0, channels >= 1, n_layers >= 1, node_scalars >= 0, num_types >= 1; got "
                f"lmax={lmax}, channels={channels}, n_layers={n_layers}, node_scalars={node_scalars}, num_types={num_types}"
            )
        self.num_types = num_types
        self.node_scalars = node_scalars
        self.irreps_input = o3.Irreps(f"{num_types + node_scalars}x0e")
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax, p=1)
        self.irreps_hidden = so3_irreps(channels, lmax)

        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        self.radial_basis = BesselBasis(n_basis, cutoff)
        conv = dict(irreps_sh=self.irreps_sh, irreps_out=self.irreps_hidden, n_basis=n_basis, radial_hidden=radial_hidden, dropout=dropout)
        self.convolutions = nn.ModuleList(
            [EquivariantConvolution(self.irreps_input, **conv)]
            + [EquivariantConvolution(self.irreps_hidden + self.irreps_input, **conv) for _ in range(n_layers - 1)]
        )
        self.batch_norms = nn.ModuleList(
            e3nn_nn.BatchNorm(self.irreps_hidden, momentum=0.5, normalization="component") for _ in range(n_layers)
        )
        self.head = nn.Linear(self.irreps_hidden.num_irreps, out_dim)
        self.fused = fused
        if cuequivariance:
            require_cuequivariance()
        self.cuequivariance = cuequivariance
        self.geometry_cache = GeometryCache(geometry_cache_bytes)
        self._coupling_source = {}  # (l_I, l_F, l_O) -> (layer, instruction) whose coefficients the geometry uses
        for layer, conv in enumerate(self.convolutions):
            tp = conv.tensor_product
            for k, ins in enumerate(tp.instructions):
                triplet = (tp.irreps_in1[ins.i_in1].ir.l, tp.irreps_in2[ins.i_in2].ir.l, tp.irreps_out[ins.i_out].ir.l)
                source = self._coupling_source.setdefault(triplet, (layer, k))
                if not torch.equal(tp.instruction_coefficients(k), self._coupling_coefficient(source)):
                    raise AssertionError(f"CG coefficients of triplet {triplet} differ between layers: cannot share geometry")
        self._coupling_pairs = sorted({pair[:2] for conv in self.convolutions for pair in conv.plan.pairs})

    def _coupling_coefficient(self, source) -> torch.Tensor:
        layer, k = source
        return self.convolutions[layer].tensor_product.instruction_coefficients(k)

    def _apply(self, fn, *args, **kwargs):
        self.geometry_cache.clear()  # .to(device or dtype): cached geometry would no longer be used
        return super()._apply(fn, *args, **kwargs)

    def edge_geometry(self, edge_vec: torch.Tensor) -> EdgeGeometry:
        """Geometry of a graph with edge vectors ``edge_vec`` (E, 3), shared by all layers: from
        ``self.geometry_cache`` when a graph with the same edge vectors (bytes, dtype, device) was
        seen, else built (and stored within the cache's budget). Built without storing when
        ``edge_vec`` requires grad (e.g. forces by differentiation)."""
        key = None if edge_vec.requires_grad else edge_vec_key(edge_vec)
        if key is not None:
            cached = self.geometry_cache.get(key)
            if cached is not None:
                return cached
        edge_sh = self.spherical_harmonics(edge_vec)
        edge_basis = self.radial_basis(torch.linalg.vector_norm(edge_vec, dim=-1))
        coefficients = {t: self._coupling_coefficient(s) for t, s in self._coupling_source.items()}
        coupling = build_coupling(edge_sh, coefficients, self.irreps_sh, self._coupling_pairs)
        geometry = EdgeGeometry(edge_sh, edge_basis, coupling, key)
        if key is not None:
            self.geometry_cache.put(key, geometry)
        return geometry

    def node_input(self, data) -> torch.Tensor:
        """The invariant node inputs (N, num_types + node_scalars): one-hot types, then ``data.node_scalars``."""
        if data.x.shape[-1] != self.num_types:
            raise ValueError(f"data.x must hold a one-hot of {self.num_types} types, got width {data.x.shape[-1]}")
        if not self.node_scalars:
            return data.x
        scalars = node_scalars_of(data, self.node_scalars, "SE3GNN")
        return torch.cat([data.x, scalars.to(data.x.dtype)], dim=-1)

    def features(self, data) -> list[torch.Tensor]:
        """Hidden features after every layer: ``n_layers`` tensors (N, irreps_hidden.dim), each
        transforming under a rotation R as ``h @ irreps_hidden.D_from_matrix(R).T``."""
        node_input = self.node_input(data)
        convolve = self._convolution(data, node_input.shape[0])
        first, *others = self.convolutions
        h = self.batch_norms[0](convolve(first, node_input))
        hidden = [h]
        for conv, batch_norm in zip(others, self.batch_norms[1:]):
            h = batch_norm(h + convolve(conv, torch.cat([h, node_input], dim=-1)))
            hidden.append(h)
        return hidden

    def _convolution(self, data, n_nodes: int):
        """``(conv, h) -> conv's output`` along the edges of ``data``, by the path the model is set
        to: cuEquivariance, the fused convolution from cached geometry, or the per-layer path."""
        if self.fused and not self.cuequivariance:
            geometry = self.edge_geometry(data.edge_vec)
            order = edge_order(data.edge_index, n_nodes)
            return lambda conv, h: conv.fused(h, data.edge_index, geometry, order)
        edge_sh = self.spherical_harmonics(data.edge_vec)
        edge_basis = self.radial_basis(torch.linalg.vector_norm(data.edge_vec, dim=-1))
        if self.cuequivariance:
            return lambda conv, h: cuequivariance_convolution(conv, h, data.edge_index, edge_sh, edge_basis)
        return lambda conv, h: conv(h, data.edge_index, edge_sh, edge_basis)

    def invariants(self, data) -> torch.Tensor:
        """The representation the read-out regresses: (N, channels·(lmax + 1)) invariants of the last layer."""
        return irrep_invariants(self.features(data)[-1], self.irreps_hidden)

    def forward(self, data) -> torch.Tensor:
        """Predictions (num_nodes, K) for a PyG ``Data`` or ``Batch`` from :func:`glasslab.graph.build_graph`."""
        return self.head(self.invariants(data))
