import json

import numpy as np
import pytest
import torch

from conftest import random_liquid
from glasslab import io, metrics, pretrained, train
from glasslab.cli import main as cli
from glasslab.models import MODELS, build_model, count_parameters
from glasslab.neighbours import radius_graph

TINY_SE3 = {"lmax": 1, "channels": 2, "n_layers": 2, "dropout": 0.0}


def write_dataset(path, n_snap=9, n=120, seed=0, temperature=0.64, tau_alpha=None, times=(1.0, 10.0)):
    """Snapshots whose 'propensity' is a structural function (the coordination number), learnable."""
    rng = np.random.default_rng(seed)
    snaps = []
    for _ in range(n_snap):
        x, types, box = random_liquid(n, rng=rng)
        ei, _ = radius_graph(x, 2.0, box=box)  # the graph cutoff: one convolution can count these
        coord = np.bincount(ei[1], minlength=n).astype(float)
        signal = coord / coord.mean()  # std ~ 0.25
        y = np.stack([signal, 2.0 * signal + 0.1], axis=1)
        halves = np.stack([y + 0.02 * rng.normal(size=y.shape), y + 0.02 * rng.normal(size=y.shape)])
        snaps.append(io.Snapshot(x, types, box, temperature, times=list(times), propensity=halves.mean(0),
                                 propensity_halves=halves, meta={} if tau_alpha is None else {"tau_alpha": tau_alpha}))
    return io.write_h5(path, snaps)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_CACHE", str(tmp_path / "cache"))


def config(path, **kw):
    base = dict(name="tiny", data=[str(path)], model="se3", model_kwargs=TINY_SE3, epochs=4,
                split=(0.6, 0.2, 0.2), patience=50, seed=3)
    base.update(kw)
    return train.TrainConfig(**base)


def test_train_writes_a_complete_run_and_learns(tmp_path):
    data = write_dataset(tmp_path / "d.h5")
    results = train.train(config(data, epochs=12), out_root=tmp_path / "runs", progress=False)
    run = tmp_path / "runs" / "tiny"
    assert {p.name for p in run.iterdir()} >= {"config.json", "history.csv", "last.pt", "best.pt", "results.json"}
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 13 and history[0].startswith("epoch,lr,train_loss,val_loss,val_rho_0,val_rho_1")
    assert results["test"]["rho_pooled"][0] > 0.5  # a structural target is learnable
    assert results["split_sizes"] == {"train": 7, "val": 1, "test": 1}
    assert len(results["test"]["noise_ceiling"]) == 2 and results["test"]["noise_ceiling"][0] > 0.9
    assert results["model_parameters"] == count_parameters(build_model("se3", 2, **TINY_SE3))
    assert json.loads((run / "results.json").read_text())["epochs_run"] == 12
    assert {k: results[k] for k in ("kind", "protocol", "seed", "train_temperature", "test_temperature")} == \
        {"kind": "se3", "protocol": "trained", "seed": 3, "train_temperature": 0.64, "test_temperature": 0.64}
    assert list(results["data_sha256"]) == [str(data)] and results["wall_time_s"] > 0


def test_interrupted_training_resumes_to_the_same_result(tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "d.h5")
    reference = train.train(config(data, name="ref"), out_root=tmp_path, progress=False)

    calls = {"n": 0}
    original = train._write_history

    def interrupt_after_two_epochs(path, rows):
        original(path, rows)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "_write_history", interrupt_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        train.train(config(data, name="cut"), out_root=tmp_path, progress=False)
    monkeypatch.setattr(train, "_write_history", original)
    resumed = train.train(config(data, name="cut"), out_root=tmp_path, progress=False)
    assert resumed["epochs_run"] == reference["epochs_run"] == 4
    assert np.allclose(resumed["test"]["rho_pooled"], reference["test"]["rho_pooled"], atol=1e-6)
    # every logged number but the wall clock agrees (multithreaded CPU sums differ in the last bits)
    ref_hist = np.genfromtxt(tmp_path / "ref" / "history.csv", delimiter=",", names=True)
    cut_hist = np.genfromtxt(tmp_path / "cut" / "history.csv", delimiter=",", names=True)
    for column in ref_hist.dtype.names[:-1]:
        assert np.allclose(ref_hist[column], cut_hist[column], rtol=1e-4, atol=1e-6), column


