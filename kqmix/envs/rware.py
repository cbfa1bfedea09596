"""Multi-Robot Warehouse (`rware` 2.x) behind the kqmix contract.

Install with `pip install 'kqmix[rware]'`. The environment is built with
`gymnasium.make(env_id, **kwargs)`, e.g. `rware-tiny-2ag-v2`. N robots,
A = 5 actions (NOOP, FORWARD, LEFT, RIGHT, TOGGLE_LOAD).

* **obs (N, O)**: RWARE's flattened per-robot observation (own position,
  direction and load, then the 3x3 neighbourhood), as float32. Image
  observation variants are flattened.
* **state (S,) = (N*O,)**: RWARE has no global state vector; the
  observations of all robots are concatenated. Announced in `notes`.
* **avail_actions (N, A)**: RWARE has no action masks (every action is legal;
  blocked moves are no-ops), so the mask is all ones. Announced in `notes`.
* **reward**: team reward = sum of the robots' rewards (RWARE's default
  INDIVIDUAL reward pays the robot that delivers a requested shelf).
* **terminated / truncated**: RWARE has no natural end; when it reports
  `done` (its `max_steps`, 500 for the registered ids, or an inactivity
  limit) the adapter reports *truncated*, never *terminated*.
"""

from __future__ import annotations

import numpy as np

from ._extras import require
from ._keys import parse_key
from ._gym import GymTeamEnv

DEFAULT_ID = "rware-tiny-2ag-v2"


class RwareEnv(GymTeamEnv):
    """Multi-Robot Warehouse adapter.

    Args:
        env_id: a registered `rware-...-v2` id.
        **kwargs: passed to `gymnasium.make` (e.g. `max_steps`, `reward_type`).
    """

    def __init__(self, env_id: str = DEFAULT_ID, **kwargs):
        gym = require("gymnasium", "rware", "Multi-Robot Warehouse")
        rware = require("rware", "rware", "Multi-Robot Warehouse")
        if env_id not in gym.registry:
            raise ValueError(
                f"Unknown Multi-Robot Warehouse id {env_id!r}. Ids look like 'rware-tiny-2ag-v2' "
                "(sizes tiny/small/medium/large, 1-19 agents, optional -easy/-hard)."
            )
        if isinstance(kwargs.get("reward_type"), str):
            kwargs["reward_type"] = rware.RewardType[kwargs["reward_type"].upper()]
        self._env = gym.make(env_id, disable_env_checker=True, **kwargs)
        self._wh = self._env.unwrapped
        self.env_id = env_id
        spaces = self._wh.observation_space
        if isinstance(spaces[0], gym.spaces.Dict):
            raise ValueError(
                f"{env_id}: dictionary observations are not supported; use the flat or -img ids."
            )
        action_space = self._wh.action_space[0]
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(
                f"{env_id}: only plain discrete actions are supported (msg_bits=0); "
                f"got action space {action_space}."
            )
        limits = [lim for lim in (self._wh.max_steps,
                                  self._env.spec.max_episode_steps if self._env.spec else None) if lim]
        if not limits:
            raise ValueError(f"{env_id}: the environment has no step limit (max_steps=None); set one.")
        self.n_agents = int(self._wh.n_agents)
        self.n_actions = int(action_space.n)
        self.obs_dim = int(gym.spaces.flatdim(spaces[0]))
        self.state_dim = self.n_agents * self.obs_dim
        self.episode_limit = int(min(limits))
        self.action_meanings = [a.name for a in sorted(rware.warehouse.Action, key=lambda a: a.value)]
        self.notes = (
            "global state = concatenated robot observations (RWARE has no global state vector)",
            "action masks are all ones (RWARE has none: every action is legal)",
            "team reward = sum of the robots' rewards",
        )
        self._t = 0
        self._avail = np.ones((self.n_agents, self.n_actions), np.float32)

    def _avail_actions(self):
        return self._avail.copy()

    def step(self, actions):
        obs, state, avail, reward, done, truncated, info = self._step_env(actions)
        # Every end of a warehouse episode is a time limit, so it bootstraps.
        truncated = done or truncated or self._t >= self.episode_limit
        return obs, state, avail, reward, False, truncated, info


def make_rware(key: str) -> RwareEnv:
    env_id, kwargs = parse_key(key or DEFAULT_ID, "Multi-Robot Warehouse")
    return RwareEnv(env_id, **kwargs)
