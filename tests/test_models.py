"""Tests of glasslab.models: parameter counts of the papers, symmetries, batching, augmentation."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from e3nn import o3
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from conftest import random_liquid
from glasslab import ka
from glasslab.graph import build_graph
from glasslab.models import BapstGNN, BesselBasis, SE3GNN, count_parameters, irrep_invariants, mlp
from glasslab.symmetry import RandomRotation, random_rotation, rotate_graph
from torch_helpers import default_dtype, one_thread  # noqa: F401  (one_thread: an autouse fixture)

CUTOFF = 2.0


def periodic_graph(n: int = 100, seed: int = 0, dtype=torch.float64, **kwargs):
    positions, types, box = random_liquid(n, seed)
    return build_graph(positions, types, box=box, cutoff=CUTOFF, dtype=dtype, **kwargs)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def graph64():
    return periodic_graph(100, seed=0)


@pytest.fixture(scope="module")
def se3_model64(graph64):
    """The paper's SE3GNN in float64, eval mode, its batch-norm statistics set by two training-mode passes."""
    with default_dtype(torch.float64):
        torch.manual_seed(0)
        model = SE3GNN()
    with torch.no_grad():
        for _ in range(2):
            model(graph64)
    return model.eval()


@pytest.fixture(scope="module")
def reference64(se3_model64, graph64):
    """Hidden features of every layer and outputs of ``se3_model64`` on ``graph64``."""
    with torch.no_grad():
        return se3_model64.features(graph64), se3_model64(graph64)


# --- parameter counts ------------------------------------------------------------------------


@pytest.mark.parametrize(("lmax", "expected"), [(0, 2657), (1, 5381), (2, 11633)])  # derivation: SE3GNN docstring
def test_se3gnn_parameter_count(lmax, expected):
    assert count_parameters(SE3GNN(lmax=lmax)) == expected  # lmax = 1: 5 381 in the paper's Table I


def test_paper_model_parameters_match_table_i_and_appendix_a(se3_model64):
    assert count_parameters(se3_model64) == 23177
    first, second = se3_model64.convolutions[:2]
    assert len(second.tensor_product.instructions) == 34 + 4  # 34 triplets on the hidden channels, 4 on the one-hot
    assert second.tensor_product.weight_numel == 144 and first.tensor_product.weight_numel == 8
    assert count_parameters(second.radial) == 2656 and count_parameters(first.radial) == 344
    assert count_parameters(second.mix) == 576 and count_parameters(first.mix) == 32
    assert [count_parameters(bn) for bn in se3_model64.batch_norms] == [20] * 8


def test_bapst_parameter_count():
    unused_edge_decoder = mlp([64, 64, 64], activate_final=True)
    assert count_parameters(BapstGNN()) == 62401
    assert count_parameters(BapstGNN()) + count_parameters(unused_edge_decoder) == 70721
    assert count_parameters(BapstGNN(init="pytorch")) == 62401


def test_bapst_deepmind_initialisation():
    """Weights ~ truncated normal with std sqrt(1/fan_in), biases std sqrt(0.1/n_out), cut at 2 (raw) std,
    as tf.variance_scaling_initializer(1.0) / (0.1) in DeepMind's glassy_dynamics/train.py."""
    torch.manual_seed(0)
    model = BapstGNN(hidden=256, n_steps=1)
    core = model.core.edge_mlp[0]  # (256, 4 * 256 + 256): 327 680 weights
    for tensor, target in ((core.weight, (1 / core.in_features) ** 0.5), (model.decoder[0].weight, (1 / 256) ** 0.5)):
        assert abs(tensor.mean().item()) < 0.01 * target
        assert tensor.std().item() == pytest.approx(target, rel=0.02)
        assert tensor.abs().max().item() <= 2 * target / 0.87962566103423978 + 1e-7  # truncated at 2 raw std
    biases = torch.cat([m.bias for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 256])
    assert biases.std().item() == pytest.approx((0.1 / 256) ** 0.5, rel=0.1)
    assert biases.abs().max().item() <= 2 * (0.1 / 256) ** 0.5 / 0.87962566103423978 + 1e-7
    # PyTorch's default is a different, uniform law (bound 1/sqrt(fan_in)) and is still available
    torch.manual_seed(0)
    default = BapstGNN(hidden=256, n_steps=1, init="pytorch").core.edge_mlp[0].weight
    assert default.abs().max().item() <= core.in_features ** -0.5
    assert default.std().item() == pytest.approx((1 / (3 * core.in_features)) ** 0.5, rel=0.02)
    # reset_parameters draws fresh weights from the same law; seeded draws repeat
    torch.manual_seed(1)
    model.reset_parameters()
    again = BapstGNN(hidden=256, n_steps=1)
    torch.manual_seed(1)
    again.reset_parameters()
    assert torch.equal(model.core.edge_mlp[0].weight, again.core.edge_mlp[0].weight)
    with pytest.raises(ValueError, match="init"):
        BapstGNN(init="xavier")


