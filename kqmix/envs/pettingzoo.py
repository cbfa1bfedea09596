"""Any PettingZoo parallel environment with discrete actions, behind the kqmix contract.

The registry key is the environment's module path, optionally followed by
constructor keywords: `mpe2.simple_spread_v3`, `mpe2.simple_spread_v3:N=4`.
The module's `parallel_env(continuous_actions=False, **kwargs)` is called
(`continuous_actions` only when the constructor accepts it). MPE comes from
`mpe2`: `pip install 'kqmix[mpe]'`.

Rules, so that every environment fits the fixed-size contract:

* **agent order**: `possible_agents` order, fixed for the environment's
  lifetime; agent i of every array is `possible_agents[i]`.
* **obs (N, O)**: each agent's observation flattened to float32. With
  heterogeneous sizes, O is the largest size and shorter observations are
  **zero-padded at the end** (e.g. MPE speaker (3,) and listener (11,) give
  O = 11; the speaker's features are obs[0, :3], obs[0, 3:] = 0). Agents are
  told apart by the agent-id input of the agent network.
* **avail_actions (N, A)**: A is the largest `Discrete(n)` size; an agent
  with fewer actions has its actions `n..A-1` marked unavailable. Where the
  environment provides an `action_mask` (in a dict observation
  `{"observation", "action_mask"}` or in `infos[agent]["action_mask"]`), it is
  used; otherwise the mask is all ones over the agent's own actions, which
  `notes` announces.
* **state (S,)**: the environment's own `state()` when it implements one
  (MPE: all observations concatenated, as MPE defines it); otherwise the
  padded observations concatenated, announced in `notes`.
* **reward**: team reward = sum of the agents' rewards at that step (MPE's
  cooperative tasks give every agent the same shared term, so the sum is N
  times it plus each agent's local terms).
* **agents that leave early** (removed from `env.agents` before the episode
  ends) get zero observations and only action 0 available; their actions
  are not sent to the environment.
* **terminated / truncated**: the episode ends when no agent is left or all
  are terminated or truncated; it is *terminated* when every agent that
  ended did so by termination, and *truncated* if any was truncated.
* **episode_limit**: the environment's `max_cycles` (or `max_steps`,
  `max_episode_steps`); the adapter truncates there itself as well.
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np

from ._extras import MissingExtraError
from ._keys import parse_key
from .base import EnvContractError, MultiAgentEnv

# Packages that a kqmix extra provides, for the install hint.
_EXTRA_FOR = {"mpe2": "mpe", "pettingzoo": "mpe"}
_LIMIT_ATTRS = ("max_cycles", "max_steps", "max_episode_steps")


def _import_env_module(path: str):
    top = path.split(".")[0]
    try:
        importlib.import_module("pettingzoo")
        return importlib.import_module(path)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        if missing and not (path == missing or path.startswith(missing + ".") or missing in ("pettingzoo",)):
            raise  # something inside the package is broken; keep the original error
        extra = _EXTRA_FOR.get(top if missing != "pettingzoo" else "pettingzoo")
        command = f"pip install 'kqmix[{extra}]'" if extra else f"pip install pettingzoo {top}"
        raise MissingExtraError(
            f"PettingZoo environment {path!r} could not be imported ({exc}). "
            f"Install it with: {command}"
        ) from exc


def _accepts(fn, name: str) -> bool:
    """Whether `fn` may take keyword `name` (True when it hides it behind **kwargs)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class PettingZooEnv(MultiAgentEnv):
    """Adapter for a PettingZoo `ParallelEnv` (see module docstring for the rules).

    Args:
        env: a constructed PettingZoo parallel environment.
        name: label used in messages.
    """

    def __init__(self, env, name: str = "pettingzoo"):
        from gymnasium import spaces

        self._env = env
        self.name = name
        self.agent_names = list(env.possible_agents)
        self.n_agents = len(self.agent_names)
        obs_sizes, act_sizes, self._dict_obs = [], [], []
        for agent in self.agent_names:
            space = env.observation_space(agent)
            is_dict = isinstance(space, spaces.Dict) and "observation" in space.spaces
            self._dict_obs.append(is_dict)
            obs_sizes.append(int(spaces.flatdim(space["observation"] if is_dict else space)))
            act = env.action_space(agent)
            if not isinstance(act, spaces.Discrete):
                raise ValueError(
                    f"{name}: agent {agent!r} has action space {act}; kqmix needs Discrete actions "
                    "(for MPE pass continuous_actions=False, which the adapter does by default)."
                )
            act_sizes.append(int(act.n))
        self._obs_sizes = np.asarray(obs_sizes)
        self._act_sizes = np.asarray(act_sizes)
        self._act_starts = np.asarray([int(env.action_space(a).start) for a in self.agent_names])
        self.obs_dim = int(self._obs_sizes.max())
        self.n_actions = int(self._act_sizes.max())

        notes = []
        if len(set(obs_sizes)) > 1:
            notes.append(
                f"observations zero-padded at the end to O={self.obs_dim} "
                f"(sizes {dict(zip(self.agent_names, obs_sizes))})"
            )
        if len(set(act_sizes)) > 1:
            notes.append(
                f"actions beyond an agent's own count are unavailable "
                f"(counts {dict(zip(self.agent_names, act_sizes))})"
            )
        self._has_state, reset_infos = self._probe()
        if self._has_state:
            self.state_dim = int(np.prod(env.state_space.shape)) if hasattr(env, "state_space") else None
        else:
            self.state_dim = self.n_agents * self.obs_dim
            notes.append("global state = concatenated padded observations (the environment has no state())")
        info_masks = any(isinstance(v, dict) and "action_mask" in v for v in (reset_infos or {}).values())
        if not any(self._dict_obs) and not info_masks:
            notes.append(
                "action masks are all ones over each agent's own actions (the environment "
                "provides no action_mask)"
            )
        notes.append("team reward = sum of the agents' rewards")
        self.notes = tuple(notes)

        limit = None
        for holder in (env, getattr(env, "unwrapped", None), getattr(env, "aec_env", None)):
            for attr in _LIMIT_ATTRS:
                value = getattr(holder, attr, None) if holder is not None else None
                if isinstance(value, (int, np.integer)) and value > 0:
                    limit = int(value)
                    break
            if limit:
                break
        if limit is None:
            raise ValueError(
                f"{name}: could not find the episode length (none of {_LIMIT_ATTRS} on the "
                "environment); pass it in the key, e.g. 'module:max_cycles=100'."
            )
        self.episode_limit = limit
        self._t = 0
        if self.state_dim is None:  # state() without a declared state_space
            self.reset(seed=0)
            self.state_dim = int(np.asarray(self._env.state()).size)

    def _probe(self):
        """Resets once to learn whether `state()` is implemented and infos carry masks."""
        _, infos = self._env.reset(seed=0)
        state = getattr(self._env, "state", None)
        if state is None:
            return False, infos
        try:
            state()
        except (NotImplementedError, AttributeError):
            return False, infos
        return True, infos

    def _observe(self, obs_dict, infos):
        n, o, a = self.n_agents, self.obs_dim, self.n_actions
        obs = np.zeros((n, o), np.float32)  # (N, O)
        avail = np.zeros((n, a), np.float32)  # (N, A)
        for i, agent in enumerate(self.agent_names):
            if agent not in obs_dict:
                avail[i, 0] = 1.0  # gone: a placeholder action that is never sent
                continue
            value = obs_dict[agent]
            mask = None
            if self._dict_obs[i]:
                mask = value.get("action_mask")
                value = value["observation"]
            if mask is None and infos and isinstance(infos.get(agent), dict):
                mask = infos[agent].get("action_mask")
            flat = np.asarray(value, np.float32).reshape(-1)
            obs[i, : flat.size] = flat
            if mask is not None:
                mask = np.asarray(mask, np.float32).reshape(-1)
                if mask.size != self._act_sizes[i]:
                    raise EnvContractError(
                        f"{self.name} at step {self._t}: agent {i} ({agent!r}) has an action_mask of "
                        f"size {mask.size}; its action space has {self._act_sizes[i]} actions."
                    )
                avail[i, : mask.size] = mask > 0
            else:
                avail[i, : self._act_sizes[i]] = 1.0
        if self._has_state:
            state = np.asarray(self._env.state(), np.float32).reshape(-1)
        else:
            state = obs.reshape(-1)
        return obs, state, avail

    def reset(self, seed=None):
        self._t = 0
        obs, infos = self._env.reset(seed=seed)
        return self._observe(obs, infos)

    def step(self, actions):
        acts = {
            agent: int(actions[i]) + int(self._act_starts[i])
            for i, agent in enumerate(self.agent_names)
            if agent in self._env.agents
        }
        obs, rewards, terms, truncs, infos = self._env.step(acts)
        self._t += 1
        reward = float(sum(float(r) for r in rewards.values()))
        remaining = [a for a in self._env.agents if not (terms.get(a, False) or truncs.get(a, False))]
        terminated = truncated = False
        if not remaining or self._t >= self.episode_limit:
            # Terminal only if every agent still acting this step ended by
            # termination; any time limit makes the episode bootstrap.
            terminated = not remaining and all(
                terms.get(a, False) and not truncs.get(a, False) for a in acts
            )
            truncated = not terminated
        # Agents that ended this step observe their final observation; agents
        # that left earlier are absent from `obs` and get zeros.
        return (*self._observe(obs, infos), reward, terminated, truncated, infos)

    def close(self):
        self._env.close()


def make_pettingzoo(key: str) -> PettingZooEnv:
    path, kwargs = parse_key(key, "The pettingzoo environment")
    module = _import_env_module(path)
    factory = getattr(module, "parallel_env", None)
    if factory is None:
        raise ValueError(
            f"Module {path!r} has no `parallel_env` function; the key must name a PettingZoo "
            "environment module such as 'mpe2.simple_spread_v3'."
        )
    added = "continuous_actions" not in kwargs and _accepts(factory, "continuous_actions")
    if added:
        kwargs["continuous_actions"] = False
    try:
        env = factory(**kwargs)
    except TypeError as exc:
        # Only retry without the keyword the adapter added itself.
        if added and "continuous_actions" in str(exc):
            kwargs.pop("continuous_actions")
            env = factory(**kwargs)
        else:
            raise
    return PettingZooEnv(env, name=f"pettingzoo:{path}")
