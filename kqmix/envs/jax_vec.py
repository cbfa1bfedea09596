"""JaxMARL environments, all M stepped in one jit-compiled, vmapped call per timestep.

Registry name `jaxmarl` (`pip install 'kqmix[smax]'`); the key names the
environment family and the environment, then optional constructor keywords:

* `smax:SCENARIO[:name=value,...]` - SMAX against JaxMARL's heuristic enemy
  (`HeuristicEnemySMAX`, scenario from `map_name_to_scenario`: `3m`, `8m`,
  `2s3z`, `3s5z`, `5m_vs_6m`, ...), e.g. `smax:3m:max_steps=150`;
* `mpe:NAME[:name=value,...]` - JaxMARL's MPE `MPE_NAME` with discrete
  actions, e.g. `mpe:simple_spread_v3`.

`JaxMARLVecEnv` is a `kqmix.envs.batched.BatchedEnv`; `JaxMARLEnv` is one
environment of it behind the contract of `kqmix.envs.base` (`make_env`,
`kqmix evaluate`). Conventions (legend in `kqmix.layers`):

* **obs (M, N, O)**: each agent's observation, zero-padded to the largest.
* **state (M, S)**: SMAX's world state (`obs["world_state"]`, as JaxMARL's
  `CTRolloutManager` in `jaxmarl/wrappers/baselines.py` uses for SMAX) with
  unit positions divided by the map size, as in SMAC
  (`kqmix.envs.smax.world_state_scale`); MPE:
  the agents' observations concatenated in agent order (that wrapper's
  default `global_state`), announced in `notes`.
* **avail_actions (M, N, A)**: SMAX's `get_avail_actions`; MPE has no masks,
  so all ones (announced in `notes`).
* **reward (M,)**: SMAX gives every ally the same shared reward, which is the
  team reward (the wrapper's `rewards[agents[0]]`); MPE: the sum of the
  agents' rewards (the wrapper's default `global_reward`).
* **terminated / truncated**: an episode ends *terminated* when the
  environment says it is done before the time limit (SMAX: a team is
  eliminated) and *truncated* at `episode_limit` = the environment's
  `max_steps`. (JaxMARL's own time-out comes one step later, at
  `max_steps + 1`, because its check precedes the step counter's increment;
  kqmix ends episodes at `max_steps`, as the one-env `smax` adapter and
  PettingZoo's MPE do, so that time-out is never reached.)
* **won (M,)** (SMAX only): the episode ended with every enemy dead and an
  ally alive - the condition of SMAX's won-battle bonus and of SMAC's
  `battle_won` (both teams dead is a draw).

Seeds and keys: the episode with seed `s` (an int in [0, 2**32), e.g. from
`kqmix.evaluation.episode_seeds`) has the key `k = jax.random.PRNGKey(s)`;
it is reset with `fold_in(k, 0)` and its t-th step (t = 1, 2, ...) is
`step_env(fold_in(k, t), ...)`, so an episode depends only on its seed and
actions. Auto-reset: when an episode ends, the environment starts the next
one in the same call, with key `fold_in(k, NEXT_EPISODE)`; `reset(None)`
continues that chain from the current episode too.

Environments whose episode ended ride along (`kqmix.runner`): every call
steps all M, and a `BatchStep` returns the finished episode's final
observation; `current()` gives the observations the environments continue
from (the first of the next episode where one was reset).

The jit-compiled functions are shared by every `JaxMARLVecEnv` of one key
(and compiled once per M): a run's training and test environments compile once.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from ._extras import require
from ._keys import parse_key
from .base import EnvInfo, MultiAgentEnv
from .batched import WON_KEY, BatchedEnv, BatchStep

#: The `fold_in` data that derives the next episode's key from the current one's.
NEXT_EPISODE = 0xFFFFFFFF
FAMILIES = ("smax", "mpe")


@contextlib.contextmanager
def _quiet_stdout():
    """Silences file descriptor 1: importing JaxMARL prints, and resets `sys.stdout` while doing so."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _import_jaxmarl():
    jax = require("jax", "smax", "JaxMARL environments")
    if "jaxmarl" not in sys.modules:
        with _quiet_stdout():
            require("jaxmarl", "smax", "JaxMARL environments")
            require("jaxmarl.environments.smax", "smax", "JaxMARL environments")
    return jax, sys.modules["jaxmarl"]


