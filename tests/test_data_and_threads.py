"""glasslab.data (shipped files outside a clone, with pooch and SHA-256) and glasslab.threads."""

import functools
import http.server
import re
import shutil
import threading
from pathlib import Path

import pytest

import glasslab
from glasslab import data, paths, provenance, threads

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


def test_registry_matches_the_shipped_files_and_data_readme():
    reg = data.registry()
    on_disk = sorted(p.relative_to(DATA).as_posix() for pattern in data.PATTERNS for p in DATA.glob(pattern))
    assert sorted(reg) == on_disk, "run `python -m glasslab.data` to update glasslab/registry.txt"
    for name, digest in reg.items():
        assert provenance.sha256(DATA / name) == digest, f"{name} changed: run `python -m glasslab.data`"
    readme = (DATA / "README.md").read_text()
    for name in (n for n in reg if n.endswith(".h5")):
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}`"))
        prefix = re.findall(r"`([0-9a-f]{16})…`", row)[0]
        assert reg[name].startswith(prefix), name


@pytest.fixture
def server(tmp_path):
    """A local HTTP server holding a copy of two shipped files (the tests have no internet)."""
    root = tmp_path / "served"
    for name in ("ka3d_relaxation.h5", "results/ka064_bapst_s0.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DATA / name, root / name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture
def outside_a_clone(tmp_path, monkeypatch):
    """As after `pip install glasslab` in another folder: no clone data, no ./data, empty cache."""
    monkeypatch.delenv("GLASSLAB_DATA", raising=False)
    monkeypatch.setenv("GLASSLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(paths, "_CLONE_DATA", tmp_path / "no-clone" / "data")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_fetch_downloads_checks_and_caches(server, outside_a_clone, monkeypatch):
    root, url = server
    monkeypatch.setenv("GLASSLAB_DATA_URL", url)
    path = data.fetch("ka3d_relaxation.h5")
    assert path == data.download_dir() / "ka3d_relaxation.h5" and path.read_bytes() == (DATA / path.name).read_bytes()
    assert data.fetch("ka064_bapst_s0.json") == data.download_dir() / "results" / "ka064_bapst_s0.json"
    (root / "ka3d_relaxation.h5").unlink()          # cached: no second download
    assert data.fetch("data/ka3d_relaxation.h5") == path
    with pytest.raises(ValueError, match="not a glasslab data file"):
        data.fetch("passwords.txt")


def test_fetch_refuses_a_file_with_the_wrong_sha256(server, outside_a_clone, monkeypatch):
    root, url = server
    (root / "ka3d_relaxation.h5").write_bytes(b"not the shipped file")
    monkeypatch.setenv("GLASSLAB_DATA_URL", url)
    with pytest.raises(ValueError, match="(?i)hash"):
        data.fetch("ka3d_relaxation.h5")
    assert not (data.download_dir() / "ka3d_relaxation.h5").exists()


def test_data_dir_lookup_order(outside_a_clone, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="fetch_all"):
        glasslab.data_dir(download=False)
    local = outside_a_clone / "data"
    (local / "checkpoints").mkdir(parents=True)
    assert glasslab.data_dir() == local                         # ./data of the working folder
    monkeypatch.setenv("GLASSLAB_DATA", str(tmp_path / "elsewhere"))
    assert glasslab.data_dir() == tmp_path / "elsewhere"        # GLASSLAB_DATA first
    monkeypatch.delenv("GLASSLAB_DATA")
    shutil.rmtree(local)
    cached = data.download_dir()
    for name in data.registry():                                # a complete download cache
        (cached / name).parent.mkdir(parents=True, exist_ok=True)
        (cached / name).touch()
    assert glasslab.data_dir() == cached
    assert "ka064_se3_lmax1_s0" in glasslab.pretrained.available()


def test_the_clone_data_is_found_and_fetch_returns_it(monkeypatch):
    monkeypatch.delenv("GLASSLAB_DATA", raising=False)
    assert glasslab.data_dir() == DATA
    assert data.fetch("ka3d_T0.64.h5") == DATA / "ka3d_T0.64.h5"


@pytest.mark.parametrize("environ, cores, load, expected", [
    ({}, 2, 0.0, 1),                                   # few cores: one thread
    ({}, 1, None, 1),
    ({}, 16, 0.2, None),                               # idle big machine: PyTorch's default
    ({}, 16, 5.3, 10),                                 # busy: the free cores
    ({}, 4, 9.0, 1),
    ({"OMP_NUM_THREADS": "3"}, 2, 0.0, 3),             # the user's OMP_NUM_THREADS is kept
    ({"GLASSLAB_THREADS": "4", "OMP_NUM_THREADS": "3"}, 2, 0.0, 4),
    ({"GLASSLAB_THREADS": "auto"}, 2, 3.0, None),
])
def test_thread_policy(environ, cores, load, expected):
    policy = threads.decide(environ, cores=cores, load=load)
    assert policy.threads == expected
    assert "GLASSLAB_THREADS" in str(policy)


def test_thread_policy_errors_and_configure():
    with pytest.raises(ValueError, match="GLASSLAB_THREADS"):
        threads.decide({"GLASSLAB_THREADS": "many"})
    with pytest.raises(ValueError, match="GLASSLAB_THREADS"):
        threads.decide({"GLASSLAB_THREADS": "0"})
    import torch

    before = torch.get_num_threads()
    try:
        env = {"GLASSLAB_THREADS": "1"}
        policy = threads.configure(environ=env)
        assert policy.threads == 1 and torch.get_num_threads() == 1 and env["OMP_WAIT_POLICY"] == "passive"
        assert threads.current() is policy
    finally:
        torch.set_num_threads(before)


def test_import_applies_the_policy_before_torch_in_a_fresh_process():
    import subprocess
    import sys

    code = ("import os, glasslab, torch; "
            "print(os.environ.get('OMP_NUM_THREADS'), torch.get_num_threads(), glasslab.threads.current().threads)")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_NUM_THREADS", "GLASSLAB_THREADS")}
    env["GLASSLAB_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "1", "1"]
