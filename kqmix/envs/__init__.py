"""Environments behind one contract (see `kqmix.envs.base`).

`make_env(name, key)` builds an environment by registry name, wrapped in
`CheckedEnv`. Names:

* `two_step` - the QMIX paper's two-step game;
* `matrix` - a cooperative matrix game; `key` is `non_monotonic` (default),
  `climbing` or `penalty` (optionally `penalty:K`), with `@L` appended for a
  game repeated L times (e.g. `climbing@25`).
"""

from __future__ import annotations

import difflib
from typing import Callable

from .base import CheckedEnv, EnvContractError, EnvInfo, MultiAgentEnv
from .matrix import CLIMBING, NON_MONOTONIC, MatrixGame, TwoStepGame, penalty_payoff

__all__ = [
    "CheckedEnv",
    "EnvContractError",
    "EnvInfo",
    "MatrixGame",
    "MultiAgentEnv",
    "TwoStepGame",
    "make_env",
    "register_env",
    "ENV_REGISTRY",
]


def _make_two_step(key: str) -> MultiAgentEnv:
    if key:
        raise ValueError(f"Environment 'two_step' takes no env_key. Received: env_key={key!r}")
    return TwoStepGame()


def _make_matrix(key: str) -> MultiAgentEnv:
    name, _, limit = (key or "non_monotonic").partition("@")
    game, _, arg = name.partition(":")
    games = {"non_monotonic": NON_MONOTONIC, "climbing": CLIMBING}
    if game == "penalty":
        payoff = penalty_payoff(float(arg) if arg else 100.0)
    elif game in games and not arg:
        payoff = games[game]
    else:
        raise ValueError(
            f"Unknown matrix game {key!r}. Expected one of 'non_monotonic', 'climbing', "
            "'penalty' or 'penalty:K', optionally followed by '@EPISODE_LIMIT'."
        )
    return MatrixGame(payoff, episode_limit=int(limit) if limit else 1)


ENV_REGISTRY: dict[str, Callable[[str], MultiAgentEnv]] = {
    "two_step": _make_two_step,
    "matrix": _make_matrix,
}


def register_env(name: str, factory: Callable[[str], MultiAgentEnv]) -> None:
    """Adds an environment factory `factory(env_key) -> MultiAgentEnv` under `name`."""
    ENV_REGISTRY[name] = factory


def make_env(name: str, key: str = "") -> CheckedEnv:
    """Builds the environment `name` (with its `key`), wrapped in `CheckedEnv`."""
    if name not in ENV_REGISTRY:
        close = difflib.get_close_matches(name, list(ENV_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown environment {name!r}. Known: {sorted(ENV_REGISTRY)}.{hint}"
        )
    env = ENV_REGISTRY[name](key)
    label = f"{name}:{key}" if key else name
    return env if isinstance(env, CheckedEnv) else CheckedEnv(env, name=label)
