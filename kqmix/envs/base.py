"""The environment contract every kqmix environment adapter implements.

Static attributes: `n_agents, n_actions, obs_dim, state_dim, episode_limit`.

* `reset(seed=None) -> (obs (N, O), state (S,), avail_actions (N, A))`
* `step(actions (N,)) -> (obs, state, avail_actions, reward, terminated,
  truncated, info)` with a team `reward` (float) and Gymnasium's split:
  a *truncated* episode (time limit) bootstraps from the next state, a
  *terminated* one does not.

`CheckedEnv` wraps any adapter and turns every contract violation (wrong
shape, NaN, an agent with no available action, an illegal action, a crash
inside the environment) into an `EnvContractError` naming the agent, step
and value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..masks import widen_masks


class EnvContractError(RuntimeError):
    """An environment or its caller broke the kqmix environment contract."""


@dataclass(frozen=True)
class EnvInfo:
    """Static sizes of an environment."""

    n_agents: int
    n_actions: int
    obs_dim: int
    state_dim: int
    episode_limit: int


#: The sizes a team of agents depends on: agents trained on one environment act in any other with the
#: same sizes (a variant of it, for example with another time limit).
POLICY_SIZES = ("n_agents", "obs_dim", "n_actions")
#: The sizes a whole model (agents and mixer) depends on: the mixer also reads the global state.
MODEL_SIZES = POLICY_SIZES + ("state_dim",)


def size_mismatch(info: EnvInfo, reference: EnvInfo, sizes=POLICY_SIZES) -> str | None:
    """The first of `sizes` on which `info` differs from `reference` (None if none)."""
    return next((size for size in sizes if getattr(info, size) != getattr(reference, size)), None)


class MultiAgentEnv:
    """Base class for environment adapters (see module docstring)."""

    n_agents: int
    n_actions: int
    obs_dim: int
    state_dim: int
    episode_limit: int
    #: Optional human-readable action names, exported in metadata.
    action_meanings: list[str] | None = None
    #: Human-readable notes about fallbacks (e.g. "state = concatenated observations").
    notes: tuple[str, ...] = ()

    def reset(self, seed: int | None = None):
        raise NotImplementedError

    def step(self, actions):
        raise NotImplementedError

    def close(self):
        pass

    @property
    def info(self) -> EnvInfo:
        return EnvInfo(self.n_agents, self.n_actions, self.obs_dim, self.state_dim, self.episode_limit)

    @property
    def unwrapped(self):
        return self


class CheckedEnv(MultiAgentEnv):
    """Validates every input and output of a wrapped environment."""

    def __init__(self, env: MultiAgentEnv, name: str | None = None):
        self.env = env
        self.name = name or type(env).__name__
        for attr in ("n_agents", "n_actions", "obs_dim", "state_dim", "episode_limit"):
            value = getattr(env, attr, None)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise EnvContractError(
                    f"{self.name}: attribute `{attr}` must be a positive integer; got {value!r}."
                )
            setattr(self, attr, int(value))
        self.action_meanings = getattr(env, "action_meanings", None)
        self.notes = tuple(getattr(env, "notes", ()))
        self._t = 0
        self._avail = None

    @property
    def unwrapped(self):
        return self.env.unwrapped

    def _check_array(self, what, value, shape):
        arr = np.asarray(value, dtype=np.float32)
        if arr.shape != shape:
            raise EnvContractError(
                f"{self.name} at step {self._t}: `{what}` has shape {arr.shape}; expected {shape}."
            )
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            where = f"agent {idx[0]}, feature {idx[1]}" if arr.ndim == 2 else f"feature {idx[0]}"
            raise EnvContractError(
                f"{self.name} at step {self._t}: `{what}` holds a non-finite value "
                f"{arr[idx]} ({where})."
            )
        return arr

    def _check_outputs(self, obs, state, avail, terminated=False):
        obs = self._check_array("obs", obs, (self.n_agents, self.obs_dim))
        state = self._check_array("state", state, (self.state_dim,))
        avail = self._check_array("avail_actions", avail, (self.n_agents, self.n_actions))
        if not ((avail == 0.0) | (avail == 1.0)).all():
            raise EnvContractError(
                f"{self.name} at step {self._t}: `avail_actions` must hold only 0 and 1."
            )
        empty = np.flatnonzero(avail.sum(axis=1) == 0)
        if empty.size and terminated:
            # No decision is made from a terminal step's masks (kqmix.masks).
            avail = widen_masks(avail)
        elif empty.size:
            raise EnvContractError(
                f"{self.name} at step {self._t}: agent {int(empty[0])} has no available "
                "action (all-zero action mask); every agent needs at least one."
            )
        self._avail = avail
        return obs, state, avail

    def reset(self, seed=None):
        self._t = 0
        try:
            out = self.env.reset(seed=seed)
        except EnvContractError:
            raise
        except Exception as exc:  # the environment itself crashed
            raise EnvContractError(f"{self.name}: reset(seed={seed!r}) raised {exc!r}") from exc
        return self._check_outputs(*out)

    def step(self, actions):
        acts = np.asarray(actions)
        if acts.shape != (self.n_agents,):
            raise EnvContractError(
                f"{self.name} at step {self._t}: actions have shape {acts.shape}; "
                f"expected ({self.n_agents},)."
            )
        if not np.issubdtype(acts.dtype, np.integer):
            raise EnvContractError(
                f"{self.name} at step {self._t}: actions must be integers; got dtype {acts.dtype}."
            )
        for agent, a in enumerate(acts.tolist()):
            if not 0 <= a < self.n_actions or (self._avail is not None and self._avail[agent, a] == 0):
                raise EnvContractError(
                    f"{self.name} at step {self._t}: agent {agent} chose action {a}, which is "
                    f"not available (available: {np.flatnonzero(self._avail[agent]).tolist()})."
                )
        try:
            obs, state, avail, reward, terminated, truncated, info = self.env.step(acts)
        except EnvContractError:
            raise
        except Exception as exc:
            raise EnvContractError(
                f"{self.name} at step {self._t}: step(actions={acts.tolist()}) raised {exc!r}"
            ) from exc
        self._t += 1
        reward = float(reward)
        if not np.isfinite(reward):
            raise EnvContractError(f"{self.name} at step {self._t}: reward is {reward}.")
        obs, state, avail = self._check_outputs(obs, state, avail, terminated=bool(terminated))
        return obs, state, avail, reward, bool(terminated), bool(truncated), info

    def close(self):
        self.env.close()
