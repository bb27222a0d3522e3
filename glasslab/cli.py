"""The ``glasslab`` command: ``simulate``, ``relaxation``, ``train``, ``evaluate``, ``ridge``, ``publish``, ``info``.

Arguments are checked before any expensive work; every expected error (a bad argument, a missing,
corrupted or refused file, a config mistake) is answered with one line naming the file or the
argument and the problem, and exit code 2 (``--debug`` shows the traceback instead). Data files
and checkpoints are opened safely: no code from a file is ever run (see ``glasslab.io``).

Training is bitwise reproducible for a given seed on CPU with one thread (``OMP_NUM_THREADS=1``,
the default thread policy of glasslab on shared machines); with more threads the sums inside
PyTorch's kernels may be reordered and the last digits differ.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
from pathlib import Path

EXIT_ERROR = 2

EXAMPLES = """\
commands, with an example each (glasslab COMMAND --help for all options):
  simulate    glasslab simulate --temperature 0.64 --n-configs 4 --out my_T0.64.h5
  relaxation  glasslab relaxation --temperatures 1.0 0.8 0.64 --out my_relaxation.h5
  train       glasslab train configs/ka064_se3_lmax1.toml --epochs 5
  evaluate    glasslab evaluate runs/ka064_se3_lmax1/best.pt data/ka3d_T0.80.h5
  ridge       glasslab ridge data/ka3d_T0.64.h5 --out ridge.json
  publish     glasslab publish runs/ka064_se3_lmax1 --name ka064_se3_lmax1_s0
  info        glasslab info data/ka3d_T0.64.h5

