"""Scale-out costs on this machine: Ray-actor rollouts vs the local runner, and a sweep vs runs by hand.

1. Rollouts on LBF `Foraging-8x8-2p-2f-coop-v3`, M = `--envs` environments,
   epsilon-greedy (0.5) with an untrained QMIX agent: env steps/s of the
   local `Runner` and of `RayRunner` with 1 and 2 actors. As in training,
   the weights change before every batch (one object-store put each).
   The three are measured in alternating rounds and the median is reported,
   so a noisy machine affects them alike.
2. Sweep overhead: four small two-step runs (seeds 0-3) started one after
   the other with `kqmix train`, versus `kqmix sweep` over the same four
   (one trial at a time, and as many at once as the CPUs allow).

Usage:

    python benchmarks/scale_out.py [--envs 8] [--rounds 5] [--seconds 3] [--skip-sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kqmix import threads

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
threads.apply_defaults()  # as `kqmix train` runs

import tensorflow as tf  # noqa: E402,F401
import numpy as np  # noqa: E402

from kqmix.config import make_config  # noqa: E402
from kqmix.learner import QLearner  # noqa: E402
from kqmix.policy import NumpyAgentPolicy  # noqa: E402
from kqmix.runner import Runner  # noqa: E402
from kqmix.training import make_envs  # noqa: E402

SMALL = ["--preset", "two_step", "--set", "t_max=1000", "--set", "batch_size=8", "--set", "rnn_hidden_dim=16",
         "--set", "log_interval=200", "--set", "test_interval=200", "--set", "test_nepisode=4"]


def rollout_rates(m: int, rounds: int, seconds: float) -> dict:
    from kqmix.cluster import connect
    from kqmix.runner_ray import RayRunner

    connect(num_cpus=4)  # logical CPUs: the three runners (1 + 2 actors) exist side by side, one works at a time
    config = make_config("lbf", {"batch_size_run": m})
    envs = make_envs(config, m)
    learner = QLearner(envs[0].info, config)
    policy = NumpyAgentPolicy(learner.agent)
    runners = {"local": Runner(envs, policy, seed=0)}
    for k in (1, 2):
        runners[f"ray x{k}"] = RayRunner(config.replace(rollout_backend="ray", ray_actors=k), policy,
                                         envs[0].info, seed=0)
    for runner in runners.values():  # warm up: actors started, first weights put
        runner.run(epsilon=0.5)
    rates = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            steps, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                policy.sync()  # new weights, as after every update: one put per batch
                steps += runner.run(epsilon=0.5)[1].steps
            rates[name].append(steps / (time.perf_counter() - start))
    for runner in runners.values():
        getattr(runner, "close", lambda: None)()
    return {name: float(np.median(r)) for name, r in rates.items()}


def timed(args) -> float:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "kqmix", *map(str, args)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return time.perf_counter() - start


def sweep_overhead() -> dict:
    base = Path(tempfile.mkdtemp(prefix="kqmix-sweep-bench-"))
    by_hand = sum(timed(["train", *SMALL, "--set", f"seed={s}", "--quiet", "--run-dir", base / f"hand{s}"])
                  for s in range(4))
    train_time = [json.loads((base / f"hand{s}" / "metrics.jsonl").read_text().splitlines()[-1])["time"]
                  for s in range(4)]
    sequential = timed(["sweep", *SMALL, "--seeds", "0,1,2,3", "--max-concurrent", "1", "--out", base / "seq"])
    parallel = timed(["sweep", *SMALL, "--seeds", "0,1,2,3", "--out", base / "par"])
    return {"by_hand_s": by_hand, "training_loop_s": float(sum(train_time)), "sweep_one_at_a_time_s": sequential,
            "sweep_parallel_s": parallel, "overhead_per_trial_s": (sequential - by_hand) / 4}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}")
    rates = rollout_rates(args.envs, args.rounds, args.seconds)
    print(f"LBF rollouts, M={args.envs}, epsilon 0.5, weights put every batch (median of {args.rounds} rounds):")
    for name, rate in rates.items():
        print(f"  {name:8s} {rate:8.0f} env steps/s")
    import ray

    ray.shutdown()
    if not args.skip_sweep:
        result = sweep_overhead()
        print("Four two-step runs (t_max 1000):")
        for key, value in result.items():
            print(f"  {key:24s} {value:6.1f}")


if __name__ == "__main__":
    main()
