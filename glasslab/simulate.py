"""Kob–Andersen molecular dynamics with OpenMM: the data engine of glasslab.

:func:`generate` makes a labelled dataset at one temperature: melt, equilibrate (at least
20 τ_α, measured), then sample configurations separated by at least 5 τ_α; for each one
run R iso-configurational NVE replicas from fresh Maxwell–Boltzmann velocities (the
propensity at K log-spaced times, split into two halves of the replicas for the noise
ceiling), and minimise it to its inherent structure. Finished configurations are kept in
``<out>.parts/``, so an interrupted run resumes where it stopped. :func:`relaxation_study`
measures MSD, F_s(q, t), χ4 and τ_α over a range of temperatures.

Units. glasslab works in LJ reduced units of the A–A interaction; OpenMM works in nm, ps,
kJ/mol and amu. The map used everywhere below is the identity on numbers:

    σ_AA = 1 nm,  ε_AA = 1 kJ/mol,  m = 1 amu   ⇒   τ = sqrt(m σ²/ε) = 1 ps,
    T* = k_B T / ε_AA   ⇒   T [K] = T* / k_B,  k_B = 0.0083144626 kJ/(mol K).

Reproducibility: each OpenMM context runs on one CPU thread (several threads sum forces in
a varying order, which is not bitwise reproducible); parallelism comes from running the
replicas concurrently, one context per worker. The same seed gives the same numbers on CPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform as _platform
import queue
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from glasslab import analysis, io, ka
from glasslab._atomic import atomic_path, write_json

KB = 0.0083144626181532
"""Boltzmann constant in OpenMM units, kJ/(mol K): the factor between T* and kelvin."""

_LITERATURE_TAU = {**ka.GLASSBENCH_TAU_ALPHA, 0.8: 3.0, 1.0: 1.0, 2.0: 0.15}
"""Rough τ_α(T) of KA at ρ = 1.2, only to size the first equilibration segment."""


def _openmm():
    try:
        import openmm
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("glasslab.simulate needs OpenMM: pip install 'glasslab[sim]' (or pip install openmm)") from None
    return openmm


def kelvin(temperature: float) -> float:
    """OpenMM temperature (K) of a reduced temperature T*."""
    return temperature / KB


def tau_alpha_guess(temperature: float) -> float:
    """Interpolated literature τ_α(T) (log τ linear in 1/T): a first guess, never a result."""
    ts = np.array(sorted(_LITERATURE_TAU))
    taus = np.array([_LITERATURE_TAU[t] for t in ts])
    return float(np.exp(np.interp(1.0 / temperature, 1.0 / ts[::-1], np.log(taus[::-1]))))


# --------------------------------------------------------------------------- OpenMM system

def _pair_table(table) -> str:
    """A symmetric 2×2 table of pair parameters as an OpenMM expression in ``type1``, ``type2``
    (0 = A, 1 = B): t_AA + (t_AB − t_AA)(type1 + type2) + (t_BB − 2 t_AB + t_AA) type1·type2.

    Arithmetic, not ``Discrete2DFunction`` lookups: OpenMM's CPU platform evaluates the
    tabulated form 2.6× slower (measured by ``benchmarks/bench_md.py``'s development)."""
    aa, ab, bb = float(table[0, 0]), float(table[0, 1]), float(table[1, 1])
    return f"({aa!r} + {ab - aa!r}*(type1 + type2) + {bb - 2 * ab + aa!r}*type1*type2)"


def make_system(types, box):
    """OpenMM ``System`` of the KA mixture: one ``CustomNonbondedForce`` for all pairs.

    The pair energy is the truncated-and-shifted LJ of :mod:`glasslab.ka`,
    ``step(r_c,αβ − r)·(4ε_αβ((σ_αβ/r)¹² − (σ_αβ/r)⁶) − V_αβ(r_c,αβ))``, with ε, σ², r_c and the
    shift written as functions of the two particle types (KA is not Lorentz–Berthelot, so no
    per-particle combining rule gives it). The neighbour list uses the largest cutoff,
    2.5 σ_AA; A–B and B–B pairs beyond their own cutoff contribute zero. Energies equal the
    sum of :func:`glasslab.ka.particle_energies`, forces those of :func:`glasslab.ka.energy_and_forces`.

    One force for all pairs walks the neighbour list once per step: 2× the throughput of one
    force per pair type on a CPU core (``benchmarks/bench_md.py`` keeps that layout as its
    reference). Only two types are supported (``ValueError`` otherwise).
    """
    mm = _openmm()
    types = np.asarray(types)
    box = np.asarray(box, dtype=float)
    if not np.isin(types, (ka.TYPE_A, ka.TYPE_B)).all():
        raise ValueError(f"KA types must be {ka.TYPE_A} (A) or {ka.TYPE_B} (B), got {sorted(set(types.tolist()))}")
    system = mm.System()
    for _ in types:
        system.addParticle(ka.MASS)
    system.setDefaultPeriodicBoxVectors(mm.Vec3(box[0], 0, 0), mm.Vec3(0, box[1], 0), mm.Vec3(0, 0, box[2]))

    force = mm.CustomNonbondedForce(
        "step(rc - r) * (4 * eps * (s6 * s6 - s6) - shift); s6 = (sig2 / (r * r))^3;"
        f"eps = {_pair_table(ka.EPSILON)}; sig2 = {_pair_table(ka.SIGMA**2)};"
        f"rc = {_pair_table(ka.CUTOFF)}; shift = {_pair_table(ka.SHIFT)}"
    )
    force.addPerParticleParameter("type")
    for t in types:
        force.addParticle([float(t)])
    force.setNonbondedMethod(mm.CustomNonbondedForce.CutoffPeriodic)
    force.setCutoffDistance(ka.MAX_CUTOFF)
    force.setUseSwitchingFunction(False)
    force.setUseLongRangeCorrection(False)
    system.addForce(force)
    return system


def available_platform(name: str | None = None):
    """The OpenMM platform to use: ``name`` if given, else CUDA when present, else CPU."""
    mm = _openmm()
    names = [mm.Platform.getPlatform(i).getName() for i in range(mm.Platform.getNumPlatforms())]
    if name is None:
        name = "CUDA" if "CUDA" in names else "CPU"
    if name not in names:
        raise ValueError(f"OpenMM platform {name!r} is not available here (available: {names})")
    return mm.Platform.getPlatformByName(name)


def make_context(system, integrator, platform, threads: int = 1):
    """A context on ``platform``; on CPU it uses ``threads`` threads (1 by default: replicas run
    concurrently instead, see the module docstring)."""
    mm = _openmm()
    props = {"Threads": str(threads)} if platform.getName() == "CPU" else {}
    return mm.Context(system, integrator, platform, props)


def maxwell_boltzmann(rng: np.random.Generator, n: int, temperature: float) -> np.ndarray:
    """Velocities (N, 3) drawn at ``temperature`` (unit masses), zero total momentum."""
    v = rng.normal(scale=np.sqrt(temperature / ka.MASS), size=(n, 3))
    return v - v.mean(axis=0)


def _positions(context) -> np.ndarray:
    """Unwrapped positions of a context as a float64 array (LJ units)."""
    return np.asarray(context.getState(getPositions=True).getPositions(asNumpy=True)._value, dtype=np.float64)


def _velocities(context) -> np.ndarray:
    return np.asarray(context.getState(getVelocities=True).getVelocities(asNumpy=True)._value, dtype=np.float64)


def kinetic_temperature(velocities) -> float:
    """Instantaneous temperature 2K / (3N - 3) of unit-mass particles (momentum conserved)."""
    v = np.asarray(velocities)
    return float(ka.MASS * (v**2).sum() / (3 * len(v) - 3))


# --------------------------------------------------------------------------- inherent structures

def inherent_structure(positions, types, box, context=None, gtol: float = 1e-7):
    """Minimise a configuration to its inherent structure, in float64.

    OpenMM's L-BFGS (``context``, if given) does the bulk of the descent; SciPy's L-BFGS on
    :func:`glasslab.ka.energy_and_forces` then converges it in double precision until the largest
    force component is below ``gtol``. Returns ``(positions_is, epot_is)`` with the
    per-particle energies (N,) from :func:`glasslab.ka.particle_energies`.
    """
    from scipy.optimize import minimize

    x = np.asarray(positions, dtype=float)
    if context is not None:
        mm = _openmm()
        context.setPositions(x)
        mm.LocalEnergyMinimizer.minimize(context, 1e-3, 0)
        x = _positions(context)
    shape = x.shape

    def fun(flat):
        e, f = ka.energy_and_forces(flat.reshape(shape), types, box)
        return e, -f.ravel()

    res = minimize(fun, x.ravel(), jac=True, method="L-BFGS-B",
                   options={"maxiter": 20000, "maxcor": 30, "gtol": gtol, "ftol": 1e-16})
    x_is = res.x.reshape(shape)
    return x_is, ka.particle_energies(x_is, types, box)


# --------------------------------------------------------------------------- configuration

@dataclasses.dataclass
class SimulationConfig:
    """Everything that defines a generated dataset (stored in its provenance).

    Attributes:
        temperature: target temperature T*.
        n_particles: N (80:20 A:B), at density ``density``.
        n_configs: number of configurations (snapshots) to sample.
        replicas: iso-configurational NVE runs per configuration (even: split into halves).
        n_times: K, the number of log-spaced label times from ``t_min`` to
            ``t_max_over_tau`` × τ_α (measured during equilibration).
        t_max: the last label time in LJ time units, instead of ``t_max_over_tau`` × τ_α. Chunks
            of one temperature made with the same ``t_min``, ``t_max`` and ``n_times`` share their
            label times, so they can be trained on together (τ_α measured on a single chunk
            scatters by ~10 %, which would shift each chunk's grid).
        equilibration_taus: equilibrate at least this many (measured) τ_α.
        separation_taus: parent-trajectory time between sampled configurations, in τ_α.
        dt: MD time step (LJ units).
        melt_temperature, melt_time: the initial melt.
        thermostat_rate: Nosé–Hoover collision frequency (1/τ) of the melt and equilibration.
        seed: seeds the initial positions and every replica's velocities.
        engine: the MD engine, one of :data:`ENGINES` (default: :func:`default_engine`, the
            fastest here). Engines agree on forces to float rounding but not bit for bit on
            trajectories, so a run resumes only on the engine it started with.
        platform: OpenMM platform name (default CUDA when present, else CPU).
        workers: replicas run concurrently (default: the CPU count, or 8 on a GPU).
    """

    temperature: float
    n_particles: int = 1000
    n_configs: int = 64
    replicas: int = 16
    n_times: int = 10
    t_min: float = 0.1
    t_max_over_tau: float = 3.5
    t_max: float | None = None
    equilibration_taus: float = 20.0
    separation_taus: float = 5.0
    dt: float = 0.005
    density: float = ka.DENSITY
    melt_temperature: float = 2.0
    melt_time: float = 20.0
    thermostat_rate: float = 1.0
    seed: int = 0
    engine: str | None = None
    platform: str | None = None
    workers: int | None = None

    def __post_init__(self):
        from glasslab import _checks  # types and ranges up front, before any MD is run

        for name in ("n_particles", "n_configs", "replicas", "n_times", "seed"):
            setattr(self, name, _checks.integer(getattr(self, name), name, minimum=0))
        if self.workers is not None:
            self.workers = _checks.integer(self.workers, "workers", minimum=1)
        for name in ("temperature", "t_min", "t_max_over_tau", "equilibration_taus", "separation_taus", "dt",
                     "density", "melt_temperature", "thermostat_rate"):
            setattr(self, name, _checks.number(getattr(self, name), name, minimum=0))
        self.melt_time = _checks.number(self.melt_time, "melt_time", minimum=0, strict=False)
        if self.t_max is not None:
            self.t_max = _checks.number(self.t_max, "t_max", minimum=0)
            if self.t_max <= self.t_min:
                raise ValueError(f"t_max ({self.t_max}) must exceed t_min ({self.t_min})")
        if self.replicas < 2 or self.replicas % 2:
            raise ValueError(f"replicas must be an even number >= 2 (split into two halves), got {self.replicas}")
        if self.n_configs < 1 or self.n_times < 1 or self.n_particles < 2:
            raise ValueError("n_configs, n_times and n_particles must be positive")
        if self.temperature <= 0 or self.dt <= 0:
            raise ValueError("temperature and dt must be positive")
        if 0.5 * ka.box_length(self.n_particles, self.density) <= ka.MAX_CUTOFF:
            raise ValueError(
                f"N={self.n_particles} at density {self.density} gives a box of "
                f"{ka.box_length(self.n_particles, self.density):.3f}, too small for the 2.5 σ cutoff"
            )
        if self.engine is None:
            self.engine = default_engine(self.platform)
        if self.engine not in ENGINES:
            raise ValueError(f"unknown MD engine {self.engine!r}; choose one of {ENGINES}")

    def physical(self) -> dict:
        """The fields that determine the numbers (not platform or workers)."""
        d = dataclasses.asdict(self)
        d.pop("platform")
        d.pop("workers")
        if d["t_max"] is None:  # datasets made before the option existed stay resumable
            d.pop("t_max")
        return d


def initial_types(n_particles: int) -> np.ndarray:
    """Types of an 80:20 mixture: the A particles first."""
    n_a, n_b = ka.type_counts(n_particles)
    return np.array([ka.TYPE_A] * n_a + [ka.TYPE_B] * n_b, dtype=np.int64)


# --------------------------------------------------------------------------- engine

ENGINES = ("openmm", "lammps")
"""The MD engines :func:`generate` can drive: OpenMM (any platform; CUDA on a GPU) and LAMMPS
(CPU, :mod:`glasslab.lammps_engine`). Both run the same protocol on the same potential."""


def default_engine(platform: str | None = None) -> str:
    """The fastest engine available here: OpenMM when it will run on a GPU (``platform`` CUDA,
    OpenCL or HIP, or CUDA present and no platform asked for), else LAMMPS when installed, else OpenMM."""
    from glasslab import lammps_engine

    try:
        gpu = available_platform(platform).getName() in ("CUDA", "OpenCL", "HIP")
    except ImportError:
        gpu = False
    if gpu or not lammps_engine.available():
        return "openmm"
    return "lammps"


def make_engine(name: str, types, box, temperature, dt, thermostat_rate, platform=None, workers=None):
    """An engine of :data:`ENGINES` for one system (see :class:`OpenMMEngine` for the interface)."""
    if name == "openmm":
        return OpenMMEngine(types, box, temperature, dt, thermostat_rate, platform, workers)
    if name == "lammps":
        from glasslab.lammps_engine import LammpsEngine

        return LammpsEngine(types, box, temperature, dt, thermostat_rate, workers)
    raise ValueError(f"unknown MD engine {name!r}; choose one of {ENGINES}")


class OpenMMEngine:
    """OpenMM contexts for one system: a thermostatted parent, replica workers, a minimiser.

    The interface :func:`equilibrate` and :func:`generate` drive (shared with
    :class:`glasslab.lammps_engine.LammpsEngine`): the parent trajectory (``set_parent``,
    ``relax_parent``, ``set_temperature``, ``advance``, ``record``, ``parent_positions``), the
    replicas (``separate_async``, ``run_replicas``), ``minimise``, ``hardware`` and ``close``.
    """

    def __init__(self, types, box, temperature, dt, thermostat_rate, platform_name, workers):
        mm = _openmm()
        self.types = types
        self.box = box
        self.temperature = temperature
        self.dt = dt
        self.platform = available_platform(platform_name)
        on_gpu = self.platform.getName() in ("CUDA", "OpenCL", "HIP")
        self.workers = int(workers or (8 if on_gpu else (os.cpu_count() or 1)))
        self.system = make_system(types, box)
        self.thermostat_rate = thermostat_rate
        self.parent_integrator = mm.NoseHooverIntegrator(kelvin(temperature), thermostat_rate, dt)
        self.parent = make_context(self.system, self.parent_integrator, self.platform)
        self._replica_contexts: queue.Queue = queue.Queue()
        self._n_replica_contexts = 0
        self._minimizer = None
        self.pool = ThreadPoolExecutor(max_workers=self.workers)

    def close(self):
        self.pool.shutdown(wait=True)

    def reset_parent(self, temperature):
        """A fresh thermostatted parent at ``temperature`` (no thermostat state carried over), so
        that a run that restarts from saved positions continues exactly as an uninterrupted one."""
        mm = _openmm()
        self.temperature = temperature
        self.parent_integrator = mm.NoseHooverIntegrator(kelvin(temperature), self.thermostat_rate, self.dt)
        self.parent = make_context(self.system, self.parent_integrator, self.platform)

    def set_temperature(self, temperature):
        self.temperature = temperature
        self.parent_integrator.setTemperature(kelvin(temperature))

    def set_parent(self, positions=None, velocities=None):
        """Set the parent's positions (N, 3) and/or velocities (N, 3)."""
        if positions is not None:
            self.parent.setPositions(np.asarray(positions, dtype=float))
        if velocities is not None:
            self.parent.setVelocities(velocities)

    def relax_parent(self):
        """Remove the overlaps of a random start: a loose minimisation of the parent."""
        _openmm().LocalEnergyMinimizer.minimize(self.parent, 10.0, 2000)

    def parent_positions(self) -> np.ndarray:
        return _positions(self.parent)

    def parent_velocities(self) -> np.ndarray:
        return _velocities(self.parent)

    def advance(self, duration: float):
        """Run the parent (Nosé–Hoover NVT) trajectory for ``duration`` time units."""
        self.parent_integrator.step(int(round(duration / self.dt)))

    def separate_async(self, x0, duration: float, velocities):
        """Future of the positions after an NVE run of ``duration`` from (x0, velocities)."""
        return self.pool.submit(self._separate, x0, duration, velocities)

    def _separate(self, x0, duration, velocities) -> np.ndarray:
        ctx, integ = self._replica_context()
        try:
            ctx.setTime(0.0)
            ctx.setPositions(x0)
            ctx.setVelocities(velocities)
            integ.step(int(round(duration / self.dt)))
            return _positions(ctx)
        finally:
            self._replica_contexts.put((ctx, integ))

    def _replica_context(self):
        try:
            return self._replica_contexts.get_nowait()
        except queue.Empty:
            mm = _openmm()
            integ = mm.VerletIntegrator(self.dt)
            return make_context(self.system, integ, self.platform), integ

    def run_replicas(self, x0, velocities, steps, label_steps):
        """NVE runs from x0, one per entry of ``velocities``, concurrently; see :meth:`run_replica`."""
        futures = [self.pool.submit(self.run_replica, x0, v, steps, label_steps) for v in velocities]
        return [f.result() for f in futures]

    def run_replica(self, x0, velocities, steps, label_steps):
        """One NVE run from (x0, velocities), sampled at ``steps`` (ascending, in MD steps).

        Returns (positions at ``label_steps`` (K, N, 3), displacements at ``steps`` (S, N, 3)).
        """
        ctx, integ = self._replica_context()
        try:
            ctx.setTime(0.0)
            ctx.setPositions(x0)
            ctx.setVelocities(velocities)
            done = 0
            out = {}
            for s in steps:
                integ.step(int(s - done))
                done = s
                out[int(s)] = _positions(ctx) - x0
        finally:
            self._replica_contexts.put((ctx, integ))
        disp = np.stack([out[int(s)] for s in steps])
        return x0 + np.stack([out[int(s)] for s in label_steps]), disp

    def minimise(self, x):
        if self._minimizer is None:
            mm = _openmm()
            self._minimizer = make_context(self.system, mm.VerletIntegrator(self.dt), self.platform)
        return inherent_structure(x, self.types, self.box, self._minimizer)

    def hardware(self) -> str:
        name = self.platform.getName()
        cpu = _platform.processor() or _platform.machine()
        cpu_line = f"{os.cpu_count()} CPU cores ({cpu})"
        if name == "CPU":
            return f"OpenMM CPU platform, {self.workers} concurrent single-thread contexts, {cpu_line}"
        try:
            import torch

            gpu = torch.cuda.get_device_name(0)
        except Exception:
            gpu = "GPU"
        return f"OpenMM {name} platform on {gpu}, {self.workers} concurrent contexts, {cpu_line}"


def _record_parent(engine, duration: float, interval: float) -> np.ndarray:
    """Run the engine's parent ``duration`` and return unwrapped frames (F, N, 3) every ``interval``, t = 0 included."""
    every = max(1, int(round(interval / engine.dt)))
    frames = [engine.parent_positions()]
    for _ in range(int(round(duration / (every * engine.dt)))):
        engine.advance(every * engine.dt)
        frames.append(engine.parent_positions())
    return np.stack(frames)


def equilibrate(engine, temperature: float, min_taus: float, rng: np.random.Generator | None = None,
                initial=None, melt_temperature: float = 2.0, melt_time: float = 20.0, progress: bool = True) -> dict:
    """Bring the parent trajectory of ``engine`` (see :class:`OpenMMEngine`) to equilibrium at ``temperature`` and measure τ_α.

    Starts from ``initial`` positions, or from random positions (drawn with ``rng``)
    that are minimised and melted at ``melt_temperature``. Then runs segments at
    ``temperature``, each recorded and analysed: F_s(q=7.25, t) of the A particles over
    many time origins gives τ_α. It stops once the time spent at ``temperature`` is at
    least ``min_taus`` times the τ_α measured on the last segment, and the τ_α of the two
    halves of that segment agree within 30 % (no ageing).

    Returns a dict: ``tau_alpha`` (last segment), ``tau_alpha_halves``, ``time``
    (total time at ``temperature``), ``segments`` (their τ_α).
    """
    n = len(engine.types)
    if initial is None:
        engine.set_parent(rng.uniform(0.0, 1.0, size=(n, 3)) * engine.box)
        engine.relax_parent()
        engine.set_temperature(melt_temperature)
        engine.set_parent(velocities=maxwell_boltzmann(rng, n, melt_temperature))
        engine.advance(melt_time)
    else:
        engine.set_parent(np.asarray(initial, dtype=float))
    engine.set_temperature(temperature)
    if rng is not None:
        engine.set_parent(velocities=maxwell_boltzmann(rng, n, temperature))

    mask_a = engine.types == ka.TYPE_A
    tau_est = tau_alpha_guess(temperature)
    spent, segments = 0.0, []
    bar = tqdm(desc=f"equilibrate T={temperature:g}", unit="τ", disable=not progress, leave=False)
    while True:
        seg = max(min_taus * tau_est - spent, 4.0 * tau_est, 50 * engine.dt)
        interval = max(engine.dt, seg / 400)
        frames = _record_parent(engine, seg, interval)
        spent += seg
        bar.update(seg)
        tau = _tau_from_frames(frames, interval, mask_a)
        half = len(frames) // 2
        halves = (_tau_from_frames(frames[:half], interval, mask_a), _tau_from_frames(frames[half:], interval, mask_a))
        segments.append(tau)
        bar.set_postfix(tau_alpha=f"{tau:.3g}", spent=f"{spent:.3g}")
        settled = np.isfinite(halves).all() and abs(halves[0] - halves[1]) <= 0.3 * max(halves)
        if np.isfinite(tau) and spent >= min_taus * tau and settled:
            break
        tau_est = tau if np.isfinite(tau) else 4.0 * tau_est
    bar.close()
    return {"tau_alpha": tau, "tau_alpha_halves": list(halves), "time": spent, "segments": segments}


def _tau_from_frames(frames, interval, mask) -> float:
    lags = np.unique(np.geomspace(1, len(frames) // 2, 60).astype(int))
    curves = analysis.trajectory_dynamics(frames, interval, lag_frames=lags, mask=mask, max_origins=60)
    return analysis.tau_alpha(curves.lags, curves.fs)


def _time_grid(cfg: SimulationConfig, tau: float):
    """Label times (K, in steps) and the denser F_s/MSD sampling steps, both ascending."""
    t_max = cfg.t_max if cfg.t_max is not None else cfg.t_max_over_tau * tau
    label = np.unique(np.maximum(1, np.round(np.geomspace(cfg.t_min, t_max, cfg.n_times) / cfg.dt))).astype(int)
    if len(label) != cfg.n_times:
        raise ValueError(f"{cfg.n_times} label times between {cfg.t_min} and {t_max:.3g} do not fit the time step {cfg.dt}")
    dense = np.unique(np.round(np.geomspace(cfg.dt, t_max, 40) / cfg.dt).astype(int))
    return label, np.union1d(label, dense)


def _replica_seed(seed: int, config: int, replica: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, config, replica]))


def _sample_config(engine, cfg: SimulationConfig, index: int, x0, label_steps, steps):
    """Replicas, propensity, split halves and the inherent structure of one configuration."""
    n = len(x0)
    vels = [maxwell_boltzmann(_replica_seed(cfg.seed, index, r), n, cfg.temperature) for r in range(cfg.replicas)]
    results = engine.run_replicas(x0, vels, steps, label_steps)
    propensity, halves = analysis.propensity(x0, np.stack([r[0] for r in results]), halves=True)  # (R, K, N, 3) in
    disp = np.stack([r[1] for r in results])  # (R, S, N, 3)
    mask_a = engine.types == ka.TYPE_A
    x_is, e_is = engine.minimise(x0)
    return io.Snapshot(
        positions=x0,
        types=engine.types,
        box=engine.box,
        temperature=cfg.temperature,
        times=label_steps * cfg.dt,
        propensity=propensity,
        positions_is=x_is,
        epot_is=e_is,
        propensity_halves=halves,
        meta={
            "config_index": index,
            "curve_times": steps * cfg.dt,
            "fs_a": analysis.self_intermediate_scattering(disp, mask=mask_a).mean(0),
            "fs_b": analysis.self_intermediate_scattering(disp, mask=~mask_a).mean(0),
            "msd_a": analysis.mean_squared_displacement(disp, mask=mask_a).mean(0),
            "msd_b": analysis.mean_squared_displacement(disp, mask=~mask_a).mean(0),
            "kinetic_temperature_start": float(np.mean([kinetic_temperature(v) for v in vels])),
        },
    )


def _parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def generate(cfg: SimulationConfig, out, progress: bool = True, keep_parts: bool = False,
             configs: range | None = None) -> Path:
    """Generate a labelled KA dataset at ``cfg.temperature`` into the HDF5 file ``out``.

    Configurations: the first is the end of the (Nosé–Hoover) equilibration; each next one
    is reached by an NVE run of ``separation_taus`` τ_α from fresh Maxwell–Boltzmann
    velocities (seeded), so that the state between configurations is just a position array.

    Resumable: finished configurations and the starting positions of the chain live in
    ``<out>.parts/`` until the final file is written (atomically); rerunning the same command
    after an interruption continues from there, with the same numbers. ``n_configs`` may change
    between runs (configuration i depends only on the seed and configuration i − 1): a long
    run can be cut short (rerun with the number already finished, it merges them) and a
    finished one written with ``keep_parts=True`` extended. Any other change of config for
    the same ``out`` is refused.

    Shards: ``configs=range(a, b)`` makes only configurations a … b − 1, leaves them in
    ``<out>.parts/`` and returns that folder, so that the jobs of a cluster's job array run
    disjoint ranges at once (on a shared file system). Each shard equilibrates (the same
    numbers for the same seed and engine) and walks the chain of separation runs up to ``a``
    (``separation_taus`` τ_α per configuration, ~1/16 of a configuration's replicas), reusing
    starting positions another shard already wrote. A call without ``configs`` then makes what
    is missing and merges: the file equals a single run's, configuration by configuration.

    The file's metadata records the measured τ_α (from F_s(q=7.25, t) of the A particles
    in the NVE replicas, averaged over all configurations), the equilibration record, the
    wall time and the hardware (see ``data/README.md``).
    """
    out = Path(out)
    wanted = range(cfg.n_configs) if configs is None else configs
    if wanted.step != 1 or not 0 <= wanted.start < wanted.stop <= cfg.n_configs:
        raise ValueError(f"configs {wanted.start}:{wanted.stop} is not a range of configurations within 0:{cfg.n_configs}")
    parts = _parts_dir(out)
    parts.mkdir(parents=True, exist_ok=True)
    state_file = parts / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else None
    if state is not None and not _same_dataset(state["config"], cfg):
        raise ValueError(
            f"{parts}: holds an unfinished run with another configuration "
            f"({state['config']}); delete that folder or choose another output file"
        )
    wall0 = time.time()
    types = initial_types(cfg.n_particles)
    box = np.full(3, ka.box_length(cfg.n_particles, cfg.density))
    engine = make_engine(cfg.engine, types, box, cfg.temperature, cfg.dt, cfg.thermostat_rate, cfg.platform, cfg.workers)
    try:
        if state is None:
            rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2**31 - 1]))
            equil = equilibrate(engine, cfg.temperature, cfg.equilibration_taus, rng, melt_temperature=cfg.melt_temperature,
                                melt_time=cfg.melt_time, progress=progress)
            state = {"config": cfg.physical(), "equilibration": equil, "wall_time": time.time() - wall0}
            _save_start(parts, 0, np.mod(engine.parent_positions(), box))
            write_json(state_file, state)
        _adopt_legacy_state(parts, state)
        chain = _Chain(engine, cfg, parts, state["equilibration"]["tau_alpha"])
        label_steps, steps = _time_grid(cfg, chain.tau)
        missing = [i for i in wanted if not (parts / f"config_{i:05d}.h5").exists()]
        bar = tqdm(total=len(wanted), initial=len(wanted) - len(missing), desc=f"T={cfg.temperature:g} configurations",
                   unit="config", disable=not progress)
        wall_start = time.time()
        for index in missing:
            x0 = chain.start(index)
            # the next configuration is prepared while the replicas of this one run (also after
            # the last one, so that a finished run can be extended with a larger n_configs)
            following = chain.next_async(index, x0)
            snap = _sample_config(engine, cfg, index, x0, label_steps, steps)
            io.write_h5(parts / f"config_{index:05d}.h5", [snap])
            following()
            bar.update(1)
            _add_wall_time(parts, configs, time.time() - wall_start)
            wall_start = time.time()
        bar.close()
        hardware = engine.hardware()
    finally:
        engine.close()
    if configs is not None:
        _update_json(_shard_file(parts, configs), hardware=hardware, configs=[configs.start, configs.stop])
        return parts
    return _merge(cfg, out, parts, json.loads(state_file.read_text()), hardware, keep_parts)


