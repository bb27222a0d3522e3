"""Physics checks of the OpenMM engine and the generation protocol on both engines, fast, on CPU."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")

from glasslab import io, ka, lammps_engine, simulate  # noqa: E402


def small_liquid(n=256, seed=0):
    """A minimised random KA configuration of n particles at ρ = 1.2."""
    rng = np.random.default_rng(seed)
    types = simulate.initial_types(n)
    box = np.full(3, ka.box_length(n))
    system = simulate.make_system(types, box)
    integ = openmm.VerletIntegrator(0.005)
    ctx = simulate.make_context(system, integ, simulate.available_platform("CPU"))
    ctx.setPositions(rng.uniform(0, 1, (n, 3)) * box)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 500)
    return types, box, system, ctx, integ


def test_openmm_forces_equal_the_ka_potential_exactly():
    types, box, system, ctx, _ = small_liquid(300)
    x = simulate._positions(ctx)
    ref = simulate.make_context(system, openmm.VerletIntegrator(0.005), simulate.available_platform("Reference"))
    ref.setPositions(x)
    forces = ref.getState(getForces=True).getForces(asNumpy=True)._value
    _, expected = ka.energy_and_forces(x, types, box)
    assert np.abs(forces - expected).max() < 1e-9 * np.abs(expected).max()
    # the CPU platform (single precision forces) agrees to float32 accuracy
    cpu = ctx.getState(getForces=True).getForces(asNumpy=True)._value
    assert np.abs(cpu - expected).max() < 1e-4 * np.abs(expected).max()


def test_energy_matches_pair_potential_sum():
    rng = np.random.default_rng(1)
    box = np.full(3, 6.0)
    x = rng.uniform(0, 6, (40, 3))
    types = (rng.random(40) < 0.3).astype(int)
    e, _ = ka.energy_and_forces(x, types, box)
    d = x[None] - x[:, None]
    d -= box * np.round(d / box)
    r = np.linalg.norm(d, axis=-1)
    iu = np.triu_indices(40, 1)
    direct = ka.pair_potential(r[iu], types[iu[0]], types[iu[1]]).sum()
    assert e == pytest.approx(direct, rel=1e-12)
    assert ka.particle_energies(x, types, box).sum() == pytest.approx(direct, rel=1e-12)
    assert ka.pair_potential(ka.CUTOFF[0, 1] - 1e-12, 0, 1) == pytest.approx(0.0, abs=1e-9)  # shifted to zero


def test_nve_energy_is_conserved():
    types, box, _, ctx, integ = small_liquid(256, seed=2)
    ctx.setVelocities(simulate.maxwell_boltzmann(np.random.default_rng(0), 256, 0.8))
    integ.step(200)
    energies = []
    for _ in range(20):
        integ.step(100)
        st = ctx.getState(getPositions=True, getEnergy=True)
        e_pot, _ = ka.energy_and_forces(st.getPositions(asNumpy=True)._value, types, box)
        energies.append(e_pot + st.getKineticEnergy()._value)
    energies = np.array(energies) / 256
    # truncated-and-shifted forces jump at the cutoff: a small noise, no drift (per particle, ε)
    assert np.ptp(energies) < 2e-3
    assert abs(np.polyfit(np.arange(20), energies, 1)[0]) < 5e-5


def test_thermostat_holds_the_temperature_and_velocities_are_maxwellian():
    v = simulate.maxwell_boltzmann(np.random.default_rng(3), 20_000, 0.64)
    assert np.allclose(v.sum(0), 0, atol=1e-9)
    assert simulate.kinetic_temperature(v) == pytest.approx(0.64, rel=0.02)
    types = simulate.initial_types(256)
    box = np.full(3, ka.box_length(256))
    engine = simulate.OpenMMEngine(types, box, 0.8, 0.005, 1.0, "CPU", 1)
    try:
        rng = np.random.default_rng(4)
        engine.set_parent(simulate._positions(small_liquid(256, seed=4)[3]), simulate.maxwell_boltzmann(rng, 256, 0.8))
        temps = []
        for _ in range(40):
            engine.advance(0.5)
            temps.append(simulate.kinetic_temperature(engine.parent_velocities()))
    finally:
        engine.close()
    assert np.mean(temps[10:]) == pytest.approx(0.8, rel=0.04)


def test_inherent_structure_is_a_minimum():
    types, box, _, ctx, integ = small_liquid(200, seed=5)
    ctx.setVelocities(simulate.maxwell_boltzmann(np.random.default_rng(5), 200, 1.0))
    integ.step(300)
    x = simulate._positions(ctx)
    x_is, e_is = simulate.inherent_structure(x, types, box, context=ctx)
    e_thermal = ka.particle_energies(x, types, box).sum()
    assert e_is.sum() < e_thermal
    _, forces = ka.energy_and_forces(x_is, types, box)
    assert np.abs(forces).max() < 1e-4  # vs thermal forces of order 10; float64 round-off limits L-BFGS near 1e-6
    assert -8.0 < e_is.mean() < -7.0  # KA inherent-structure energies lie near -7.6 per particle


RELAXATION = dict(n_particles=200, seed=3, production_taus=12, equilibration_taus=5, n_origins=8, progress=False)


@pytest.fixture(scope="module")
def relaxation_run(tmp_path_factory):
    return simulate.relaxation_study([2.0, 1.5], tmp_path_factory.mktemp("relax") / "relax.h5", **RELAXATION)


def test_relaxation_study_records_correlation_functions(relaxation_run):
    out = relaxation_run
    assert not out.with_name(out.name + ".parts").exists()
    records = {round(r.temperature, 3): r for r in io.read_relaxation(out)}
    assert set(records) == {2.0, 1.5} and records[1.5].tau_alpha > records[2.0].tau_alpha
    for r in records.values():
        assert {"msd_a", "fs_a", "overlap_a", "chi4_a", "msd_b", "fs_b", "overlap_b", "chi4_b"} <= set(r.curves)
        fs, q = r.curves["fs_a"], r.curves["overlap_a"]
        assert fs[0] > 0.95 and q[0] > 0.95 and fs[-1] < np.exp(-1) and q[-1] < np.exp(-1)
        assert np.all(np.diff(r.curves["msd_a"]) > 0)
        # Q(t) counts particles that moved less than 0.3: a slower criterion than F_s at q = 7.25
        assert r.meta["tau_overlap"] > r.tau_alpha


@pytest.mark.skipif(not lammps_engine.available(), reason="LAMMPS is not installed")
def test_both_engines_give_the_same_relaxation(relaxation_run, tmp_path):
    """The same study on OpenMM: other trajectories (float32 forces, other rounding), the same physics."""
    out = simulate.relaxation_study([2.0, 1.5], tmp_path / "openmm.h5", engine="openmm", **RELAXATION)
    for a, b in zip(io.read_relaxation(relaxation_run), io.read_relaxation(out)):
        assert a.tau_alpha == pytest.approx(b.tau_alpha, rel=0.25), (a.temperature, a.tau_alpha, b.tau_alpha)


def test_relaxation_study_resumes_after_an_interruption(relaxation_run, tmp_path, monkeypatch):
    out = tmp_path / "resumed.h5"
    original = io.write_relaxation

    def interrupt_after_first_temperature(path, records, provenance=None):
        if Path(path).name == "temperature_01.h5":
            raise KeyboardInterrupt  # as if killed while saving the second temperature
        return original(path, records, provenance)

    monkeypatch.setattr(io, "write_relaxation", interrupt_after_first_temperature)
    with pytest.raises(KeyboardInterrupt):
        simulate.relaxation_study([2.0, 1.5], out, **RELAXATION)
    parts = out.with_name(out.name + ".parts")
    assert (parts / "temperature_00.h5").exists() and not (parts / "temperature_01.h5").exists() and not out.exists()
    monkeypatch.setattr(io, "write_relaxation", original)
    with pytest.raises(ValueError, match="other arguments"):
        simulate.relaxation_study([2.0, 1.5], out, **{**RELAXATION, "seed": 4})
    simulate.relaxation_study([2.0, 1.5], out, **RELAXATION)
    assert not parts.exists()
    for a, b in zip(io.read_relaxation(relaxation_run), io.read_relaxation(out)):
        assert a.temperature == b.temperature and a.tau_alpha == b.tau_alpha
        assert np.array_equal(a.snapshots, b.snapshots) and np.array_equal(a.curves["fs_a"], b.curves["fs_a"])


ENGINES = [pytest.param(name, marks=pytest.mark.skipif(name == "lammps" and not lammps_engine.available(),
                                                     reason="LAMMPS is not installed")) for name in simulate.ENGINES]


@pytest.fixture(scope="module", params=ENGINES)
def tiny_run(tmp_path_factory, request):
    """A two-configuration dataset made by each engine: the tests below run once per engine."""
    cfg = simulate.SimulationConfig(temperature=1.2, n_particles=200, n_configs=2, replicas=4, n_times=5,
                                    equilibration_taus=10, seed=11, engine=request.param, workers=2)
    out = tmp_path_factory.mktemp("sim") / "tiny.h5"
    simulate.generate(cfg, out, progress=False)
    return cfg, out


def test_generate_writes_a_complete_labelled_file(tiny_run):
    cfg, out = tiny_run
    snaps = io.read_h5(out)
    assert len(snaps) == 2 and not out.with_name(out.name + ".parts").exists()
    s = snaps[0]
    assert s.num_particles == 200 and s.num_times == 5 and s.temperature == 1.2
    assert s.times[0] == pytest.approx(0.1) and s.times[-1] >= 3 * s.meta["tau_alpha"] * 0.9
    assert np.all(np.diff(s.propensity.mean(0)) > 0)  # propensity grows with time
    assert s.propensity_halves.shape == (2, 200, 5)
    assert np.allclose(s.propensity_halves.mean(0), s.propensity, rtol=1e-5)
    assert s.epot_is.mean() < ka.particle_energies(s.positions, s.types, s.box).mean()
    info = io.read_h5_info(out)
    assert info["provenance"]["config"]["seed"] == 11 and info["provenance"]["wall_time_s"] > 0
    assert info["provenance"]["config"]["engine"] == cfg.engine and f"{cfg.engine}_version" in info["provenance"]
    assert info["meta"]["equilibration_taus_measured"] >= 10


def test_generate_is_reproducible_and_resumes_after_an_interruption(tiny_run, tmp_path, monkeypatch):
    cfg, reference = tiny_run
    out = tmp_path / "resumed.h5"
    calls = {"n": 0}
    original = io.write_h5

    def interrupt_after_first_config(path, snaps, provenance=None):
        original(path, snaps, provenance)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C after configuration 0

    monkeypatch.setattr(io, "write_h5", interrupt_after_first_config)
    with pytest.raises(KeyboardInterrupt):
        simulate.generate(cfg, out, progress=False)
    assert (out.with_name(out.name + ".parts") / "config_00000.h5").exists() and not out.exists()
    monkeypatch.setattr(io, "write_h5", original)
    simulate.generate(cfg, out, progress=False)
    for a, b in zip(io.read_h5(reference), io.read_h5(out)):
        assert np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.propensity, b.propensity)
        assert np.array_equal(a.positions_is, b.positions_is)


def test_generate_can_be_cut_short_and_extended(tiny_run, tmp_path):
    """n_configs may change between runs: one configuration, then extended to two, equals two at once."""
    cfg, reference = tiny_run
    out = tmp_path / "grown.h5"
    simulate.generate(dataclasses.replace(cfg, n_configs=1), out, progress=False, keep_parts=True)
    assert len(io.read_h5(out)) == 1
    simulate.generate(cfg, out, progress=False)
    grown, ref = io.read_h5(out), io.read_h5(reference)
    assert len(grown) == 2
    for a, b in zip(ref, grown):
        assert np.array_equal(a.positions, b.positions) and np.array_equal(a.propensity, b.propensity)
    assert io.read_h5_info(out)["provenance"]["config"]["n_configs"] == 2


def test_shards_merge_into_the_file_of_a_single_run(tiny_run, tmp_path):
    """A job array: two shards in either order, then the merge, equal one uninterrupted run."""
    cfg, reference = tiny_run
    cfg = dataclasses.replace(cfg, n_configs=3)
    out = tmp_path / "sharded.h5"
    parts = simulate.generate(cfg, out, progress=False, configs=range(2, 3))   # walks the chain to configuration 2
    assert sorted(p.name for p in parts.glob("config_*.h5")) == ["config_00002.h5"] and not out.exists()
    simulate.generate(cfg, out, progress=False, configs=range(0, 1))
    simulate.generate(cfg, out, progress=False)                                # makes configuration 1, merges
    merged, ref = io.read_h5(out), io.read_h5(reference)
    assert len(merged) == 3
    for a, b in zip(ref, merged):                                              # the reference has configurations 0, 1
        assert np.array_equal(a.positions, b.positions) and np.array_equal(a.propensity, b.propensity)
        assert np.array_equal(a.positions_is, b.positions_is)
    provenance = io.read_h5_info(out)["provenance"]
    assert [shard["configs"] for shard in provenance["shards"]] == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="not a range"):
        simulate.generate(cfg, tmp_path / "y.h5", progress=False, configs=range(2, 5))


def test_generate_refuses_another_config_on_unfinished_parts(tmp_path):
    cfg = simulate.SimulationConfig(temperature=1.2, n_particles=200, n_configs=1, replicas=2)
    parts = tmp_path / "x.h5.parts"
    parts.mkdir()
    (parts / "state.json").write_text('{"config": {"temperature": 0.5}}')
    with pytest.raises(ValueError, match="another configuration"):
        simulate.generate(cfg, tmp_path / "x.h5", progress=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(replicas=3), "even"),
    (dict(n_particles=100), "too small"),
    (dict(temperature=-1.0), "positive"),
])
def test_config_refuses_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate.SimulationConfig(**{"temperature": 0.64, **kwargs})


def test_a_run_resumes_only_on_the_engine_it_started_with():
    cfg = simulate.SimulationConfig(temperature=1.2, n_particles=200, engine="openmm")
    before_engines = {k: v for k, v in cfg.physical().items() if k != "engine"}  # parts made before the choice
    assert simulate._same_dataset(before_engines, cfg)
    assert not simulate._same_dataset(before_engines, dataclasses.replace(cfg, engine="lammps"))
