"""Named presets: partial configurations, overridden by `--set key=value`.

Each preset names its environment and the hyperparameters that differ from
the `Config` defaults (the QMIX paper's reference values).
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # The QMIX paper's two-step game, with uniform exploration throughout so
    # the learned values can be compared with the paper's table. Feed-forward
    # agents in the paper: no last-action input, which keeps the step-2 Qs
    # independent of the exploratory first action.
    "two_step": dict(
        env="two_step", t_max=60_000, epsilon_start=1.0, epsilon_finish=1.0,
        obs_last_action=False, hypernet_layers=1, optimizer="adam", lr=1e-3,
        target_update_interval=100, batch_size=32, buffer_size=1000,
        test_interval=10_000, log_interval=2_000,
    ),
    "two_step_vdn": dict(
        env="two_step", mixer="vdn", t_max=60_000, epsilon_start=1.0, epsilon_finish=1.0,
        obs_last_action=False, optimizer="adam", lr=1e-3,
        target_update_interval=100, batch_size=32, buffer_size=1000,
        test_interval=10_000, log_interval=2_000,
    ),
    "matrix_non_monotonic": dict(
        env="matrix", env_key="non_monotonic", t_max=20_000, epsilon_start=1.0,
        epsilon_finish=1.0, obs_last_action=False, optimizer="adam", lr=1e-3,
        batch_size=32, buffer_size=1000, test_interval=5_000, log_interval=2_000,
    ),
    "matrix_climbing": dict(
        env="matrix", env_key="climbing@25", t_max=250_000, optimizer="adam",
        standardise_rewards=True, test_interval=10_000, log_interval=10_000,
    ),
    "matrix_penalty": dict(
        env="matrix", env_key="penalty:100@25", t_max=250_000, optimizer="adam",
        standardise_rewards=True, test_interval=10_000, log_interval=10_000,
    ),
}
DEFAULT_PRESET = "two_step"
