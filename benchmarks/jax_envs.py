"""Raw step rate of the JAX backend (`kqmix.envs.jax_vec`): M JaxMARL environments per call.

Steps `JaxMARLVecEnv` continuously (auto-resetting) with uniformly random
actions among those the previous step's masks allow, drawn in numpy as the
runner would send them (one call and one device-to-host copy per step), and reports
environment steps per second (M x calls / s) after compilation, the median of
`--repeats` runs of `--seconds` each. Usage:

    python benchmarks/jax_envs.py [--keys mpe:simple_spread_v3 smax:3m] [--envs 8 64] [--seconds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kqmix.envs.jax_vec import JaxMARLVecEnv


def random_available(rng, avail):
    """(M, N) actions uniform among the available ones, vectorised."""
    scores = rng.random(avail.shape) * avail  # (M, N, A)
    return scores.argmax(-1)


def rate(key: str, m: int, seconds: float, repeats: int) -> tuple[float, float]:
    """(compile seconds, median env steps/s)."""
    vec = JaxMARLVecEnv(key, m)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    avail = vec.reset(list(range(m)))[2]
    avail = vec.step(random_available(rng, avail)).avail_actions
    compile_s = time.perf_counter() - start
    rates = []
    for _ in range(repeats):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            avail = vec.step(random_available(rng, avail)).avail_actions
            steps += m
        rates.append(steps / (time.perf_counter() - start))
    return compile_s, float(np.median(rates))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", nargs="+", default=["mpe:simple_spread_v3", "smax:3m"])
    parser.add_argument("--envs", nargs="+", type=int, default=[8, 64])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| environment | M | compile + first step (s) | env steps/s |\n|---|---|---|---|")
    for key in args.keys:
        for m in args.envs:
            compile_s, steps = rate(key, m, args.seconds, args.repeats)
            print(f"| {key} | {m} | {compile_s:.1f} | {steps:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
