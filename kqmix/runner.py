"""Episode collection: M environments stepped in lockstep, one batched agent step per timestep."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kqmix_runtime.spec import NO_LAST_ACTION

from .batch import episode_arrays
from .envs.batched import BatchedEnv, CheckedBatchedEnv, as_batched
from .envs.jax_vec import JaxMARLVecEnv
from .masks import widen_masks
from .policy import NumpyAgentPolicy


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
    won: np.ndarray | None = None  # (M,) 1.0 = won, where the environment reports wins (SMAX)

    @property
    def steps(self) -> int:
        return int(self.lengths.sum())


class Runner:
    """Runs one episode in each of M environments at once.

    The environments are one batched environment (`kqmix.envs.batched`): a
    vectorised one (`kqmix.envs.jax_vec`, one call per timestep for all M) or
    a list of contract environments, which is wrapped in an `EnvList` (with
    the proxies of one `kqmix.envs.vector.SubprocessVecEnv`, the active
    environments step in their worker processes at the same time). Acting is
    one batched policy call per timestep either way.

    Args:
        envs: a `BatchedEnv`, or M environments implementing the kqmix contract (same sizes).
        policy: a `NumpyAgentPolicy` (or anything with its `step`/`greedy`/
            `epsilon_greedy` interface).
        seed: seeds the environments (environment i gets `seed + i` at its
            first reset) and the exploration RNG.
        compiled: with JaxMARL environments (`JaxMARLVecEnv`, checked or not) and a
            `NumpyAgentPolicy`, play each batch in one compiled call
            (`kqmix.envs.jax_rollout`) instead of stepping per timestep from Python:
            the same episodes for greedy runs; exploration draws its own JAX key
            from the exploration RNG (same rule, other random numbers).
    """

    def __init__(self, envs, policy, seed: int = 0, compiled: bool = True):
        if not isinstance(envs, BatchedEnv) and not envs:
            raise ValueError("Runner needs at least one environment.")
        self.envs = as_batched(envs)
        self.info = self.envs.info
        self.policy = policy
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._seeded = False
        self.compiled = compiled and self._compiled_env() is not None and type(policy) is NumpyAgentPolicy

    def _compiled_env(self):
        """The `JaxMARLVecEnv` behind `envs` (possibly checked), else None."""
        env = self.envs.env if isinstance(self.envs, CheckedBatchedEnv) else self.envs
        return env if isinstance(env, JaxMARLVecEnv) else None

    @property
    def n_envs(self) -> int:
        return self.envs.n_envs

    def _reset_all(self, seeds=None):
        if seeds is None:
            seeds = [None] * self.n_envs if self._seeded else [self.seed + i for i in range(self.n_envs)]
        elif len(seeds) != self.n_envs:
            raise ValueError(f"run() got {len(seeds)} seeds for {self.n_envs} environments.")
        self._seeded = True
        return self.envs.reset(seeds)

    def run(self, epsilon: float = 0.0, greedy: bool = False, seeds=None):
        """Collects one episode per environment.

        `seeds` (one per environment) reseeds each environment at its reset;
        by default environment i is seeded with `seed + i` at its first reset
        and continues its own random stream afterwards.

        Returns `(episodes, stats)`: a dict of padded arrays with a leading
        axis of M (layout in `kqmix.batch`) and a `RolloutStats`.
        """
        if self.compiled:
            return self._run_compiled(epsilon, greedy, seeds)
        info, m, n = self.info, self.n_envs, self.info.n_agents
        ep = episode_arrays(info, m)
        returns = np.zeros(m, np.float64)
        lengths = np.zeros(m, np.int64)
        won = np.zeros(m, np.float32) if self.envs.reports_wins else None
        ep["obs"][:, 0], ep["state"][:, 0], ep["avail_actions"][:, 0] = self._reset_all(seeds)
        agent_id = np.tile(np.arange(n, dtype=np.int32), m)  # (M*N,)
        last_action = np.full(m * n, NO_LAST_ACTION, np.int32)
        hidden = self.policy.initial_hidden(m * n)
        active = np.ones(m, bool)
        for t in range(info.episode_limit):
            obs = ep["obs"][:, t].reshape(m * n, -1)
            avail = ep["avail_actions"][:, t].reshape(m * n, -1)
            # Finished environments ride along; their actions are ignored.
            avail = widen_masks(avail, rows=~np.repeat(active, n))  # (M*N, A)
            q, hidden = self.policy.step(obs, agent_id, last_action, hidden)
            if greedy:
                actions = self.policy.greedy(q, avail)
            else:
                actions = self.policy.epsilon_greedy(q, avail, epsilon, self.rng)
            last_action = actions
            actions = actions.reshape(m, n)
            out = self.envs.step(actions, active)  # one call for all M
            i = np.flatnonzero(active)
            ep["actions"][i, t] = actions[i]
            ep["reward"][i, t] = out.reward[i]
            ep["terminated"][i, t] = out.terminated[i]
            ep["filled"][i, t] = 1.0
            ep["obs"][i, t + 1], ep["state"][i, t + 1] = out.obs[i], out.state[i]
            ep["avail_actions"][i, t + 1] = out.avail_actions[i]
            returns[i] += out.reward[i]
            lengths[i] += 1
            # Reaching the episode limit is a truncation: it bootstraps.
            ended = out.terminated | out.truncated | (t + 1 == info.episode_limit)
            if won is not None:
                won[i] = np.where(ended[i], out.won[i], won[i])
            active &= ~ended
            if not active.any():
                break
        return ep, RolloutStats(returns=returns, lengths=lengths, won=won)

    def _run_compiled(self, epsilon: float, greedy: bool, seeds):
        """`run` in one compiled call (`kqmix.envs.jax_rollout`), checked like the per-step loop."""
        from .envs.jax_rollout import play

        self._reset_all(seeds)
        # One exploration key per batch from the runner's RNG (greedy runs draw none, as in the loop).
        key = None if greedy else self.rng.integers(0, 2**32, size=2, dtype=np.uint32)
        ep, won = play(self._compiled_env(), self.policy.params(), epsilon=epsilon, greedy=greedy, key=key)
        if isinstance(self.envs, CheckedBatchedEnv):
            self.envs.check_episodes(ep)
        # Summed in step order in float64, as the loop sums them.
        returns = np.cumsum(ep["reward"].astype(np.float64), axis=1)[:, -1]
        lengths = ep["filled"].sum(1).astype(np.int64)
        return ep, RolloutStats(returns=returns, lengths=lengths, won=won if self.envs.reports_wins else None)