def parse_jaxmarl_key(key: str) -> tuple[str, str, dict]:
    """`"smax:3m:max_steps=150"` -> `("smax", "3m", {"max_steps": 150})`."""
    family, _, rest = (key or "").partition(":")
    family = family.strip().lower()
    if family not in FAMILIES or not rest.strip():
        raise ValueError(
            f"Environment 'jaxmarl' needs an env_key 'smax:SCENARIO' or 'mpe:NAME' (optionally followed by "
            f"':name=value,...'), e.g. 'smax:3m' or 'mpe:simple_spread_v3'. Received: env_key={key!r}"
        )
    name, kwargs = parse_key(rest, f"JaxMARL {family}")
    return family, name, kwargs


class _Core:
    """One JaxMARL environment's pure per-episode functions and their jit-compiled batched versions."""

    def __init__(self, key: str):
        jax, jaxmarl = _import_jaxmarl()
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.family, self.name, kwargs = parse_jaxmarl_key(key)
        if self.family == "smax":
            from jaxmarl.environments.smax import map_name_to_scenario
            from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

            if self.name not in MAP_NAME_TO_SCENARIO:
                raise ValueError(f"Unknown SMAX scenario {self.name!r}. Known: {sorted(MAP_NAME_TO_SCENARIO)}.")
            self.env = jaxmarl.make("HeuristicEnemySMAX", scenario=map_name_to_scenario(self.name), **kwargs)
        else:
            env_id = f"MPE_{self.name}"
            known = [e[4:] for e in jaxmarl.registered_envs if e.startswith("MPE_")]
            if env_id not in jaxmarl.registered_envs:
                raise ValueError(f"Unknown JaxMARL MPE environment {self.name!r}. Known: {known}.")
            self.env = jaxmarl.make(env_id, **kwargs)
        env = self.env
        self.agents = list(env.agents)
        spaces = [env.action_space(a) for a in self.agents]
        if not all(hasattr(s, "n") for s in spaces):
            raise ValueError(f"JaxMARL {key!r}: kqmix needs discrete actions; got action spaces {spaces}.")
        self.n_agents = len(self.agents)
        self.n_actions = int(max(s.n for s in spaces))
        self.agent_actions = [int(s.n) for s in spaces]
        self.obs_dim = int(max(np.prod(env.observation_space(a).shape) for a in self.agents))
        self.episode_limit = int(env.max_steps)
        self.smax = self.family == "smax"
        self.state_scale = 1.0  # SMAX: set below, once the world state's size is known
        if self.smax:
            self.notes = ("global state = SMAX's world state, positions divided by the map size",
                          "team reward = the allies' shared reward",
                          "won = every enemy dead and an ally alive at the episode's end")
        else:
            self.notes = ("global state = the agents' observations concatenated (MPE has no global state)",
                          "action masks: all ones (MPE has no action masks)",
                          "team reward = sum of the agents' rewards")
        self.reports_wins = self.smax
        probe = jax.eval_shape(self.reset_one, jax.random.PRNGKey(0))
        self.state_dim = int(probe[2].shape[-1])
        if self.smax:
            from .smax import world_state_scale

            self.state_scale = world_state_scale(env, self.state_dim)  # positions over the map size, as SMAC
        self.reset_batch = jax.jit(jax.vmap(self.reset_one))
        self.step_batch = jax.jit(jax.vmap(self.step_one))
        self.seed_keys = jax.jit(jax.vmap(jax.random.PRNGKey))
        self.next_keys = jax.jit(jax.vmap(lambda k: jax.random.fold_in(k, NEXT_EPISODE)))

    # -- one environment, pure functions (vmapped above) -------------------

    def observe(self, obs, env_state):
        """JaxMARL's observation dict and state -> obs (N, O), state (S,), avail (N, A)."""
        jnp = self.jnp
        rows = []
        for a in self.agents:
            flat = jnp.ravel(obs[a]).astype(jnp.float32)
            rows.append(jnp.pad(flat, (0, self.obs_dim - flat.shape[0])))
        o = jnp.stack(rows)  # (N, O)
        if self.smax:
            state = obs["world_state"].astype(jnp.float32) * self.state_scale  # (S,), positions / map size
            masks = self.env.get_avail_actions(env_state)
            avail = jnp.stack([(jnp.ravel(masks[a]) > 0).astype(jnp.float32) for a in self.agents])  # (N, A)
        else:
            state = jnp.concatenate([jnp.ravel(obs[a]).astype(jnp.float32) for a in self.agents])  # (S,)
            avail = jnp.stack([(jnp.arange(self.n_actions) < n).astype(jnp.float32) for n in self.agent_actions])
        return o, state, avail

    def won(self, env_state):
        jnp = self.jnp
        if not self.smax:
            return jnp.float32(0.0)
        alive = env_state.state.unit_alive  # allies first, then enemies
        allies, enemies = alive[: self.env.num_allies], alive[self.env.num_allies:]
        return (jnp.all(~enemies) & jnp.any(allies)).astype(jnp.float32)

    def reset_one(self, ekey):
        """An episode from its key: `(carry, obs, state, avail)`, carry = (episode key, t, env state)."""
        obs, env_state = self.env.reset(self.jax.random.fold_in(ekey, 0))
        o, s, a = self.observe(obs, env_state)
        return self.strong((ekey, self.jnp.int32(0), env_state)), o, s, a

    def strong(self, tree):
        """The carry without weak types: JaxMARL's states mix weak and strong ones from step to step,
        and every change of the carry's types would compile the step again."""
        lax = self.jax.lax
        return self.jax.tree.map(lambda x: lax.convert_element_type(x, x.dtype), tree)

    def step_one(self, carry, actions):
        """One step, then the next episode where this one ended.

        Returns `(carry, final, current)`: `final` = (obs, state, avail, reward,
        terminated, truncated, won) of this step; `current` = (obs, state, avail)
        the environment continues from.
        """
        jax, jnp = self.jax, self.jnp
        ekey, t, env_state = carry
        t = t + 1
        acts = {a: actions[i] for i, a in enumerate(self.agents)}
        obs, env_state, rewards, dones, _ = self.env.step_env(jax.random.fold_in(ekey, t), env_state, acts)
        o, s, a = self.observe(obs, env_state)
        if self.smax:
            reward = rewards[self.agents[0]].astype(jnp.float32)
        else:
            reward = jnp.sum(jnp.stack([rewards[a] for a in self.agents])).astype(jnp.float32)
        terminated = dones["__all__"]
        truncated = (t >= self.episode_limit) & ~terminated
        done = terminated | truncated
        won = jnp.where(done, self.won(env_state), 0.0)
        fresh, ro, rs, ra = self.reset_one(jax.random.fold_in(ekey, NEXT_EPISODE))
        carry = self.strong(jax.tree.map(lambda new, old: jnp.where(done, new, old), fresh, (ekey, t, env_state)))
        current = tuple(jnp.where(done, new, old) for new, old in ((ro, o), (rs, s), (ra, a)))
        return carry, (o, s, a, reward, terminated, truncated, won), current


