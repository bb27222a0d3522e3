"""The fused convolution of SE3GNN (glasslab.models.fused): the same function as today's path,
the same parameters, geometry cached per snapshot and never stale."""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from glasslab import ka
from glasslab.graph import build_graph
from glasslab.models import SE3GNN, count_parameters, fused_kernel
from glasslab.models.fused import GeometryCache, edge_vec_key
from torch_helpers import default_dtype, one_thread  # noqa: F401  (one_thread: an autouse fixture)

ROOT = Path(__file__).resolve().parents[1]


def periodic_graph(n: int = 120, seed: int = 0, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    side = (n / ka.DENSITY) ** (1 / 3)
    return build_graph(rng.uniform(0.0, side, (n, 3)), (rng.random(n) < 0.2).astype(int),
                       box=np.full(3, side), cutoff=2.0, dtype=dtype)


def relative_error(a, b) -> float:
    return ((a - b).norm() / b.norm()).item()


def model64(lmax: int, **kwargs) -> SE3GNN:
    with default_dtype(torch.float64):
        torch.manual_seed(0)
        return SE3GNN(lmax=lmax, **kwargs)


def both_paths(model, graph, train: bool):
    """Outputs and parameter gradients of the fused and the reference path, same dropout draws."""
    results = []
    for fused in (True, False):
        model.fused = fused
        model.train(train)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        out = model(graph)
        out.square().sum().backward()
        results.append((out.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}))
    return results


@pytest.mark.parametrize("lmax", [0, 1, 2, 3])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "torch-ops"])
def test_fused_equals_reference_path(lmax, train, kernel):
    model = model64(lmax)
    with contextlib.nullcontext() if kernel else fused_kernel.disabled():
        (fast, fast_grads), (slow, slow_grads) = both_paths(model, periodic_graph(), train)
    assert relative_error(fast, slow) < 1e-12
    for name, grad in slow_grads.items():
        assert relative_error(fast_grads[name], grad) < 1e-10 or grad.norm() == 0, name


needs_compiler = pytest.mark.skipif(shutil.which("c++") is None or shutil.which("ninja") is None and
                                    importlib.util.find_spec("ninja") is None, reason="no C++ compiler or ninja")


@needs_compiler
def test_kernel_is_built_and_used():
    assert fused_kernel.load() is not None
    model = model64(1).train()
    with torch.autograd.profiler.profile() as prof:
        model(periodic_graph()).sum().backward()
    names = {event.name for event in prof.function_events}
    assert "_BlockSums" in names and "_BlockSumsBackward" in names


@needs_compiler
def test_kernel_gradients_match_finite_differences():
    """gradcheck of the kernel alone in float64 — features, the radial MLP's hidden features and its
    last Linear (applied in the kernel) — with radial weights on both sides of the final ReLU."""
    model = model64(2)
    graph = periodic_graph(seed=4)
    conv = model.convolutions[1]
    geometry = model.edge_geometry(graph.edge_vec)
    order = fused_kernel.edge_order(graph.edge_index, graph.num_nodes)
    coupling = [geometry.coupling[l] for l in conv.plan.orders_in]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(graph.num_nodes, conv.plan.node_order.numel(), generator=generator, dtype=torch.float64,
                    requires_grad=True)
    # hidden features ±1, integer weights and a bias of 1/2: every weight before the ReLU is an
    # integer + 1/2, half a unit away from the kink that finite differences must not cross
    n_out = conv.plan.weight_order.numel()
    hidden = (torch.randint(0, 2, (graph.num_edges, 5), generator=generator) * 2 - 1).double().requires_grad_(True)
    weight = torch.randint(-3, 4, (n_out, 5), generator=generator).double().requires_grad_(True)
    bias = torch.full((n_out,), 0.5, dtype=torch.float64, requires_grad=True)
    before_relu = hidden.detach() @ weight.detach().T + 0.5
    assert (before_relu < 0).any() and (before_relu > 0).any()

    def sums(x, hidden, weight, bias):
        return tuple(fused_kernel.pair_sums(x, hidden, weight, bias, coupling, order, conv.plan.kernel))

    assert torch.autograd.gradcheck(sums, (x, hidden, weight, bias), eps=1e-6, atol=1e-7, fast_mode=True)
    without_bias, zero_bias = sums(x, hidden, weight, None), sums(x, hidden, weight, torch.zeros_like(bias))
    assert all(torch.equal(a, b) for a, b in zip(without_bias, zero_bias))