def test_config_mismatch_early_stopping_and_bad_configs(tmp_path):
    data = write_dataset(tmp_path / "d.h5")
    train.train(config(data, epochs=1), out_root=tmp_path, progress=False)
    with pytest.raises(ValueError, match="another config"):
        train.train(config(data, epochs=2, lr=0.5), out_root=tmp_path, progress=False)
    extended = train.train(config(data, epochs=2), out_root=tmp_path, progress=False)   # a run may be extended
    assert extended["epochs_run"] == 2 and len(extended["history"]) == 2
    stopped = train.train(config(data, name="es", epochs=30, patience=1, lr=0.3), out_root=tmp_path, progress=False)
    assert stopped["epochs_run"] < 30 and stopped["stopped_by"].startswith("early stopping")
    with pytest.raises(ValueError, match="unknown model"):
        config(data, model="transformer")
    with pytest.raises(ValueError, match="init_from"):
        config(data, train_only_head=True)
    with pytest.raises(ValueError, match="out of range"):
        train.train(config(data, name="k", timescales=[5]), out_root=tmp_path, progress=False)


def test_monitor_val_rho_keeps_the_epoch_of_highest_validation_rho(tmp_path):
    data = write_dataset(tmp_path / "d.h5")
    with pytest.raises(ValueError, match="unknown monitor"):
        config(data, monitor="val_accuracy")
    res = train.train(config(data, name="rho", epochs=5, lr=5e-3, monitor="val_rho"), out_root=tmp_path, progress=False)
    mean_rho = [np.mean([row["val_rho_0"], row["val_rho_1"]]) for row in res["history"]]
    assert res["best_epoch"] == int(np.argmax(mean_rho)) + 1
    kept = torch.load(tmp_path / "rho" / "best.pt", weights_only=True)
    assert kept["epoch"] == res["best_epoch"] and kept["config"]["monitor"] == "val_rho"


def test_changing_the_monitor_on_resume_restarts_the_selection(tmp_path):
    data = write_dataset(tmp_path / "d.h5")
    train.train(config(data, name="m", epochs=3, monitor="val_loss"), out_root=tmp_path, progress=False)
    res = train.train(config(data, name="m", epochs=5, monitor="val_rho"), out_root=tmp_path, progress=False)
    assert res["epochs_run"] == 5 and res["best_epoch"] in (4, 5) and res["config"]["monitor"] == "val_rho"
    with pytest.raises(ValueError, match="another config"):
        train.train(config(data, name="m", epochs=6, lr=3e-3), out_root=tmp_path, progress=False)


def test_transfer_retrains_only_the_head_and_evaluate(tmp_path):
    source = write_dataset(tmp_path / "a.h5", seed=1)
    target = write_dataset(tmp_path / "b.h5", seed=2, temperature=0.8)
    train.train(config(source, name="src"), out_root=tmp_path, progress=False)
    ckpt = tmp_path / "src" / "best.pt"
    before = torch.load(ckpt, weights_only=True)["model"]
    out = train.train(config(target, name="head", init_from=str(ckpt), train_only_head=True, epochs=3),
                      out_root=tmp_path, progress=False)
    after = torch.load(tmp_path / "head" / "best.pt", weights_only=True)["model"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("head.") for k in changed)
    assert len(out["test"]["rho_pooled"]) == 2
    assert (out["protocol"], out["train_temperature"], out["test_temperature"]) == ("transfer", 0.64, 0.8)
    direct = train.evaluate(ckpt, target, device="cpu")
    assert (direct["protocol"], direct["train_temperature"], direct["test_temperature"]) == ("direct", 0.64, 0.8)
    assert direct["test"]["n_snapshots"] == 9 and len(direct["test"]["rho_over_ceiling"]) == 2
    assert direct["matched_by"] == "index" and direct["outputs"] == [0, 1]
    other = {**TINY_SE3, "channels": TINY_SE3.get("channels", 4) + 1}
    with pytest.raises(ValueError, match="give the config the checkpoint's model_kwargs"):
        train.train(config(target, name="mismatch", init_from=str(ckpt), train_only_head=True, model_kwargs=other),
                    out_root=tmp_path, progress=False)


def test_evaluate_matches_outputs_by_t_over_tau_alpha(tmp_path):
    source = write_dataset(tmp_path / "a.h5", seed=1, tau_alpha=5.0)  # labels at t / tau = 0.2, 2
    target = write_dataset(tmp_path / "b.h5", seed=2, temperature=0.8, tau_alpha=20.0)  # 0.05, 0.5
    train.train(config(source, name="src", epochs=1), out_root=tmp_path, progress=False)
    assert torch.load(tmp_path / "src" / "best.pt", weights_only=True)["tau_alpha"] == 5.0
    direct = train.evaluate(tmp_path / "src" / "best.pt", target, device="cpu")
    assert direct["matched_by"] == "t/tau_alpha" and direct["tau_alpha"] == {"model": 5.0, "data": 20.0}
    assert direct["outputs"] == [0, 0] and direct["output_times"] == [1.0, 1.0]
    same = train.evaluate(tmp_path / "src" / "best.pt", source, device="cpu")
    assert same["outputs"] == [0, 1]