CPU threads: one per process on a machine with at most 2 cores or a busy one (an OMP_NUM_THREADS
you set is kept); GLASSLAB_THREADS=N or GLASSLAB_THREADS=auto to choose.
"""


class UsageError(ValueError):
    """A bad command-line argument (reported as ``argument --name: problem``)."""


def _arg(name: str, ok: bool, problem: str) -> None:
    if not ok:
        raise UsageError(f"argument {name}: {problem}")


def _positive(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    _arg(name, value is not None and math.isfinite(value) and value > 0, f"must be a positive number, got {value}")


def _at_least(name: str, value, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    _arg(name, value is not None and value >= minimum, f"must be >= {minimum}, got {value}")


def _output_file(name: str, path) -> None:
    if path is None:
        return
    path = Path(path)
    _arg(name, not path.is_dir(), f"{path} is a directory; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    _arg(name, parent.is_dir(), f"{path}: {parent} is not a directory")


def _input_files(paths) -> list[str]:
    """Data entries expanded (globs, shipped data) and checked to be existing files."""
    from glasslab.train import expand_paths

    files = expand_paths(paths)
    for f in files:
        p = Path(f)
        if p.is_dir():
            raise ValueError(f"{p}: is a directory, not a data file (give a glob such as '{p}/*.h5')")
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
    return files


def _require_labels(files) -> None:
    """For glasslab .h5 files (cheap to check): the propensity labels a model is scored on."""
    import h5py

    from glasslab import io

    for f in files:
        try:
            if io.sniff_format(f) != "glasslab-h5":
                continue
            with h5py.File(f, "r") as h5:
                labelled = "propensity" in h5
        except OSError:
            continue  # the reader reports it
        if not labelled:
            raise ValueError(f"{f}: has no propensity labels (an unlabelled file cannot be trained or scored on)")


def _device(args) -> None:
    from glasslab import _checks

    if getattr(args, "device", None) is not None:
        try:
            _checks.device(args.device)
        except ValueError as exc:
            raise UsageError(f"argument --device: {exc}") from None


# --------------------------------------------------------------------------- commands

def _simulate(args) -> None:
    _positive("--temperature", args.temperature)
    _at_least("--n-configs", args.n_configs, 1)
    _arg("--replicas", args.replicas >= 2 and args.replicas % 2 == 0,
         f"must be an even number >= 2 (split into two halves), got {args.replicas}")
    _at_least("--n-particles", args.n_particles, 2)
    _at_least("--n-times", args.n_times, 1)
    _positive("--t-max-over-tau", args.t_max_over_tau)
    if args.t_max is not None:
        _arg("--t-max", args.t_max > 0.1, f"must exceed the first label time 0.1, got {args.t_max}")
    _at_least("--seed", args.seed, 0)
    _at_least("--workers", args.workers, 1, allow_none=True)
    out = args.out or Path("data") / f"ka3d_T{args.temperature:.2f}.h5"
    _output_file("--out", out)
    from glasslab import simulate

    cfg = simulate.SimulationConfig(
        temperature=args.temperature, n_particles=args.n_particles, n_configs=args.n_configs,
        replicas=args.replicas, n_times=args.n_times, t_max_over_tau=args.t_max_over_tau,
        t_max=args.t_max, seed=args.seed, engine=args.engine, platform=args.platform, workers=args.workers,
    )
    try:
        simulate.available_platform(args.platform)
    except ValueError as exc:
        raise UsageError(f"argument --platform: {exc}") from None
    configs = _config_range(args.configs, args.n_configs)
    path = simulate.generate(cfg, out, configs=configs)
    if configs is None:
        print(f"wrote {path}")
    else:
        print(f"configurations {configs.start} to {configs.stop - 1} are in {path}; once every range is done, "
              f"run the same command without --configs to make the rest and merge them into {out}")


def _config_range(text: str | None, n_configs: int) -> range | None:
    """``a:b`` → range(a, b) within 0:n_configs (``--configs``)."""
    if text is None:
        return None
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise UsageError(f"argument --configs: expected a:b (two integers), got {text!r}") from None
    _arg("--configs", 0 <= a < b <= n_configs, f"{a}:{b} is not a range within 0:{n_configs} (--n-configs)")
    return range(a, b)


def _relaxation(args) -> None:
    for t in args.temperatures:
        _positive("--temperatures", t)
    _at_least("--n-particles", args.n_particles, 2)
    _positive("--production-taus", args.production_taus)
    _at_least("--seed", args.seed, 0)
    if args.trajectory_temperature is not None:
        _arg("--trajectory-temperature", any(math.isclose(args.trajectory_temperature, t) for t in args.temperatures),
             f"{args.trajectory_temperature} is not one of --temperatures {args.temperatures}")
    _output_file("--out", args.out)
    from glasslab import ka, simulate

    box = ka.box_length(args.n_particles)
    _arg("--n-particles", 0.5 * box > ka.MAX_CUTOFF,
         f"{args.n_particles} particles give a box of {box:.3f}, too small for the 2.5 sigma cutoff")
    try:
        simulate.available_platform(args.platform)
    except ValueError as exc:
        raise UsageError(f"argument --platform: {exc}") from None
    path = simulate.relaxation_study(
        args.temperatures, args.out, n_particles=args.n_particles, seed=args.seed,
        production_taus=args.production_taus, trajectory_temperature=args.trajectory_temperature,
        engine=args.engine, platform=args.platform,
    )
    print(f"wrote {path}")


def _train(args) -> None:
    import dataclasses

    from glasslab import _checks
    from glasslab.train import TrainConfig, train

    _device(args)
    _arg("--out", not Path(args.out).is_file(), f"{args.out} is a file; give the folder of runs")
    for flag, value, minimum in (("--epochs", args.epochs, 1), ("--patience", args.patience, 1), ("--seed", args.seed, 0)):
        _at_least(flag, value, minimum, allow_none=True)
    _positive("--max-minutes", args.max_minutes, allow_none=True)
    if args.name is not None:
        try:
            _checks.run_name(args.name, "--name")
        except ValueError as exc:
            raise UsageError(f"argument {exc}") from None
    cfg = TrainConfig.from_file(args.config)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed), ("max_minutes", args.max_minutes),
                                   ("patience", args.patience), ("monitor", args.monitor), ("name", args.name))
                 if v is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    files = _input_files(cfg.data)
    test_files = _input_files(cfg.test_data) if cfg.test_data else []
    _require_labels(files + test_files)
    if cfg.init_from:
        _checks.load_torch_file(cfg.init_from, f"{args.config}: init_from checkpoint")
    results = train(cfg, out_root=args.out, device=args.device)
    if results is None:  # a rank other than 0 of a torchrun job: rank 0 reports
        return
    rho = results["test"]["rho_pooled"]
    print(f"{cfg.name}: test rho per timescale (pooled, A particles) = {[round(r, 3) for r in rho]}")
    print(f"results in {Path(args.out) / cfg.name / 'results.json'}")


def _evaluate(args) -> None:
    from glasslab.train import evaluate, load_checkpoint

    _device(args)
    _positive("--temperature", args.temperature, allow_none=True)
    _output_file("--out", args.out)
    load_checkpoint(args.checkpoint)  # a bad checkpoint is reported before the data are read
    _require_labels(_input_files(args.data))
    results = evaluate(args.checkpoint, args.data, temperature=args.temperature, device=args.device)
    text = json.dumps(results, indent=2)
    if args.out:
        from glasslab._atomic import write_json

        write_json(args.out, results)
    print(text)


def _ridge(args) -> None:
    _at_least("--split-seed", args.split_seed, 0)
    _at_least("--levels", args.levels, 0)
    _at_least("--train-snapshots", args.train_snapshots, 1, allow_none=True)
    _arg("--cv", args.cv == 0 or args.cv >= 2, f"must be 0 (leave-one-out) or >= 2 folds, got {args.cv}")
    _positive("--temperature", args.temperature, allow_none=True)
    _output_file("--out", args.out)
    _output_file("--predictions", args.predictions)
    files = _input_files(args.data)
    _require_labels(files)
    from glasslab._atomic import write_json
    from glasslab.ridge import ridge_experiment

    results = ridge_experiment(files, split_seed=args.split_seed, positions=args.positions, n_levels=args.levels,
                               cv=args.cv or None, temperature=args.temperature, predictions_out=args.predictions,
                               extra_train=_input_files(args.extra_train) if args.extra_train else None,
                               train_snapshots=args.train_snapshots, node_scalars=tuple(args.node_scalars))
    if args.out:
        write_json(args.out, results)
    print(f"ridge on {' '.join(files)}: test rho per timescale = {[round(r, 3) for r in results['test']['rho_pooled']]}")


def _publish(args) -> None:
    from glasslab import data_dir, pretrained

    name = pretrained.publish(args.run, args.name)
    print(f"published {name} (checkpoints/{name}.pt, results/{name}.json) in {data_dir()}")


def _info(args) -> None:
    """Describe each file; every file is read in full, so a corrupted one is reported."""
    from glasslab import io

    _positive("--temperature", args.temperature, allow_none=True)
    failed = []
    for path in args.files:
        try:
            kind = io.sniff_format(path)
            if kind == "glasslab-h5":
                info = io.read_h5_info(path)
                snaps = io.read_h5(path)  # checks every dataset (a corrupted chunk is reported here)
                info["checked"] = f"{len(snaps)} snapshots read, all finite"
                print(json.dumps(info, indent=2, default=str))
            else:
                snaps = io.read(path, temperature=args.temperature)
                s = snaps[0]
                print(f"{path}: {kind}, N={s.num_particles}, T={s.temperature}, times={s.times}")
        except _EXPECTED as exc:
            if args.debug:
                raise
            print(f"glasslab info: error: {_one_line(exc)}", file=sys.stderr)
            failed.append(path)
    if failed:
        raise _AlreadyReported()


class _AlreadyReported(Exception):
    pass


# --------------------------------------------------------------------------- parser and main

def build_parser() -> argparse.ArgumentParser:
    from glasslab import io
    from glasslab.simulate import ENGINES as simulate_engines

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    from glasslab import __version__

    parser = argparse.ArgumentParser(prog="glasslab", description=__doc__.replace("``", ""), epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"glasslab {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", parents=[common],
                       help="generate a labelled Kob-Andersen dataset with OpenMM or LAMMPS (resumable)")
    p.add_argument("--temperature", type=float, required=True)
    p.add_argument("--n-configs", type=int, default=64)
    p.add_argument("--replicas", type=int, default=16)
    p.add_argument("--n-particles", type=int, default=1000)
    p.add_argument("--n-times", type=int, default=10)
    p.add_argument("--t-max-over-tau", type=float, default=3.5, help="last label time in units of τ_α")
    p.add_argument("--t-max", type=float, default=None,
                   help="last label time in LJ units instead (give an existing chunk's last time to share its label times)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", choices=simulate_engines, default=None,
                   help="MD engine (default: OpenMM on a GPU, else LAMMPS when installed, else OpenMM)")
    p.add_argument("--platform", default=None, help="OpenMM platform (default: CUDA if present, else CPU)")
    p.add_argument("--workers", type=int, default=None, help="replicas run concurrently")
    p.add_argument("--configs", default=None, metavar="A:B",
                   help="make only configurations A to B-1 (one job of a job array; then run without it to merge)")
    p.add_argument("--out", type=Path, default=None, help="output .h5 (default data/ka3d_T<T>.h5)")
    p.set_defaults(func=_simulate)

    p = sub.add_parser("relaxation", parents=[common], help="MSD, F_s, χ4, τ_α and g(r) snapshots over temperatures")
    p.add_argument("--temperatures", type=float, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n-particles", type=int, default=1000)
    p.add_argument("--production-taus", type=float, default=30.0)
    p.add_argument("--trajectory-temperature", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", choices=simulate_engines, default=None,
                   help="MD engine (default: OpenMM on a GPU, else LAMMPS when installed, else OpenMM)")
    p.add_argument("--platform", default=None, help="OpenMM platform (default: CUDA if present, else CPU)")
    p.set_defaults(func=_relaxation)

    p = sub.add_parser("train", parents=[common],
                       help="train a model from a config (TOML/JSON); resumes an interrupted run",
                       description="Train a model from a config (TOML/JSON); rerunning resumes an interrupted run. "
                                   "Bitwise reproducible on CPU with one thread (OMP_NUM_THREADS=1).")
    p.add_argument("config", type=Path)
    p.add_argument("--out", type=Path, default=Path("runs"), help="folder of runs (default runs/)")
    p.add_argument("--name", default=None, help="run name (default: the config's)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--monitor", choices=["val_loss", "val_rho"], default=None,
                   help="validation score that selects the weights kept (default: the config's)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", parents=[common], help="test a checkpoint on data files")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("data", type=Path, nargs="+")
    p.add_argument("--temperature", type=float, default=None, help="for GlassBench files")
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("ridge", parents=[common],
                       help="ridge regression on Boattini's expert descriptors (same split as the GNNs)")
    p.add_argument("data", nargs="+", help="data files or globs, read together in the networks' order (same split)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    p.add_argument("--predictions", type=Path, default=None,
                   help="write the test predictions as .npz (for paired comparisons with the networks)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--extra-train", nargs="+", default=None,
                   help="files added to the training set; the split of DATA (its test set) is unchanged")
    p.add_argument("--train-snapshots", type=int, default=None, help="train on the first N training snapshots only")
    p.add_argument("--positions", choices=io.POSITIONS, default="thermal")
    p.add_argument("--node-scalars", nargs="+", choices=io.NODE_SCALARS, default=[],
                   help="per-particle inputs appended to the descriptors (the networks' node_scalars)")
    p.add_argument("--levels", type=int, default=1, help="coarse-graining levels after level 0 (default 1)")
    p.add_argument("--cv", type=int, default=4,
                   help="folds of the cross-validation of α, grouped by snapshot (default 4); 0: leave-one-out")
    p.add_argument("--temperature", type=float, default=None)
    p.set_defaults(func=_ridge)

    p = sub.add_parser("publish", parents=[common],
                       help="copy a finished run's best checkpoint and results into the data folder (glasslab.pretrained)")
    p.add_argument("run", type=Path, help="the run's folder (with best.pt and results.json)")
    p.add_argument("--name", default=None, help="the published name (default: the folder's)")
    p.set_defaults(func=_publish)

    p = sub.add_parser("info", parents=[common], help="describe data files (and check that they read in full)")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--temperature", type=float, default=None, help="for GlassBench files")
    p.set_defaults(func=_info)
    return parser


_EXPECTED = (ValueError, OSError, EOFError, pickle.UnpicklingError, ImportError, MemoryError)
"""Errors caused by the input (arguments, files, configs, the environment), answered in one line."""


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0]
    if isinstance(exc, OSError) and getattr(exc, "filename", None) and str(exc.filename) not in text:
        text = f"{exc.filename}: {text}"
    return text


def main(argv=None) -> int:
    from glasslab import threads

    args = build_parser().parse_args(argv)
    try:
        threads.configure()  # the CPU thread policy (GLASSLAB_THREADS)
    except ValueError as exc:
        print(f"glasslab: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    debug = bool(getattr(args, "debug", False))
    args.debug = debug
    try:
        args.func(args)
    except _AlreadyReported:
        return EXIT_ERROR
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"glasslab {args.command}: interrupted (rerun the same command to resume where it stopped)",
              file=sys.stderr)
        return 130
    except _EXPECTED as exc:
        if debug:
            raise
        print(f"glasslab {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
