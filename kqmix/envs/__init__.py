"""Environments behind one contract (see `kqmix.envs.base`).

`make_env(name, key)` builds an environment by registry name, wrapped in
`CheckedEnv`. Names:

* `two_step` - the QMIX paper's two-step game;
* `matrix` - a cooperative matrix game; `key` is `non_monotonic` (default),
  `climbing` or `penalty` (optionally `penalty:K`), with `@L` appended for a
  game repeated L times (e.g. `climbing@25`);
* `lbf` - Level-Based Foraging (`lbforaging`, installed by default); `key` is
  a Gymnasium id, default `Foraging-8x8-2p-2f-coop-v3` (see `kqmix.envs.lbf`);
* `rware` - Multi-Robot Warehouse (`pip install 'kqmix[rware]'`); `key` is a
  Gymnasium id such as `rware-tiny-2ag-v2` (see `kqmix.envs.rware`);
* `pettingzoo` - any PettingZoo parallel environment with discrete actions;
  `key` is its module path, e.g. `mpe2.simple_spread_v3`
  (`pip install 'kqmix[mpe]'`; see `kqmix.envs.pettingzoo`);
* `smax` - SMAX from JaxMARL (`pip install 'kqmix[smax]'`); `key` is a
  scenario name such as `3m` (see `kqmix.envs.smax`);
* `jaxmarl` - JaxMARL environments stepped M at a time in one jit-compiled
  call (`pip install 'kqmix[smax]'`); `key` is `smax:SCENARIO` or `mpe:NAME`,
  e.g. `smax:3m`, `mpe:simple_spread_v3` (see `kqmix.envs.jax_vec`).

`make_batched_env(name, key, n_envs)` builds M environments behind the
batched interface the runner steps (`kqmix.envs.batched`): one vectorised
environment where the registry has a batched factory (`jaxmarl`), checked
by `CheckedBatchedEnv`, otherwise M environments from `make_env` (each a
`CheckedEnv`) in an `EnvList`.

Every key of the last four may carry keyword arguments for the environment's
constructor: `ID:name=value,name=value` (e.g. `mpe2.simple_spread_v3:N=4`).
The optional packages are imported only when such an environment is built.
"""

from __future__ import annotations

import difflib
from typing import Callable

from .base import CheckedEnv, EnvContractError, EnvInfo, MultiAgentEnv
from .batched import BatchedEnv, CheckedBatchedEnv, EnvList
from .matrix import CLIMBING, NON_MONOTONIC, MatrixGame, TwoStepGame, penalty_payoff

__all__ = [
    "BatchedEnv",
    "CheckedBatchedEnv",
    "CheckedEnv",
    "EnvList",
    "EnvContractError",
    "EnvInfo",
    "MatrixGame",
    "MultiAgentEnv",
    "TwoStepGame",
    "make_batched_env",
    "make_env",
    "register_env",
    "BATCHED_REGISTRY",
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


def _make_lbf(key: str) -> MultiAgentEnv:
    from .lbf import make_lbf

    return make_lbf(key)


def _make_rware(key: str) -> MultiAgentEnv:
    from .rware import make_rware

    return make_rware(key)


def _make_pettingzoo(key: str) -> MultiAgentEnv:
    from .pettingzoo import make_pettingzoo

    return make_pettingzoo(key)


def _make_smax(key: str) -> MultiAgentEnv:
    from .smax import make_smax

    return make_smax(key)


def _make_jaxmarl(key: str) -> MultiAgentEnv:
    from .jax_vec import make_jaxmarl

    return make_jaxmarl(key)


def _make_jaxmarl_batched(key: str, n_envs: int):
    from .jax_vec import make_jaxmarl_batched

    return make_jaxmarl_batched(key, n_envs)


ENV_REGISTRY: dict[str, Callable[[str], MultiAgentEnv]] = {
    "two_step": _make_two_step,
    "matrix": _make_matrix,
    "lbf": _make_lbf,
    "rware": _make_rware,
    "pettingzoo": _make_pettingzoo,
    "smax": _make_smax,
    "jaxmarl": _make_jaxmarl,
}

#: Environments that step M copies in one call: `factory(env_key, n_envs) -> BatchedEnv`.
BATCHED_REGISTRY: dict[str, Callable] = {
    "jaxmarl": _make_jaxmarl_batched,
}


def register_env(name: str, factory: Callable[[str], MultiAgentEnv]) -> None:
    """Adds an environment factory `factory(env_key) -> MultiAgentEnv` under `name`."""
    ENV_REGISTRY[name] = factory


def _check_name(name: str) -> None:
    if name not in ENV_REGISTRY:
        close = difflib.get_close_matches(name, list(ENV_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown environment {name!r}. Known: {sorted(ENV_REGISTRY)}.{hint}"
        )


def make_env(name: str, key: str = "") -> CheckedEnv:
    """Builds the environment `name` (with its `key`), wrapped in `CheckedEnv`."""
    _check_name(name)
    env = ENV_REGISTRY[name](key)
    label = f"{name}:{key}" if key else name
    return env if isinstance(env, CheckedEnv) else CheckedEnv(env, name=label)


def make_batched_env(name: str, key: str = "", n_envs: int = 1) -> BatchedEnv:
    """M = `n_envs` environments `name` (with its `key`) behind the batched interface, checked."""
    _check_name(name)
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"`n_envs` must be an integer >= 1. Received: n_envs={n_envs!r}")
    label = f"{name}:{key}" if key else name
    if name in BATCHED_REGISTRY:
        return CheckedBatchedEnv(BATCHED_REGISTRY[name](key, n_envs), name=label)
    return EnvList([make_env(name, key) for _ in range(n_envs)])  # each one a CheckedEnv already