class _Chain:
    """The starting positions of the configurations: x_0 from the equilibration, x_{i+1} from an
    NVE run of ``separation_taus`` τ_α from x_i with velocities seeded by (seed, i + 1), each kept
    in ``parts/start_<i>.npy`` once computed."""

    def __init__(self, engine, cfg: SimulationConfig, parts: Path, tau: float):
        self.engine, self.cfg, self.parts, self.tau = engine, cfg, parts, tau

    def _file(self, index: int) -> Path:
        return self.parts / f"start_{index:05d}.npy"

    def _separate_async(self, index: int, x):
        """Future of x_{index+1} from x_index."""
        rng = np.random.default_rng(np.random.SeedSequence([self.cfg.seed, index + 1, 2**31 - 3]))
        velocities = maxwell_boltzmann(rng, len(x), self.cfg.temperature)
        return self.engine.separate_async(x, self.cfg.separation_taus * self.tau, velocities)

    def start(self, index: int) -> np.ndarray:
        """x_index, from the file or walked from the last one kept before it."""
        known = index
        while not self._file(known).exists():
            known -= 1
        x = np.load(self._file(known))
        for i in range(known, index):
            x = np.mod(self._separate_async(i, x).result(), self.engine.box)
            _save_start(self.parts, i + 1, x)
        return x

    def next_async(self, index: int, x):
        """Start x_{index+1} from x = x_index in the background; the returned call waits and saves it."""
        if self._file(index + 1).exists():
            return lambda: None
        future = self._separate_async(index, x)
        return lambda: _save_start(self.parts, index + 1, np.mod(future.result(), self.engine.box))


