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
        env="two_step", t_max=4_000, epsilon_start=1.0, epsilon_finish=1.0,
        obs_last_action=False, hypernet_layers=1, optimizer="adam", lr=1e-3,
        target_update_interval=100, batch_size=32, buffer_size=1000,
        test_interval=10_000, log_interval=2_000,
    ),
    "two_step_vdn": dict(
        env="two_step", mixer="vdn", t_max=4_000, epsilon_start=1.0, epsilon_finish=1.0,
        obs_last_action=False, optimizer="adam", lr=1e-3,
        target_update_interval=100, batch_size=32, buffer_size=1000,
        test_interval=10_000, log_interval=2_000,
    ),
    "matrix_non_monotonic": dict(
        env="matrix", env_key="non_monotonic", t_max=16_000, batch_size_run=4, epsilon_start=1.0,
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

# QMIX as benchmarked by EPyMARL (Papoudakis et al., 2021; uoe-agents/epymarl
# `qmix.yaml`): Adam at 5e-4, 32-episode batches, 5000-episode buffer, hard
# target copies every 200 episodes, epsilon 1 -> 0.05 over 50k steps, reward
# standardisation, agent-id input without the last action. Other values are
# the pymarl defaults (`Config`).
EPYMARL_QMIX: dict[str, Any] = dict(
    optimizer="adam", lr=5e-4, batch_size=32, buffer_size=5000,
    target_update_interval=200, epsilon_start=1.0, epsilon_finish=0.05,
    epsilon_anneal_time=50_000, standardise_rewards=True,
    obs_agent_id=True, obs_last_action=False,
)

# The presets for real environments add one change: TD(lambda=0.8) targets
# (pymarl2's trick; EPyMARL uses 1-step targets). With 1-step targets and a
# hard target copy every 200 episodes, a reward travels back one step per
# copy, which is slow when rewards are sparse (a random LBF team collects
# about 1% of the food). Measured comparisons: docs/environments.md.
KQMIX_QMIX: dict[str, Any] = dict(EPYMARL_QMIX, td_lambda=0.8)

PRESETS.update({
    # Level-Based Foraging, 8x8 grid, 2 agents, 2 food items that need both
    # agents to load together. Greedy test return is the fraction of food
    # collected (1.0 = all of it).
    "lbf": dict(
        KQMIX_QMIX, env="lbf", env_key="Foraging-8x8-2p-2f-coop-v3", t_max=500_000,
        test_interval=10_000, test_nepisode=32, log_interval=10_000,
    ),
    "lbf_2s": dict(
        KQMIX_QMIX, env="lbf", env_key="Foraging-2s-8x8-2p-2f-coop-v3", t_max=2_000_000,
        test_interval=20_000, test_nepisode=32, log_interval=20_000,
    ),
    # Multi-Robot Warehouse: sparse rewards over 500-step episodes; EPyMARL
    # anneals epsilon over longer for it.
    "rware_tiny": dict(
        KQMIX_QMIX, env="rware", env_key="rware-tiny-2ag-v2", t_max=5_000_000,
        epsilon_anneal_time=200_000, test_interval=50_000, test_nepisode=8,
        log_interval=50_000,
    ),
    # PettingZoo MPE (mpe2), discrete actions, 25-step episodes. In every MPE
    # task the 25-step limit is part of the task (the return is the 25-step
    # sum), so the last step is terminal: bootstrapping there left a component
    # of Q_tot that no TD error constrains, which grew along trajectories of
    # agents drifting away and collapsed some simple_spread seeds
    # (docs/environments.md, "MPE simple_spread").
    "mpe_spread": dict(
        KQMIX_QMIX, env="pettingzoo", env_key="mpe2.simple_spread_v3", t_max=2_000_000,
        bootstrap_truncated=False, test_interval=20_000, test_nepisode=32, log_interval=20_000,
    ),
    "mpe_speaker_listener": dict(
        KQMIX_QMIX, env="pettingzoo", env_key="mpe2.simple_speaker_listener_v4", t_max=2_000_000,
        bootstrap_truncated=False, test_interval=20_000, test_nepisode=32, log_interval=20_000,
    ),
    "mpe_reference": dict(
        KQMIX_QMIX, env="pettingzoo", env_key="mpe2.simple_reference_v3", t_max=2_000_000,
        bootstrap_truncated=False, test_interval=20_000, test_nepisode=32, log_interval=20_000,
    ),
    # SMAX (JaxMARL), the SMAC-like scenarios without StarCraft II; last
    # action in the input as in SMAC's pymarl setup.
    "smax_3m": dict(
        KQMIX_QMIX, env="smax", env_key="3m", t_max=2_000_000, obs_last_action=True,
        test_interval=20_000, test_nepisode=32, log_interval=20_000,
    ),
})
DEFAULT_PRESET = "lbf"
