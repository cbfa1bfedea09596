"""Uniformly random actions on JaxMARL's MPE simple_spread, scored as JaxMARL's QMIX logs returns.

    python benchmarks/jaxmarl_random.py [--envs 512] [--seed 0]

JaxMARL's QMIX (`baselines/QLearning/qmix_rnn.py`) wraps MPE in
`MPELogWrapper`, which multiplies every agent's reward by the number of
agents before summing: `returned_episode_returns` averaged over the agents
is the team sum over JaxMARL's 26-step episode. This plays one episode per
environment with each agent's action uniform over its actions at every step
and prints the mean and standard error of that metric: the random baseline
on JaxMARL's own scale (docs/environments.md, "Side by side with JaxMARL's
own QMIX"). Needs the smax extra (jaxmarl).
"""

from __future__ import annotations

import argparse

import numpy as np


def random_team_sums(n_envs: int, seed: int) -> np.ndarray:
    import jax
    import jaxmarl
    from jaxmarl.wrappers.baselines import MPELogWrapper

    env = MPELogWrapper(jaxmarl.make("MPE_simple_spread_v3"))
    n_actions = env._env.action_space(env._env.agents[0]).n
    steps = env._env.max_steps + 1  # JaxMARL's time-out comes one step after max_steps

    def episodes(key):
        _, state = jax.vmap(env.reset)(jax.random.split(key, n_envs))

        def step(state, k):
            keys = jax.random.split(k, n_envs + 1)
            acts = {a: jax.random.randint(jax.random.fold_in(keys[0], i), (n_envs,), 0, n_actions)
                    for i, a in enumerate(env._env.agents)}
            _, state, _, _, info = jax.vmap(env.step)(keys[1:], state, acts)
            return state, (info["returned_episode_returns"].mean(-1), info["returned_episode"].all(-1))

        _, out = jax.lax.scan(step, state, jax.random.split(key, steps))
        return out

    returns, done = (np.asarray(x) for x in jax.jit(episodes)(jax.random.PRNGKey(seed)))
    return returns[done]  # one per environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sums = random_team_sums(args.envs, args.seed)
    print(f"{sums.size} episodes, team sum over 26 steps: {sums.mean():.2f} ± {sums.std() / np.sqrt(sums.size):.2f} (s.e.)")


if __name__ == "__main__":
    main()
