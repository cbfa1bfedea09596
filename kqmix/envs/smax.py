"""SMAX (JaxMARL's StarCraft-like micromanagement benchmark) behind the kqmix contract.

Install with `pip install 'kqmix[smax]'` (JaxMARL brings JAX). The key is a
scenario name known to `jaxmarl.environments.smax.map_name_to_scenario`
(`3m`, `2s3z`, `5m_vs_6m`, ...), optionally with keywords for the
environment (`3m:max_steps=200`). The enemy team is JaxMARL's heuristic AI
(`HeuristicEnemySMAX`), as in SMAC.

* **obs (N, O)**: each ally's own observation (`obs[agent]`), float32.
* **state (S,)**: SMAX's global world state (`get_world_state`), the
  analogue of SMAC's state, with unit positions divided by the map's width
  and height (`world_state_scale`) as SMAC normalises them; when unavailable
  the observations are concatenated and `notes` says so.
* **avail_actions (N, A)**: SMAX's own masks (`get_avail_actions`); dead
  allies can only take the no-op SMAX marks available for them.
* **reward**: SMAX gives every ally the same shared reward; the team reward
  is the mean over allies (= that shared reward), not the sum, so returns
  stay on SMAC's scale.
* **terminated / truncated**: the episode ends when a team is eliminated
  (*terminated*) or at `max_steps` (*truncated*).
* **info["battle_won"]**: on an episode's last step, whether every enemy is
  dead and an ally alive (SMAX's won-battle condition; both dead is a draw).

For many environments at once, `jaxmarl` with key `smax:SCENARIO`
(`kqmix.envs.jax_vec`) steps them all in one jit-compiled call.

The environment runs JAX on the CPU one step at a time (jit-compiled
`step_env` without auto-reset); each call costs a JAX dispatch, so SMAX is
the environment that benefits most from `kqmix.envs.vector` workers.
"""

from __future__ import annotations

import numpy as np

from ._extras import require
from ._keys import parse_key
from .base import MultiAgentEnv


def world_state_scale(env, state_dim: int) -> np.ndarray:
    """Multipliers `(S,)` that put SMAX's world state of `state_dim` features on SMAC's scale.

    `get_world_state` lists every unit's `own_features` (health fraction, x,
    y, weapon cooldown, unit-type bits), then every unit's team and type.
    Positions are raw map coordinates (up to 32 on `3m`), the other features
    at most a few units; SMAC's state divides positions by the map size, and
    raw ones give the mixer's hypernetworks a large gain (measured in
    docs/environments.md, "SMAX"). Here x is divided by the map's width and y
    by its height, so both lie in [0, 1]. `env` is a `HeuristicEnemySMAX` (or
    the SMAX it wraps); a world state of another size (another JaxMARL
    layout) is a `ValueError`.
    """
    smax = getattr(env, "_env", env)
    per_unit = np.array(
        [1.0 / smax.map_width if f == "position_x" else 1.0 / smax.map_height if f == "position_y" else 1.0
         for f in smax.own_features], np.float32)
    units = smax.num_agents  # allies and enemies
    scale = np.concatenate([np.tile(per_unit, units), np.ones(2 * units, np.float32)])  # + teams, types
    if scale.size != state_dim:
        raise ValueError(
            f"SMAX's world state has {state_dim} features; kqmix expected {scale.size} (each unit's "
            "own features, then every unit's team and type). Is this a newer JaxMARL? kqmix supports jaxmarl 0.2.")
    return scale


class SMAXEnv(MultiAgentEnv):
    """SMAX adapter. Args: `scenario` name and keywords for `HeuristicEnemySMAX`."""

    reports_wins = True

    def __init__(self, scenario: str = "3m", **kwargs):
        jax = require("jax", "smax", "SMAX")
        smax = require("jaxmarl.environments.smax", "smax", "SMAX")
        jaxmarl = require("jaxmarl", "smax", "SMAX")
        self._jax = jax
        self.scenario_name = scenario
        self._env = jaxmarl.make("HeuristicEnemySMAX", scenario=smax.map_name_to_scenario(scenario), **kwargs)
        self.agent_names = list(self._env.agents)
        self.n_agents = len(self.agent_names)
        self.n_actions = int(max(self._env.action_space(a).n for a in self.agent_names))
        self.obs_dim = int(max(np.prod(self._env.observation_space(a).shape) for a in self.agent_names))
        self.episode_limit = int(self._env.max_steps)
        self._reset = jax.jit(self._env.reset)
        self._step = jax.jit(self._env.step_env)  # no auto-reset: the final observation is kept
        self._avail = jax.jit(self._env.get_avail_actions)
        world = getattr(self._env, "get_world_state", None)
        self._world = jax.jit(world) if world is not None else None
        notes = ["team reward = the allies' shared reward (mean over allies)"]
        self._key = jax.random.PRNGKey(0)
        obs, state = self._reset(self._key)
        if self._world is not None:
            self.state_dim = int(np.asarray(self._world(state)).size)
            self._state_scale = world_state_scale(self._env, self.state_dim)
            notes.append("global state = SMAX's world state, positions divided by the map size")
        else:
            self.state_dim = self.n_agents * self.obs_dim
            notes.append("global state = concatenated ally observations")
        self.notes = tuple(notes)
        self._state = state
        self._t = 0

    def _observe(self, obs, state):
        o = np.zeros((self.n_agents, self.obs_dim), np.float32)  # (N, O)
        a = np.zeros((self.n_agents, self.n_actions), np.float32)  # (N, A)
        masks = self._avail(state)
        for i, name in enumerate(self.agent_names):
            flat = np.asarray(obs[name], np.float32).reshape(-1)
            o[i, : flat.size] = flat
            m = np.asarray(masks[name], np.float32).reshape(-1)
            a[i, : m.size] = m > 0
        if self._world is not None:
            s = np.asarray(self._world(state), np.float32).reshape(-1) * self._state_scale
        else:
            s = o.reshape(-1)
        return o, s, a

    def reset(self, seed=None):
        jax = self._jax
        if seed is not None:
            self._key = jax.random.PRNGKey(int(seed))
        self._key, sub = jax.random.split(self._key)
        obs, self._state = self._reset(sub)
        self._t = 0
        return self._observe(obs, self._state)

    def step(self, actions):
        jax = self._jax
        self._key, sub = jax.random.split(self._key)
        acts = {name: int(actions[i]) for i, name in enumerate(self.agent_names)}
        obs, self._state, rewards, dones, info = self._step(sub, self._state, acts)
        self._t += 1
        reward = float(np.mean([float(rewards[name]) for name in self.agent_names]))
        done = bool(dones["__all__"])
        truncated = (done or self._t >= self.episode_limit) and self._t >= self.episode_limit
        terminated = done and not truncated
        info = {k: np.asarray(v) for k, v in info.items()}
        if done or truncated:
            alive = np.asarray(self._state.state.unit_alive)  # allies first, then enemies
            allies, enemies = alive[: self._env.num_allies], alive[self._env.num_allies:]
            info["battle_won"] = bool(not enemies.any() and allies.any())
        return (*self._observe(obs, self._state), reward, terminated, truncated, info)


def make_smax(key: str) -> SMAXEnv:
    scenario, kwargs = parse_key(key or "3m", "SMAX")
    return SMAXEnv(scenario, **kwargs)
