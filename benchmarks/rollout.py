"""Rollout speed: environment steps per second collected by the runner, and acting cost.

For Level-Based Foraging and MPE simple_spread this measures

* the environment's raw step rate with random actions (the package's own
  env, no kqmix code; random action ids, LBF turns invalid ones into NONE);
* the adapter's step rate (`make_env`: adapter + `CheckedEnv` validation);
* the `Runner`'s collection rate with M = 1, 8, 32 environments in lockstep,
  epsilon-greedy with an untrained QMIX agent (`NumpyAgentPolicy`);
* at M = 8, the acting cost per environment step: time in `policy.step`
  plus action selection, divided by the environment steps it served;
* optionally (`--subprocess`) `Runner` over `SubprocessVecEnv` workers.

Each figure is the median of `--repeats` runs. Usage:

    python benchmarks/rollout.py [--seconds 2] [--repeats 3] [--subprocess] [--blas-threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# numpy's BLAS reads its thread count once, at import: apply --blas-threads first.
if "--blas-threads" in sys.argv:
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[sys.argv.index("--blas-threads") + 1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow as tf  # noqa: E402,F401  (before numpy: keeps TF's log noise away)
import numpy as np  # noqa: E402

from kqmix.config import make_config  # noqa: E402
from kqmix.envs import make_env  # noqa: E402
from kqmix.learner import QLearner  # noqa: E402
from kqmix.policy import NumpyAgentPolicy  # noqa: E402
from kqmix.runner import Runner  # noqa: E402

ENVS = {
    "LBF 8x8-2p-2f-coop": ("lbf", "Foraging-8x8-2p-2f-coop-v3", "lbf"),
    "MPE simple_spread": ("pettingzoo", "mpe2.simple_spread_v3", "mpe_spread"),
}


def raw_rate(name, key, seconds):
    """Steps/s of the environment package itself with random actions."""
    rng = np.random.default_rng(0)
    if name == "lbf":
        import gymnasium as gym
        import lbforaging  # noqa: F401

        env = gym.make(key, disable_env_checker=True)
        n, a = len(env.unwrapped.players), 6
        env.reset(seed=0)
        acts = rng.integers(0, a, (4096, n)).tolist()
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for row in acts[:512]:
                _, _, done, trunc, _ = env.step(row)
                steps += 1
                if done or trunc:
                    env.reset()
        return steps / (time.perf_counter() - start)
    import importlib

    env = importlib.import_module(key).parallel_env(continuous_actions=False)
    env.reset(seed=0)
    agents = list(env.possible_agents)
    sizes = [env.action_space(x).n for x in agents]
    acts = [dict(zip(agents, (int(v) % s for v, s in zip(row, sizes))))
            for row in rng.integers(0, 1 << 30, (512, len(agents)))]
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for d in acts:
            env.step(d)
            steps += 1
            if not env.agents:
                env.reset()
    return steps / (time.perf_counter() - start)


def adapter_rate(name, key, seconds):
    """Steps/s through `make_env` (adapter + contract checks), random available actions."""
    env = make_env(name, key)
    rng = np.random.default_rng(0)
    _, _, avail = env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        noise = rng.random(avail.shape) * avail
        _, _, avail, _, term, trunc, _ = env.step(noise.argmax(axis=1))
        steps += 1
        if term or trunc:
            _, _, avail = env.reset()
    return steps / (time.perf_counter() - start)


class TimedPolicy:
    """Wraps a policy and accumulates the wall-clock and CPU time spent acting.

    CPU time (`time.process_time`, all threads of the process) is reported
    beside wall time because on a shared machine wall time also counts the
    periods the process waited for a core.
    """

    def __init__(self, policy):
        self.policy = policy
        self.reset()

    def reset(self):
        self.seconds = self.cpu_seconds = 0.0

    def _timed(self, fn, *args):
        t, c = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.seconds += time.perf_counter() - t
        self.cpu_seconds += time.process_time() - c
        return out

    def initial_hidden(self, b):
        return self.policy.initial_hidden(b)

    def step(self, *args):
        return self._timed(self.policy.step, *args)

    def greedy(self, q, avail):
        return self._timed(self.policy.greedy, q, avail)

    def epsilon_greedy(self, q, avail, epsilon, rng):
        return self._timed(self.policy.epsilon_greedy, q, avail, epsilon, rng)


def runner_rate(envs, policy, seconds, runner_cls=Runner):
    timed = TimedPolicy(policy)
    runner = runner_cls(envs, timed, seed=0)
    runner.run(epsilon=0.5)  # warm-up
    timed.reset()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, stats = runner.run(epsilon=0.5)
        steps += stats.steps
    elapsed = time.perf_counter() - start
    return steps / elapsed, timed.seconds / steps * 1e6, timed.cpu_seconds / steps * 1e6


def median(fn, repeats):
    results = [fn() for _ in range(repeats)]
    if isinstance(results[0], tuple):
        return tuple(float(np.median(col)) for col in zip(*results))
    return float(np.median(results))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of one measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per figure (median)")
    parser.add_argument("--subprocess", action="store_true", help="also time SubprocessVecEnv workers")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="OPENBLAS_NUM_THREADS for numpy (default: OpenBLAS's own choice)")
    args = parser.parse_args()

    rows = []
    for label, (name, key, preset) in ENVS.items():
        info = make_env(name, key).info
        policy = NumpyAgentPolicy(QLearner(info, make_config(preset)).agent)
        raw = median(lambda: raw_rate(name, key, args.seconds), args.repeats)
        adapter = median(lambda: adapter_rate(name, key, args.seconds), args.repeats)
        rows.append((label, "raw env, random actions", raw, None, None))
        rows.append((label, "adapter (make_env), random", adapter, None, None))
        for m in (1, 8, 32):
            envs = [make_env(name, key) for _ in range(m)]
            rate, acting, cpu = median(lambda: runner_rate(envs, policy, args.seconds), args.repeats)
            rows.append((label, f"Runner M={m}", rate, acting, cpu))
        if args.subprocess:
            from kqmix.envs.vector import SubprocessVecEnv

            with SubprocessVecEnv(name, key, n_envs=8, n_workers=2) as vec:
                rate, acting, cpu = median(
                    lambda: runner_rate(vec.envs, policy, args.seconds, Runner), args.repeats)
            rows.append((label, "Runner M=8, 2 workers (subprocess)", rate, acting, cpu))

    print(f"\n{'environment':<20} {'collection':<30} {'env steps/s':>12} {'acting us/step':>15} {'(CPU us)':>9}")
    print("-" * 90)
    for label, what, rate, acting, cpu in rows:
        acting_text = f"{acting:15.1f} {cpu:9.1f}" if acting is not None else ""
        print(f"{label:<20} {what:<30} {rate:12,.0f} {acting_text}")
    try:
        load = "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "load average unknown"
    print(f"\n{os.cpu_count()} CPUs, {load}.")
    print("acting us/step = time in policy.step + action selection per environment step "
          f"(median of {args.repeats} x {args.seconds:g} s; epsilon 0.5; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}).")


if __name__ == "__main__":
    main()
