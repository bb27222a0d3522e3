"""The ``glasslab`` command: ``simulate``, ``relaxation``, ``train``, ``evaluate``, ``info``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _simulate(args) -> None:
    from glasslab import simulate

    cfg = simulate.SimulationConfig(
        temperature=args.temperature, n_particles=args.n_particles, n_configs=args.n_configs,
        replicas=args.replicas, n_times=args.n_times, t_max_over_tau=args.t_max_over_tau,
        seed=args.seed, platform=args.platform, workers=args.workers,
    )
    out = args.out or Path("data") / f"ka3d_T{args.temperature:.2f}.h5"
    path = simulate.generate(cfg, out)
    print(f"wrote {path}")


def _relaxation(args) -> None:
    from glasslab import simulate

    path = simulate.relaxation_study(
        args.temperatures, args.out, n_particles=args.n_particles, seed=args.seed,
        production_taus=args.production_taus, trajectory_temperature=args.trajectory_temperature,
        platform=args.platform,
    )
    print(f"wrote {path}")


def _train(args) -> None:
    from glasslab.train import TrainConfig, train

    import dataclasses

    cfg = TrainConfig.from_file(args.config)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed), ("max_minutes", args.max_minutes),
                                   ("patience", args.patience), ("monitor", args.monitor), ("name", args.name))
                 if v is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    results = train(cfg, out_root=args.out, device=args.device)
    rho = results["test"]["rho_pooled"]
    print(f"{cfg.name}: test rho per timescale (pooled, A particles) = {[round(r, 3) for r in rho]}")
    print(f"results in {Path(args.out) / cfg.name / 'results.json'}")


def _evaluate(args) -> None:
    from glasslab.train import evaluate

    results = evaluate(args.checkpoint, args.data, temperature=args.temperature, device=args.device)
    text = json.dumps(results, indent=2)
    if args.out:
        from glasslab._atomic import write_json

        write_json(args.out, results)
    print(text)


def _ridge(args) -> None:
    from glasslab._atomic import write_json
    from glasslab.features import ridge_experiment
    from glasslab.train import hardware

    results = ridge_experiment(args.data, split_seed=args.split_seed, positions=args.positions,
                               n_levels=args.levels, cv=args.cv or None, temperature=args.temperature)
    results["hardware"] = hardware()
    if args.out:
        write_json(args.out, results)
    print(f"ridge on {args.data}: test rho per timescale = {[round(r, 3) for r in results['test']['rho_pooled']]}")


def _info(args) -> None:
    from glasslab import io

    for path in args.files:
        kind = io.sniff_format(path)
        if kind == "glasslab-h5":
            info = io.read_h5_info(path)
            print(json.dumps(info, indent=2, default=str))
        else:
            snaps = io.read(path, temperature=args.temperature)
            s = snaps[0]
            print(f"{path}: {kind}, N={s.num_particles}, T={s.temperature}, times={s.times}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glasslab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="generate a labelled Kob-Andersen dataset with OpenMM (resumable)")
    p.add_argument("--temperature", type=float, required=True)
    p.add_argument("--n-configs", type=int, default=64)
    p.add_argument("--replicas", type=int, default=16)
    p.add_argument("--n-particles", type=int, default=1000)
    p.add_argument("--n-times", type=int, default=10)
    p.add_argument("--t-max-over-tau", type=float, default=3.5, help="last label time in units of τ_α")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--platform", default=None, help="OpenMM platform (default: CUDA if present, else CPU)")
    p.add_argument("--workers", type=int, default=None, help="replicas run concurrently")
    p.add_argument("--out", type=Path, default=None, help="output .h5 (default data/ka3d_T<T>.h5)")
    p.set_defaults(func=_simulate)

    p = sub.add_parser("relaxation", help="MSD, F_s, χ4, τ_α and g(r) snapshots over temperatures")
    p.add_argument("--temperatures", type=float, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n-particles", type=int, default=1000)
    p.add_argument("--production-taus", type=float, default=30.0)
    p.add_argument("--trajectory-temperature", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--platform", default=None)
    p.set_defaults(func=_relaxation)

    p = sub.add_parser("train", help="train a model from a config (TOML/JSON); resumes an interrupted run")
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

    p = sub.add_parser("evaluate", help="test a checkpoint on data files")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("data", type=Path, nargs="+")
    p.add_argument("--temperature", type=float, default=None, help="for GlassBench files")
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("ridge", help="ridge regression on Boattini's expert descriptors (same split as the GNNs)")
    p.add_argument("data", type=Path)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--positions", choices=["thermal", "inherent"], default="thermal")
    p.add_argument("--levels", type=int, default=1, help="coarse-graining levels after level 0 (default 1)")
    p.add_argument("--cv", type=int, default=4,
                   help="folds of the cross-validation of α, grouped by snapshot (default 4); 0: leave-one-out")
    p.add_argument("--temperature", type=float, default=None)
    p.set_defaults(func=_ridge)

    p = sub.add_parser("info", help="describe data files")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--temperature", type=float, default=None, help="for GlassBench files")
    p.set_defaults(func=_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"glasslab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