@needs_compiler
def test_kernel_rejects_the_edge_order_of_another_graph():
    """The kernel writes dS/dh once per edge it visits: an order that does not cover this graph's
    nodes and edges is refused, not read out of bounds."""
    model = model64(1)
    graph = periodic_graph(seed=4)
    conv = model.convolutions[1]
    geometry = model.edge_geometry(graph.edge_vec)
    coupling = [geometry.coupling[l] for l in conv.plan.orders_in]
    x = torch.randn(graph.num_nodes, conv.plan.node_order.numel(), dtype=torch.float64)
    hidden = torch.randn(graph.num_edges, conv.radial[-2].in_features, dtype=torch.float64)
    last = conv.radial[-2]
    for order in (fused_kernel.edge_order(graph.edge_index, graph.num_nodes + 1),
                  fused_kernel.edge_order(graph.edge_index[:, 1:], graph.num_nodes)):
        with pytest.raises(RuntimeError, match="edge order"):
            fused_kernel.pair_sums(x, hidden, last.weight, last.bias, coupling, order, conv.plan.kernel)


@needs_compiler
@pytest.mark.parametrize("kwargs", [dict(lmax=1), dict(lmax=3), dict(lmax=4, radial_hidden=24)],
                         ids=["lmax1", "lmax3", "lmax4-hidden24"])
def test_kernel_in_float32_matches_the_torch_path(kwargs):
    """The float32 kernel has its own vector code (AVX-512 where the CPU has it): compare it with
    the torch-op path, outputs and gradients, to float32 round-off. lmax = 4 with 24 radial
    features takes the kernel's other branches (coupling blocks wider than 64 columns, more than 16
    weights per channel, more than 16 hidden features, d_I = 9)."""
    torch.manual_seed(0)
    model = SE3GNN(dropout=0.0, **kwargs).train()
    graph = periodic_graph(dtype=torch.float32)
    results = []
    for context in (contextlib.nullcontext(), fused_kernel.disabled()):
        model.zero_grad(set_to_none=True)
        with context:
            out = model(graph)
        out.square().sum().backward()
        results.append((out.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}))
    (fast, fast_grads), (slow, slow_grads) = results
    assert relative_error(fast, slow) < 1e-5
    assert all(relative_error(fast_grads[k], g) < 1e-4 or g.norm() == 0 for k, g in slow_grads.items())


def test_edge_order_and_threads_do_not_change_results():
    """Edges in any order (the kernel groups them by centre) and two threads (dS/dx and the radial
    Linear's dS/dA, dS/db summed per thread) give the same outputs and gradients as one thread on
    sorted edges (no dropout: its draws follow the edge order)."""
    model = model64(3, dropout=0.0).train()
    graph = periodic_graph(seed=6)
    (reference, reference_grads), _ = both_paths(model, graph, True)
    shuffled = graph.clone()
    permutation = torch.randperm(graph.num_edges, generator=torch.Generator().manual_seed(0))
    shuffled.edge_index, shuffled.edge_vec = graph.edge_index[:, permutation], graph.edge_vec[permutation]
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        (out, grads), _ = both_paths(model, shuffled, True)
    finally:
        torch.set_num_threads(previous)
    assert relative_error(out, reference) < 1e-12
    assert all(relative_error(grads[k], g) < 1e-10 or g.norm() == 0 for k, g in reference_grads.items())


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "torch-ops"])
def test_any_radial_module(kernel):
    """A radial filter replaced by another module (chapter 13 puts a bias-free Linear there): the
    fused path still equals the per-layer path."""
    model = model64(1, dropout=0.0)
    for conv in model.convolutions:
        conv.radial = torch.nn.Linear(conv.radial[0].in_features, conv.tensor_product.weight_numel, bias=False).double()
    with contextlib.nullcontext() if kernel else fused_kernel.disabled():
        (fast, fast_grads), (slow, slow_grads) = both_paths(model, periodic_graph(), True)
    assert relative_error(fast, slow) < 1e-12
    assert all(relative_error(fast_grads[k], g) < 1e-10 or g.norm() == 0 for k, g in slow_grads.items())


