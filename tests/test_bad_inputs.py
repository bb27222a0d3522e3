"""A battery of bad inputs, as a careless or hostile user would give them.

Each case asserts the exception type or the CLI's exit code 2 *and* that the one-line message
names the culprit (the file, the snapshot, the argument or the config key). Fast: no case
trains more than one tiny epoch.
"""

import json
import os
import pickle
import stat
import time

import h5py
import numpy as np
import pytest
import torch

from bad_input_helpers import snapshots, tiny_config, write_snapshots
from glasslab import _atomic, dataset, io, pretrained, simulate, train
from glasslab.cli import main as cli


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def data(snapshot_file):
    """The shared six-snapshot file (conftest.snapshot_file)."""
    return snapshot_file


def run_cli(args, capsys):
    """Exit code and the stderr of one CLI call; an error must be exactly one line."""
    code = cli([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    if code != 0:
        assert len(err.splitlines()) == 1, err
        assert "Traceback" not in err
    return code, err


# --------------------------------------------------------------------------- raw HDF5 writers

def write_raw_h5(path, **override):
    """A glasslab .h5 written field by field, bypassing Snapshot validation (to plant bad values)."""
    snaps = snapshots(n_snap=3)
    fields = {
        "positions": np.stack([s.positions for s in snaps]),
        "types": np.stack([s.types for s in snaps]).astype(np.int8),
        "box": np.stack([s.box for s in snaps]),
        "times": snaps[0].times,
        "propensity": np.stack([s.propensity for s in snaps]).astype(np.float32),
    }
    fields.update(override)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = io.FORMAT_NAME
        f.attrs["format_version"] = 1
        f.attrs["temperature"] = 0.64
        f.attrs["meta"] = "{}"
        for key, value in fields.items():
            if value is not None:
                f.create_dataset(key, data=value)
    return path


def _with(key, index, value):
    arr = {
        "positions": np.stack([s.positions for s in snapshots(n_snap=3)]),
        "propensity": np.stack([s.propensity for s in snapshots(n_snap=3)]),
        "box": np.stack([s.box for s in snapshots(n_snap=3)]),
    }[key].copy()
    arr[index] = value
    return {key: arr}


@pytest.mark.parametrize("override, message", [
    (_with("propensity", (1, 5, 0), np.nan), r"snapshot 1: propensity holds NaN or inf \(particle 5\)"),
    (_with("propensity", (2, 0, 1), np.inf), r"snapshot 2: propensity holds NaN"),
    (_with("positions", (0, 7, 2), np.nan), r"snapshot 0: positions hold NaN or inf \(particle 7\)"),
    (_with("box", (1, 0), -3.0), r"snapshot 1: box must be three positive"),
    (_with("box", (0, 2), np.inf), r"snapshot 0: box must be three positive"),
    ({"times": np.array([10.0, 1.0])}, r"snapshot 0: times must be finite and strictly ascending"),
    ({"times": np.array([1.0, np.nan])}, r"snapshot 0: times must be finite"),
    ({"types": None}, r"missing dataset 'types'"),
    ({"box": np.ones((3, 2))}, r"dataset 'box' has shape"),
])
def test_h5_bad_values_are_refused_naming_file_and_snapshot(tmp_path, override, message):
    path = write_raw_h5(tmp_path / "bad.h5", **override)
    with pytest.raises(ValueError, match=r"bad\.h5: " + message):
        io.read(path)


def test_h5_bad_meta_json_and_missing_temperature(tmp_path):
    path = write_raw_h5(tmp_path / "m.h5")
    with h5py.File(path, "a") as f:
        f.attrs["meta"] = "{not json"
    with pytest.raises(ValueError, match=r"m\.h5: attribute 'meta' is not valid JSON"):
        io.read(path)
    with h5py.File(path, "a") as f:
        f.attrs["meta"] = "{}"
        del f.attrs["temperature"]
    with pytest.raises(ValueError, match=r"m\.h5: missing attribute 'temperature'"):
        io.read(path)


def _corrupt_first_chunk(path, dataset_name="positions"):
    with h5py.File(path, "r") as f:
        info = f[dataset_name].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 4)
        fh.write(os.urandom(min(64, info.size - 4)))


def test_corrupted_hdf5_chunk_is_reported_by_name(tmp_path, capsys):
    path = write_snapshots(tmp_path / "c.h5")
    _corrupt_first_chunk(path)
    with pytest.raises(ValueError, match=r"c\.h5: corrupted HDF5 data .*regenerate or re-download"):
        io.read(path)
    code, err = run_cli(["info", path], capsys)
    assert code == 2 and "c.h5: corrupted HDF5 data" in err


def test_truncated_hdf5_is_reported_by_name(tmp_path):
    path = write_snapshots(tmp_path / "t.h5")
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ValueError, match=r"t\.h5: (not a readable HDF5 file|corrupted HDF5)"):
        io.read(path)