_CORES: dict[str, _Core] = {}


def _core(key: str) -> _Core:
    family, name, kwargs = parse_jaxmarl_key(key)
    canonical = f"{family}:{name}:" + ",".join(f"{k}={kwargs[k]!r}" for k in sorted(kwargs))
    if canonical not in _CORES:
        _CORES[canonical] = _Core(key)
    return _CORES[canonical]


def _episode_key_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
        raise ValueError(f"A JaxMARL episode seed must be an int in [0, 2**32) or None. Received: {seed!r}")
    return int(seed)


class JaxMARLVecEnv(BatchedEnv):
    """M copies of one JaxMARL environment, stepped in one jit-compiled call (see module docstring).

    Args:
        key: `smax:SCENARIO[...]` or `mpe:NAME[...]`.
        n_envs: M.
    """

    def __init__(self, key: str, n_envs: int):
        if isinstance(n_envs, bool) or not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
            raise ValueError(f"`n_envs` must be an integer >= 1. Received: n_envs={n_envs!r}")
        self.key, self.n_envs = key, int(n_envs)
        self._core = core = _core(key)
        self.info = EnvInfo(core.n_agents, core.n_actions, core.obs_dim, core.state_dim, core.episode_limit)
        self.notes, self.reports_wins = core.notes, core.reports_wins
        self.action_meanings = None
        self.agent_names = list(core.agents)
        self._carry = None  # (episode keys (M, 2), t (M,), env states), on the device
        self._current = None  # (obs, state, avail) the environments continue from, on the device

    def reset(self, seeds=None):
        """Starts one episode per environment: seed `s` -> key `PRNGKey(s)`; None continues the key chain."""
        seeds = [None] * self.n_envs if seeds is None else list(seeds)
        if len(seeds) != self.n_envs:
            raise ValueError(f"reset() got {len(seeds)} seeds for {self.n_envs} environments.")
        core = self._core
        given = np.array([_episode_key_seed(s) if s is not None else 0 for s in seeds], np.uint32)
        keys = np.asarray(core.seed_keys(given))  # (M, 2)
        if any(s is None for s in seeds):
            previous = (self._carry[0] if self._carry is not None
                        else core.seed_keys(np.arange(self.n_envs, dtype=np.uint32)))
            chained = np.asarray(core.next_keys(previous))
            none = np.array([s is None for s in seeds])
            keys = np.where(none[:, None], chained, keys)
        self._carry, obs, state, avail = core.reset_batch(keys)
        self._current = (obs, state, avail)
        return self.current()

    def current(self):
        """`(obs (M, N, O), state (M, S), avail (M, N, A))` the environments continue from."""
        if self._current is None:
            raise RuntimeError("Call reset() before step() or current().")
        return tuple(np.asarray(x) for x in self._core.jax.device_get(self._current))

    @property
    def core(self):
        """The environment's pure functions and their compiled versions (shared by every M)."""
        return self._core

    def device_state(self):
        """`(carry, (obs, state, avail))` on the device: where the environments continue from
        (what `kqmix.envs.jax_rollout` plays from)."""
        if self._carry is None:
            raise RuntimeError("Call reset() before step() or a rollout.")
        return self._carry, self._current

    def set_device_state(self, carry, current) -> None:
        """Continues from `device_state()`-shaped values (after a compiled rollout)."""
        self._carry, self._current = carry, current

    def step(self, actions, active=None) -> BatchStep:
        """Steps all M environments (`active` is accepted for the batched interface; all step)."""
        if self._carry is None:
            raise RuntimeError("Call reset() before step().")
        acts = np.asarray(actions)
        if acts.shape != (self.n_envs, self.info.n_agents):
            raise ValueError(f"actions have shape {acts.shape}; expected {(self.n_envs, self.info.n_agents)}.")
        self._carry, final, self._current = self._core.step_batch(self._carry, acts.astype(np.int32))
        obs, state, avail, reward, terminated, truncated, won = self._core.jax.device_get(final)
        return BatchStep(np.asarray(obs), np.asarray(state), np.asarray(avail), np.asarray(reward),
                         np.asarray(terminated), np.asarray(truncated),
                         np.asarray(won) if self.reports_wins else None)


