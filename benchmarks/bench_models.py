"""Training-step cost of the models on one paper-sized graph, with references in the same run.

Times one forward + backward pass (training mode, float32) of BapstGNN (also with its core's edge
update concatenating before projecting, the form before glasslab split its first layer), SE3GNN(lmax=1) and
SE3GNN(lmax=3) on N = 4096 particles at the Kob–Andersen density 1.2 with the paper's cutoff 2.0
(uniform random positions in a periodic box: about 165 000 directed edges, the edge count of the
real liquid), or on snapshot ``--index`` of a glasslab HDF5 file (``--data``, e.g.
``data/ka3d_T0.64.h5``: N = 1000, 40 392 edges). SE3GNN runs its fused convolution
(:mod:`glasslab.models.fused`, geometry cached per snapshot, its per-edge loop in the compiled kernel of
:mod:`glasslab.models.fused_kernel`); lmax = 3 is also timed with that loop in torch ops, through
today's per-layer tensor product (``SE3GNN(fused=False)``) and through e3nn's generic
``o3.TensorProduct`` (the same map, four ways; on a GPU with cuequivariance-torch, a fifth through
NVIDIA's cuEquivariance, ``SE3GNN(cuequivariance=True)``). Prints the median time per graph and the ratios.
Passes of the models are interleaved, so that a change of machine load affects all of them alike;
on a CPU the process CPU time is printed too (insensitive to other processes with one thread).

With ``--flops`` (CPU), the matmul work of one step of each lmax = 3 path is counted with the
torch profiler and divided by its CPU time, against the fp32 GEMM peak of a large ``torch.mm``
measured in the same run; with ``--memory``, the peak resident memory that one step adds is
measured for each lmax = 3 path (Linux: the VmHWM high-water mark reset before the step, against
VmRSS; the fused path's cached geometry, built in the warm-up, is printed apart).

    python benchmarks/bench_models.py [--n 4096 | --data data/ka3d_T0.64.h5 --index 0] [--repeats 3]
        [--device cpu cuda] [--threads N] [--flops] [--memory] [--only-se3]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import resource
import statistics
import time
import types

import numpy as np
import torch
from torch_geometric.utils import scatter

from glasslab import threads
from glasslab import ka
from glasslab.graph import build_graph
from glasslab.models import BapstGNN, SE3GNN, count_parameters, cuequivariance, fused_kernel


def random_liquid_graph(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    side = (n / ka.DENSITY) ** (1 / 3)
    types_ = (rng.random(n) >= ka.FRACTION_A).astype(int)
    return build_graph(rng.uniform(0.0, side, (n, 3)), types_, box=np.full(3, side), cutoff=2.0)


def snapshot_graph(path: str, index: int):
    from glasslab.io import read_h5

    snapshot = read_h5(path, indices=[index])[0]
    return build_graph(snapshot.positions, snapshot.types, box=snapshot.box, cutoff=2.0)


def _e3nn_forward(self, h, edge_index, edge_sh, edge_basis):
    neighbour, centre = edge_index
    messages = self.e3nn_tensor_product(h[neighbour], edge_sh, self.radial(edge_basis))
    return self.mix(scatter(messages, centre, dim=0, dim_size=h.shape[0], reduce="sum"))


def with_plain_e3nn(model: SE3GNN) -> SE3GNN:
    """The same model, its convolutions evaluated with e3nn's generic ``o3.TensorProduct``."""
    for conv in model.convolutions:
        conv.e3nn_tensor_product = conv.tensor_product.reference()
        conv.forward = types.MethodType(_e3nn_forward, conv)
    model.fused = False
    return model


def _concatenating_block(self, nodes, edges, edge_index):
    """GraphNetworkBlock.forward with φ_e applied to the concatenation [e_ij, v_i, v_j] gathered per edge."""
    sender, receiver = edge_index
    edges = self.edge_mlp(torch.cat([edges, nodes[receiver], nodes[sender]], dim=-1))
    received = self.message_scale * scatter(edges, receiver, dim=0, dim_size=nodes.shape[0], reduce="sum")
    return self.node_mlp(torch.cat([received, nodes], dim=-1)), edges


