"""Training-step cost of the models on one paper-sized graph, with two references in the same run.

Times one forward + backward pass (training mode, float32) of BapstGNN, SE3GNN(lmax=1) and
SE3GNN(lmax=3) on N = 4096 particles at the Kob–Andersen density 1.2 with the paper's cutoff 2.0
(uniform random positions in a periodic box: about 165 000 directed edges, the edge count of the
real liquid), and of SE3GNN(lmax=3) evaluated through e3nn's generic ``o3.TensorProduct`` instead
of glasslab's :class:`~glasslab.models.ChannelwiseTensorProduct` (the same map). Prints the
median time per graph and the ratios to BapstGNN and to the plain e3nn path. Passes of the
models are interleaved, so that a change of machine load affects all of them alike; on a CPU the
process CPU time is printed too (it is insensitive to other processes when torch uses one thread).

    python benchmarks/bench_models.py [--n 4096] [--repeats 3] [--device cpu cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
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
from glasslab.models import BapstGNN, SE3GNN, count_parameters


def random_liquid_graph(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    side = (n / ka.DENSITY) ** (1 / 3)
    types_ = (rng.random(n) >= ka.FRACTION_A).astype(int)
    return build_graph(rng.uniform(0.0, side, (n, 3)), types_, box=np.full(3, side), cutoff=2.0)


def _e3nn_forward(self, h, edge_index, edge_sh, edge_basis):
    neighbour, centre = edge_index
    messages = self.e3nn_tensor_product(h[neighbour], edge_sh, self.radial(edge_basis))
    return self.mix(scatter(messages, centre, dim=0, dim_size=h.shape[0], reduce="sum"))


def with_plain_e3nn(model: SE3GNN) -> SE3GNN:
    """The same model, its convolutions evaluated with e3nn's generic ``o3.TensorProduct``."""
    for conv in model.convolutions:
        conv.e3nn_tensor_product = conv.tensor_product.reference()
        conv.forward = types.MethodType(_e3nn_forward, conv)
    return model


MODELS = {
    "BapstGNN": BapstGNN,
    "SE3GNN(lmax=1)": lambda: SE3GNN(lmax=1),
    "SE3GNN(lmax=3)": lambda: SE3GNN(lmax=3),
    "SE3GNN(lmax=3), plain e3nn": lambda: with_plain_e3nn(SE3GNN(lmax=3)),
}


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
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: glasslab's thread policy, GLASSLAB_THREADS)")
    args = parser.parse_args()
    if args.threads is not None:
        os.environ["GLASSLAB_THREADS"] = str(args.threads)
    policy = threads.configure()
    print(policy)

    graph = random_liquid_graph(args.n)
    print(f"N = {args.n}, E = {graph.num_edges} directed edges; torch {torch.__version__}; "
          f"{cpu_name()}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads")
    for name in args.device:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        data = graph.to(device)
        torch.manual_seed(0)
        models = {model_name: build().to(device).train() for model_name, build in MODELS.items()}
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
        print(f"  {'model':<28} {'params':>7} {'wall s':>8} {'CPU s':>8}  {'vs BapstGNN':>11}")
        for model_name, model in models.items():
            print(f"  {model_name:<28} {count_parameters(model):>7} {wall[model_name]:8.3f} {cpu[model_name]:8.3f}"
                  f"  x{cost[model_name] / cost['BapstGNN']:10.2f}")
        fast, plain = "SE3GNN(lmax=3)", "SE3GNN(lmax=3), plain e3nn"
        print(f"  glasslab's tensor product vs plain e3nn (lmax=3): x{wall[plain] / wall[fast]:.2f} faster by wall time,"
              f" x{cpu[plain] / max(cpu[fast], 1e-9):.2f} by CPU time")


if __name__ == "__main__":
    main()