def test_chunks_train_together_only_when_their_label_times_agree(tmp_path):
    a = write_dataset(tmp_path / "chunk_a.h5", n_snap=3, seed=1)
    write_dataset(tmp_path / "chunk_b.h5", n_snap=3, seed=2)
    splits = train.make_splits(config(tmp_path / "chunk_*.h5"))
    assert len(splits.train) + len(splits.val) + len(splits.test) == 6
    base = train.make_splits(config(a))
    more = train.make_splits(config(a, extra_train_data=str(tmp_path / "chunk_b.h5")))
    assert more.indices["test"] == base.indices["test"] and more.indices["val"] == base.indices["val"]
    assert len(more.train) == len(base.train) + 3 and more.indices["extra_train"] == 3
    assert all(torch.equal(g.pos, h.pos) for g, h in zip(more.train, base.train))
    assert len(train.make_splits(config(a, extra_train_data=[str(tmp_path / "chunk_b.h5")], train_snapshots=2)).train) == 2
    with pytest.raises(ValueError, match="train_snapshots = 9 but the training set has"):
        train.make_splits(config(a, train_snapshots=9))
    other = write_dataset(tmp_path / "other.h5", n_snap=3, seed=3, times=(1.0, 12.0))
    with pytest.raises(ValueError, match=r"other\.h5: label times"):
        train.make_splits(config(a, extra_train_data=[str(other)]))
    with pytest.raises(ValueError, match=r"other\.h5: label times \[1\.0, 12\.0\] differ from those of .*chunk_a\.h5"):
        train.make_splits(config(a, data=[str(a), str(other)]))


def test_match_outputs():
    assert train.match_outputs([0.1, 1, 10], 1.0, [0.1, 1, 10], 1.0) == ([0, 1, 2], "t/tau_alpha")
    assert train.match_outputs([0.1, 1, 10], 1.0, [0.1, 1, 10], 10.0) == ([0, 0, 1], "t/tau_alpha")
    assert train.match_outputs([0.1, 1], None, [5, 6], 2.0) == ([0, 1], "index")
    with pytest.raises(ValueError, match="cannot be matched"):
        train.match_outputs([0.1, 1, 10], None, [0.1, 1], None)


def test_shipped_data_entries_resolve_from_any_folder(tmp_path, monkeypatch):
    (tmp_path / "shipped").mkdir()
    (tmp_path / "shipped" / "x.h5").write_bytes(b"")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("GLASSLAB_DATA", str(tmp_path / "shipped"))
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert train.expand_paths(["data/x.h5"]) == [str(tmp_path / "shipped" / "x.h5")]
    assert train.expand_paths(["data/*.h5"]) == [str(tmp_path / "shipped" / "x.h5")]
    assert train.expand_paths(["other/x.h5"]) == ["other/x.h5"]


def test_bapst_trains_with_cube_augmentation_and_clipping_by_default(tmp_path):
    data = write_dataset(tmp_path / "d.h5", n_snap=5)
    res = train.train(config(data, name="bapst", model="bapst", model_kwargs={"hidden": 8, "n_steps": 1}, epochs=2),
                      out_root=tmp_path, progress=False)
    assert res["config"]["rotation_augmentation"] == "cube" and res["config"]["grad_clip"] == 1.0
    assert res["config"]["model_kwargs"]["readout_norm"] is True
    assert res["epochs_run"] == 2


def test_recipes_fill_unset_fields_and_explicit_values_win():
    paper = train.TrainConfig(name="p", data=["x.h5"], recipe="paper", model_kwargs={"lmax": 1})
    assert (paper.lr, paper.model_kwargs["dropout"], paper.grad_clip) == (1e-3, 0.5, 0.0)
    default = train.TrainConfig(name="d", data=["x.h5"], model_kwargs={"lmax": 1})
    assert default.recipe == "glasslab" and default.model_kwargs == {"lmax": 1, "dropout": 0.0}
    assert (default.lr, default.schedule, default.monitor) == (1e-2, "cosine", "val_rho")
    mine = train.TrainConfig(name="m", data=["x.h5"], recipe="paper", lr=2e-3, model_kwargs={"dropout": 0.1})
    assert mine.lr == 2e-3 and mine.model_kwargs["dropout"] == 0.1 and mine.weight_decay == 1e-7
    # a config written out holds explicit values only, and reads back as the same run
    again = train.TrainConfig(**mine.to_dict())
    assert again.to_dict() == mine.to_dict()
    with pytest.raises(ValueError, match="unknown recipe"):
        train.TrainConfig(name="x", data=["x.h5"], recipe="fast")