def with_per_edge_projection(model: BapstGNN) -> BapstGNN:
    """The same model, its core projecting every edge's gathered node features (E rows) instead of every node's."""
    model.core.forward = types.MethodType(_concatenating_block, model.core)
    return model


class TorchOpsOnly(torch.nn.Module):
    """A fused SE3GNN whose convolutions run on torch ops, not the compiled kernel."""

    def __init__(self, model: SE3GNN):
        super().__init__()
        self.model = model

    def forward(self, data):
        with fused_kernel.disabled():
            return self.model(data)


MODELS = {
    "BapstGNN": BapstGNN,
    "BapstGNN, per-edge first layer": lambda: with_per_edge_projection(BapstGNN()),
    "SE3GNN(lmax=1)": lambda: SE3GNN(lmax=1),
    "SE3GNN(lmax=3)": lambda: SE3GNN(lmax=3),
    "SE3GNN(lmax=3), fused torch ops": lambda: TorchOpsOnly(SE3GNN(lmax=3)),
    "SE3GNN(lmax=3), today's path": lambda: SE3GNN(lmax=3, fused=False),
    "SE3GNN(lmax=3), plain e3nn": lambda: with_plain_e3nn(SE3GNN(lmax=3)),
}
LMAX3 = ("SE3GNN(lmax=3)", "SE3GNN(lmax=3), fused torch ops", "SE3GNN(lmax=3), today's path",
         "SE3GNN(lmax=3), plain e3nn")


def matmul_peak(size: int = 2048, repeats: int = 3) -> float:
    """fp32 GFLOP/s of a (size x size) @ (size x size) torch.mm on the CPU, best of ``repeats`` (CPU time)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        cpu0 = time.process_time()
        a @ b
        best = min(best, time.process_time() - cpu0)
    return 2 * size**3 / best / 1e9


def counted_flops(model: torch.nn.Module, graph) -> float:
    """FLOPs of one forward + backward: matmuls (mm, addmm, bmm, baddbmm...) counted by the torch
    profiler, plus the compiled kernel's arithmetic (``KernelPlan.flops``) where it runs."""
    from torch.profiler import ProfilerActivity, profile

    model.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        model(graph).square().mean().backward()
    kernel = 0
    if isinstance(model, SE3GNN) and model.fused and any(e.key == "_BlockSums" for e in prof.key_averages()):
        kernel = sum(sum(conv.plan.kernel.flops(graph.num_edges, conv.radial[-2].in_features))
                     for conv in model.convolutions)
    return float(sum(event.flops for event in prof.key_averages())) + kernel


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB -> MB
    raise OSError(field)


