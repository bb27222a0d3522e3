import pickle

import h5py
import numpy as np
import pytest

from glasslab import io


def make_snapshot(rng, n=50, k=4, temperature=0.64, with_is=True):
    box = np.array([5.0, 5.5, 6.0])
    return io.Snapshot(
        positions=rng.uniform(0, 1, (n, 3)) * box,
        types=(rng.random(n) < 0.2).astype(np.int64),
        box=box,
        temperature=temperature,
        times=np.geomspace(0.1, 50, k),
        propensity=rng.random((n, k)),
        positions_is=rng.uniform(0, 1, (n, 3)) * box if with_is else None,
        epot_is=-rng.random(n) * 7 if with_is else None,
        propensity_halves=rng.random((2, n, k)) if with_is else None,
        meta={"tau_alpha": 16.5, "config_index": int(rng.integers(100)), "curve": rng.random(7)},
    )


def test_h5_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    snaps = [make_snapshot(rng) for _ in range(3)]
    path = io.write_h5(tmp_path / "d.h5", snaps, provenance={"seed": 3, "command": "test"})
    back = io.read_h5(path)
    assert len(back) == 3
    for a, b in zip(snaps, back):
        assert np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.types, b.types)
        assert np.allclose(a.propensity, b.propensity, rtol=1e-6)  # stored as float32
        assert np.array_equal(a.positions_is, b.positions_is)
        assert np.allclose(a.propensity_halves, b.propensity_halves, rtol=1e-6)
        assert a.meta["config_index"] == b.meta["config_index"]
        assert b.meta["tau_alpha"] == 16.5
        assert np.array_equal(a.meta["curve"], b.meta["curve"])
    info = io.read_h5_info(path)
    assert info["format_version"] == io.FORMAT_VERSION
    assert info["provenance"] == {"seed": 3, "command": "test"}
    assert info["meta"]["tau_alpha"] == 16.5  # shared by all snapshots -> file level
    assert [s.meta["config_index"] for s in io.read_h5(path, indices=[2, 0])] == [snaps[2].meta["config_index"], snaps[0].meta["config_index"]]


def test_h5_write_is_atomic(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    path = io.write_h5(tmp_path / "d.h5", [make_snapshot(rng)])
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise KeyboardInterrupt  # an interruption in the middle of writing

    monkeypatch.setattr(io.h5py.File, "create_dataset", broken)
    with pytest.raises(KeyboardInterrupt):
        io.write_h5(path, [make_snapshot(rng)])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5"]  # no temporary left behind


def test_h5_refuses_mixed_snapshots(tmp_path):
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="particles"):
        io.write_h5(tmp_path / "x.h5", [make_snapshot(rng, n=50), make_snapshot(rng, n=40)])
    with pytest.raises(ValueError, match="T="):
        io.write_h5(tmp_path / "x.h5", [make_snapshot(rng), make_snapshot(rng, temperature=0.5)])
    with pytest.raises(ValueError, match="positions_is is given for some"):
        io.write_h5(tmp_path / "x.h5", [make_snapshot(rng), make_snapshot(rng, with_is=False)])
    assert not (tmp_path / "x.h5").exists()


def test_h5_malformed_files_name_the_problem(tmp_path):
    rng = np.random.default_rng(3)
    path = io.write_h5(tmp_path / "d.h5", [make_snapshot(rng)])
    with h5py.File(path, "a") as f:
        del f["types"]
    with pytest.raises(ValueError, match=r"d\.h5: missing dataset 'types'"):
        io.read_h5(path)
    path = io.write_h5(tmp_path / "e.h5", [make_snapshot(rng)])
    with h5py.File(path, "a") as f:
        data = f["propensity"][()]
        del f["propensity"]
        f["propensity"] = data[:, :, :2]
    with pytest.raises(ValueError, match=r"e\.h5: dataset 'propensity' has shape"):
        io.read_h5(path)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not a glasslab snapshot file"):
        io.read_h5(other)
    with pytest.raises(FileNotFoundError):
        io.read_h5(tmp_path / "missing.h5")


def test_snapshot_validation():
    rng = np.random.default_rng(4)
    good = make_snapshot(rng)
    with pytest.raises(ValueError, match="ascending"):
        io.Snapshot(good.positions, good.types, good.box, 0.64, times=good.times[::-1], propensity=good.propensity)
    with pytest.raises(ValueError, match="propensity must have shape"):
        io.Snapshot(good.positions, good.types, good.box, 0.64, times=good.times, propensity=good.propensity[:10])
    with pytest.raises(ValueError, match="NaN"):
        io.Snapshot(good.positions * np.nan, good.types, good.box, 0.64)
    with pytest.raises(ValueError, match="together"):
        io.Snapshot(good.positions, good.types, good.box, 0.64, times=good.times)


# --------------------------------------------------------------------------- Bapst pickles

def write_bapst(path, rng, n=40, replicas=30, drop=None):
    time = np.geomspace(0.01, 3e4, 169)
    time_indices = np.array([20, 40, 60, 80, 100, 120, 140, 150, 160, 130])  # last one: the 1/e point
    positions = rng.uniform(0, 1, (n, 3)) * 8 + 8 * rng.integers(-2, 3, (n, 3))  # unwrapped
    targets = [positions[None] + rng.normal(scale=0.1 * (k + 1), size=(replicas, n, 3)) for k in range(10)]
    raw = {
        "positions": positions.astype(np.float32),
        "types": (rng.random(n) < 0.2).astype(np.int32),
        "box": np.full(3, 8.0, dtype=np.float32),
        "time": time,
        "time_indices": time_indices,
        "is_values": np.linspace(0.9, 0.3, 10),
        "trajectory_start_velocities": rng.normal(size=(replicas, n, 3)),
        "trajectory_target_positions": [t.astype(np.float32) for t in targets],
        "metadata": {"temperature": 0.44, "pressure": 2.9, "fluid": "kob_andersen"},
    }
    if drop:
        del raw[drop]
    with open(path, "wb") as fh:
        pickle.dump(raw, fh, protocol=2)
    return raw