def _save_start(parts: Path, index: int, positions: np.ndarray) -> None:
    with atomic_path(parts / f"start_{index:05d}.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, positions)


def _adopt_legacy_state(parts: Path, state: dict) -> None:
    """Parts written before the chain was kept per configuration hold only the next start
    (``next_positions.npy``, configuration ``state["next"]``): keep it under its index."""
    legacy = parts / "next_positions.npy"
    if "next" in state and legacy.exists() and not (parts / f"start_{state['next']:05d}.npy").exists():
        _save_start(parts, state["next"], np.load(legacy))


def _shard_file(parts: Path, configs: range) -> Path:
    return parts / f"shard_{configs.start:05d}_{configs.stop:05d}.json"


def _update_json(path: Path, **fields) -> None:
    record = json.loads(path.read_text()) if path.exists() else {}
    record.update(fields)
    write_json(path, record)


def _add_wall_time(parts: Path, configs: range | None, seconds: float) -> None:
    """Add to the wall time of the whole run (``state.json``) or of a shard (``shard_<a>_<b>.json``);
    the merge adds them up."""
    path = parts / "state.json" if configs is None else _shard_file(parts, configs)
    record = json.loads(path.read_text()) if path.exists() else {}
    _update_json(path, wall_time=record.get("wall_time", 0.0) + seconds)


def _engine_version(name: str) -> str:
    module = __import__(name)
    return str(module.__version__)


def _same_dataset(recorded: dict, cfg: SimulationConfig) -> bool:
    """Whether a recorded config and ``cfg`` make the same configurations: everything but
    ``n_configs`` must agree (configuration i depends only on the seed and configuration
    i − 1, so a run may be cut short or extended)."""
    current = json.loads(json.dumps(cfg.physical()))
    recorded = {"engine": "openmm", **recorded}  # runs started before there was a choice
    return {k: v for k, v in recorded.items() if k != "n_configs"} == {k: v for k, v in current.items() if k != "n_configs"}


def _merge(cfg: SimulationConfig, out: Path, parts: Path, state: dict, hardware: str, keep_parts: bool) -> Path:
    snaps = []
    for index in range(cfg.n_configs):
        snaps.extend(io.read_h5(parts / f"config_{index:05d}.h5"))
    curve_times = snaps[0].meta["curve_times"]
    fs_a = np.mean([s.meta["fs_a"] for s in snaps], axis=0)
    tau = analysis.tau_alpha(curve_times, fs_a)
    times = snaps[0].times
    file_meta = {
        "system": "KA3D",
        "tau_alpha": tau,
        "tau_alpha_equilibration": state["equilibration"]["tau_alpha"],
        "equilibration_time": state["equilibration"]["time"],
        "equilibration_taus_measured": state["equilibration"]["time"] / state["equilibration"]["tau_alpha"],
        "t_max_over_tau_alpha": float(times[-1] / tau),
        "q_fs": analysis.Q_PEAK,
    }
    for s in snaps:
        s.meta.update(file_meta)
    shards = [json.loads(p.read_text()) for p in sorted(parts.glob("shard_*.json"))]
    provenance = {
        "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else "glasslab.simulate.generate",
        "config": cfg.physical(),
        "hardware": hardware,
        "wall_time_s": round(state["wall_time"] + sum(shard.get("wall_time", 0.0) for shard in shards), 1),
        f"{cfg.engine}_version": _engine_version(cfg.engine),
        "equilibration": state["equilibration"],
    }
    if shards:
        provenance["shards"] = shards
    io.write_h5(out, snaps, provenance=provenance)
    if not keep_parts:
        shutil.rmtree(parts)
    return out


# --------------------------------------------------------------------------- relaxation study

def relaxation_study(temperatures, out, n_particles: int = 1000, seed: int = 0, production_taus: float = 30.0,
                     n_origins: int = 24, n_snapshots: int = 8, equilibration_taus: float = 20.0,
                     trajectory_temperature: float | None = None, trajectory_frames: int = 60,
                     dt: float = 0.005, engine: str | None = None, platform: str | None = None,
                     progress: bool = True) -> Path:
    """MSD, F_s(q, t), the self overlap Q(t), χ4(t), τ_α and structure snapshots over a range of temperatures.

    Temperatures are visited from hot to cold, each starting from the previous one's last
    configuration and equilibrated for at least ``equilibration_taus`` measured τ_α. The
    production run is NVE (velocity Verlet), ``production_taus`` τ_α long; time
    correlation functions are averaged over ``n_origins`` time origins with log-spaced
    lags; ``n_snapshots`` configurations spread over the run are kept for g(r) and S(q).
    At ``trajectory_temperature`` a short trajectory of ``trajectory_frames`` frames over
    one τ_α is also kept, for 3D views. Written atomically as one glasslab relaxation file
    (see :func:`glasslab.io.write_relaxation`). ``engine``: one of :data:`ENGINES` (default
    :func:`default_engine`).

    Resumable: each finished temperature is kept in ``<out>.parts/`` with the positions and the
    random-generator state the next one starts from (each temperature starts a fresh thermostat),
    so rerunning the same call after an interruption continues with the same numbers; a call
    with other arguments for the same ``out`` is refused.
    """
    temps = _check_relaxation_arguments(temperatures, out, n_particles, seed, production_taus, n_origins, n_snapshots,
                                        equilibration_taus, trajectory_temperature, trajectory_frames, dt)
    engine_name = engine or default_engine(platform)
    if engine_name not in ENGINES:
        raise ValueError(f"unknown MD engine {engine_name!r}; choose one of {ENGINES}")
    out = Path(out)
    types = initial_types(n_particles)
    box = np.full(3, ka.box_length(n_particles))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2**31 - 2]))
    parts = _parts_dir(out)
    arguments = {"temperatures": temps, "n_particles": n_particles, "seed": seed, "production_taus": production_taus,
                 "n_origins": n_origins, "n_snapshots": n_snapshots, "equilibration_taus": equilibration_taus,
                 "trajectory_temperature": trajectory_temperature, "trajectory_frames": trajectory_frames, "dt": dt}
    if engine_name != "openmm":  # studies made before there was a choice resume as they were
        arguments["engine"] = engine_name
    state = _relaxation_state(parts, arguments)
    records = [io.read_relaxation(parts / f"temperature_{k:02d}.h5")[0] for k in range(state["done"])]
    initial = np.load(parts / "next_positions.npy") if state["done"] else None
    if state["done"]:
        rng.bit_generator.state = state["rng"]
    md = make_engine(engine_name, types, box, temps[0], dt, 1.0, platform, 1)
    wall0 = time.time() - state["wall_time"]
    try:
        for index, temperature in enumerate(tqdm(temps, desc="temperatures", disable=not progress)):
            if index < state["done"]:
                continue
            t0 = time.time()
            md.reset_parent(temperature)
            equil = equilibrate(md, temperature, equilibration_taus, rng, initial=initial, progress=progress)
            trajectory = trajectory_frames if trajectory_temperature is not None and np.isclose(
                temperature, trajectory_temperature) else 0
            record = _production(md, equil, production_taus, n_origins, n_snapshots, trajectory)
            record.meta["wall_time_s"] = round(time.time() - t0, 1)
            records.append(record)
            initial = md.parent_positions()
            io.write_relaxation(parts / f"temperature_{index:02d}.h5", [record])
            with atomic_path(parts / "next_positions.npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, initial)
            state.update(done=index + 1, rng=rng.bit_generator.state, wall_time=time.time() - wall0)
            write_json(parts / "state.json", state)
        hardware = md.hardware()
    finally:
        md.close()
    provenance = {
        "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else "glasslab.simulate.relaxation_study",
        "temperatures": temps, "n_particles": n_particles, "seed": seed, "production_taus": production_taus,
        "equilibration_taus": equilibration_taus, "dt": dt, "hardware": hardware,
        "wall_time_s": round(time.time() - wall0, 1), f"{engine_name}_version": _engine_version(engine_name),
    }
    io.write_relaxation(out, records, provenance=provenance)
    shutil.rmtree(parts)
    return out


def _check_relaxation_arguments(temperatures, out, n_particles, seed, production_taus, n_origins, n_snapshots,
                                equilibration_taus, trajectory_temperature, trajectory_frames, dt) -> list[float]:
    """Every argument of :func:`relaxation_study` checked before any MD is run; the temperatures, hot to cold."""
    from glasslab import _checks

    if isinstance(temperatures, (int, float)):
        temperatures = [temperatures]
    if not temperatures:
        raise ValueError("relaxation_study: no temperatures given")
    for t in temperatures:
        _checks.number(t, "temperature", minimum=0)
    for name, value in (("n_particles", n_particles), ("n_origins", n_origins), ("n_snapshots", n_snapshots),
                        ("trajectory_frames", trajectory_frames), ("seed", seed)):
        _checks.integer(value, name, minimum=1 if name != "seed" else 0)
    for name, value in (("production_taus", production_taus), ("equilibration_taus", equilibration_taus), ("dt", dt)):
        _checks.number(value, name, minimum=0)
    if 0.5 * ka.box_length(n_particles) <= ka.MAX_CUTOFF:
        raise ValueError(f"n_particles={n_particles} gives a box of {ka.box_length(n_particles):.3f}, "
                         "too small for the 2.5 σ cutoff")
    if trajectory_temperature is not None and not any(np.isclose(trajectory_temperature, t) for t in temperatures):
        raise ValueError(f"trajectory_temperature {trajectory_temperature} is not one of the temperatures {list(temperatures)}")
    if Path(out).is_dir():
        raise ValueError(f"{out}: is a directory; give the output .h5 file")
    return sorted({float(t) for t in temperatures}, reverse=True)


def _production(md, equil: dict, production_taus: float, n_origins: int, n_snapshots: int,
                trajectory_frames: int) -> io.Relaxation:
    """The NVE production run of one temperature, from the equilibrated parent's state: correlation
    functions over ``n_origins`` time origins, ``n_snapshots`` snapshots and, if asked, a trajectory
    of ``trajectory_frames`` frames over one τ_α after the run."""
    tau, dt, temperature = equil["tau_alpha"], md.dt, md.temperature
    mask_a = md.types == ka.TYPE_A
    spacing = production_taus * tau / n_origins
    lag_steps = np.unique(np.round(np.geomspace(dt, production_taus * tau / 2, 50) / dt).astype(int))
    origin_steps = np.round(np.arange(n_origins) * spacing / dt).astype(int)
    wanted = np.union1d((origin_steps[:, None] + lag_steps[None, :]).ravel(), origin_steps)
    every = max(1, int(round(tau / max(trajectory_frames, 1) / dt)))
    trajectory_steps = wanted[-1] + every * np.arange(trajectory_frames)
    sampled = np.union1d(wanted[wanted > 0], trajectory_steps[trajectory_steps > 0])
    x0 = md.parent_positions()
    (_, displacements), = md.run_replicas(x0, [md.parent_velocities()], sampled, sampled[:1])
    frames = {0: x0, **{int(s): x0 + d for s, d in zip(sampled, displacements)}}
    disp = np.stack([[frames[o + lag] - frames[o] for o in origin_steps] for lag in lag_steps])  # (L, O, N, 3)
    curves = {}
    for name, m in (("a", mask_a), ("b", ~mask_a)):
        curves[f"msd_{name}"] = analysis.mean_squared_displacement(disp, mask=m).mean(1)
        curves[f"fs_{name}"] = analysis.self_intermediate_scattering(disp, mask=m).mean(1)
        overlap = analysis.overlap(disp, mask=m)  # (L, O)
        curves[f"overlap_{name}"] = overlap.mean(1)
        curves[f"chi4_{name}"] = m.sum() * overlap.var(1)
    lags = lag_steps * dt
    pick = np.linspace(0, len(wanted) - 1, n_snapshots).astype(int)
    record = io.Relaxation(
        temperature=temperature, lags=lags, tau_alpha=analysis.tau_alpha(lags, curves["fs_a"]),
        types=md.types, box=md.box, snapshots=np.stack([np.mod(frames[int(wanted[k])], md.box) for k in pick]),
        curves=curves,
        meta={"equilibration": equil, "production_time": float(wanted[-1] * dt), "n_origins": n_origins,
              "tau_overlap": analysis.tau_alpha(lags, curves["overlap_a"])},
    )
    if trajectory_frames:
        record.trajectory = np.stack([frames[int(s)] for s in trajectory_steps]).astype(np.float32)
        record.trajectory_dt = every * dt
    return record


def _relaxation_state(parts: Path, arguments: dict) -> dict:
    """The progress record of an unfinished relaxation study in ``parts`` (a fresh one if none);
    refuses one made with other arguments."""
    arguments = json.loads(json.dumps(arguments))
    state_file = parts / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if state.get("arguments") != arguments:
            raise ValueError(f"{parts}: holds an unfinished relaxation study with other arguments "
                             f"({state.get('arguments')}); delete that folder or choose another output file")
        return state
    parts.mkdir(parents=True, exist_ok=True)
    return {"arguments": arguments, "done": 0, "rng": None, "wall_time": 0.0}
