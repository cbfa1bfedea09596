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

# Weighted QMIX on the non-monotonic game: its unrestricted critic lets QMIX's mixer rank the
# optimum (0, 0) first, which plain QMIX cannot (tests/test_reproduction.py).
PRESETS.update({f"matrix_non_monotonic_{kind}": dict(PRESETS["matrix_non_monotonic"], mixer=f"{kind}_qmix")
                for kind in ("ow", "cw")})

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
    # Multi-Robot Warehouse, tiny grid, 2 robots: a reward of 1 per shelf
    # delivered, nothing else. Trained on 100-step episodes (the task's own
    # limit is 500, as in EPyMARL): one update per episode, so five times as
    # many updates per step, and a run starts from a fresh warehouse five
    # times as often. Epsilon anneals over 2M steps; the batch and buffer
    # grow to match (64 episodes from the last 20,000). With EPyMARL's
    # 500-step episodes and 200k of exploration, QMIX learned nothing in 2M
    # steps (docs/results.md, RWARE).
    # `kqmix evaluate RUN --env-key rware-tiny-2ag-v2:max_steps=500` scores 500-step episodes.
    "rware_tiny": dict(
        KQMIX_QMIX, env="rware", env_key="rware-tiny-2ag-v2:max_steps=100", t_max=5_000_000,
        epsilon_anneal_time=2_000_000, batch_size=64, buffer_size=20_000,
        test_interval=50_000, test_nepisode=16, log_interval=50_000,
    ),
    # PettingZoo MPE (mpe2), discrete actions, 25-step episodes. In every MPE
    # task the 25-step limit is part of the task (the return is the 25-step
    # sum), so the last step is terminal: bootstrapping there left a component
    # of Q_tot that no TD error constrains, which grew along trajectories of
    # agents drifting away and collapsed some simple_spread seeds
    # (docs/environments.md, "MPE simple_spread").
    # 64 greedy test episodes: at 32 a test mean's standard error (about 2.3)
    # made a run's best test a noisy maximum that a flat curve could not match
    # (docs/results.md, "Against the criteria").
    "mpe_spread": dict(
        KQMIX_QMIX, env="pettingzoo", env_key="mpe2.simple_spread_v3", t_max=2_000_000,
        bootstrap_truncated=False, test_interval=20_000, test_nepisode=64, log_interval=20_000,
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
# The default preset with OW-QMIX's losses (Weighted QMIX, kqmix.wqmix) instead of QMIX's.
PRESETS["lbf_ow"] = dict(PRESETS["lbf"], mixer="ow_qmix")


# SMAX through the JAX backend, 8 environments per vectorised call, with the
# recipe of the other kqmix presets (EPyMARL's QMIX settings plus TD(lambda)),
# the last action in the agent's input as in SMAC, 2.05M steps and 32 greedy
# test episodes every 10k as in pymarl's SMAC runs. The QMIX paper's own
# SMAC recipe (oxwhirl/pymarl `qmix.yaml`, the `Config` defaults: RMSprop
# 5e-4, 1-step targets, no reward standardisation) diverges on SMAX 3m here
# once epsilon reaches its floor, with or without a target copy every 200
# updates (docs/environments.md, "SMAX"). JaxMARL's own SMAX QMIX
# (FLAIROx/JaxMARL baselines/QLearning/config/alg/ql_rnn_smax.yaml) differs:
# 16 envs x 128-step rollouts, RAdam 5e-5, GRU 512, mixer embed 64 with
# hypernet width 256, 8 updates per rollout, target copy every 10 updates,
# rewards x10 (SMAC's scale), epsilon annealed over 10% of 1e7 steps.
JAX_SMAX_QMIX: dict[str, Any] = dict(
    KQMIX_QMIX, env="jaxmarl", batch_size_run=8, t_max=2_050_000, obs_last_action=True,
    test_interval=10_000, test_nepisode=32, log_interval=10_000,
)

PRESETS.update({
    f"jax_smax_{scenario}": dict(JAX_SMAX_QMIX, env_key=f"smax:{scenario}")
    for scenario in ("3m", "8m", "2s3z", "3s5z", "5m_vs_6m")
})

# MPE simple_spread on the JAX backend with JaxMARL's QMIX settings
# (FLAIROx/JaxMARL baselines/QLearning/config/alg/ql_rnn_mpe.yaml, run by
# qmix_rnn.py): 8 environments, batch 32, buffer 5000, GRU 64, mixer embed 32
# with hypernet width 128 whose kernels start orthogonal with gain 0.001
# (MIXER_INIT_SCALE), gamma 0.9, 1-step targets (no TD(lambda)), one update
# per rollout, hard target copy every 200 updates (= 1600 episodes of 8
# environments), global-norm clip 25, RAdam (optax's, eps 1e-8) at 0.005
# decayed linearly to 0 over the run (LR_LINEAR_DECAY), epsilon 1 -> 0.05 over
# 10% of the 1e7 steps, agent id in the input (CTRolloutManager) without the
# last action, team reward = sum of the agents' rewards, and every trained
# step bootstraps, the time limit too: qmix_rnn.py masks the target with the
# done stored with the step, the previous step's, never set inside its
# 26-step rollouts from a reset. With kqmix's defaults for all three (Adam,
# PyTorch's initialisation, the limit terminal) the team return at 2.05M steps
# was -73.2 on seed 0; JaxMARL's RAdam, mixer initialisation or bootstrap
# alone gained 13-22 points each (docs/environments.md).
# Differences that remain: JaxMARL's decay counts updates (kqmix: env steps),
# it starts learning after 10k steps (kqmix: once the buffer holds a batch of
# episodes), its agent's layers start orthogonal (kqmix: PyTorch's default),
# and its MPE episodes last 26 steps (done at max_steps + 1; kqmix ends them
# at max_steps, 25; `env_key=mpe:simple_spread_v3:max_steps=26` gives 26).
PRESETS["jax_mpe_spread"] = dict(
    env="jaxmarl", env_key="mpe:simple_spread_v3", batch_size_run=8, t_max=10_000_000,
    optimizer="radam", optim_eps=1e-8, lr=0.005, lr_schedule="linear", batch_size=32, buffer_size=5000,
    rnn_hidden_dim=64, mixing_embed_dim=32, hypernet_embed=128, mixer_orthogonal_gain=0.001, gamma=0.9,
    td_lambda=0.0, grad_norm_clip=25.0, target_update_interval=1600, epsilon_start=1.0, epsilon_finish=0.05,
    epsilon_anneal_time=1_000_000, obs_agent_id=True, obs_last_action=False, bootstrap_truncated=True,
    test_interval=50_000, test_nepisode=32, log_interval=50_000,
)
DEFAULT_PRESET = "lbf"
