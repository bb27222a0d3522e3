"""Crash battery, run by hand (a few CPU minutes; not part of `make test`):

    python tests/crash_battery.py

kills `glasslab simulate`, `glasslab train` and `glasslab relaxation` with SIGKILL at random moments,
reruns the same command until it finishes, and checks that the result equals an uninterrupted run
and that no temporary file is left behind. Prints a JSON report; exits 1 if a check fails.
Measured on 2 shared cores (November 2026): 4, 5 and 1 kills; identical results; no stray file.
"""
import json, os, random, signal, subprocess, sys, tempfile
from pathlib import Path

import numpy as np

ROOT = Path(tempfile.mkdtemp(prefix="glasslab_crash_"))
PY = [sys.executable, "-m", "glasslab.cli"]
env = {**os.environ, "OMP_NUM_THREADS": "1", "GLASSLAB_CACHE": str(ROOT / "cache")}
rng = random.Random(0)

def run(args, kill_after=None):
    p = subprocess.Popen([*PY, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    if kill_after is None:
        return p.wait()
    try:
        p.wait(timeout=kill_after); return p.returncode
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL); p.wait(); return "killed"

def stray(folder):
    return [str(f) for f in Path(folder).rglob("*") if f.name.endswith(".part") or (f.name.startswith(".") and ".part" in f.name)]

report = {}
# --- simulate
sim = ["simulate", "--temperature", "1.2", "--n-configs", "3", "--replicas", "4", "--n-particles", "200", "--n-times", "5", "--seed", "5", "--workers", "1"]
run(sim + ["--out", "ref_sim.h5"])
kills = []
for _ in range(4):
    kills.append(run(sim + ["--out", "sim.h5"], kill_after=rng.uniform(2, 15)))
    if Path(ROOT / "sim.h5").exists(): break
run(sim + ["--out", "sim.h5"])
from glasslab import io
same = all(np.array_equal(a.propensity, b.propensity) and np.array_equal(a.positions_is, b.positions_is)
           for a, b in zip(io.read_h5(ROOT / "ref_sim.h5"), io.read_h5(ROOT / "sim.h5")))
report["simulate"] = {"kills": kills, "identical": bool(same), "stray": stray(ROOT)}
# --- train (on the simulated file)
cfg = {"name": "k", "data": [str(ROOT / "ref_sim.h5")], "model": "se3", "model_kwargs": {"lmax": 1, "n_layers": 2, "channels": 2},
       "epochs": 12, "split": [0.34, 0.33, 0.33], "seed": 1, "patience": 100}
(ROOT / "cfg.json").write_text(json.dumps(cfg))
run(["train", "cfg.json", "--out", "ref_runs"])
kills = []
for _ in range(5):
    kills.append(run(["train", "cfg.json", "--out", "runs"], kill_after=rng.uniform(1, 8)))
run(["train", "cfg.json", "--out", "runs"])
a = json.loads((ROOT / "ref_runs/k/results.json").read_text()); b = json.loads((ROOT / "runs/k/results.json").read_text())
report["train"] = {"kills": kills, "identical_history": [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]],
                   "identical_test": a["test"]["rho_pooled"] == b["test"]["rho_pooled"], "stray": stray(ROOT)}
# --- relaxation
rel = ["relaxation", "--temperatures", "2.0", "1.5", "1.2", "--n-particles", "200", "--production-taus", "8", "--seed", "2"]
run(rel + ["--out", "ref_rel.h5"])
kills = []
for _ in range(4):
    kills.append(run(rel + ["--out", "rel.h5"], kill_after=rng.uniform(3, 20)))
    if Path(ROOT / "rel.h5").exists(): break
run(rel + ["--out", "rel.h5"])
same = all(np.array_equal(x.curves["fs_a"], y.curves["fs_a"]) and np.array_equal(x.snapshots, y.snapshots)
           for x, y in zip(io.read_relaxation(ROOT / "ref_rel.h5"), io.read_relaxation(ROOT / "rel.h5")))
report["relaxation"] = {"kills": kills, "identical": bool(same), "stray": stray(ROOT)}
print(json.dumps(report, indent=1))
ok = (report["simulate"]["identical"] and report["train"]["identical_history"] and report["train"]["identical_test"]
      and report["relaxation"]["identical"] and not any(r["stray"] for r in report.values()))
sys.exit(0 if ok else 1)