def test_bapst_conditioning_options():
    """message_scale c is the original network with the received-sum columns of the node MLP's first
    layer times c; readout_norm (and core_norm) standardise node features per graph, batched or not."""
    graph, other = periodic_graph(100, seed=5), periodic_graph(100, seed=6)
    torch.manual_seed(0)
    scaled = BapstGNN(hidden=8, n_steps=3, out_dim=2, message_scale=0.025).double().eval()
    plain = BapstGNN(hidden=8, n_steps=3, out_dim=2).double().eval()
    plain.load_state_dict(scaled.state_dict())
    with torch.no_grad():
        plain.core.node_mlp[0].weight[:, :8] *= 0.025  # the first `hidden` inputs are the received sum
        assert torch.allclose(scaled(graph), plain(graph), atol=1e-12)

    torch.manual_seed(0)
    model = BapstGNN(hidden=8, n_steps=2, out_dim=2, readout_norm=True).double().eval()
    features = []
    hook = model.decoder.register_forward_pre_hook(lambda module, args: features.append(args[0]))
    with torch.no_grad():
        alone = [model(graph), model(other)]
        together = model(Batch.from_data_list([graph, other]))
    hook.remove()
    assert torch.allclose(torch.cat(alone), together, atol=1e-10)
    normed = BapstGNN(hidden=8, n_steps=2, out_dim=2, core_norm=True).double().eval()
    with torch.no_grad():
        assert torch.allclose(torch.cat([normed(graph), normed(other)]), normed(Batch.from_data_list([graph, other])), atol=1e-10)
    for x in features[:2]:
        live = x.std(0) > 0
        assert torch.allclose(x.mean(0), torch.zeros_like(x[0]), atol=1e-8)
        variance = x[:, live].var(0, unbiased=False)
        assert ((variance > 0.99) & (variance <= 1.0 + 1e-12)).all()  # var / (var + 1e-8) for features of small spread


def test_bapst_radial_basis():
    """radial_basis n appends n Gaussians of |x_j - x_i| to the edge encoder's input (n x h more
    parameters); each peaks (value 1) at its centre on [0, cutoff], and the expansion is rotation invariant."""
    import math

    from glasslab.models.bapst import GaussianBasis
    from glasslab.symmetry import cube_symmetries

    assert count_parameters(BapstGNN(radial_basis=32)) - count_parameters(BapstGNN()) == 32 * 64
    basis = GaussianBasis(5, 2.0)
    values = basis(torch.tensor([0.0, 0.5, 1.0, 1.5]))
    assert values.shape == (4, 5)
    assert torch.allclose(values[:3].diagonal(), torch.ones(3)) and values[3, 2] == pytest.approx(math.exp(-0.5))
    graph = periodic_graph(100, seed=7)
    torch.manual_seed(0)
    model = BapstGNN(hidden=8, n_steps=1, radial_basis=16).double().eval()
    captured = []
    model.edge_encoder.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    with torch.no_grad():
        model(graph)
        model(rotate_graph(graph, cube_symmetries()[5]))
    assert captured[0].shape == (graph.num_edges, 3 + 16)
    assert torch.allclose(captured[0][:, 3:], captured[1][:, 3:]) and not torch.allclose(captured[0][:, :3], captured[1][:, :3])
    with pytest.raises(ValueError, match="radial_basis"):
        BapstGNN(radial_basis=-1)
    from glasslab import recipes

    assert recipes.RECIPES["glasslab"]["bapst"]["model_kwargs"]["radial_basis"] == 32  # the default recipe uses it
    assert "radial_basis" not in recipes.RECIPES["paper"]["bapst"]["model_kwargs"]  # DeepMind's does not


