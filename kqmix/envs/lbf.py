"""Level-Based Foraging (`lbforaging` 2.x) behind the kqmix contract.

The environment is built with `gymnasium.make(env_id, **kwargs)`, e.g.
`Foraging-8x8-2p-2f-coop-v3` (ids are registered when `lbforaging` is
imported). N agents, A = 6 actions (NONE, NORTH, SOUTH, WEST, EAST, LOAD).

* **obs (N, O)**: LBF's own per-agent vector observation (food triples then
  player triples, self first), as float32.
* **state (S,) = (N*O,)**: LBF has no global state; the observations of all
  agents are concatenated (agent order), the usual choice for LBF in
  pymarl/EPyMARL. Announced in `notes`.
* **avail_actions (N, A)**: LBF's own valid actions per agent
  (`ForagingEnv._valid_actions`): moves into walls, food or off the grid and
  LOAD without adjacent food are unavailable. LBF itself would silently turn
  such an action into NONE; kqmix refuses it instead (see `CheckedEnv`).
* **reward**: the team reward is the sum of the agents' rewards. LBF
  normalises rewards so that collecting all food sums to 1.0 per episode.
* **terminated / truncated**: LBF reports `done` both when all food is
  collected and at its step limit; the adapter reports the first as
  *terminated* and the second as *truncated* (it bootstraps).
* **episode_limit**: the environment's `max_episode_steps` (50 for the
  registered ids), or a Gymnasium `TimeLimit`, whichever is shorter.
"""

from __future__ import annotations

import numpy as np

from ._extras import require
from ._keys import parse_key
from ._gym import GymTeamEnv

DEFAULT_ID = "Foraging-8x8-2p-2f-coop-v3"


class LBFEnv(GymTeamEnv):
    """Level-Based Foraging adapter.

    Args:
        env_id: a registered `Foraging-...-v3` id.
        **kwargs: passed to `gymnasium.make` (e.g. `max_episode_steps`,
            `normalize_reward`, `penalty`).
    """

    def __init__(self, env_id: str = DEFAULT_ID, **kwargs):
        gym = require("gymnasium", None, "Level-Based Foraging")
        require("lbforaging", None, "Level-Based Foraging")  # registers the ids
        if env_id not in gym.registry:
            import difflib

            close = difflib.get_close_matches(env_id, [k for k in gym.registry if k.startswith("Foraging")], n=3)
            raise ValueError(
                f"Unknown Level-Based Foraging id {env_id!r}. Ids look like "
                f"'Foraging-8x8-2p-2f-coop-v3'. Close matches: {close}."
            )
        # The passive checker warns about LBF's Tuple spaces on every step and
        # costs time; the contract is checked by `CheckedEnv` instead.
        self._env = gym.make(env_id, disable_env_checker=True, **kwargs)
        self._lbf = self._env.unwrapped
        self.env_id = env_id
        limits = [self._lbf._max_episode_steps]
        if self._env.spec is not None and self._env.spec.max_episode_steps:
            limits.append(self._env.spec.max_episode_steps)
        self.n_agents = len(self._lbf.players)
        self.n_actions = int(self._lbf.action_space[0].n)
        self.obs_dim = int(np.prod(self._lbf.observation_space[0].shape))
        self.state_dim = self.n_agents * self.obs_dim
        self.episode_limit = int(min(limits))
        from lbforaging.foraging.environment import Action

        self.action_meanings = [a.name for a in sorted(Action, key=lambda a: a.value)]
        self.notes = (
            "global state = concatenated agent observations (LBF has no global state)",
            "team reward = sum of the agents' rewards",
        )
        self._t = 0

    def _avail_actions(self):
        avail = np.zeros((self.n_agents, self.n_actions), np.float32)  # (N, A)
        valid = self._lbf._valid_actions
        for i, player in enumerate(self._lbf.players):
            avail[i, [a.value for a in valid[player]]] = 1.0
        return avail

    def reset(self, seed=None):
        # LBF places each player on a cell that no player occupies, and the players not yet
        # placed still stand where the last episode left them: without clearing them, the
        # start of an episode would depend on the episodes before it, not on its seed alone,
        # and a resumed run (fresh environments) would not replay the episodes of the
        # uninterrupted one.
        for player in self._lbf.players:
            player.position = None
        return super().reset(seed)

    def step(self, actions):
        obs, state, avail, reward, done, truncated, info = self._step_env(actions)
        # All food collected is the task's natural end; anything else that
        # ends the episode (LBF's step limit, a TimeLimit wrapper) is a
        # time limit and must bootstrap.
        terminated = done and int(self._lbf.field.sum()) == 0
        truncated = (done or truncated or self._t >= self.episode_limit) and not terminated
        return obs, state, avail, reward, terminated, truncated, info

    def valid_actions(self) -> list[list[int]]:
        """The environment's own valid actions per agent (for tests and debugging)."""
        valid = self._lbf._valid_actions
        return [sorted(a.value for a in valid[p]) for p in self._lbf.players]


def make_lbf(key: str) -> LBFEnv:
    env_id, kwargs = parse_key(key or DEFAULT_ID, "Level-Based Foraging")
    return LBFEnv(env_id, **kwargs)