def test_read_bapst_propensity_and_order(tmp_path):
    rng = np.random.default_rng(5)
    raw = write_bapst(tmp_path / "train_0000.pickle", rng)
    snap = io.read_bapst(tmp_path / "train_0000.pickle")
    times = raw["time"][raw["time_indices"]]
    order = np.argsort(times)
    assert np.allclose(snap.times, np.sort(times))
    pos = raw["positions"].astype(np.float64)
    expected = np.stack(
        [np.linalg.norm(raw["trajectory_target_positions"][k].astype(np.float64) - pos, axis=-1).mean(0) for k in order], axis=1
    )
    assert np.allclose(snap.propensity, expected)
    assert np.allclose(snap.meta["isf_values"], raw["is_values"][order])
    assert snap.temperature == 0.44 and snap.meta["bapst_fluid"] == "kob_andersen"
    assert snap.meta["num_replicas"] == 30
    assert io.sniff_format(tmp_path / "train_0000.pickle") == "bapst-pickle"
    assert len(io.read(tmp_path / "train_0000.pickle")) == 1


def test_read_bapst_errors(tmp_path):
    rng = np.random.default_rng(6)
    write_bapst(tmp_path / "a.pickle", rng, drop="time_indices")
    with pytest.raises(ValueError, match=r"a\.pickle: missing key\(s\) \['time_indices'\]"):
        io.read_bapst(tmp_path / "a.pickle")
    raw = write_bapst(tmp_path / "b.pickle", rng)
    raw["trajectory_target_positions"][3] = raw["trajectory_target_positions"][3][:, :10]
    with open(tmp_path / "b.pickle", "wb") as fh:
        pickle.dump(raw, fh)
    with pytest.raises(ValueError, match=r"b\.pickle: trajectory_target_positions\[3\] has shape"):
        io.read_bapst(tmp_path / "b.pickle")
    (tmp_path / "c.pickle").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="not a readable pickle"):
        io.read_bapst(tmp_path / "c.pickle")


# --------------------------------------------------------------------------- GlassBench npz

def write_glassbench(path, rng, n=64, k=10, drop=None):
    arrays = {
        "types": (rng.random(n) < 0.2).astype(np.int64),
        "initial_positions": rng.uniform(0, io.GLASSBENCH_BOX, (n, 3)),
        "initial_positions_inherent": rng.uniform(0, io.GLASSBENCH_BOX, (n, 3)),
        "md_prop": rng.random((k, n)),
        "bb_prop": rng.random((k, n)),
    }
    if drop:
        del arrays[drop]
    np.savez(path, **arrays)
    return arrays


def test_read_glassbench(tmp_path):
    rng = np.random.default_rng(7)
    arrays = write_glassbench(tmp_path / "cnf-0.npz", rng)
    snap = io.read_glassbench(tmp_path / "cnf-0.npz", temperature=0.44)
    assert np.allclose(snap.propensity, arrays["md_prop"].T)
    assert np.allclose(snap.times, [0.13, 1.3, 13, 130, 412, 1300, 4120, 13000, 41200, 130000])
    assert np.allclose(snap.positions_is, arrays["initial_positions_inherent"])
    assert np.allclose(snap.meta["bb_propensity"], arrays["bb_prop"].T)
    assert np.allclose(snap.box, io.GLASSBENCH_BOX)
    assert io.sniff_format(tmp_path / "cnf-0.npz") == "glassbench-npz"
    with pytest.raises(ValueError, match="pass temperature|temperature="):
        io.read(tmp_path / "cnf-0.npz")
    assert io.read(tmp_path / "cnf-0.npz", temperature=0.44)[0].num_particles == 64
    # the derived table for another state point is ascending and built on its τ_α
    t064 = io.glassbench_times(0.64)
    assert np.all(np.diff(t064) > 0) and np.isclose(t064, 16.5).any()


def test_read_glassbench_errors(tmp_path):
    rng = np.random.default_rng(8)
    write_glassbench(tmp_path / "a.npz", rng, drop="md_prop")
    with pytest.raises(ValueError, match=r"a\.npz: missing key 'md_prop'"):
        io.read_glassbench(tmp_path / "a.npz", 0.44)
    write_glassbench(tmp_path / "b.npz", rng, k=7)
    with pytest.raises(ValueError, match=r"b\.npz: 'md_prop' has shape \(7, 64\), expected \(K=10, N=64\)"):
        io.read_glassbench(tmp_path / "b.npz", 0.44)
    with pytest.raises(ValueError, match="no GlassBench time table"):
        io.glassbench_times(0.9)
    (tmp_path / "c.txt").write_text("hello")
    with pytest.raises(ValueError, match="unknown file format"):
        io.read(tmp_path / "c.txt")


def test_glasslab_h5_dispatch_and_conversion(tmp_path):
    """A GlassBench file converted to glasslab HDF5 keeps everything, via read()."""
    rng = np.random.default_rng(9)
    write_glassbench(tmp_path / "g.npz", rng)
    snap = io.read(tmp_path / "g.npz", temperature=0.44)[0]
    io.write_h5(tmp_path / "g.h5", [snap])
    back = io.read(tmp_path / "g.h5")[0]
    assert np.allclose(back.meta["bb_propensity"], snap.meta["bb_propensity"])
    assert back.meta["source"] == "glassbench"