class JaxMARLEnv(MultiAgentEnv):
    """One JaxMARL environment behind the kqmix contract (M = 1 of `JaxMARLVecEnv`).

    `info[WON_KEY]` is True on the last step of a won SMAX episode.
    """

    def __init__(self, key: str):
        self.vec = JaxMARLVecEnv(key, 1)
        info = self.vec.info
        self.n_agents, self.n_actions, self.obs_dim = info.n_agents, info.n_actions, info.obs_dim
        self.state_dim, self.episode_limit = info.state_dim, info.episode_limit
        self.notes, self.reports_wins = self.vec.notes, self.vec.reports_wins
        self.agent_names = self.vec.agent_names

    def reset(self, seed=None):
        obs, state, avail = self.vec.reset([seed])
        return obs[0], state[0], avail[0]

    def step(self, actions):
        out = self.vec.step(np.asarray(actions).reshape(1, -1))
        info = {WON_KEY: bool(out.won[0])} if out.won is not None else {}
        return (out.obs[0], out.state[0], out.avail_actions[0], float(out.reward[0]),
                bool(out.terminated[0]), bool(out.truncated[0]), info)


def make_jaxmarl(key: str) -> JaxMARLEnv:
    return JaxMARLEnv(key)


def make_jaxmarl_batched(key: str, n_envs: int) -> JaxMARLVecEnv:
    return JaxMARLVecEnv(key, n_envs)
