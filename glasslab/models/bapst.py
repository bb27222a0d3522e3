"""The message-passing baseline of Bapst et al., Nature Physics 16, 448 (2020).

A PyTorch port of DeepMind's ``glassy_dynamics/graph_model.py``: an encoder–process–decoder
graph network (Battaglia et al. 2018, "Relational inductive biases, deep learning, and graph
networks") whose edges carry the raw relative vectors, so it is *not* rotation invariant
(it can only learn invariance from data, see :class:`glasslab.symmetry.CubeSymmetry`, the
augmentation DeepMind used, and :class:`glasslab.symmetry.RandomRotation`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from glasslab.models.blocks import mlp, node_scalars_of

# Standard deviation of a unit normal truncated to [-2, 2] (scipy.stats.truncnorm(-2, 2).std()):
# TensorFlow's variance-scaling initialiser divides by it so that the *truncated* draw has the
# requested standard deviation.
_TRUNCATED_STD = 0.87962566103423978


def variance_scaling_(tensor: torch.Tensor, scale: float, fan: int) -> torch.Tensor:
    """Fill ``tensor`` in place as TensorFlow 1's ``variance_scaling_initializer(scale)`` does.

    A normal distribution truncated at two (pre-truncation) standard deviations, rescaled so
    that the draw's standard deviation is ``sqrt(scale / fan)`` (TF's defaults: mode
    ``fan_in``, distribution ``truncated_normal``).
    """
    std = math.sqrt(scale / max(1.0, fan)) / _TRUNCATED_STD
    with torch.no_grad():
        return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


class GraphNetworkBlock(MessagePassing):
    r"""One graph-network block without globals: update every edge, then every node.

    Edge update ``e'_ij = φ_e([e_ij, v_i, v_j])`` (graph_nets order: edge, receiver i,
    sender j; PyG's :meth:`edge_update`); node update ``v'_i = φ_v([Σ_j e'_ij, v_i])`` summing
    the *updated* features of the edges received by i (PyG's :meth:`propagate` with the updated
    edges as messages). ``φ_e`` and ``φ_v`` are ReLU MLPs with a ReLU on their output.

    The first layer of ``φ_e`` is linear in its concatenated input, ``W [e, v_i, v_j] + b =
    W_e e + W_r v_i + W_s v_j + b``, so the node parts are projected once per node and then
    gathered onto the edges, instead of being gathered (E ≈ 40 N rows) and projected per edge:
    the same weights and numbers, 2.3x fewer multiply-adds per edge, a training step 2.0x faster by CPU
    time (N = 1000, one thread; ``benchmarks/bench_models.py``).

    Args:
        node_dim: width of the input node features.
        edge_dim: width of the input edge features.
        hidden: width of the hidden and output features (edges and nodes).
        message_scale: constant c multiplying the sum, ``Σ_j`` → ``c Σ_j`` (1: the original).

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{node})`, edge features
          :math:`(|\mathcal{E}|, F_{edge})`, edge indices :math:`(2, |\mathcal{E}|)`
          (row 0 sender j, row 1 receiver i)
        - **output:** node features :math:`(|\mathcal{V}|, h)`, edge features
          :math:`(|\mathcal{E}|, h)`
    """

    def __init__(self, node_dim: int, edge_dim: int, hidden: int, message_scale: float = 1.0):
        super().__init__(aggr="sum", node_dim=0)
        self.message_scale = message_scale
        self.node_width, self.edge_width = node_dim, edge_dim
        self.edge_mlp = mlp([edge_dim + 2 * node_dim, hidden, hidden], activate_final=True)
        self.node_mlp = mlp([hidden + node_dim, hidden, hidden], activate_final=True)

    def forward(self, nodes: torch.Tensor, edges: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the updated (N, hidden) nodes and (E, hidden) edges."""
        size = (nodes.shape[0], nodes.shape[0])
        _, w_receiver, w_sender = self.edge_mlp[0].weight.split([self.edge_width, self.node_width, self.node_width], dim=1)
        edges = self.edge_updater(edge_index, receiver=nodes @ w_receiver.T, sender=nodes @ w_sender.T, edge_attr=edges, size=size)
        received = self.propagate(edge_index, edge_attr=edges, size=size)
        if self.message_scale != 1.0:
            received = received * self.message_scale
        nodes = self.node_mlp(torch.cat([received, nodes], dim=-1))
        return nodes, edges

    def edge_update(self, edge_attr: torch.Tensor, receiver_i: torch.Tensor, sender_j: torch.Tensor) -> torch.Tensor:
        """``φ_e([e_ij, v_i, v_j])`` from the edge features (E, F_edge) and the node parts of its first
        layer, ``W_r v_i`` and ``W_s v_j`` (E, h each), already projected per node."""
        first, rest = self.edge_mlp[0], self.edge_mlp[1:]
        return rest(F.linear(edge_attr, first.weight[:, :self.edge_width], first.bias) + receiver_i + sender_j)

    def message(self, edge_attr: torch.Tensor) -> torch.Tensor:
        return edge_attr


class BapstGNN(nn.Module):
    """Bapst et al. (2020) graph network predicting per-particle propensity.

    - Inputs: the particle type as one scalar per node (0 = A, 1 = B) and the edge vector
      ``edge_vec`` = x_j − x_i (3 numbers, σ_AA) per edge; optionally ``node_scalars`` more
      per-particle inputs ``data.node_scalars`` (e.g. the inherent-structure energy, as the
      SE3GNN's option of the same name), each standardised over its snapshot.
    - Encoder: node MLP 1 → h → h (1 + F → h → h with F node scalars) and edge MLP 3 → h → h,
      ReLU after every layer.
    - Core: one :class:`GraphNetworkBlock` applied ``n_steps`` times with shared weights; before
      each step the current node and edge features are concatenated with the encoded ones
      (skip connection), so the block sees 2h-wide inputs: edge MLP 6h → h → h, node MLP
      3h → h → h.
    - Decoder: node MLP h → h → h with ReLUs, then ``model.head``, a linear layer h → K
      (together the original's ``snt.nets.MLP((h, h, K))``).

    With the defaults (h = 64, 7 steps, K = 1) the model has 62 401 parameters: encoder
    4 288 + 4 416, core 28 800 + 16 512, decoder 8 320 + 65. The 70 721 quoted by Pezzicoli et al.
    (Table I) also counts an edge decoder MLP 64 → 64 → 64 (8 320 parameters) that the
    original code applies to the final edge features and whose output it discards (it changes
    no prediction and gets no gradient); it is not built here.

    Initialisation (:meth:`reset_parameters`, ``init="deepmind"``, the default) is DeepMind's:
    their ``train.py`` gives every ``snt.nets.MLP`` the initialisers
    ``w = tf.variance_scaling_initializer(1.0)`` and ``b = tf.variance_scaling_initializer(0.1)``,
    i.e. weights from a truncated normal of standard deviation sqrt(1 / fan_in) and biases from
    one of standard deviation sqrt(0.1 / n_out) (TF counts a 1-D shape's length as its fan-in),
    see :func:`variance_scaling_`. ``init="pytorch"`` keeps PyTorch's default for ``nn.Linear``
    (uniform, variance 1 / (3 fan_in) for weights, biases as large as 1/sqrt(fan_in)), with
    which this network did not train on glasslab's data.

    Conditioning (measured on glasslab's T = 0.64 set, 33 training snapshots of N = 1000): each
    particle has about 40 neighbours within r_c = 2 and the core *sums* their non-negative
    (post-ReLU) edge features, so node features are a large common part, the same for every
    particle, plus a small particle-to-particle variation that carries the structure.

    - With DeepMind's initialisation the sum multiplies the node features by about 3 per step:
      the untrained outputs are of order 10² – 10³ (targets are standardised to 1), and with
      biases of 0.04 against activations of 10² the ReLUs cannot form distance thresholds.
    - With PyTorch's default initialisation the recursion contracts to a fixed point that
      forgets the input (outputs vary across particles by 3 % of their mean).
    - In both cases the readout sees features whose spread is a few per cent of their mean.
      The gradient of the head is then dominated by the snapshot-to-snapshot offset of the
      mean label (4 % of the label variance at τ_α) times the common part, not by the
      covariance with the labels, and Adam drives the network to predict the mean: loss 1,
      prediction spread ≪ label spread, even though a linear probe of the *untrained*
      network's (standardised) features already reaches ρ ≈ 0.25.

    Two options fix this without adding a parameter: ``readout_norm`` standardises every
    node feature over its snapshot before the decoder (zero mean, unit variance; the same in
    training and evaluation, since whole snapshots are always the unit), and ``message_scale``
    = 1/40 (≈ 1 / mean neighbour count) keeps every layer of order 1 at initialisation (a
    constant factor that the next linear layer could absorb, so it does not change what the
    network can represent, only how Adam's steps act on it). ``core_norm`` applies the same
    standardisation after every core step (tried; no better than ``readout_norm`` alone over
    the first 130 steps). With these two (lr 3e-3, cosine) the network no longer collapses but
    plateaus: training loss 0.976 after 4 epochs (132 steps), validation ρ(τ_α) 0.22, its
    predictions correlating −0.9 with the neighbour count within r_c (whose own ρ is 0.18).

    Edge representation (the cause of that plateau, measured): the edge encoder sees the raw
    vector x_j − x_i, and its first layer's ReLU planes ``w·x + b = 0`` pass within ``|b|/|w|`` ≈ 0.03
    σ of the origin (biases of std 0.04 against weight rows of norm ≈ 1), while edges are 0.77 – 2 σ
    long. A ReLU MLP with (near) zero biases is positively homogeneous, e(λx) = λ e(x): every encoded
    edge is its length times a function of its direction, and no feature can pick out a shell of
    neighbours (structure ~0.1 σ wide). Training does not undo this: after 4 epochs the median
    ``|b|/|w|`` is still 0.031 σ (no plane beyond 0.5 σ), e(1.5 x) = 1.5 e(x) within 4 % on edges of
    0.9 – 1.3 σ, and a quadratic in r explains all but 2·10⁻⁷ of the variance (r in [0.77, 2]) of
    the encoder's direction-averaged response. The summed messages therefore carry the neighbour
    count and distances weighted linearly, and the network cannot even fit one snapshot (150
    steps on one snapshot, no augmentation: training loss 0.84; with ``radial_basis = 32``, 0.58).

    ``radial_basis`` = n adds n fixed Gaussians of the length ``|x_j − x_i|`` (:class:`GaussianBasis`,
    centres every 0.065 σ for n = 32 on [0, 2]) to the encoder's input, next to the raw vector, as
    the SE3GNN expands lengths in a Bessel basis (a departure from the original, whose encoder must
    build lengths from the vector). Controlled runs (33 training snapshots, glasslab recipe, 4
    epochs, seed 0, everything else equal), training loss / validation ρ(τ_α): raw vector only 0.976
    / 0.218; + 32 Gaussians 0.887 / 0.388; + 10 Bessel functions instead 0.884 / 0.372; 32 Gaussians
    without the vector 0.884 / 0.355 — any resolved length works. Over 15 epochs (495 steps, 11.7
    CPU minutes) with 32 Gaussians: 0.848 / 0.440 (test ρ(τ_α) 0.39 on the 6 test snapshots; the
    shipped run without it: 0.16). ``readout_norm`` is still needed: without it the same network
    collapses (training loss 0.998 after 4 epochs, predictions spread 0.6 % of the labels'). It
    costs n × h parameters (2 048) and ~3 % more time per step.

    All options are off by default, so ``BapstGNN()`` is the original network (and the shipped
    checkpoints load as trained); glasslab's recipe (:mod:`glasslab.recipes`) turns on
    ``readout_norm``, ``message_scale = 1/40`` and ``radial_basis = 32``.

    Differences from the original that do not change the architecture: glasslab graphs
    have no self-loops (the original joins each particle to itself with a zero vector) and
    store x_j − x_i on the edge j → i (the original stores x_i − x_j).

    Args:
        hidden: width h of every MLP layer (64).
        n_steps: number of message-passing steps (7).
        out_dim: number K of predicted timescales (1).
        init: ``"deepmind"`` (variance scaling as in the original, the default) or
            ``"pytorch"`` (PyTorch's default ``nn.Linear`` initialisation).
        message_scale: constant multiplying the sum of received edge features in the core
            (1: the original). See "Conditioning" above.
        readout_norm: standardise every node feature over its graph (zero mean, unit variance
            per snapshot, no parameters) before the decoder; see "Conditioning" above.
        core_norm: the same standardisation of the node features after every core step.
        edge_length: also feed the edge length ``|x_j − x_i|`` to the edge encoder (4 inputs instead
            of 3, 64 more parameters); a departure from the original, which must learn lengths
            from the raw vectors (tried; not better than the raw vector alone).
        radial_basis: number n of Gaussians of the edge length appended to the edge encoder's
            input (0: none, the original; 32 in glasslab's recipe): 3 + n inputs, n × h more
            parameters. See "Edge representation" above.
        cutoff: the graph cutoff r_c in σ_AA (2.0), the span [0, r_c] of the Gaussians' centres.
        node_scalars: number F of extra per-particle inputs read from ``data.node_scalars`` (0, the
            original), standardised over each snapshot (zero mean, unit variance: raw inherent-structure
            energies are ≈ −7 ε for every particle, a common offset the ReLU encoder would have to
            learn away) and fed to the node encoder next to the type: F × h more parameters.
    """

    INITS = ("deepmind", "pytorch")

    def __init__(self, hidden: int = 64, n_steps: int = 7, out_dim: int = 1, init: str = "deepmind",
                 message_scale: float = 1.0, readout_norm: bool = False, core_norm: bool = False,
                 edge_length: bool = False, radial_basis: int = 0, cutoff: float = 2.0, node_scalars: int = 0):
        super().__init__()
        if n_steps < 0 or node_scalars < 0:
            raise ValueError(f"need n_steps >= 0 and node_scalars >= 0, got {n_steps}, {node_scalars}")
        if init not in self.INITS:
            raise ValueError(f"unknown init {init!r}; choose from {self.INITS}")
        self.init = init
        self.readout_norm = readout_norm
        self.core_norm = core_norm
        self.n_steps = n_steps
        self.node_scalars = node_scalars
        self.node_encoder = mlp([1 + node_scalars, hidden, hidden], activate_final=True)
        self.edge_length = edge_length
        if radial_basis < 0 or cutoff <= 0:
            raise ValueError(f"need radial_basis >= 0 and cutoff > 0, got {radial_basis}, {cutoff}")
        self.radial_basis = GaussianBasis(radial_basis, cutoff) if radial_basis else None
        self.edge_encoder = mlp([3 + int(edge_length) + radial_basis, hidden, hidden], activate_final=True)
        self.core = (GraphNetworkBlock(node_dim=2 * hidden, edge_dim=2 * hidden, hidden=hidden, message_scale=message_scale)
                     if n_steps > 0 else None)
        self.decoder = mlp([hidden, hidden, hidden], activate_final=True)
        self.head = nn.Linear(hidden, out_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw fresh weights with the initialisation named by ``self.init``.

        ``"deepmind"``: every linear layer's weight (n_out, n_in) from a truncated normal with
        standard deviation sqrt(1 / n_in), its bias from one with standard deviation
        sqrt(0.1 / n_out), as ``variance_scaling_initializer(1.0)`` / ``(0.1)`` in DeepMind's
        ``glassy_dynamics/train.py``. ``"pytorch"``: ``nn.Linear.reset_parameters``.
        Uses the global torch random generator (seed it with ``torch.manual_seed``).
        """
        for module in self.modules():
            if not isinstance(module, nn.Linear):
                continue
            if self.init == "pytorch":
                module.reset_parameters()
            else:
                variance_scaling_(module.weight, 1.0, module.in_features)
                variance_scaling_(module.bias, 0.1, module.out_features)

    def node_input(self, data) -> torch.Tensor:
        """The node encoder's input (N, 1 + node_scalars): the type, then the standardised ``data.node_scalars``."""
        types = data.types.to(data.edge_vec.dtype)[:, None]
        if not self.node_scalars:
            return types
        scalars = node_scalars_of(data, self.node_scalars, "BapstGNN")
        scalars = standardise_per_graph(scalars.to(types.dtype), getattr(data, "batch", None))
        return torch.cat([types, scalars], dim=-1)

    def forward(self, data) -> torch.Tensor:
        """Predictions (num_nodes, K) for a PyG ``Data`` or ``Batch`` from :func:`glasslab.graph.build_graph`."""
        encoded_nodes = self.node_encoder(self.node_input(data))
        edge_input = data.edge_vec
        if self.edge_length:
            edge_input = torch.cat([edge_input, torch.linalg.vector_norm(edge_input, dim=-1, keepdim=True)], dim=-1)
        if self.radial_basis is not None:
            edge_input = torch.cat([edge_input, self.radial_basis(torch.linalg.vector_norm(data.edge_vec, dim=-1))], dim=-1)
        encoded_edges = self.edge_encoder(edge_input)
        nodes, edges = encoded_nodes, encoded_edges
        for _ in range(self.n_steps):
            nodes, edges = self.core(
                torch.cat([nodes, encoded_nodes], dim=-1),
                torch.cat([edges, encoded_edges], dim=-1),
                data.edge_index,
            )
            if self.core_norm:
                nodes = standardise_per_graph(nodes, getattr(data, "batch", None))
        if self.readout_norm:
            nodes = standardise_per_graph(nodes, getattr(data, "batch", None))
        return self.head(self.decoder(nodes))


class GaussianBasis(nn.Module):
    """``n`` Gaussians of the edge length r: ``exp(-(r - μ_k)² / (2 w²))``, μ_k evenly spaced on
    [0, cutoff], w their spacing. Maps (E,) lengths in σ_AA to (E, n), values in [0, 1]; no parameters."""

    def __init__(self, n: int, cutoff: float):
        super().__init__()
        self.register_buffer("centres", torch.linspace(0.0, cutoff, n), persistent=False)
        self.width = cutoff / max(1, n - 1)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * ((r[..., None] - self.centres.to(r.dtype)) / self.width) ** 2)


def standardise_per_graph(x: torch.Tensor, batch: torch.Tensor | None, eps: float = 1e-8) -> torch.Tensor:
    """Each feature of ``x`` (N, F) centred and scaled to unit variance over the nodes of its graph.

    ``batch`` (N,) gives each node's graph (None: one graph). No parameters, and the same
    computation in training and evaluation (whole snapshots are always the unit). A feature
    constant over a graph becomes 0.
    """
    if batch is None:
        mean = x.mean(0, keepdim=True)
        var = (x - mean).square().mean(0, keepdim=True)
    else:
        mean = scatter(x, batch, dim=0, reduce="mean")[batch]
        var = scatter((x - mean).square(), batch, dim=0, reduce="mean")[batch]
    return (x - mean) / torch.sqrt(var + eps)