def test_collapse_detector():
    flat = [{"train_loss": 1.0, "val_spread": 0.01}] * 5
    assert "collapsed" in train.collapse_message(flat)
    assert train.collapse_message(flat[:4]) is None  # too early to tell
    assert train.collapse_message([{"train_loss": 0.8, "val_spread": 0.4}] * 5) is None
    slow_start = flat[:4] + [{"train_loss": 0.96, "val_spread": 0.06}]
    assert train.collapse_message(slow_start) is None
    preds = [np.array([[1.0], [1.0], [2.0]])]
    assert train.prediction_spread([np.full((3, 1), 0.3)], [np.ones(3, bool)], [1.0]) == 0.0
    assert train.prediction_spread(preds, [np.array([True, True, False])], [1.0]) == 0.0


def test_publish_and_load_pretrained(tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "d.h5")
    train.train(config(data, epochs=2), out_root=tmp_path / "runs", progress=False)
    monkeypatch.setenv("GLASSLAB_DATA", str(tmp_path / "shipped"))
    assert pretrained.available() == []
    assert cli(["publish", str(tmp_path / "runs" / "tiny"), "--name", "tiny_se3"]) == 0
    assert pretrained.available() == ["tiny_se3"]
    assert cli(["publish", str(tmp_path / "runs")]) == 2      # not a finished run: one line, exit code 2
    model = pretrained.load("tiny_se3")
    assert not model.training and model.metadata["times"] == [1.0, 10.0]
    assert model.metadata["results"]["name"] == "tiny"
    with pytest.raises(ValueError, match="no pretrained model"):
        pretrained.load("missing")

    # predictions on the run's own test snapshots reproduce its reported rho; a ridge's are stored
    preds, snaps = pretrained.test_predictions("tiny_se3")
    reported = model.metadata["results"]["test"]["rho_pooled"]
    rho = metrics.correlation(preds, [s.propensity for s in snaps], [s.types == 0 for s in snaps]).pooled
    assert len(snaps) == model.metadata["results"]["split_sizes"]["test"] and np.allclose(rho, reported, atol=1e-6)
    from glasslab.ridge import ridge_experiment

    ridge = ridge_experiment(data, l_values=[2], n_levels=0, n_bootstrap=20, progress=False,
                             predictions_out=tmp_path / "shipped" / "results" / "ridge_tiny_test_predictions.npz")
    (tmp_path / "shipped" / "results" / "ridge_tiny.json").write_text(json.dumps(ridge))
    ridge_preds, ridge_snaps = pretrained.test_predictions("ridge_tiny")
    rho = metrics.correlation(ridge_preds, [s.propensity for s in ridge_snaps], [s.types == 0 for s in ridge_snaps]).pooled
    assert np.allclose(rho, ridge["test"]["rho_pooled"], atol=1e-6)


def test_cli_train_and_evaluate(tmp_path, capsys):
    data = write_dataset(tmp_path / "d.h5", n_snap=5)
    cfg = tmp_path / "cli_run.toml"
    cfg.write_text(f'data = ["{data}"]\nmodel = "se3"\nepochs = 1\nsplit = [0.6, 0.2, 0.2]\n'
                   '[model_kwargs]\nlmax = 0\nchannels = 2\nn_layers = 1\n')
    assert cli(["train", str(cfg), "--out", str(tmp_path / "runs"), "--device", "cpu"]) == 0
    assert "test rho per timescale" in capsys.readouterr().out
    assert cli(["evaluate", str(tmp_path / "runs" / "cli_run" / "best.pt"), str(data), "--device", "cpu",
                "--out", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["test"]["n_snapshots"] == 5
    bad = tmp_path / "bad.toml"
    bad.write_text('data = ["x.h5"]\nmodle = "se3"\n')
    assert cli(["train", str(bad)]) == 2
    assert "unknown config keys" in capsys.readouterr().err


def test_every_shipped_config_is_a_valid_train_config():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.toml"))
    assert len(configs) >= 10
    for path in configs:
        cfg = train.TrainConfig.from_file(path)
        assert cfg.model in MODELS and cfg.data, path
        if cfg.model == "se3":
            assert set(cfg.model_kwargs) <= {"lmax", "channels", "n_layers", "dropout", "node_scalars"}, path