# --------------------------------------------------------------------------- format detection

@pytest.mark.parametrize("name, content, exc, message", [
    ("empty.h5", b"", ValueError, "empty.h5: empty file"),
    ("notes.h5", b"hello world", ValueError, "notes.h5: unknown file format"),
    ("arr.npz", b"\x93NUMPY\x01\x00", ValueError, "arr.npz: unknown file format"),
    ("trunc.pickle", b"\x80\x04\x95", ValueError, "trunc.pickle: not a readable pickle"),
    ("text.pkl", b"not a pickle at all", ValueError, "text.pkl: not a readable pickle"),
])
def test_unreadable_files_name_themselves(tmp_path, name, content, exc, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(exc, match=message):
        io.read(path)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="is a directory, not a data file"):
        io.read(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope\.h5: no such file"):
        io.read(tmp_path / "nope.h5")
    with pytest.raises(ValueError, match="is a directory"):
        dataset.load_graphs(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope\.h5: no such file"):
        dataset.load_graphs(tmp_path / "nope.h5")


# --------------------------------------------------------------------------- Bapst pickles

def _bapst(rng, n=20):
    positions = rng.uniform(0, 6, (n, 3))
    return {
        "positions": positions, "types": (rng.random(n) < 0.2).astype(np.int32), "box": np.full(3, 6.0),
        "time": np.geomspace(0.1, 100, 12), "time_indices": np.array([2, 5, 9]),
        "is_values": np.array([0.9, 0.6, 0.36]),
        "trajectory_target_positions": [positions[None] + rng.normal(0, 0.1, (4, n, 3)) for _ in range(3)],
        "metadata": {"temperature": 0.44},
    }


def _bapst_bad(change):
    raw = _bapst(np.random.default_rng(0))
    change(raw)
    return raw


@pytest.mark.parametrize("change, message", [
    (lambda r: r["positions"].__setitem__((3, 1), np.nan), r"positions hold NaN or inf \(particle 3\)"),
    (lambda r: r["trajectory_target_positions"][1].__setitem__((0, 2, 0), np.inf),
     r"trajectory_target_positions\[1\] holds NaN"),
    (lambda r: r["time"].__setitem__(5, np.nan), "'time' holds NaN"),
    (lambda r: r["metadata"].__setitem__("temperature", "hot"), r"metadata\['temperature'\] is not a number"),
    (lambda r: r["metadata"].__setitem__("temperature", -1.0), "temperature must be a positive number"),
    (lambda r: r.__setitem__("types", r["types"] + 0.5), "types must be non-negative integers"),
    (lambda r: r.__setitem__("positions", "abc"), "malformed Bapst pickle|'positions' has shape"),
    (lambda r: r.__setitem__("trajectory_target_positions", 5), "malformed Bapst pickle"),
    (lambda r: r.__setitem__("box", np.array([6.0, 6.0])), "box must be three positive"),
    (lambda r: r.__setitem__("metadata", [1, 2]), "'metadata' must be a dict"),
])
def test_bapst_bad_values_are_refused_naming_the_file(tmp_path, change, message):
    path = tmp_path / "cfg_7.pickle"
    path.write_bytes(pickle.dumps(_bapst_bad(change), protocol=2))
    with pytest.raises(ValueError, match=r"cfg_7\.pickle: .*" + message):
        io.read(path)


def test_bapst_not_a_dict(tmp_path):
    path = tmp_path / "l.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match=r"l\.pkl: expected a dict"):
        io.read(path)


# --------------------------------------------------------------------------- GlassBench

def _glassbench(path, **override):
    rng = np.random.default_rng(1)
    arrays = {"types": (rng.random(30) < 0.2).astype(np.int64), "initial_positions": rng.uniform(0, 15, (30, 3)),
              "md_prop": rng.random((10, 30))}
    arrays.update(override)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("override, message", [
    ({"md_prop": np.full((10, 30), np.nan)}, r"propensity holds NaN"),
    ({"initial_positions": np.full((30, 3), np.inf)}, r"positions hold NaN"),
    ({"md_prop": np.array([None] * 300, dtype=object).reshape(10, 30)}, r"(malformed|corrupted|not a readable)"),
    ({"bb_prop": np.full((10, 30), np.nan)}, r"'bb_prop' holds NaN"),
])
def test_glassbench_bad_values(tmp_path, override, message):
    path = _glassbench(tmp_path / "cnf.npz", **override)
    with pytest.raises(ValueError, match=r"cnf\.npz: .*" + message):
        io.read(path, temperature=0.44)


def test_glassbench_truncated_and_bad_temperature(tmp_path):
    path = _glassbench(tmp_path / "cnf.npz")
    with pytest.raises(ValueError, match=r"cnf\.npz: temperature must be positive"):
        io.read_glassbench(path, temperature=-0.44)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cnf\.npz: "):
        io.read(path, temperature=0.44)


# --------------------------------------------------------------------------- graph cache

def test_truncated_or_garbage_graph_cache_is_rebuilt(tmp_path, data):
    cache = tmp_path / "gc"
    graphs = dataset.load_graphs(data, cache_dir=cache, progress=False)
    (cache_file,) = list((cache / "graphs").glob("*.pt"))
    for bad in (cache_file.read_bytes()[:500], b"garbage", b""):
        cache_file.write_bytes(bad)
        with pytest.warns(UserWarning, match="unusable graph cache.*rebuilding"):
            again = dataset.load_graphs(data, cache_dir=cache, progress=False)
        assert len(again) == len(graphs) and torch.equal(again[0].y, graphs[0].y)
        assert cache_file.stat().st_size > 1000  # rewritten


def test_stale_graph_cache_with_other_settings_or_nan_is_rebuilt(tmp_path, data):
    cache = tmp_path / "gc"
    dataset.load_graphs(data, cache_dir=cache, progress=False)
    (cache_file,) = list((cache / "graphs").glob("*.pt"))
    stored = torch.load(cache_file, weights_only=True)
    stored["graphs"][0]["y"][0, 0] = float("nan")
    torch.save(stored, cache_file)
    with pytest.warns(UserWarning, match="NaN"):
        graphs = dataset.load_graphs(data, cache_dir=cache, progress=False)
    assert torch.isfinite(graphs[0].y).all()
    stored["settings"]["version"] = -1
    torch.save(stored, cache_file)
    with pytest.warns(UserWarning, match="other settings"):
        dataset.load_graphs(data, cache_dir=cache, progress=False)


def test_graph_errors_name_file_and_snapshot(tmp_path, data):
    with pytest.raises(ValueError, match=r"snapshots\.h5: snapshot 0: "):
        dataset.load_graphs(data, cutoff=50.0, cache=False, progress=False)


# --------------------------------------------------------------------------- atomic writes

def test_leftover_part_files_of_killed_writers_are_removed(tmp_path):
    target = tmp_path / "out.json"
    dead_pid = 2**22 + 12345  # above pid_max on Linux: no such process
    dead = tmp_path / f".out.json.{dead_pid}.abcd1234.part"
    alive = tmp_path / f".out.json.{os.getppid()}.efgh5678.part"
    legacy_old = tmp_path / ".out.json.zz99yy88.part"
    legacy_new = tmp_path / ".out.json.qq11ww22.part"
    other = tmp_path / f".other.json.{dead_pid}.abcd1234.part"
    for p in (dead, alive, legacy_old, legacy_new, other):
        p.write_bytes(b"x" * 100)
    old = time.time() - 2 * _atomic.LEGACY_PART_AGE_S
    os.utime(legacy_old, (old, old))
    _atomic.write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert not dead.exists() and not legacy_old.exists()
    assert alive.exists() and legacy_new.exists() and other.exists()  # a live writer, a recent file, another target
    assert _atomic.remove_stale_parts(tmp_path) == [other]


def test_a_failed_write_leaves_no_part_file(tmp_path):
    with pytest.raises(RuntimeError):
        with _atomic.atomic_path(tmp_path / "x.h5") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        _atomic.write_json(tmp_path / "r.json", {})
        io.write_h5(tmp_path / "d.h5", snapshots(n_snap=1))
    finally:
        os.umask(old)
    for name in ("r.json", "d.h5"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


# --------------------------------------------------------------------------- TrainConfig

def _toml(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text('data = ["d.h5"]\nmodel = "bapst"\n' + text)
    return path


@pytest.mark.parametrize("text, message", [
    ('epochs = "ten"\n', "epochs must be an integer, got 'ten'"),
    ("epochs = 1.5\n", "epochs must be an integer, got 1.5"),
    ("epochs = 0\n", "epochs must be >= 1"),
    ("patience = -1\n", "patience must be >= 1"),
    ("max_minutes = -1\n", "max_minutes must be positive"),
    ('name = "../x"\n', "name '../x' must be a plain folder name"),
    ('name = "a/b"\n', "name 'a/b' must be a plain folder name"),
    ('name = ""\n', "name must be a non-empty string"),
    ("split = [1, 0, 0]\n", "split must give training and validation snapshots"),
    ("split = [0.5, 0.5, 0.5]\n", "split fractions must sum to 1"),
    ("split = [0.5, 0.5]\n", "split must be three fractions"),
    ("lr = -1e-3\n", "lr must be positive"),
    ("lr = nan\n", "lr must be finite"),
    ("betas = [1.0, 0.9]\n", "betas entry must be < 1"),
    ('timescales = "all"\n', "timescales must be a non-empty list"),
    ("timescales = [0, 0]\n", "timescales must not repeat"),
    ('positions = "inherant"\n', "did you mean 'inherent'"),
    ('node_scalars = ["epot"]\n', "did you mean 'epot_is'"),
    ('node_scalars = ["epot_is"]\n', "model_kwargs.node_scalars = 0 builds the model for 0: set model_kwargs.node_scalars = 1"),
    ("[model_kwargs]\nnode_scalars = 1\n", "node_scalars = [] reads 0 extra node input(s)"),
    ("cutoff = 0\n", "cutoff must be positive"),
    ("seed = -1\n", "seed must be >= 0"),
    ("batch_size = 0\n", "batch_size must be >= 1"),
    ('monitor = "val_acc"\n', "unknown monitor 'val_acc'"),
    ('train_only_head = "yes"\n', "train_only_head must be true or false"),
    ("epoch = 3\n", "unknown config keys: 'epoch' (did you mean 'epochs'?)"),
    ("[model_kwargs]\nhiden = 8\n", "unknown constructor keys: 'hiden' (did you mean 'hidden'?)"),
    ('[model_kwargs]\nhidden = "8"\n', "model_kwargs.hidden must be an integer"),
    ("[model_kwargs]\nout_dim = 3\n", "out_dim is set from the number of timescales"),
    ("weight_decay = -1\n", "weight_decay must be >= 0"),
    ("lr_milestones = [0]\n", "lr_milestones entry must be >= 1"),
])
def test_bad_config_values_name_file_and_key(tmp_path, capsys, text, message):
    path = _toml(tmp_path, text)
    with pytest.raises(ValueError) as info:
        train.TrainConfig.from_file(path)
    assert str(path) in str(info.value) and message in str(info.value)
    code, err = run_cli(["train", path, "--out", tmp_path / "runs"], capsys)
    assert code == 2 and message in err and not (tmp_path / "runs").exists()


def test_bad_config_files(tmp_path, capsys):
    bad_toml = tmp_path / "s.toml"
    bad_toml.write_text("epochs = = 3\n")
    bad_json = tmp_path / "s.json"
    bad_json.write_text("{\"epochs\": 3,,}")
    listed = tmp_path / "l.json"
    listed.write_text("[1, 2]")
    for path, message in ((bad_toml, "s.toml: not valid TOML"), (bad_json, "s.json: not valid JSON"),
                          (listed, "l.json: a config must be a table"),
                          (tmp_path / "none.toml", "none.toml: no such config file"),
                          (tmp_path, "is a directory, not a config file")):
        code, err = run_cli(["train", path], capsys)
        assert code == 2 and message in err, err


# --------------------------------------------------------------------------- train / evaluate / CLI

def test_cli_train_argument_errors(tmp_path, capsys, data):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'data = ["{data}"]\nmodel = "bapst"\nepochs = 1\n[model_kwargs]\nhidden = 4\nn_steps = 1\n')
    out = tmp_path / "runs"
    cases = [
        (["--device", "gpu"], "argument --device: unknown device 'gpu'"),
        (["--epochs", "0"], "argument --epochs: must be >= 1"),
        (["--max-minutes", "-1"], "argument --max-minutes: must be a positive number"),
        (["--patience", "0"], "argument --patience: must be >= 1"),
        (["--name", "../escape"], "argument --name '../escape' must be a plain folder name"),
        (["--seed", "-2"], "argument --seed: must be >= 0"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "CUDA is not available"))
    for extra, message in cases:
        code, err = run_cli(["train", cfg, "--out", out, *extra], capsys)
        assert code == 2 and message in err, (extra, err)
    assert not out.exists() and not (tmp_path / "escape").exists()
    file_out = tmp_path / "f"
    file_out.write_text("")
    code, err = run_cli(["train", cfg, "--out", file_out], capsys)
    assert code == 2 and "argument --out" in err


@pytest.mark.parametrize("entry, message", [
    ("{tmp}/folder", "folder: is a directory, not a data file"),
    ("{tmp}/none/*.h5", "no file matches"),
    ("{tmp}/missing.h5", "missing.h5: no such file"),
    ("{tmp}/unlabelled.h5", "unlabelled.h5: has no propensity labels"),
    ("{tmp}/nan.h5", "nan.h5: snapshot 1: propensity holds NaN"),
])
def test_cli_train_bad_data_entries(tmp_path, capsys, entry, message):
    (tmp_path / "folder").mkdir()
    io.write_h5(tmp_path / "unlabelled.h5", [io.Snapshot(s.positions, s.types, s.box, 0.64) for s in snapshots(3)])
    write_raw_h5(tmp_path / "nan.h5", **_with("propensity", (1, 0, 0), np.nan))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'data = ["{entry.format(tmp=tmp_path)}"]\nmodel = "bapst"\nepochs = 1\n')
    code, err = run_cli(["train", cfg, "--out", tmp_path / "runs"], capsys)
    assert code == 2 and message in err, err
    assert not (tmp_path / "runs" / "c" / "config.json").exists()  # a failed start does not claim the name


def test_failed_start_does_not_block_the_run_name(tmp_path, data):
    with pytest.raises(FileNotFoundError):
        train.train(tiny_config(tmp_path / "missing.h5"), out_root=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs" / "tiny" / "config.json").exists()
    cfg = tiny_config(data, lr=2e-3)  # corrected config, same name: accepted (it would train)
    assert train._same_run(cfg.to_dict(), cfg.to_dict())


def test_corrupted_last_pt_is_named_with_what_to_do(tmp_path, data):
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"resume state .*last\.pt: .*delete .*last\.pt to restart"):
        train.train(tiny_config(data), out_root=tmp_path / "runs", progress=False)
    torch.save({"model": {}, "state": {}}, run / "last.pt")  # readable, but not this run's
    with pytest.raises(ValueError, match=r"last\.pt: does not fit this run"):
        train.train(tiny_config(data), out_root=tmp_path / "runs", progress=False)


@pytest.mark.parametrize("content, message", [
    (b"just text", "not a PyTorch checkpoint: it is not a zip archive"),
    (b"", "not a PyTorch checkpoint: it is an empty file"),
    ("h5", "not a PyTorch checkpoint: it is an HDF5 file"),
    ("truncated", "not a readable PyTorch file, truncated or corrupted?"),
    ("foreign", "not a glasslab checkpoint"),
    ("mismatch", "its weights do not fit a"),
])
def test_bad_checkpoints_for_evaluate_and_init_from(tmp_path, capsys, data, content, message):
    ckpt = tmp_path / "model.pt"
    if content == "h5":
        ckpt.write_bytes(data.read_bytes())
    elif content == "truncated":
        torch.save({"model": {"w": torch.zeros(1000)}}, ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[:300])
    elif content == "foreign":
        torch.save(torch.nn.Linear(3, 2).state_dict(), ckpt)
    elif content == "mismatch":
        torch.save({"model": torch.nn.Linear(3, 2).state_dict(), "config": {"model": "bapst", "model_kwargs": {}},
                    "out_dim": 2, "times": [1.0, 10.0], "target_mean": torch.zeros(2),
                    "target_std": torch.ones(2)}, ckpt)
    else:
        ckpt.write_bytes(content)
    code, err = run_cli(["evaluate", ckpt, data], capsys)
    assert code == 2 and "model.pt" in err and message in err, err
    cfg = tmp_path / "t.toml"
    cfg.write_text(f'data = ["{data}"]\nmodel = "bapst"\ninit_from = "{ckpt}"\nepochs = 1\n')
    code, err = run_cli(["train", cfg, "--out", tmp_path / "runs"], capsys)
    assert code == 2 and "model.pt" in err and "init_from" in err, err


def test_cli_evaluate_ridge_info_arguments(tmp_path, capsys, data):
    nan = write_raw_h5(tmp_path / "nan.h5", **_with("propensity", (0, 3, 1), np.nan))
    for args, message in [
        (["evaluate", tmp_path / "none.pt", data], "none.pt: no such file"),
        (["evaluate", data, data, "--device", "tpu"], "argument --device: unknown device 'tpu'"),
        (["evaluate", data, data, "--out", tmp_path], "argument --out"),
        (["ridge", data, "--cv", "1"], "argument --cv: must be 0 (leave-one-out) or >= 2"),
        (["ridge", data, "--levels", "-1"], "argument --levels: must be >= 0"),
        (["ridge", nan], "nan.h5: snapshot 0: propensity holds NaN"),
        (["ridge", tmp_path], "is a directory"),
        (["info", tmp_path / "none.h5"], "none.h5: no such file"),
        (["info", nan], "nan.h5: snapshot 0: propensity holds NaN"),
        (["info", data, "--temperature", "-1"], "argument --temperature: must be a positive number"),
    ]:
        code, err = run_cli(args, capsys)
        assert code == 2 and message in err, (args, err)


def test_cli_simulate_and_relaxation_arguments_checked_before_any_md(tmp_path, capsys):
    for args, message in [
        (["simulate", "--temperature", "0.8", "--t-max-over-tau", "-1"], "argument --t-max-over-tau: must be a positive"),
        (["simulate", "--temperature", "0"], "argument --temperature: must be a positive number"),
        (["simulate", "--temperature", "nan"], "argument --temperature: must be a positive number"),
        (["simulate", "--temperature", "0.8", "--replicas", "3"], "argument --replicas: must be an even number"),
        (["simulate", "--temperature", "0.8", "--n-configs", "0"], "argument --n-configs: must be >= 1"),
        (["simulate", "--temperature", "0.8", "--workers", "0"], "argument --workers: must be >= 1"),
        (["simulate", "--temperature", "0.8", "--n-particles", "20"], "too small for the 2.5"),
        (["simulate", "--temperature", "0.8", "--out", tmp_path], "argument --out"),
        (["simulate", "--temperature", "0.8", "--configs", "3"], "argument --configs: expected a:b"),
        (["simulate", "--temperature", "0.8", "--n-configs", "4", "--configs", "2:6"], "argument --configs: 2:6 is not a range"),
        (["relaxation", "--temperatures", "1.0", "-1", "--out", tmp_path / "r.h5"],
         "argument --temperatures: must be a positive number"),
        (["relaxation", "--temperatures", "1.0", "--out", tmp_path / "r.h5", "--trajectory-temperature", "0.5"],
         "argument --trajectory-temperature: 0.5 is not one of"),
        (["relaxation", "--temperatures", "1.0", "--out", tmp_path], "argument --out"),
        (["relaxation", "--temperatures", "1.0", "--out", tmp_path / "r.h5", "--n-particles", "20"],
         "argument --n-particles"),
        (["relaxation", "--temperatures", "1.0", "--out", tmp_path / "r.h5", "--production-taus", "0"],
         "argument --production-taus"),
    ]:
        code, err = run_cli(args, capsys)
        assert code == 2 and message in err, (args, err)
    assert not list(tmp_path.glob("*.parts"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(t_max_over_tau=-1.0), "t_max_over_tau must be positive"),
    (dict(n_configs=2.5), "n_configs must be an integer"),
    (dict(equilibration_taus=float("inf")), "equilibration_taus must be finite"),
    (dict(workers=0), "workers must be >= 1"),
])
def test_simulation_config_checks_up_front(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate.SimulationConfig(temperature=0.8, **kwargs)


def test_relaxation_study_checks_up_front(tmp_path):
    with pytest.raises(ValueError, match="no temperatures"):
        simulate.relaxation_study([], tmp_path / "r.h5")
    with pytest.raises(ValueError, match="temperature must be positive"):
        simulate.relaxation_study([1.0, -1.0], tmp_path / "r.h5")
    with pytest.raises(ValueError, match="trajectory_temperature 0.5 is not one of"):
        simulate.relaxation_study([1.0], tmp_path / "r.h5", trajectory_temperature=0.5)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="unknown device"):
        cli(["train", str(tmp_path / "c.toml"), "--device", "gpu", "--debug"])
    with pytest.raises(ValueError, match="unknown device"):
        cli(["--debug", "train", str(tmp_path / "c.toml"), "--device", "gpu"])


def test_pretrained_unknown_name():
    with pytest.raises(ValueError, match="no pretrained model 'nope'; available"):
        pretrained.load("nope")


def test_snapshot_edge_values():
    s = snapshots(n_snap=1)[0]
    with pytest.raises(ValueError, match="times must be positive"):
        io.Snapshot(s.positions, s.types, s.box, 0.64, times=[-1.0, 1.0], propensity=s.propensity)
    with pytest.raises(ValueError, match="N >= 1"):
        io.Snapshot(np.zeros((0, 3)), np.zeros(0, int), s.box, 0.64)
    with pytest.raises(ValueError, match="temperature must be a positive number, got nan"):
        io.Snapshot(s.positions, s.types, s.box, float("nan"))


def test_diverged_training_is_reported_not_a_missing_best_pt(tmp_path, data):
    with pytest.raises(ValueError, match=r"tiny: no epoch gave a finite val_rho \(training diverged"):
        train.train(tiny_config(data, lr=1e8, epochs=1), out_root=tmp_path / "runs", progress=False)
