"""`Runner.run` on JaxMARL environments: the compiled rollout against the per-step loop.

Both runners share one `JaxMARLVecEnv` (checked, as training makes it) and a
`NumpyAgentPolicy` with random weights; after compiling both, the two paths
alternate batch by batch (so a busy machine slows both alike) with
exploring episodes (epsilon 0.5), and each reports environment steps per
second (episode steps / seconds in `run`). Usage:

    python benchmarks/jax_rollout.py [--keys mpe:simple_spread_v3 smax:3m] [--envs 8] [--seconds 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kqmix.envs import make_batched_env
from kqmix.policy import NumpyAgentPolicy
from kqmix.runner import Runner


def random_policy(info, hidden: int, seed: int = 0) -> NumpyAgentPolicy:
    rng = np.random.default_rng(seed)
    n, a, o, h = info.n_agents, info.n_actions, info.obs_dim, hidden

    def w(*shape):
        return (0.3 * rng.standard_normal(shape)).astype(np.float32)

    return NumpyAgentPolicy.from_params({
        "n_agents": n, "n_actions": a, "hidden_dim": h, "use_agent_id": True, "use_last_action": True,
        "obs_dim": o, "version": 1, "w_obs": w(o, h), "w_last": w(a, h), "w_id": w(n, h), "b1": w(h),
        "kernel": w(h, 3 * h), "rec": w(h, 3 * h), "b_in": w(3 * h), "b_rec": w(3 * h), "w2": w(h, a), "b2": w(a)})


def compare(key: str, m: int, seconds: float, hidden: int) -> dict:
    env = make_batched_env("jaxmarl", key, m)
    policy = random_policy(env.info, hidden)
    runners = {"loop": Runner(env, policy, seed=0, compiled=False), "compiled": Runner(env, policy, seed=0)}
    assert runners["compiled"].compiled
    steps, spent = dict.fromkeys(runners, 0), dict.fromkeys(runners, 0.0)
    for runner in runners.values():  # compile
        runner.run(epsilon=0.5)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for name, runner in runners.items():
            t0 = time.perf_counter()
            _, stats = runner.run(epsilon=0.5)
            spent[name] += time.perf_counter() - t0
            steps[name] += stats.steps
    return {name: steps[name] / spent[name] for name in runners}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", nargs="+", default=["mpe:simple_spread_v3", "smax:3m"])
    parser.add_argument("--envs", nargs="+", type=int, default=[8])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()
    for key in args.keys:
        for m in args.envs:
            r = compare(key, m, args.seconds, args.hidden)
            print(f"{key:24s} M={m:<3d} loop {r['loop']:9,.0f} env steps/s   compiled {r['compiled']:9,.0f} "
                  f"env steps/s   x{r['compiled'] / r['loop']:.1f}", flush=True)


if __name__ == "__main__":
    main()