def test_without_a_compiler_the_torch_path_runs(monkeypatch):
    import torch.utils.cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("c++: command not found")

    monkeypatch.setattr(fused_kernel, "_state", {})
    monkeypatch.setattr(torch.utils.cpp_extension, "load", no_compiler)
    model = model64(1).eval()
    graph = periodic_graph()
    with pytest.warns(RuntimeWarning, match="could not be built.*command not found"):
        fast = model(graph)
    model.fused = False
    assert relative_error(fast, model(graph)) < 1e-12
    monkeypatch.setattr(fused_kernel, "_state", {})
    monkeypatch.setenv("GLASSLAB_KERNEL", "0")
    assert fused_kernel.load() is None


def test_fused_hidden_features_and_node_scalars():
    model = model64(2, node_scalars=1, out_dim=2).eval()
    graph = periodic_graph(seed=3)
    graph.node_scalars = torch.randn(graph.num_nodes, 1, dtype=torch.float64)
    model.fused = True
    fast = model.features(graph)
    model.fused = False
    slow = model.features(graph)
    assert all(relative_error(a, b) < 1e-12 for a, b in zip(fast, slow))


def test_same_parameters_and_state_dict_keys():
    for lmax, expected in [(1, 5381), (3, 23177)]:
        fused, reference = SE3GNN(lmax=lmax), SE3GNN(lmax=lmax, fused=False)
        assert count_parameters(fused) == count_parameters(reference) == expected
        a, b = fused.state_dict(), reference.state_dict()
        assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)


def test_batch_equals_single_graphs():
    model = model64(1).eval()
    graphs = [periodic_graph(80, seed=s) for s in (1, 2)]
    batched = model(Batch.from_data_list(graphs))
    assert relative_error(batched, torch.cat([model(g) for g in graphs])) < 1e-12


def test_geometry_cache_is_keyed_on_edge_vectors():
    model = model64(1).eval()
    graph = periodic_graph()
    reference = model(graph)
    assert len(model.geometry_cache) == 1 and model.geometry_cache.misses == 1
    again = Batch.from_data_list([graph])  # a new object, the same edge vectors: a hit
    assert torch.equal(model(again), reference) and model.geometry_cache.hits == 1

    # rotation augmentation: new edge vectors, new geometry; the model is invariant
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    rotated = graph.clone()
    rotated.edge_vec = graph.edge_vec @ q.T
    assert relative_error(model(rotated), reference) < 1e-10
    assert model.geometry_cache.misses == 2

    # an in-place change of the same tensor cannot be served stale geometry
    changed = graph.clone()
    changed.edge_vec.mul_(1.01)
    model.fused = False
    expected = model(changed)
    model.fused = True
    assert relative_error(model(changed), expected) < 1e-12
    assert model.geometry_cache.misses == 3

    model.double()  # moving the model clears the cache
    assert len(model.geometry_cache) == 0


