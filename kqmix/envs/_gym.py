"""Plumbing shared by adapters of Gymnasium environments that return one tuple entry per agent."""

from __future__ import annotations

import numpy as np

from .base import MultiAgentEnv


class GymTeamEnv(MultiAgentEnv):
    """Holds a Gymnasium env `self._env` whose observations and rewards are per-agent tuples.

    Subclasses set the static sizes and implement `_avail_actions()` and
    `step()` (which decides terminated vs truncated from `_step_env`).
    The global state is the concatenation of the agents' observations.
    """

    _env = None
    _t = 0

    def _avail_actions(self) -> np.ndarray:
        raise NotImplementedError

    def _observe(self, nobs):
        obs = np.stack([np.asarray(o, np.float32).reshape(-1) for o in nobs])  # (N, O)
        return obs, obs.reshape(-1), self._avail_actions()

    def reset(self, seed=None):
        self._t = 0
        nobs, _ = self._env.reset(seed=seed)
        return self._observe(nobs)

    def _step_env(self, actions):
        """Steps the env: `(obs, state, avail, team reward, done, truncated, info)`."""
        nobs, rewards, done, truncated, info = self._env.step([int(a) for a in actions])
        self._t += 1
        return (*self._observe(nobs), float(np.sum(rewards)), bool(done), bool(truncated), info)

    def close(self):
        self._env.close()
