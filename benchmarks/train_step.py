"""Median time of one QMIX training update and one action selection.

Synthetic batches at the SMAC 3m and 8m shapes (batch 32 episodes, double-Q,
hypernet layers 2, last action and agent id in the agent input), the
settings of the pymarl reference figures. By default every episode runs the
whole episode limit, like the batch ../shared/bench gives pymarl (a
like-for-like comparison); `--episode-lengths mixed` draws lengths uniformly
from [T/2, T], where the CPU recurrence skips the steps after each episode's
end.

    python benchmarks/train_step.py [--repeats 50] [--jit] [--shapes 3m 8m] [--recurrence keras fused]
        [--episode-lengths full|mixed]

With several `--recurrence` values the updates alternate between them, one
at a time, so that machine noise hits each alike.
"""

from __future__ import annotations

import argparse
import os
import time

from kqmix import threads

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
threads.apply_defaults()  # the thread pools `kqmix train` uses; TF_NUM_INTRAOP_THREADS=0 etc. for TF's own

import tensorflow as tf  # noqa: E402  (before numpy: keeps TF's start-up log quiet)
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from kqmix.config import Config  # noqa: E402
from kqmix.envs import EnvInfo  # noqa: E402
from kqmix.learner import QLearner  # noqa: E402
from kqmix.policy import NumpyAgentPolicy  # noqa: E402

SHAPES = {
    "3m": EnvInfo(n_agents=3, n_actions=9, obs_dim=30, state_dim=48, episode_limit=60),
    "8m": EnvInfo(n_agents=8, n_actions=14, obs_dim=80, state_dim=168, episode_limit=120),
}
REFERENCE_MS = {"3m": 55.0, "8m": 185.0}
BATCH_SIZE = 32  # episodes per update, as in the pymarl reference


def benchmark_config(recurrence: str = "auto", jit_compile: bool = Config.jit_compile) -> Config:
    """The learner settings of the pymarl reference figures (double-Q, hypernet layers 2, ...)."""
    return Config(batch_size=BATCH_SIZE, double_q=True, hypernet_layers=2, obs_agent_id=True,
                  obs_last_action=True, jit_compile=jit_compile, recurrence=recurrence)


def synthetic_batch(info: EnvInfo, batch_size: int, rng, mixed_lengths: bool = False) -> dict:
    t, n, a = info.episode_limit, info.n_agents, info.n_actions
    filled = np.zeros((batch_size, t), np.float32)
    terminated = np.zeros((batch_size, t), np.float32)
    lengths = rng.integers(t // 2, t + 1, size=batch_size) if mixed_lengths else np.full(batch_size, t)
    for b, length in enumerate(lengths):
        filled[b, :length] = 1.0
        terminated[b, length - 1] = float(length < t)
    return {
        "obs": rng.normal(size=(batch_size, t + 1, n, info.obs_dim)).astype(np.float32),
        "state": rng.normal(size=(batch_size, t + 1, info.state_dim)).astype(np.float32),
        "avail_actions": (rng.random((batch_size, t + 1, n, a)) < 0.7).astype(np.float32),
        "actions": rng.integers(0, a, size=(batch_size, t, n)).astype(np.int32),
        "reward": rng.normal(size=(batch_size, t)).astype(np.float32),
        "terminated": terminated,
        "filled": filled,
    }


def median_ms(fn, repeats: int) -> float:
    return interleaved_median_ms({None: fn}, repeats)[None]


def interleaved_median_ms(fns: dict, repeats: int) -> dict:
    """Median ms of each function, calling them in turn `repeats` times."""
    times = {key: [] for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {key: float(np.median(t) * 1e3) for key, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed updates per shape")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=Config.jit_compile,
                        help="compile the train step with XLA (default: off, as `kqmix train`)")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--recurrence", nargs="+", default=["auto"], choices=["auto", "keras", "fused"],
                        help="Config.recurrence of the agents (several: timed alternately)")
    parser.add_argument("--episode-lengths", choices=["full", "mixed"], default="full",
                        help="full: every episode runs the episode limit (as the pymarl benchmark's batch); "
                             "mixed: lengths uniform in [T/2, T]")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    table = Table(title=f"kqmix: one training update (batch {BATCH_SIZE}) and one action selection")
    for col in ("shape", "N/A/O/S/T", "recurrence", "update ms (median)", "pymarl ref ms", "act µs (1 env)"):
        table.add_column(col, justify="right")
    for name in args.shapes:
        info = SHAPES[name]
        raw = synthetic_batch(info, BATCH_SIZE, rng, mixed_lengths=args.episode_lengths == "mixed")
        batch = {k: tf.constant(v) for k, v in raw.items()}
        episode = tf.constant(1, tf.int64)
        steps = {}
        for recurrence in args.recurrence:
            learner = QLearner(info, benchmark_config(recurrence, args.jit))
            steps[recurrence] = lambda learner=learner: learner.train_step(batch, episode)["loss"].numpy()
            for _ in range(3):  # trace, compile, warm up
                steps[recurrence]()
        update_ms = interleaved_median_ms(steps, args.repeats)

        policy = NumpyAgentPolicy(learner.agent)
        n = info.n_agents
        obs = rng.normal(size=(n, info.obs_dim)).astype(np.float32)
        avail = np.ones((n, info.n_actions), np.float32)
        ids = np.arange(n, dtype=np.int32)
        state = {"last": np.full(n, -1, np.int32), "hidden": policy.initial_hidden(n)}

        def act():
            q, state["hidden"] = policy.step(obs, ids, state["last"], state["hidden"])
            state["last"] = policy.epsilon_greedy(q, avail, 0.05, rng)

        act_us = median_ms(act, 2000) * 1e3
        for recurrence, ms in update_ms.items():
            table.add_row(
                name,
                f"{n}/{info.n_actions}/{info.obs_dim}/{info.state_dim}/{info.episode_limit}",
                recurrence,
                f"{ms:.1f}",
                f"{REFERENCE_MS[name]:.0f}",
                f"{act_us:.0f}",
            )
    console = Console()
    console.print(table)
    console.print(
        f"TensorFlow {tf.__version__}, TF_NUM_INTRAOP_THREADS={os.environ['TF_NUM_INTRAOP_THREADS']}, "
        f"TF_NUM_INTEROP_THREADS={os.environ['TF_NUM_INTEROP_THREADS']} (0: TensorFlow's default), "
        f"{threads.available_cores()} cores, XLA jit {'on' if args.jit else 'off'}, "
        f"episode lengths {args.episode_lengths}, "
        f"devices {[d.device_type for d in tf.config.list_logical_devices()]}"
    )


if __name__ == "__main__":
    main()
