"""M environments behind one batched interface: what `kqmix.runner.Runner` steps.

`BatchedEnv` (legend in `kqmix.layers`; M environments):

* static: `n_envs` (M), `info` (`EnvInfo`), `action_meanings`, `notes`;
* `reset(seeds) -> (obs (M, N, O), state (M, S), avail_actions (M, N, A))`,
  one seed (int or None) per environment;
* `step(actions (M, N), active (M,)) -> BatchStep`. Environments with
  `active[i]` False have finished their episode and ride along: their
  outputs are meaningless and ignored (`EnvList` does not even step them);
* `close()`.

Two implementations: `EnvList` steps M contract environments (`kqmix.envs.base`)
one after another, or in their worker processes at once when they are proxies
of one `SubprocessVecEnv`; `kqmix.envs.jax_vec.JaxMARLVecEnv` steps all M in one
jit-compiled call. `CheckedBatchedEnv` validates any of them.

Win rate: an environment that knows who won (SMAX) reports `won (M,)` in each
`BatchStep` (1.0 where the step ended the episode with a win); environments
that do not, report `won=None`. A contract environment reports it as
`info["battle_won"]` (SMAC's name) on the episode's last step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..masks import widen_masks
from .base import EnvContractError, EnvInfo
from .vector import reset_envs, step_envs

#: The `info` key under which a contract environment reports a won episode.
WON_KEY = "battle_won"


@dataclass
class BatchStep:
    """What one step of M environments returns (rows of inactive environments are meaningless)."""

    obs: np.ndarray  # (M, N, O) float32; after an episode's last step, its final observation
    state: np.ndarray  # (M, S) float32
    avail_actions: np.ndarray  # (M, N, A) float32
    reward: np.ndarray  # (M,) float32, the team reward
    terminated: np.ndarray  # (M,) bool
    truncated: np.ndarray  # (M,) bool: the time limit (bootstraps)
    won: np.ndarray | None = None  # (M,) float32 where the environment reports wins, else None


class BatchedEnv:
    """Base class of the batched interface (see module docstring)."""

    n_envs: int
    info: EnvInfo
    action_meanings: list[str] | None = None
    notes: tuple[str, ...] = ()
    #: True when the environment reports won episodes (`BatchStep.won`).
    reports_wins: bool = False

    def reset(self, seeds):
        raise NotImplementedError

    def step(self, actions, active) -> BatchStep:
        raise NotImplementedError

    def close(self):
        pass


class EnvList(BatchedEnv):
    """M contract environments (same sizes) behind the batched interface.

    Only active environments are stepped; when all are proxies of one
    `kqmix.envs.vector.SubprocessVecEnv`, they step in their workers at once.
    """

    def __init__(self, envs):
        self.envs = list(envs)
        if not self.envs:
            raise ValueError("EnvList needs at least one environment.")
        first = self.envs[0].info
        for i, env in enumerate(self.envs[1:], start=1):
            if env.info != first:
                raise ValueError(f"Environment {i} has sizes {env.info}; environment 0 has {first}.")
        self.n_envs, self.info = len(self.envs), first
        self.action_meanings = getattr(self.envs[0], "action_meanings", None)
        self.notes = tuple(getattr(self.envs[0], "notes", ()))
        self.reports_wins = bool(getattr(self.envs[0].unwrapped, "reports_wins", False))

    def reset(self, seeds):
        info, m = self.info, self.n_envs
        obs = np.zeros((m, info.n_agents, info.obs_dim), np.float32)  # (M, N, O)
        state = np.zeros((m, info.state_dim), np.float32)  # (M, S)
        avail = np.zeros((m, info.n_agents, info.n_actions), np.float32)  # (M, N, A)
        for i, (o, s, a) in enumerate(reset_envs(self.envs, list(seeds))):
            obs[i], state[i], avail[i] = o, s, a
        return obs, state, avail

    def step(self, actions, active) -> BatchStep:
        info, m = self.info, self.n_envs
        out = BatchStep(
            obs=np.zeros((m, info.n_agents, info.obs_dim), np.float32),
            state=np.zeros((m, info.state_dim), np.float32),
            avail_actions=np.ones((m, info.n_agents, info.n_actions), np.float32),
            reward=np.zeros(m, np.float32), terminated=np.zeros(m, bool), truncated=np.zeros(m, bool),
            won=np.zeros(m, np.float32) if self.reports_wins else None,
        )
        idx = np.flatnonzero(active)
        results = step_envs(self.envs, idx, np.asarray(actions)[idx])
        for i, (obs, state, avail, reward, terminated, truncated, step_info) in zip(idx, results):
            out.obs[i], out.state[i], out.avail_actions[i] = obs, state, avail
            out.reward[i], out.terminated[i], out.truncated[i] = reward, terminated, truncated
            if out.won is not None:
                out.won[i] = float(bool(np.asarray((step_info or {}).get(WON_KEY, False))))
        return out

    def close(self):
        for env in self.envs:
            env.close()


class CheckedBatchedEnv(BatchedEnv):
    """Validates the inputs and outputs of a batched environment, as `CheckedEnv` does for one.

    Checks are vectorised over the M environments: shapes, non-finite values,
    masks of 0/1 with at least one action for every agent of a running
    episode, and actions that are integers and available (active environments
    only). Errors name the environment, agent, step and value.
    """

    def __init__(self, env: BatchedEnv, name: str | None = None):
        self.env = env
        self.name = name or type(env).__name__
        self.n_envs, self.info = env.n_envs, env.info
        self.action_meanings, self.notes = env.action_meanings, tuple(env.notes)
        self.reports_wins = env.reports_wins
        self._t = 0
        self._avail = None

    def _array(self, what, value, shape):
        arr = np.asarray(value, np.float32)
        if arr.shape != shape:
            raise EnvContractError(f"{self.name} at step {self._t}: `{what}` has shape {arr.shape}; expected {shape}.")
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise EnvContractError(
                f"{self.name} at step {self._t}: `{what}` holds a non-finite value {arr[idx]} "
                f"(environment {idx[0]}, index {idx[1:]})."
            )
        return arr

    def _outputs(self, obs, state, avail, live):
        """`live (M,)`: environments whose episode continues, so their agents need an action."""
        m, info = self.n_envs, self.info
        obs = self._array("obs", obs, (m, info.n_agents, info.obs_dim))
        state = self._array("state", state, (m, info.state_dim))
        avail = self._array("avail_actions", avail, (m, info.n_agents, info.n_actions))
        if not ((avail == 0.0) | (avail == 1.0)).all():
            raise EnvContractError(f"{self.name} at step {self._t}: `avail_actions` must hold only 0 and 1.")
        empty = (avail.sum(-1) == 0) & live[:, None]  # (M, N)
        if empty.any():
            i, agent = (int(x) for x in np.argwhere(empty)[0])
            raise EnvContractError(
                f"{self.name} at step {self._t}: agent {agent} of environment {i} has no available "
                "action (all-zero action mask); every agent needs at least one."
            )
        # No decision is made from a finished episode's masks, which may be empty (kqmix.masks).
        self._avail = np.where(live[:, None, None], avail, widen_masks(avail))
        return obs, state, self._avail

    def reset(self, seeds):
        seeds = list(seeds)
        if len(seeds) != self.n_envs:
            raise EnvContractError(f"{self.name}: reset got {len(seeds)} seeds for {self.n_envs} environments.")
        self._t = 0
        return self._outputs(*self.env.reset(seeds), live=np.ones(self.n_envs, bool))

    def step(self, actions, active) -> BatchStep:
        m, n = self.n_envs, self.info.n_agents
        if self._avail is None:
            raise EnvContractError(f"{self.name}: step() before reset().")
        acts, active = np.asarray(actions), np.asarray(active, bool)
        if acts.shape != (m, n):
            raise EnvContractError(f"{self.name} at step {self._t}: actions have shape {acts.shape}; expected {(m, n)}.")
        if not np.issubdtype(acts.dtype, np.integer):
            raise EnvContractError(f"{self.name} at step {self._t}: actions must be integers; got dtype {acts.dtype}.")
        in_range = (acts >= 0) & (acts < self.info.n_actions)
        chosen = np.take_along_axis(self._avail, np.clip(acts, 0, self.info.n_actions - 1)[..., None], -1)[..., 0]
        illegal = ~(in_range & (chosen == 1.0)) & active[:, None]  # (M, N)
        if illegal.any():
            i, agent = (int(x) for x in np.argwhere(illegal)[0])
            raise EnvContractError(
                f"{self.name} at step {self._t}: agent {agent} of environment {i} chose action "
                f"{int(acts[i, agent])}, which is not available "
                f"(available: {np.flatnonzero(self._avail[i, agent]).tolist()})."
            )
        out = self.env.step(acts, active)
        self._t += 1
        reward = np.asarray(out.reward, np.float32)
        if reward.shape != (m,):
            raise EnvContractError(f"{self.name} at step {self._t}: reward has shape {reward.shape}; expected {(m,)}.")
        bad = np.flatnonzero(~np.isfinite(reward) & active)
        if bad.size:
            raise EnvContractError(f"{self.name} at step {self._t}: reward of environment {int(bad[0])} is {reward[bad[0]]}.")
        terminated, truncated = np.asarray(out.terminated, bool), np.asarray(out.truncated, bool)
        live = active & ~terminated & ~truncated
        # Rows of inactive environments are not checked for values: they are never used.
        obs, state, avail = self._outputs(np.where(active[:, None, None], out.obs, 0.0),
                                          np.where(active[:, None], out.state, 0.0),
                                          np.where(active[:, None, None], out.avail_actions, 1.0), live)
        return BatchStep(obs, state, avail, reward, terminated, truncated, out.won)

    def check_episodes(self, ep: dict) -> None:
        """The checks of `reset` and `step` on a batch of recorded episodes (layout in `kqmix.batch`).

        For a compiled rollout (`kqmix.envs.jax_rollout`), which steps the wrapped
        environment without passing here: every recorded step (index 0, and t+1
        for each filled t) is checked as `step` checks it, vectorised over steps and
        environments, and the masks at an episode's end are widened in place as
        `step` widens them.
        """
        m, info = self.n_envs, self.info
        filled = np.asarray(ep["filled"]) > 0  # (M, T)
        recorded = np.concatenate([np.ones((m, 1), bool), filled], 1)  # (M, T+1)
        live = np.concatenate([filled, np.zeros((m, 1), bool)], 1)  # (M, T+1): a decision is made there

        def fail(where, message):
            i, t = (int(x) for x in where[:2])
            raise EnvContractError(f"{self.name} at step {t}: {message(i, t, *where[2:])}")

        for what, rows in (("obs", recorded[..., None, None]), ("state", recorded[..., None]),
                           ("avail_actions", recorded[..., None, None]), ("reward", filled)):
            bad = ~np.isfinite(ep[what]) & rows
            if bad.any():
                idx = tuple(int(x) for x in np.argwhere(bad)[0])
                fail(idx, lambda i, t, *rest: f"`{what}` holds a non-finite value {ep[what][idx]} "
                                              f"(environment {i}, index {tuple(rest)}).")
        avail = ep["avail_actions"]  # (M, T+1, N, A)
        if not ((avail == 0.0) | (avail == 1.0)).all():
            fail(np.argwhere((avail != 0.0) & (avail != 1.0))[0],
                 lambda i, t, *_: "`avail_actions` must hold only 0 and 1.")
        empty = (avail.sum(-1) == 0) & live[..., None]  # (M, T+1, N)
        if empty.any():
            fail(np.argwhere(empty)[0], lambda i, t, agent: f"agent {agent} of environment {i} has no available "
                                                            "action (all-zero action mask); every agent needs at least one.")
        acts = ep["actions"]  # (M, T, N)
        in_range = (acts >= 0) & (acts < info.n_actions)
        chosen = np.take_along_axis(avail[:, :-1], np.clip(acts, 0, info.n_actions - 1)[..., None], -1)[..., 0]
        illegal = ~(in_range & (chosen == 1.0)) & filled[..., None]  # (M, T, N)
        if illegal.any():
            fail(np.argwhere(illegal)[0], lambda i, t, agent: (
                f"agent {agent} of environment {i} chose action {int(acts[i, t, agent])}, which is not available "
                f"(available: {np.flatnonzero(avail[i, t, agent]).tolist()})."))
        # No decision is made from a finished episode's masks, which may be empty (kqmix.masks).
        done = recorded & ~live  # (M, T+1)
        avail[done] = widen_masks(avail[done])

    def close(self):
        self.env.close()


def as_batched(envs) -> BatchedEnv:
    """`envs` itself when it is a `BatchedEnv`, else the list of contract environments as an `EnvList`."""
    return envs if isinstance(envs, BatchedEnv) else EnvList(envs)
