"""Where `kqmix train` spends its time: a short training run under cProfile, broken down by part.

Runs `kqmix.training.train` in this process with Python's profiler and
prints the share of each part of the loop: collecting exploring episodes
(acting, the environments, the runner's own bookkeeping, the buffer), the
learner update and what goes with it (sampling, the acting policy's weight
copy), greedy tests, metrics and checkpoints. cProfile slows Python code
(the environments, the runner) more than TensorFlow's compiled update, so
read the shares as an upper bound for the Python parts.

    python benchmarks/profile_train.py [--preset lbf] [--steps 100000] [--set KEY=VALUE ...] [--save FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
from pathlib import Path

from kqmix import threads

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
threads.apply_defaults()  # the thread pools `kqmix train` uses

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from kqmix import buffer, learner, policy, runner, training  # noqa: E402
from kqmix.config import make_config, parse_override  # noqa: E402


def _key(function) -> tuple[str, str]:
    """How pstats names a Python function: (file, name)."""
    code = function.__code__
    return code.co_filename, code.co_name


def _cumulative(stats: pstats.Stats, function) -> float:
    """Seconds spent in `function` and everything it called (0 if it never ran)."""
    file, name = _key(function)
    return sum(v[3] for (f, _, n), v in stats.stats.items() if f == file and n == name)


def _called_from(stats: pstats.Stats, caller, modules: tuple[str, ...]) -> float:
    """Seconds spent in functions of `modules` (path fragments) when called directly by `caller`."""
    caller_file, caller_name = _key(caller)
    total = 0.0
    for (file, _, _), value in stats.stats.items():
        if not any(part in file for part in modules):
            continue
        for (c_file, _, c_name), (_, _, _, cumulative) in value[4].items():
            if c_file == caller_file and c_name == caller_name:
                total += cumulative
    return total


def breakdown(stats: pstats.Stats) -> list[tuple[str, float]]:
    """(part, seconds) rows; indented rows are parts of the row above them."""
    envs_dir = str(Path(runner.__file__).parent / "envs")
    run = _cumulative(stats, runner.Runner.run)
    test = _cumulative(stats, training.Trainer.test)
    acting = _called_from(stats, runner.Runner.run, (policy.__file__,))
    environments = _called_from(stats, runner.Runner.run, (envs_dir,))
    compiled = _cumulative(stats, runner.Runner._run_compiled)  # JAX environments: acting and env in one call
    collect = _cumulative(stats, training.Trainer.collect)
    # Greedy tests go through Runner.run too: the exploring episodes' share of each part is taken
    # as their share of Runner.run's time (an approximation: tests select actions greedily).
    share = (run - test) / run if run else 0.0
    acting, environments, compiled = acting * share, environments * share, compiled * share
    return [
        ("all of train()", _cumulative(stats, training.train)),
        ("collect: exploring episodes into the buffer", collect),
        ("  acting (agent network step, action selection)", acting),
        ("  environments (step, reset)", environments),
        ("  compiled rollout (JAX environments, acting included)", compiled),
        ("  runner bookkeeping (episode arrays, masks)", (run - test) - acting - environments - compiled),
        ("  buffer insert", _cumulative(stats, buffer.EpisodeBuffer.insert)),
        ("learn: one update per batch", _cumulative(stats, training.Trainer.learn)),
        ("  learner update (the compiled train step)", _cumulative(stats, learner.QLearner.train)),
        ("  buffer sample", _cumulative(stats, buffer.EpisodeBuffer.sample)),
        ("  acting policy's weight copy", _cumulative(stats, policy.NumpyAgentPolicy.sync)),
        ("test: greedy episodes", test),
        ("metrics (rows, files)", _cumulative(stats, training.Trainer.metrics_row)
         + _cumulative(stats, training.MetricsLog.write)),
        ("checkpoints", _cumulative(stats, training.Trainer.save_checkpoint)),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lbf")
    parser.add_argument("--steps", type=int, default=100_000, help="environment steps to train (t_max)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override, as `kqmix train --set`")
    parser.add_argument("--save", help="also write the raw profile here (for snakeviz, pstats, ...)")
    args = parser.parse_args()

    overrides = dict(parse_override(text) for text in args.overrides)
    config = make_config(args.preset, {**overrides, "t_max": args.steps})
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        profiler.enable()
        result = training.train(config, preset=args.preset, run_dir=Path(tmp) / "run", quiet=True)
        profiler.disable()
    if args.save:
        profiler.dump_stats(args.save)
    stats = pstats.Stats(profiler, stream=sys.stderr)

    rows = breakdown(stats)
    total = rows[0][1]
    table = Table(title=f"kqmix train --preset {args.preset}: {result.t_env:,} env steps, "
                        f"{result.train_steps:,} updates, under cProfile")
    for column in ("part", "seconds", "share"):
        table.add_column(column, justify="left" if column == "part" else "right")
    for name, seconds in rows:
        table.add_row(name, f"{seconds:.1f}", f"{100 * seconds / total:.1f}%")
    console = Console()
    console.print(table)
    updates = max(result.train_steps, 1)
    console.print(f"{1e3 * dict(rows)['  learner update (the compiled train step)'] / updates:.1f} ms per update, "
                  f"{1e6 * dict(rows)['collect: exploring episodes into the buffer'] / max(result.t_env, 1):.0f} "
                  "µs per collected env step (both under the profiler)")


if __name__ == "__main__":
    main()
