"""Run configuration: one frozen dataclass, named presets, `key=value` overrides.

Defaults follow the QMIX paper's reference implementation (oxwhirl/pymarl
`default.yaml` + `qmix.yaml`). Later, widely used tricks (Adam, TD(lambda),
reward standardisation, soft target updates) are options.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, fields
from typing import Any

from .files import write_json_atomic
from .mixers import MIXERS
from .presets import DEFAULT_PRESET, PRESETS


class ConfigError(ValueError):
    """A configuration key or value is invalid."""


@dataclass(frozen=True)
class Config:
    # --- environment -----------------------------------------------------
    env: str = "two_step"
    """Environment registry name (see `kqmix.envs.make_env`)."""
    env_key: str = ""
    """Environment-specific id, e.g. a matrix game name or a Gymnasium id."""
    switch_env_key: str = ""
    """A variant of `env_key` that training moves to at env step `switch_env_at` (empty: none): the same
    agents, observation, action and state sizes, for example the task's full time limit after shorter
    episodes. From the switch on, training and greedy test episodes are the variant's and the replay
    buffer starts again with them; the final model is evaluated and exported for the variant."""
    switch_env_at: int = 0
    """The env step at which training moves to `switch_env_key`."""
    seed: int = 0
    """Seed for the environments, numpy and TensorFlow."""
    t_max: int = 20_000
    """Environment steps (summed over parallel environments) to train for."""
    batch_size_run: int = 1
    """Environments stepped in lockstep by the runner (M; with `env=jaxmarl`, in one vectorised call)."""
    env_workers: int = 0
    """Worker processes for the training environments (0 = step them in this process)."""
    rollout_backend: str = "local"
    """Where training episodes are collected: `local` (this process) or `ray` (Ray actors)."""
    ray_actors: int = 2
    """Ray actors stepping the `batch_size_run` training environments (with `rollout_backend=ray`)."""
    compiled_rollout: bool = True
    """With `env=jaxmarl`: play each batch of episodes in one compiled JAX call, policy and environments
    together (`kqmix.envs.jax_rollout`); false steps the environments once per timestep from Python."""

    # --- networks --------------------------------------------------------
    mixer: str = "qmix"
    """Mixing network, a name of `kqmix.mixers.MIXERS`: `qmix` (monotonic hypernetwork mixer), `vdn` (sum)."""
    mixing_embed_dim: int = 32
    """E, width of the QMIX mixing hidden layer."""
    hypernet_layers: int = 2
    """1 = linear hypernetworks, 2 = one ReLU hidden layer."""
    hypernet_embed: int = 64
    """Hidden width of two-layer hypernetworks."""
    mixer_orthogonal_gain: float = 0.0
    """0 initialises the QMIX mixer's hypernetwork kernels as PyTorch does (`kqmix.layers.default_kernel_initializer`);
    a positive value initialises them orthogonally with this gain (JaxMARL's `MIXER_INIT_SCALE`, 0.001: an
    untrained mixer then gives Q_tot near 0 and every agent a weight near 0 in it)."""
    wqmix_alpha: float = 0.1
    """Weighted QMIX (`ow_qmix`, `cw_qmix`): the weight of QMIX's squared TD error on the joint actions its
    weighting does not favour, in (0, 1] (1 = plain QMIX's loss)."""
    central_mixing_embed_dim: int = 256
    """Weighted QMIX: width of the unrestricted critic Q̂*'s feed-forward mixer."""
    central_rnn_hidden_dim: int = 64
    """Weighted QMIX: GRU width of Q̂*'s central agent network."""
    rnn_hidden_dim: int = 64
    """H, GRU width of the shared agent network."""
    obs_agent_id: bool = True
    """Append the agent-index one-hot to each agent's input."""
    obs_last_action: bool = True
    """Append the last-action one-hot to each agent's input."""
    recurrence: str = "auto"
    """How the training update runs the agents' GRU over episodes: `keras` (the Keras GRU layer, cuDNN on a
    GPU), `fused` (the same function of the same weights in fewer ops, faster on a CPU) or `auto` (`keras`
    when a GPU is visible, else `fused`). Weights, checkpoints and exports are the same either way."""

    # --- learning --------------------------------------------------------
    optimizer: str = "rmsprop"
    """`rmsprop` (paper), `adam`, or `radam` (rectified Adam, `kqmix.optimizers.RAdam`, as JaxMARL's QMIX)."""
    lr: float = 5e-4
    """Learning rate."""
    lr_schedule: str = "constant"
    """`constant`, or `linear`: `lr * (1 - t_env / t_max)`, decaying to 0 at `t_max` (JaxMARL's
    `LR_LINEAR_DECAY`), set before every update from the env steps collected so far."""
    optim_alpha: float = 0.99
    """RMSprop decay (rho)."""
    optim_eps: float = 1e-5
    """Optimizer epsilon."""
    grad_norm_clip: float = 10.0
    """Clip the global gradient norm to this value."""
    gamma: float = 0.99
    """Discount factor."""
    batch_size: int = 32
    """Episodes per training batch."""
    buffer_size: int = 5000
    """Episodes kept in the replay buffer."""
    target_update_interval: int = 200
    """Episodes between hard target-network copies (used when `target_update_tau` is 0)."""
    target_update_tau: float = 0.0
    """Soft target update rate per train step; 0 means hard copies."""
    double_q: bool = True
    """Pick the bootstrap action with the online agents (double Q-learning)."""
    td_lambda: float = 0.0
    """TD(lambda) return; 0 is the 1-step target."""
    standardise_rewards: bool = False
    """Scale rewards by a running mean/std before the TD target."""
    bootstrap_truncated: bool = True
    """Truncated episodes (ended without termination, e.g. at the episode limit)
    bootstrap from their last next-state. False treats every episode's last step
    as terminal: finite-horizon returns, for tasks whose episode limit is part of
    the task (MPE)."""
    jit_compile: bool = False
    """Compile the train step with XLA."""
    mixed_precision: bool = False
    """Compute in float16 (weights and loss in float32); for GPUs."""
    distribute: str = "none"
    """`none` (one device) or `mirrored`: the train step under `tf.distribute.MirroredStrategy`."""

    # --- exploration -----------------------------------------------------
    epsilon_start: float = 1.0
    """Initial exploration rate."""
    epsilon_finish: float = 0.05
    """Final exploration rate."""
    epsilon_anneal_time: int = 50_000
    """Environment steps over which epsilon decays linearly."""

    # --- evaluation and logging -----------------------------------------
    test_interval: int = 2_000
    """Environment steps between greedy evaluations."""
    test_nepisode: int = 32
    """Episodes per greedy evaluation."""
    log_interval: int = 2_000
    """Environment steps between metric rows."""
    runs_dir: str = "runs"
    """Directory under which run directories are created."""
    tensorboard: bool = True
    """Also write the metrics as TensorBoard event files (`tb/` in the run directory)."""

    # --- checkpoints and reproducibility ---------------------------------
    checkpoint_interval: int = 50_000
    """Environment steps between checkpoints (one is always written at the end)."""
    checkpoint_keep: int = 3
    """Most recent checkpoints kept (the best by test return is kept as well)."""
    checkpoint_buffer: bool = False
    """Store the replay buffer in checkpoints, so a resumed run continues exactly."""
    deterministic: bool = False
    """Seed everything and turn on TensorFlow op determinism: same seed, same metrics."""

    def __post_init__(self):
        def need(cond, name, expected):
            if not cond:
                raise ConfigError(
                    f"Invalid value for `{name}`: {getattr(self, name)!r}; expected {expected}."
                )

        for f in fields(self):
            value = getattr(self, f.name)
            kind = _field_type(f)
            ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
                ok = True
            need(ok, f.name, f"a value of type {kind.__name__}")
        for name in ("t_max", "batch_size_run", "mixing_embed_dim", "hypernet_embed", "central_mixing_embed_dim",
                     "central_rnn_hidden_dim",
                     "rnn_hidden_dim", "batch_size", "buffer_size", "target_update_interval",
                     "test_interval", "log_interval", "epsilon_anneal_time",
                     "checkpoint_interval", "checkpoint_keep"):
            need(getattr(self, name) >= 1, name, "an integer >= 1")
        need(self.test_nepisode >= 0, "test_nepisode", "an integer >= 0")
        if self.switch_env_key:
            need(self.switch_env_at >= 1, "switch_env_at", "an integer >= 1 (the env step of the switch to "
                 f"switch_env_key={self.switch_env_key!r})")
            need(self.switch_env_key != self.env_key, "switch_env_key", "a variant other than env_key")
        else:
            need(self.switch_env_at == 0, "switch_env_at", "0 without a switch_env_key to switch to")
        need(0 <= self.env_workers <= self.batch_size_run, "env_workers",
             f"an integer in [0, batch_size_run={self.batch_size_run}]")
        need(self.rollout_backend in ("local", "ray"), "rollout_backend", "'local' or 'ray'")
        need(self.ray_actors >= 1, "ray_actors", "an integer >= 1")
        if self.rollout_backend == "ray":
            need(self.ray_actors <= self.batch_size_run, "ray_actors",
                 f"at most batch_size_run={self.batch_size_run} (each actor steps at least one environment)")
            need(self.env_workers == 0, "env_workers", "0 with rollout_backend='ray' (the actors are the workers)")
        if self.env == "jaxmarl":
            # All batch_size_run environments step in one vectorised call in this process.
            need(self.env_workers == 0, "env_workers", "0 with env='jaxmarl' (its environments step in one vectorised call)")
            need(self.rollout_backend == "local", "rollout_backend",
                 "'local' with env='jaxmarl' (its environments step in one vectorised call)")
        need(self.distribute in ("none", "mirrored"), "distribute", "'none' or 'mirrored'")
        need(self.recurrence in ("auto", "keras", "fused"), "recurrence", "'auto', 'keras' or 'fused'")
        need(self.mixer in MIXERS, "mixer", "one of " + ", ".join(map(repr, MIXERS)))
        need(self.optimizer in ("rmsprop", "adam", "radam"), "optimizer", "'rmsprop', 'adam' or 'radam'")
        need(self.hypernet_layers in (1, 2), "hypernet_layers", "1 or 2")
        need(0 < self.wqmix_alpha <= 1, "wqmix_alpha", "a float in (0, 1]")
        need(self.mixer_orthogonal_gain >= 0, "mixer_orthogonal_gain", "a float >= 0")
        need(self.lr > 0, "lr", "a positive float")
        need(self.lr_schedule in ("constant", "linear"), "lr_schedule", "'constant' or 'linear'")
        need(0 <= self.optim_alpha < 1, "optim_alpha", "a float in [0, 1)")
        need(self.optim_eps > 0, "optim_eps", "a positive float")
        need(self.grad_norm_clip > 0, "grad_norm_clip", "a positive float")
        need(0 <= self.gamma <= 1, "gamma", "a float in [0, 1]")
        need(0 <= self.target_update_tau <= 1, "target_update_tau", "a float in [0, 1]")
        need(0 <= self.td_lambda <= 1, "td_lambda", "a float in [0, 1]")
        for name in ("epsilon_start", "epsilon_finish"):
            need(0 <= getattr(self, name) <= 1, name, "a float in [0, 1]")
        need(self.buffer_size >= self.batch_size, "buffer_size", f"at least batch_size ({self.batch_size})")

    @property
    def final_env_key(self) -> str:
        """The key of the environment the run ends on: the one its final model is for."""
        return self.switch_env_key or self.env_key

    @property
    def final_env_name(self) -> str:
        """`env`, or `env-<final_env_key>`: the environment a run is named for (its directory, its export)."""
        return self.env + (f"-{self.final_env_key}" if self.final_env_key else "")

    def env_key_at(self, switched: bool) -> str:
        """The key of the training environment before or after the switch to `switch_env_key`."""
        return self.final_env_key if switched else self.env_key

    def replace(self, **changes) -> "Config":
        unknown = [k for k in changes if k not in field_names()]
        if unknown:
            raise ConfigError(_unknown_key_message(unknown[0]))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path) -> None:
        """Writes `config.json` atomically."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        unknown = [k for k in data if k not in field_names()]
        if unknown:
            raise ConfigError(_unknown_key_message(unknown[0]))
        return cls(**data)

    @classmethod
    def load(cls, path) -> "Config":
        with open(path) as fh:
            return cls.from_dict(json.load(fh))


def _field_type(f) -> type:
    return {"int": int, "float": float, "bool": bool, "str": str}[
        f.type if isinstance(f.type, str) else f.type.__name__
    ]


def field_names() -> list[str]:
    return [f.name for f in fields(Config)]


def _unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, field_names(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"Unknown config key {key!r}.{hint} Run `kqmix presets --keys` to list every key."


def parse_override(text: str) -> tuple[str, Any]:
    """Parses `key=value` into a typed pair, checking the key and the value's type."""
    if "=" not in text:
        raise ConfigError(f"Override {text!r} is not of the form key=value.")
    key, raw = (part.strip() for part in text.split("=", 1))
    by_name = {f.name: f for f in fields(Config)}
    if key not in by_name:
        raise ConfigError(_unknown_key_message(key))
    kind = _field_type(by_name[key])
    try:
        if kind is bool:
            lowered = raw.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            value = lowered in ("true", "1", "yes")
        elif kind is int:
            number = float(raw)  # accepts 1e5 and 20_000
            if not number.is_integer():
                raise ValueError
            value = int(number)
        elif kind is float:
            value = float(raw)
        else:
            value = raw
    except ValueError:
        raise ConfigError(
            f"Invalid value for `{key}`: {raw!r}; expected a value of type {kind.__name__}."
        ) from None
    return key, value


def make_config(preset: str | None = None, overrides: list[str] | dict | None = None) -> Config:
    """A `Config` from a named preset plus `key=value` overrides (strings or a dict)."""
    preset = preset or DEFAULT_PRESET
    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, list(PRESETS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"Unknown preset {preset!r}.{hint} Known presets: {sorted(PRESETS)}.")
    values = dict(PRESETS[preset])
    if isinstance(overrides, dict):
        for key in overrides:
            if key not in field_names():
                raise ConfigError(_unknown_key_message(key))
        values.update(overrides)
    else:
        values.update(parse_override(o) for o in overrides or [])
    return Config(**values)


__all__ = [
    "Config",
    "ConfigError",
    "PRESETS",
    "DEFAULT_PRESET",
    "make_config",
    "parse_override",
]