def test_geometry_cache_budget_and_copies():
    import copy

    cache = GeometryCache(max_bytes=0)
    model = model64(1, geometry_cache_bytes=0).eval()
    model(periodic_graph())
    assert len(model.geometry_cache) == 0 and len(cache) == 0
    small = model64(1, geometry_cache_bytes=3_000_000).eval()
    for seed in range(3):
        small(periodic_graph(seed=seed))
    assert 1 <= len(small.geometry_cache) < 3
    assert len(copy.deepcopy(small).geometry_cache) == 0  # copies do not carry cached geometry
    key = edge_vec_key(periodic_graph().edge_vec)
    assert key == edge_vec_key(periodic_graph().edge_vec.clone())


def test_geometry_with_gradients_is_not_cached():
    model = model64(1).eval()
    graph = periodic_graph()
    graph.edge_vec.requires_grad_(True)
    model(graph).sum().backward()
    assert graph.edge_vec.grad is not None and graph.edge_vec.grad.abs().sum() > 0
    assert len(model.geometry_cache) == 0


def test_fused_rotation_invariant():
    model = model64(3).eval()
    graph = periodic_graph(seed=5)
    reference = model(graph)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    rotated = graph.clone()
    rotated.edge_vec = graph.edge_vec @ q.T
    assert relative_error(model(rotated), reference) < 1e-10


@pytest.mark.skipif(not (ROOT / "data/checkpoints/ka064_se3_lmax1_s0.pt").exists(), reason="shipped checkpoint absent")
def test_shipped_checkpoint_gives_the_same_predictions():
    from glasslab.io import read_h5
    from glasslab.train import load_checkpoint

    model, _ = load_checkpoint(ROOT / "data/checkpoints/ka064_se3_lmax1_s0.pt")
    snapshot = read_h5(ROOT / "data/ka3d_T0.64.h5", indices=[0])[0]
    kwargs = {"node_scalars": snapshot.epot_is[:, None]} if model.node_scalars else {}
    graph = build_graph(snapshot.positions, snapshot.types, box=snapshot.box, cutoff=2.0, **kwargs)
    with torch.no_grad():
        model.fused = True
        fast = model(graph)
        model.fused = False
        slow = model(graph)
    assert fast.dtype == torch.float32
    assert (fast - slow).abs().max().item() <= 1e-5 * max(1.0, slow.abs().max().item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_fused_cuda_matches_cpu():
    model = model64(1).eval()
    graph = periodic_graph()
    cpu = model(graph)
    assert relative_error(model.cuda()(graph.cuda()).cpu(), cpu) < 1e-10


@pytest.mark.parametrize("lmax", [1, 3])
def test_cuequivariance_path_equals_the_per_layer_path(lmax):
    """SE3GNN(cuequivariance=True) through cuEquivariance's pure-PyTorch method (a CPU): outputs
    and every parameter gradient equal the per-layer path's in float64, node scalars included,
    and the state_dict is the same (checkpoints load either way)."""
    pytest.importorskip("cuequivariance_torch", reason="cuequivariance-torch is a test dependency (pip install -e .[test])")
    model = model64(lmax, node_scalars=1, dropout=0.0).train()
    graph = periodic_graph(seed=5)
    graph.node_scalars = torch.randn(graph.num_nodes, 1, dtype=torch.float64)
    keys = set(model.state_dict())
    results = []
    for cue_path in (True, False):
        model.cuequivariance, model.fused = cue_path, False
        model.zero_grad(set_to_none=True)
        out = model(graph)
        out.square().sum().backward()
        results.append((out.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}))
    (cue_out, cue_grads), (out, grads) = results
    assert relative_error(cue_out, out) < 1e-12
    assert all(relative_error(cue_grads[k], g) < 1e-10 or g.norm() == 0 for k, g in grads.items())
    assert set(model.state_dict()) == keys


def test_cuequivariance_without_the_package_says_what_to_install(monkeypatch):
    from glasslab.models import cuequivariance

    monkeypatch.setattr(cuequivariance, "available", lambda: False)
    with pytest.raises(ImportError, match="pip install cuequivariance-torch"):
        SE3GNN(lmax=1, cuequivariance=True)