def test_bapst_short_training_reduces_loss():
    """A few dozen Adam steps with DeepMind's init and clipping fit a tiny structural target
    (the standardised smooth coordination number) well below the loss of predicting the mean."""
    graph = periodic_graph(100, seed=4, dtype=torch.float32)
    coordination = scatter(torch.exp(-graph.edge_vec.square().sum(-1)), graph.edge_index[1], dim=0,
                           dim_size=graph.num_nodes, reduce="sum")
    target = ((coordination - coordination.mean()) / coordination.std())[:, None]
    torch.manual_seed(0)
    model = BapstGNN(hidden=16, n_steps=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(60):
        loss = (model(graph) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < 0.5


# --- forward passes --------------------------------------------------------------------------


@pytest.mark.parametrize("lmax", [0, 2])
def test_se3gnn_other_lmax_trains(lmax):
    graph = periodic_graph(100, seed=1, dtype=torch.float32)
    torch.manual_seed(0)
    model = SE3GNN(lmax=lmax, n_layers=3)
    out = model(graph)
    assert out.shape == (graph.num_nodes, 1) and out.dtype == torch.float32
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_several_timescales_and_node_scalars():
    graph = periodic_graph(100, seed=2, dtype=torch.float32, node_scalars=np.linspace(-1.0, 1.0, 100))
    model = SE3GNN(lmax=1, n_layers=2, out_dim=3, node_scalars=1).eval()
    assert model(graph).shape == (100, 3)
    assert BapstGNN(hidden=8, n_steps=1, out_dim=3)(graph).shape == (100, 3)
    del graph.node_scalars
    with pytest.raises(ValueError, match="node_scalars"):
        model(graph)


def test_bapst_node_scalars():
    """node_scalars F feeds F standardised per-particle inputs to the node encoder (F x h more
    parameters): an affine change of the raw values changes nothing, their pattern does, each
    snapshot of a batch is standardised on its own, and missing inputs are named in the error."""
    assert count_parameters(BapstGNN(node_scalars=2)) - count_parameters(BapstGNN()) == 2 * 64
    values = np.random.default_rng(0).normal(-7.0, 0.4, 100)
    graph = periodic_graph(100, seed=3, node_scalars=values)
    torch.manual_seed(0)
    model = BapstGNN(hidden=8, n_steps=2, node_scalars=1, readout_norm=True).double().eval()
    with torch.no_grad():
        out = model(graph)
        shifted = periodic_graph(100, seed=3, node_scalars=3.0 * values + 5.0)
        assert torch.allclose(model(shifted), out, atol=1e-10)
        permuted = periodic_graph(100, seed=3, node_scalars=values[::-1].copy())
        assert (model(permuted) - out).abs().max() > 1e-3
        other = periodic_graph(100, seed=4, node_scalars=10.0 * values)
        batched = model(Batch.from_data_list([graph, other]))
        assert torch.allclose(batched[:100], out, atol=1e-10) and torch.allclose(batched[100:], model(other), atol=1e-10)
    del graph.node_scalars
    with pytest.raises(ValueError, match="node_scalars"):
        model(graph)
    with pytest.raises(ValueError, match="node_scalars"):
        BapstGNN(node_scalars=-1)


def test_head_is_the_final_linear_layer():
    """``model.head`` (retrained alone in transfer learning) maps the last representation to the output."""
    graph = periodic_graph(100, seed=6, dtype=torch.float32)
    for model in (SE3GNN(lmax=1, n_layers=2, out_dim=2), BapstGNN(hidden=8, n_steps=1, out_dim=2)):
        assert isinstance(model.head, torch.nn.Linear) and model.head.out_features == 2
        with torch.no_grad():
            model.head.weight.zero_()
            model.head.bias.copy_(torch.tensor([1.5, -2.0]))
            assert torch.equal(model.eval()(graph), torch.tensor([[1.5, -2.0]]).expand(100, 2))


def test_batch_equals_single_graphs(se3_model64):
    graphs = [periodic_graph(100, seed=3), periodic_graph(110, seed=4)]
    bapst = BapstGNN(hidden=16, n_steps=2).double().eval()
    for model in (se3_model64, bapst):
        with torch.no_grad():
            batched = model(Batch.from_data_list(graphs))
            single = torch.cat([model(g) for g in graphs])
        assert batched.dtype == torch.float64
        assert relative_error(batched, single) < 1e-12


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    graph = periodic_graph(100, seed=5, dtype=torch.float32)
    for model in (SE3GNN(lmax=1, n_layers=3).eval(), BapstGNN(hidden=16, n_steps=2).eval()):
        with torch.no_grad():
            cpu = model(graph)
            cuda = model.cuda()(graph.cuda())
        assert cuda.device.type == "cuda"
        assert relative_error(cuda.cpu(), cpu) < 1e-4


# --- symmetries ------------------------------------------------------------------------------


def test_wigner_d_convention():
    """e3nn 0.6: the l = 1 block of D_from_matrix(R) is R itself, and Y¹ ∝ (x, y, z)."""
    rotation = random_rotation(torch.Generator().manual_seed(0))
    vectors = torch.randn(10, 3, dtype=torch.float64)
    with default_dtype(torch.float64):
        assert torch.allclose(o3.Irreps("1e").D_from_matrix(rotation), rotation, atol=1e-12)
        sh = o3.SphericalHarmonics("0e+1e+2e", normalize=True, normalization="component")
        d = sh.irreps_out.D_from_matrix(rotation)
    unit = vectors / vectors.norm(dim=1, keepdim=True)
    assert torch.allclose(sh(vectors)[:, 1:4], 3**0.5 * unit, atol=1e-12)
    assert torch.allclose(sh(vectors @ rotation.T), sh(vectors) @ d.T, atol=1e-12)


def test_se3gnn_invariant_under_rotations(se3_model64, graph64, reference64):
    _, out = reference64
    generator = torch.Generator().manual_seed(1)
    for _ in range(2):
        with torch.no_grad():
            rotated = se3_model64(rotate_graph(graph64, random_rotation(generator)))
        assert relative_error(rotated, out) < 1e-10


def test_se3gnn_invariant_under_translations(se3_model64, reference64):
    _, out = reference64
    positions, types, box = random_liquid(100, seed=0)
    shifted = build_graph(positions + np.array([0.7, -2.3, 11.1]), types, box=box, cutoff=CUTOFF, dtype=torch.float64)
    with torch.no_grad():
        assert relative_error(se3_model64(shifted), out) < 1e-10


def test_se3gnn_permutation_equivariant(se3_model64, reference64):
    _, out = reference64
    positions, types, box = random_liquid(100, seed=0)
    permutation = np.random.default_rng(1).permutation(100)
    permuted = build_graph(positions[permutation], types[permutation], box=box, cutoff=CUTOFF, dtype=torch.float64)
    with torch.no_grad():
        assert relative_error(se3_model64(permuted), out[permutation]) < 1e-10


def test_se3gnn_hidden_features_equivariant(se3_model64, graph64, reference64):
    features, _ = reference64
    rotation = random_rotation(torch.Generator().manual_seed(2))
    with default_dtype(torch.float64):
        d = se3_model64.irreps_hidden.D_from_matrix(rotation)
    with torch.no_grad():
        rotated = se3_model64.features(rotate_graph(graph64, rotation))
    assert len(rotated) == len(features) == 8
    for layer, (h, h_rotated) in enumerate(zip(features, rotated)):
        assert relative_error(h_rotated, h @ d.T) < 1e-10, f"layer {layer}"
        assert relative_error(h_rotated, h) > 1e-2, f"layer {layer} should hold non-scalar features"
    with torch.no_grad():
        invariants = se3_model64.invariants(graph64)
    assert invariants.shape == (100, 16)
    assert relative_error(irrep_invariants(rotated[-1], se3_model64.irreps_hidden), invariants) < 1e-10


def test_bapst_not_rotation_invariant(graph64):
    torch.manual_seed(0)
    model = BapstGNN().double().eval()
    rotation = random_rotation(torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model(graph64)
        rotated = model(rotate_graph(graph64, rotation))
    assert relative_error(rotated, out) > 1e-3


def film(seed: int, side: float = 12.0, thickness: float = 0.4):
    """A thin film (open boundaries) of KA density lying in the xy plane, with a rotation-invariant
    target: the standardised smooth coordination number y_i = Σ_j exp(−r_ij²)."""
    rng = np.random.default_rng(seed)
    n = int(ka.DENSITY * side * side * thickness)
    positions = rng.uniform(0.0, 1.0, (n, 3)) * np.array([side, side, thickness])
    graph = build_graph(positions, (rng.random(n) < 0.2).astype(int), cutoff=CUTOFF)
    coordination = scatter(torch.exp(-graph.edge_vec.square().sum(-1)), graph.edge_index[1], dim=0, dim_size=n, reduce="sum")
    graph.y = ((coordination - 1.3) / 0.75)[:, None]
    return graph


def test_rotation_augmentation_teaches_bapst_invariance():
    """Films seen in one orientation only show edges nearly in the plane: without augmentation
    the model never learns how out-of-plane edges act, so rotating a held-out film changes its
    predictions much more than for the same model trained on randomly rotated films."""
    train = [film(seed) for seed in range(4)]
    held_out = [film(seed) for seed in range(100, 103)]

    def trained(augment: bool) -> BapstGNN:
        torch.manual_seed(0)
        model = BapstGNN(hidden=16, n_steps=2)
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
        augmentation = RandomRotation(seed=0)
        for step in range(300):
            graph = train[step % len(train)]
            if augment:
                graph = augmentation(graph)
            loss = (model(graph) - graph.y).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model.eval()

    def rotation_sensitivity(model: BapstGNN) -> float:
        generator = torch.Generator().manual_seed(7)
        changes = []
        with torch.no_grad():
            for graph in held_out:
                out = model(graph)
                for _ in range(4):
                    rotated = model(rotate_graph(graph, random_rotation(generator, dtype=torch.float32)))
                    changes.append(relative_error(rotated, out))
        return float(np.mean(changes))

    plain, augmented = trained(augment=False), trained(augment=True)
    for model in (plain, augmented):
        with torch.no_grad():
            fit = torch.cat([model(g) - g.y for g in held_out]).square().mean()
        assert fit < 0.2  # both learn the target in the orientation they were trained in
    assert rotation_sensitivity(augmented) < 0.5 * rotation_sensitivity(plain)


# --- pieces ----------------------------------------------------------------------------------


def test_bessel_basis():
    basis = BesselBasis(n_basis=10, cutoff=2.0).double()
    r = torch.tensor([0.3, 1.1, 2.0], dtype=torch.float64)
    n = torch.arange(1, 11, dtype=torch.float64)
    expected = (2 / 2.0) ** 0.5 * torch.sin(n * torch.pi * r[:, None] / 2.0) / r[:, None]
    values = basis(r)
    assert values.shape == (3, 10)
    assert torch.allclose(values, expected, atol=1e-14)
    assert values[-1].abs().max() < 1e-14  # every function vanishes at the cutoff


def test_invariants_have_finite_gradient_at_zero():
    irreps = o3.Irreps("2x0e+2x1e")
    h = torch.zeros(3, irreps.dim, requires_grad=True)
    irrep_invariants(h, irreps).sum().backward()
    assert torch.isfinite(h.grad).all()
    assert torch.equal(h.grad[:, :2], torch.ones(3, 2))


@pytest.mark.parametrize("lmax", [0, 1, 2, 3])
def test_channelwise_tensor_product_equals_e3nn(lmax):
    """glasslab's evaluation of the paper's product is e3nn's TensorProduct, values and gradients."""
    from e3nn import o3

    from glasslab.models import ChannelwiseTensorProduct, so3_irreps

    with default_dtype(torch.float64):
        irreps_in = so3_irreps(4, lmax) + o3.Irreps("2x0e")
        irreps_sh = o3.Irreps.spherical_harmonics(lmax, p=1)
        fast = ChannelwiseTensorProduct(irreps_in, irreps_sh, so3_irreps(4, lmax))
        reference = fast.reference()
        g = torch.Generator().manual_seed(lmax)
        x = torch.randn(37, irreps_in.dim, generator=g, requires_grad=True)
        y = torch.randn(37, irreps_sh.dim, generator=g, requires_grad=True)
        w = torch.randn(37, fast.weight_numel, generator=g, requires_grad=True)
        out_fast, out_ref = fast(x, y, w), reference(x, y, w)
        assert fast.irreps_out == reference.irreps_out and fast.weight_numel == reference.weight_numel
        assert relative_error(out_fast, out_ref) < 1e-12
        assert torch.equal(fast(x, y, w, e3nn_layout=False)[:, fast.output_order], out_fast)
        probe = torch.randn(out_ref.shape, generator=g)
        grads_fast = torch.autograd.grad((out_fast * probe).sum(), (x, y, w))
        grads_ref = torch.autograd.grad((out_ref * probe).sum(), (x, y, w))
        for a, b in zip(grads_fast, grads_ref):
            assert relative_error(a, b) < 1e-12


def test_dropout_keeps_each_value_with_probability_one_minus_p():
    from glasslab.models.blocks import Dropout, has_active_dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    layer = Dropout(0.3).train()
    out = layer(x)
    kept = out != 0
    assert abs(kept.double().mean().item() - 0.7) < 0.005
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.7))
    assert abs(out.mean().item() - 1.0) < 0.01
    assert torch.equal(layer.eval()(x), x) and torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    assert has_active_dropout(SE3GNN(lmax=0)) and not has_active_dropout(SE3GNN(lmax=0, dropout=0.0))
