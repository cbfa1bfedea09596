"""The `kqmix` command line.

    kqmix train [--preset NAME] [--set key=value ...] [--deterministic] [--quiet]
    kqmix train --resume RUN_DIR [--set t_max=...]
    kqmix evaluate RUN_DIR|EXPORT_DIR [--episodes 100] [--report PATH] [--env-key KEY]
    kqmix plot RUN_DIR|SWEEP_DIR [...] [--out curves.png]
    kqmix sweep --preset NAME [--preset ...] [--grid key=v1,v2 ...] [--seeds 0,1,2] [--out DIR]
                [--set key=value ...] [--threshold X] [--address HOST:PORT] [--max-failures N]
    kqmix sweep --resume SWEEP_DIR
    kqmix presets [--keys]
    kqmix export RUN_DIR [--name NAME] [--out saved_models] [--check]
    kqmix validate VERSION_DIR [--run RUN_DIR]
"""

from __future__ import annotations

import argparse
import os
import sys

from . import threads

# Before numpy and TensorFlow start their thread pools; a user's own settings win.
threads.apply_defaults()


def _quiet_tensorflow():
    """Imports TensorFlow without its C++ start-up chatter on the terminal.

    `TF_CPP_MIN_LOG_LEVEL` silences TensorFlow's own logging, but a few lines
    are printed before that logging is initialised; they go to file
    descriptor 2 during the import, which is pointed at /dev/null meanwhile.
    Python exceptions are unaffected (they are printed after it is restored).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf

            tf.config.list_logical_devices()  # device probing logs here, once
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cmd_train(args) -> int:
    from .config import ConfigError, make_config, parse_override
    from .rundir import RunError, read_config

    overrides = list(args.overrides) + (["deterministic=true"] if args.deterministic else [])
    try:
        if args.resume:
            if args.preset:
                raise ConfigError("--preset cannot be combined with --resume (the run keeps its config).")
            config = read_config(args.resume).replace(**dict(parse_override(o) for o in overrides))
        else:
            config = make_config(args.preset, overrides)
        _quiet_tensorflow()
        from .training import train

        result = train(config, preset=args.preset or _default_preset(), run_dir=args.resume or args.run_dir,
                       quiet=args.quiet, resume=bool(args.resume))
    except (ConfigError, RunError) as exc:
        print(f"kqmix train: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        from .training import TrainingInterrupted

        if not isinstance(exc, TrainingInterrupted):
            raise
        if exc.checkpoint is None:
            print(f"kqmix train: interrupted before the first checkpoint; {exc.run_dir} cannot be resumed.",
                  file=sys.stderr)
        else:
            print(f"kqmix train: interrupted. Continue from {exc.checkpoint} with:\n"
                  f"  kqmix train --resume {exc.run_dir}", file=sys.stderr)
        return 130
    test = "n/a" if result.test_return_mean is None else f"{result.test_return_mean:.4g}"
    print(
        f"Finished {result.t_env:,} env steps ({result.episodes:,} episodes, "
        f"{result.train_steps:,} updates); greedy test return {test}.\nRun directory: {result.run_dir}"
    )
    return 0


def _cmd_evaluate(args) -> int:
    from kqmix_runtime.errors import RuntimeInputError, ValidationError

    from .evaluation import EvaluationError, evaluate_path
    from .rundir import RunError

    _quiet_tensorflow()
    try:
        report = evaluate_path(args.path, episodes=args.episodes, seed=args.seed,
                               report_path=args.report, render=args.render, env_key=args.env_key)
    except (EvaluationError, RunError, ValidationError, RuntimeInputError) as exc:
        print(f"kqmix evaluate: {exc}", file=sys.stderr)
        return 2
    print(
        f"{report['episodes']} greedy episodes on {report['env']}"
        f"{':' + report['env_key'] if report['env_key'] else ''}: "
        f"return {report['return_mean']:.4g} ± {report['return_std']:.4g}"
        f" (min {report['return_min']:.4g}, max {report['return_max']:.4g})"
        + (f", win rate {report['win_rate']:.1%}" if "win_rate" in report else "")
        + f". Report: {report['report_path']}"
    )
    return 0


def _cmd_plot(args) -> int:
    from .plotting import PlotError, plot_runs, run_dirs_of

    try:
        out = plot_runs(run_dirs_of(args.runs), args.out)
    except PlotError as exc:
        print(f"kqmix plot: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote {out}")
    return 0


def _cmd_sweep(args) -> int:
    import time

    from .cluster import ClusterError, connect, require_ray
    from .config import Config, ConfigError
    from .sweepdir import SweepError, expand, is_sweep, parse_grid, parse_seeds, read_manifest, write_manifest
    from .training import final_env, make_envs

    require_ray(args.address)  # a missing extra is named before anything else happens
    try:
        if args.resume:
            if args.preset or args.grid or args.overrides or args.out:
                raise ConfigError("--resume continues a sweep as it was defined; it takes no "
                                  "--preset, --grid, --set or --out.")
            sweep_dir = args.resume
            manifest = read_manifest(sweep_dir)
        else:
            sweep_dir = args.out or f"sweeps/{time.strftime('%Y%m%d-%H%M%S')}"
            if is_sweep(sweep_dir):
                raise SweepError(f"{sweep_dir} already holds a sweep; continue it with --resume {sweep_dir}.")
            overrides = list(args.overrides) + (["deterministic=true"] if args.deterministic else [])
            trials = expand(sweep_dir, args.preset or [_default_preset()], overrides, parse_grid(args.grid),
                            parse_seeds(args.seeds))
            envs = {(t["config"]["env"], t["config"]["env_key"], t["config"]["switch_env_key"]): t for t in trials}
            for trial in envs.values():  # a bad environment, or a switch to one of other sizes, stops here
                config = Config.from_dict(trial["config"])
                final_env(config, make_envs(config, 1)[0])
            manifest = {"presets": args.preset or [_default_preset()], "grid": args.grid, "set": overrides,
                        "seeds": args.seeds, "threshold": args.threshold, "trials": trials}
        if args.max_failures < 0:
            raise ConfigError(f"--max-failures must be >= 0. Received: {args.max_failures}")
        connect(args.address, dashboard=args.dashboard)  # an unreachable address stops here
    except (ConfigError, SweepError, ClusterError) as exc:
        print(f"kqmix sweep: {exc}", file=sys.stderr)
        return 2
    if not args.resume:
        write_manifest(sweep_dir, manifest)
    from .sweep import run_sweep

    summary = run_sweep(sweep_dir, resume=bool(args.resume), max_failures=args.max_failures,
                        max_concurrent=args.max_concurrent, address=args.address, dashboard=args.dashboard)
    finished = sum(t["finished"] for t in summary["trials"])
    print(f"{finished}/{len(summary['trials'])} trials finished in {summary['seconds']:.0f} s. "
          f"Summary: {sweep_dir}/summary.md")
    for error in summary["errors"]:
        print(f"  failed: {error}", file=sys.stderr)
    if finished < len(summary["trials"]):
        print(f"Continue with: kqmix sweep --resume {sweep_dir}", file=sys.stderr)
        return 1
    return 0


def _default_preset() -> str:
    from .presets import DEFAULT_PRESET

    return DEFAULT_PRESET


def _cmd_presets(args) -> int:
    from dataclasses import fields

    from rich.console import Console
    from rich.table import Table

    from .config import Config
    from .presets import DEFAULT_PRESET, PRESETS

    console = Console()
    if args.keys:
        table = Table(title="Config keys (kqmix train --set key=value)")
        for col in ("key", "type", "default"):
            table.add_column(col)
        for f in fields(Config):
            table.add_row(f.name, str(f.type), repr(f.default))
        console.print(table)
        return 0
    table = Table(title="Presets (kqmix train --preset NAME)")
    table.add_column("preset")
    table.add_column("settings")
    for name, values in PRESETS.items():
        label = f"{name} (default)" if name == DEFAULT_PRESET else name
        table.add_row(label, ", ".join(f"{k}={v}" for k, v in values.items()))
    console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="kqmix", description="QMIX for Keras 3: train cooperative agents, export them, run them."
    )
    parser.add_argument("--version", action="version", version=f"kqmix {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train QMIX/VDN on an environment")
    train.add_argument("--preset", default=None, help="named preset (see `kqmix presets`)")
    train.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config key; repeatable (see `kqmix presets --keys`)",
    )
    train.add_argument("--run-dir", default=None, help="write the run here instead of runs/<name>")
    train.add_argument("--resume", default=None, metavar="RUN_DIR",
                       help="continue a run from its newest intact checkpoint")
    train.add_argument("--deterministic", action="store_true",
                       help="seed everything and use deterministic TensorFlow ops")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("evaluate", help="greedy evaluation of a run or an exported version")
    evaluate.add_argument("path", help="a run directory or an export version directory")
    evaluate.add_argument("--episodes", type=int, default=100)
    evaluate.add_argument("--seed", type=int, default=12345, help="seed of the evaluation episodes")
    evaluate.add_argument("--report", default=None,
                          help="JSON report path (default: evaluation.json in a run directory; for an export, "
                               "evaluation-export-<name>-<version>.json in the run it was exported from)")
    evaluate.add_argument("--render", action="store_true", help="render episodes where the environment can")
    evaluate.add_argument("--env-key", default=None, metavar="KEY",
                          help="play a variant of the run's environment with the same agents, observations and "
                               "actions, e.g. another time limit (rware-tiny-2ag-v2:max_steps=500); the report "
                               "then goes to evaluation-env-<KEY>.json")
    evaluate.set_defaults(func=_cmd_evaluate)

    plot = sub.add_parser("plot", help="learning curves of one or more runs (or sweeps) as a PNG")
    plot.add_argument("runs", nargs="+", help="run directories or sweep directories (runs differing "
                                              "only in seed form a band)")
    plot.add_argument("--out", default="curves.png")
    plot.set_defaults(func=_cmd_plot)

    sweep = sub.add_parser("sweep", help="presets x grid x seeds as Ray Tune trials (pip install 'kqmix[ray]')")
    sweep.add_argument("--preset", action="append", default=[], help="a preset; repeatable (default: lbf)")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="values of one config key to sweep; repeatable (the grid is their product)")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config key in every trial; repeatable")
    sweep.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    sweep.add_argument("--out", default=None, help="the sweep directory (default sweeps/<time>)")
    sweep.add_argument("--threshold", type=float, default=None,
                       help="also report the env steps each run takes to reach this greedy test return")
    sweep.add_argument("--address", default=None,
                       help="join the Ray cluster at HOST:PORT or ray://HOST:PORT (default: RAY_ADDRESS, "
                            "else an embedded local Ray on this machine)")
    sweep.add_argument("--max-failures", type=int, default=2,
                       help="retries of a trial whose process dies; it resumes from its checkpoint (default 2)")
    sweep.add_argument("--max-concurrent", type=int, default=None, help="trials running at once (default: as "
                                                                         "many as the CPUs allow)")
    sweep.add_argument("--resume", default=None, metavar="SWEEP_DIR", help="continue an interrupted sweep")
    sweep.add_argument("--deterministic", action="store_true", help="as for train, in every trial")
    sweep.add_argument("--dashboard", action="store_true",
                       help="start the embedded Ray's dashboard (on 127.0.0.1)")
    sweep.set_defaults(func=_cmd_sweep)

    presets = sub.add_parser("presets", help="list presets, or with --keys every config key")
    presets.add_argument("--keys", action="store_true")
    presets.set_defaults(func=_cmd_presets)

    from .export.cli import add_commands

    add_commands(sub)
    return parser


# The deployment commands import TensorFlow inside their handlers; load it
# first so its start-up lines stay off the terminal.
_TF_COMMANDS = {"export", "validate"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if _TF_COMMANDS.intersection(argv[:1]):
        _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    from .envs._extras import MissingExtraError

    try:
        return int(args.func(args) or 0)
    except MissingExtraError as exc:
        print(f"kqmix {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
