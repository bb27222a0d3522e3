"""Benchmark: glasslab.graph.radius_graph vs an O(N²) minimum-image search, in the same run.

N = 4096 particles at density 1.2 (a KA-sized box), cutoff 2.0. Target: ≤ 50 ms per graph on
one core. Prints the median times and their ratio; record the figures in benchmarks/README.md.
"""

import os
import platform
import time

from glasslab import threads  # noqa: E402  (glasslab's CPU thread policy, applied before numpy/torch load)

import numpy as np  # noqa: E402

from glasslab.neighbours import radius_graph  # noqa: E402


def brute_force(pos, cutoff, box):
    """Reference: all N² pair vectors, minimum image, thresholded (row by row to bound memory)."""
    src, dst = [], []
    for i in range(len(pos)):
        d = pos - pos[i]
        d -= box * np.round(d / box)
        close = np.flatnonzero(np.einsum("ij,ij->i", d, d) < cutoff * cutoff)
        close = close[close != i]
        src.append(close)
        dst.append(np.full(len(close), i))
    return np.stack([np.concatenate(src), np.concatenate(dst)])


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def main(n=4096, density=1.2, cutoff=2.0):
    rng = np.random.default_rng(0)
    box = np.full(3, (n / density) ** (1 / 3))
    pos = rng.uniform(0, 1, (n, 3)) * box + box * rng.integers(-1, 2, (n, 3))  # unwrapped, as in Bapst's data
    t_fast, (ei, _) = median_time(lambda: radius_graph(pos, cutoff, box=box), 15)
    t_ref, ref = median_time(lambda: brute_force(pos, cutoff, box), 3)
    assert ei.shape == ref.shape, "radius_graph and the brute force disagree"
    cpu = platform.processor() or platform.machine()
    print(f"radius_graph, N={n}, rho={density}, cutoff={cutoff}: {ei.shape[1]} directed edges")
    print(f"  glasslab.graph.radius_graph : {1e3 * t_fast:8.1f} ms per graph (target <= 50 ms, one core)")
    print(f"  brute force O(N^2)          : {1e3 * t_ref:8.1f} ms per graph")
    print(f"  speed-up (brute / glasslab) : {t_ref / t_fast:8.1f}x")
    print(f"  hardware: {os.cpu_count()} cores, {cpu}; {threads.configure()}")


if __name__ == "__main__":
    main()