def step_peak_memory(model: torch.nn.Module, graph) -> float | None:
    """MB of resident memory one training step adds at its peak (Linux, glibc: freed heap given
    back with ``malloc_trim``, then the high-water mark VmHWM, reset through /proc/self/clear_refs,
    against VmRSS before the step); None elsewhere."""
    try:
        import ctypes

        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        before = _status_mb("VmRSS")
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        model.zero_grad(set_to_none=True)
        model(graph).square().mean().backward()
        return _status_mb("VmHWM") - before
    except OSError:
        return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_step(model: torch.nn.Module, graph, device: torch.device) -> tuple[float, float]:
    """Wall time and process CPU time (s) of one forward + backward pass in training mode."""
    model.zero_grad(set_to_none=True)
    synchronize(device)
    cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime, time.perf_counter()
    model(graph).square().mean().backward()
    synchronize(device)
    return time.perf_counter() - wall0, resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu0


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="number of particles")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per model (median reported)")
    parser.add_argument("--device", nargs="+", default=["cpu", "cuda"], help="devices to time (cuda skipped when absent)")
    parser.add_argument("--data", default=None, help="glasslab HDF5 file: time its snapshot --index instead of a random liquid")
    parser.add_argument("--index", type=int, default=0, help="snapshot of --data (default 0)")
    parser.add_argument("--flops", action="store_true", help="count matmul FLOPs, compare with a measured GEMM peak (CPU)")
    parser.add_argument("--memory", action="store_true", help="peak memory of one lmax = 3 step, fresh process per path (CPU)")
    parser.add_argument("--only-se3", action="store_true", help="time the three lmax = 3 paths only")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: glasslab's thread policy, GLASSLAB_THREADS)")
    args = parser.parse_args()
    if args.threads is not None:
        os.environ["GLASSLAB_THREADS"] = str(args.threads)
    policy = threads.configure()
    print(policy)

    graph = snapshot_graph(args.data, args.index) if args.data else random_liquid_graph(args.n)
    source = f"{args.data} snapshot {args.index}" if args.data else "random KA-density liquid"
    print(f"{source}: N = {graph.num_nodes}, E = {graph.num_edges} directed edges; torch {torch.__version__}; "
          f"{cpu_name()}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads")
    for name in args.device:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        data = graph.to(device)
        torch.manual_seed(0)
        names = LMAX3 if args.only_se3 else list(MODELS)
        models = {model_name: MODELS[model_name]().to(device).train() for model_name in names}
        if device.type == "cuda" and cuequivariance.available():  # NVIDIA's kernels: a GPU row
            models["SE3GNN(lmax=3), cuEquivariance"] = SE3GNN(lmax=3, cuequivariance=True).to(device).train()
        for model in models.values():
            one_step(model, data, device)  # warm-up
        walls = {model_name: [] for model_name in models}
        cpus = {model_name: [] for model_name in models}
        for _ in range(args.repeats):
            for model_name, model in models.items():
                wall, cpu = one_step(model, data, device)
                walls[model_name].append(wall)
                cpus[model_name].append(cpu)
        wall = {k: statistics.median(v) for k, v in walls.items()}
        cpu = {k: statistics.median(v) for k, v in cpus.items()}
        cost = cpu if device.type == "cpu" else wall   # CPU time is insensitive to other processes' load
        print(f"\n{label}: forward + backward per graph, median of {args.repeats} interleaved passes; "
              f"ratios by {'CPU' if device.type == 'cpu' else 'wall'} time")
        reference = "BapstGNN" if "BapstGNN" in models else "SE3GNN(lmax=3), today's path"
        print(f"  {'model':<32} {'params':>7} {'wall s':>8} {'CPU s':>8}  {'vs ' + reference:>11}")
        for model_name, model in models.items():
            print(f"  {model_name:<32} {count_parameters(model):>7} {wall[model_name]:8.3f} {cpu[model_name]:8.3f}"
                  f"  x{cost[model_name] / cost[reference]:10.2f}")
        fast, torch_ops, today, plain = LMAX3
        for other in (torch_ops, today, plain):
            print(f"  lmax=3 fused convolution vs {other.split(', ')[1]}: x{wall[other] / wall[fast]:.2f} faster by wall time,"
                  f" x{cpu[other] / max(cpu[fast], 1e-9):.2f} by CPU time")
        if "BapstGNN" in models:
            print(f"  BapstGNN split first layer vs per-edge: x{cpu['BapstGNN, per-edge first layer'] / cpu['BapstGNN']:.2f} by CPU time")
        print(f"  lmax=3 today's path vs plain e3nn: x{cpu[plain] / max(cpu[today], 1e-9):.2f} by CPU time")
        if args.flops and device.type == "cpu":
            peak = matmul_peak()
            print(f"\n  fp32 GEMM peak of this core, measured now (2048^3 torch.mm): {peak:.1f} GFLOP/s")
            for model_name in LMAX3:
                flops = counted_flops(models[model_name], data)
                rate = flops / 1e9 / cpu[model_name]
                print(f"  {model_name:<32} {flops / 1e9:6.2f} GFLOP (matmuls and kernel, forward + backward) at {rate:5.1f} GFLOP/s"
                      f" = {100 * rate / peak:4.1f} % of peak")
        if args.memory and device.type == "cpu":
            print()
            for model_name in LMAX3:
                peak = step_peak_memory(models[model_name], data)
                print(f"  {model_name:<32} peak memory added by one step: "
                      + ("n/a (needs Linux /proc)" if peak is None else f"{peak:7.0f} MB"))
            print(f"  fused path's geometry, kept between steps: {models[LMAX3[0]].geometry_cache}")


if __name__ == "__main__":
    main()
