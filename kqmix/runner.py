"""Episode collection: M environments stepped in lockstep, one batched agent step per timestep."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .batch import episode_arrays
from .envs.vector import reset_envs, step_envs
from .masks import widen_masks


class LinearEpsilon:
    """Epsilon decaying linearly from `start` to `finish` over `anneal_steps` env steps."""

    def __init__(self, start: float, finish: float, anneal_steps: int):
        self.start, self.finish, self.anneal_steps = start, finish, max(int(anneal_steps), 1)

    def __call__(self, t_env: int) -> float:
        frac = min(max(t_env, 0) / self.anneal_steps, 1.0)
        return self.start + frac * (self.finish - self.start)


@dataclass
class RolloutStats:
    """Per-episode results of one `Runner.run` call."""

    returns: np.ndarray  # (M,)
    lengths: np.ndarray  # (M,)

    @property
    def steps(self) -> int:
        return int(self.lengths.sum())


class Runner:
    """Runs one episode in each of M environments at once.

    With the proxies of one `kqmix.envs.vector.SubprocessVecEnv`, all active
    environments step in their worker processes at the same time.

    Args:
        envs: M environments implementing the kqmix contract (same sizes).
        policy: a `NumpyAgentPolicy` (or anything with its `step`/`greedy`/
            `epsilon_greedy` interface).
        seed: seeds the environments (environment i gets `seed + i` at its
            first reset) and the exploration RNG.
    """

    def __init__(self, envs, policy, seed: int = 0):
        if not envs:
            raise ValueError("Runner needs at least one environment.")
        self.envs = list(envs)
        first = self.envs[0].info
        for i, env in enumerate(self.envs[1:], start=1):
            if env.info != first:
                raise ValueError(f"Environment {i} has sizes {env.info}; environment 0 has {first}.")
        self.info = first
        self.policy = policy
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._seeded = False

    @property
    def n_envs(self) -> int:
        return len(self.envs)

    def _reset_all(self, seeds=None):
        if seeds is None:
            seeds = [None] * self.n_envs if self._seeded else [self.seed + i for i in range(self.n_envs)]
        elif len(seeds) != self.n_envs:
            raise ValueError(f"run() got {len(seeds)} seeds for {self.n_envs} environments.")
        self._seeded = True
        return reset_envs(self.envs, seeds)

    def run(self, epsilon: float = 0.0, greedy: bool = False, seeds=None):
        """Collects one episode per environment.

        `seeds` (one per environment) reseeds each environment at its reset;
        by default environment i is seeded with `seed + i` at its first reset
        and continues its own random stream afterwards.

        Returns `(episodes, stats)`: a dict of padded arrays with a leading
        axis of M (layout in `kqmix.batch`) and a `RolloutStats`.
        """
        info, m, n = self.info, self.n_envs, self.info.n_agents
        ep = episode_arrays(info, m)
        returns = np.zeros(m, np.float64)
        lengths = np.zeros(m, np.int64)
        for i, (obs, state, avail) in enumerate(self._reset_all(seeds)):
            ep["obs"][i, 0], ep["state"][i, 0], ep["avail_actions"][i, 0] = obs, state, avail
        agent_id = np.tile(np.arange(n, dtype=np.int32), m)  # (M*N,)
        last_action = np.full(m * n, -1, np.int32)
        hidden = self.policy.initial_hidden(m * n)
        active = np.ones(m, bool)
        for t in range(info.episode_limit):
            obs = ep["obs"][:, t].reshape(m * n, -1)
            avail = ep["avail_actions"][:, t].reshape(m * n, -1)
            # Finished environments ride along; their actions are never sent.
            avail = widen_masks(avail, rows=~np.repeat(active, n))  # (M*N, A)
            q, hidden = self.policy.step(obs, agent_id, last_action, hidden)
            if greedy:
                actions = self.policy.greedy(q, avail)
            else:
                actions = self.policy.epsilon_greedy(q, avail, epsilon, self.rng)
            last_action = actions
            actions = actions.reshape(m, n)
            # Environments of one worker pool step in a single batched call.
            idx = np.flatnonzero(active)
            results = step_envs(self.envs, idx, actions[idx])
            for i, (obs_i, state_i, avail_i, reward, terminated, truncated, _) in zip(idx, results):
                ep["actions"][i, t] = actions[i]
                ep["reward"][i, t] = reward
                ep["terminated"][i, t] = float(terminated)
                ep["filled"][i, t] = 1.0
                ep["obs"][i, t + 1], ep["state"][i, t + 1] = obs_i, state_i
                ep["avail_actions"][i, t + 1] = avail_i
                returns[i] += reward
                lengths[i] += 1
                # Reaching the episode limit is a truncation: it bootstraps.
                if terminated or truncated or t + 1 == info.episode_limit:
                    active[i] = False
            if not active.any():
                break
        return ep, RolloutStats(returns=returns, lengths=lengths)
