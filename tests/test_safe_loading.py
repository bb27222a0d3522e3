"""No code runs from a data file or a checkpoint: crafted pickles and torch files are refused.

Every payload here would create a marker file if it ran; each test asserts the refusal *and*
that the marker is absent.
"""

import os
import pickle

import numpy as np
import pytest
import torch

from glasslab import _checks, io, train
from glasslab.cli import main as cli


class _Payload:
    """Unpickling this calls os.system(...) (or any callable): it must never happen."""

    def __init__(self, marker, func=os.system):
        self.marker, self.func = str(marker), func

    def __reduce__(self):
        if self.func is os.system:
            return (os.system, (f"touch {self.marker}",))
        return (self.func, (self.marker, "w"))  # e.g. builtins.open(marker, "w") creates the file


def _bapst_like(rng, n=20):
    positions = rng.uniform(0, 6, (n, 3))
    return {
        "positions": positions,
        "types": (rng.random(n) < 0.2).astype(np.int32),
        "box": np.full(3, 6.0),
        "time": np.geomspace(0.1, 100, 12),
        "time_indices": np.array([2, 5, 9]),
        "is_values": np.array([0.9, 0.6, 0.36]),
        "trajectory_target_positions": [positions[None] + rng.normal(0, 0.1 * (k + 1), (4, n, 3)) for k in range(3)],
        "metadata": {"temperature": 0.44, "fluid": b"kob_andersen"},
    }


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_bapst_pickles_of_every_protocol_still_read(tmp_path, protocol):
    raw = _bapst_like(np.random.default_rng(protocol))
    raw["metadata"]["pressure"] = np.float32(2.9)  # a numpy scalar
    path = tmp_path / "c.pickle"
    path.write_bytes(pickle.dumps(raw, protocol=protocol))
    snap = io.read(path)[0]
    assert snap.num_particles == 20 and snap.num_times == 3 and snap.meta["bapst_fluid"] == "kob_andersen"


@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("func", [os.system, open, eval], ids=["os.system", "open", "eval"])
def test_crafted_pickle_is_refused_without_running_code(tmp_path, protocol, func):
    marker = tmp_path / "pwned"
    raw = _bapst_like(np.random.default_rng(0))
    raw["metadata"] = {"temperature": _Payload(marker, func) if func is not eval else 0.44}
    if func is eval:
        raw["metadata"]["temperature"] = _EvalPayload(marker)
    path = tmp_path / "train_0000.pickle"
    path.write_bytes(pickle.dumps(raw, protocol=protocol))
    with pytest.raises(io.UnsafeFileError, match=r"train_0000\.pickle: refused to unpickle"):
        io.read(path)
    assert not marker.exists()


class _EvalPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w')",))


@pytest.mark.parametrize("name", ["data.h5", "data.npz", "data", "data.pt"])
def test_a_pickle_under_another_name_is_never_unpickled(tmp_path, name):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"x": _Payload(marker)}, protocol=2))
    with pytest.raises(ValueError, match=f"{name}: this file is a pickle but is named"):
        io.read(path)
    with pytest.raises(ValueError, match="only files named"):
        io.read_bapst(path)
    assert not marker.exists()


def test_planted_pickle_in_a_data_glob_is_refused_by_the_cli(tmp_path, capsys):
    from bad_input_helpers import write_snapshots

    marker = tmp_path / "pwned"
    folder = tmp_path / "data"
    write_snapshots(folder / "a.h5")
    (folder / "b.h5").write_bytes(pickle.dumps({"x": _Payload(marker)}, protocol=4))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'data = ["{folder}/*.h5"]\nmodel = "bapst"\nepochs = 1\nsplit = [0.6, 0.2, 0.2]\n')
    assert cli(["train", str(cfg), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert "b.h5: this file is a pickle" in err and len(err.splitlines()) == 1
    assert not marker.exists()
    assert cli(["info", str(folder / "b.h5")]) == 2
    assert not marker.exists()


def test_crafted_torch_files_are_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    crafted = tmp_path / "model.pt"
    torch.save({"model": _Payload(marker), "config": {"model": "se3"}}, crafted)
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"model": _Payload(marker)}, protocol=2))
    for path in (crafted, legacy):
        with pytest.raises(io.UnsafeFileError, match=f"{path.name}: refused"):
            train.load_checkpoint(path)
        with pytest.raises(io.UnsafeFileError):
            _checks.load_torch_file(path)
    from bad_input_helpers import write_snapshots

    data = write_snapshots(tmp_path / "d.h5")
    assert cli(["evaluate", str(crafted), str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.pt: refused" in err and len(err.splitlines()) == 1
    assert not marker.exists()


def test_crafted_last_pt_is_refused_on_resume(tmp_path, snapshot_file):
    """A planted runs/<name>/last.pt never runs code: it is loaded with weights_only=True."""
    from bad_input_helpers import tiny_config

    marker = tmp_path / "pwned"
    data = snapshot_file
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    torch.save({"model": {}, "state": _Payload(marker)}, run / "last.pt")
    with pytest.raises(io.UnsafeFileError, match=r"last\.pt: refused.*delete"):
        train.train(tiny_config(data), out_root=tmp_path / "runs", progress=False)
    assert not marker.exists()
    assert not (run / "config.json").exists()  # a refused start does not claim the name


def test_resume_state_loads_with_weights_only(tmp_path, snapshot_file):
    """What train() writes to last.pt is tensors and plain containers: it reads back with weights_only."""
    from bad_input_helpers import tiny_config

    data = snapshot_file
    # random labels: one epoch may leave a tiny network's predictions constant (no finite rho), so select by loss
    train.train(tiny_config(data, epochs=1, monitor="val_loss"), out_root=tmp_path / "runs", progress=False)
    state = torch.load(tmp_path / "runs" / "tiny" / "last.pt", weights_only=True)
    assert state["state"]["epoch"] == 1
    assert (tmp_path / "runs" / "tiny" / "config.json").exists()
