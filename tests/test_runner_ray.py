"""Ray-actor rollouts give the same episodes as the local `Runner` for the same seeds (a real local Ray)."""

import numpy as np

from kqmix.config import make_config
from kqmix.evaluation import TRAIN_STREAM, episode_seeds
from kqmix.learner import QLearner
from kqmix.policy import NumpyAgentPolicy
from kqmix.runner import Runner
from kqmix.runner_ray import RayRunner
from kqmix.training import make_envs


def assert_same(local, remote):
    (ep_a, stats_a), (ep_b, stats_b) = local, remote
    assert ep_a.keys() == ep_b.keys()
    for key in ep_a:
        np.testing.assert_array_equal(ep_a[key], ep_b[key], err_msg=key)
    np.testing.assert_array_equal(stats_a.returns, stats_b.returns)
    np.testing.assert_array_equal(stats_a.lengths, stats_b.lengths)


def test_ray_actor_rollouts_equal_local_rollouts(local_ray):
    # LBF: 5 environments over 2 actors (3 + 2), episodes of different lengths.
    config = make_config("lbf", {"batch_size_run": 5, "rollout_backend": "ray", "ray_actors": 2,
                                 "rnn_hidden_dim": 16, "seed": 3})
    envs = make_envs(config, config.batch_size_run)
    learner = QLearner(envs[0].info, config)
    policy = NumpyAgentPolicy(learner.agent)
    local = Runner(envs, policy, seed=config.seed)
    remote = RayRunner(config, policy, envs[0].info, seed=config.seed)
    try:
        assert [len(s) for s in remote.shares] == [3, 2]
        # Default seeding (seed + i at the first reset), then per-batch seeds as training uses them.
        for k, epsilon in enumerate((0.5, 0.3, 1.0)):
            seeds = None if k == 0 else episode_seeds(config.seed, TRAIN_STREAM, k, config.batch_size_run)
            assert_same(local.run(epsilon=epsilon, seeds=seeds), remote.run(epsilon=epsilon, seeds=seeds))
            assert local.rng.bit_generator.state == remote.rng.bit_generator.state
        # New weights reach the actors (one put per version) and they act on them.
        puts = remote._weights_version
        rng = np.random.default_rng(0)
        for var in learner.agent.trainable_variables:
            var.assign(np.asarray(var) + rng.normal(scale=0.5, size=var.shape).astype("float32"))
        policy.sync()
        seeds = episode_seeds(config.seed, TRAIN_STREAM, 7, config.batch_size_run)
        assert_same(local.run(epsilon=0.2, seeds=seeds), remote.run(epsilon=0.2, seeds=seeds))
        assert remote._weights_version == puts + 1
        assert_same(local.run(greedy=True, seeds=seeds), remote.run(greedy=True, seeds=seeds))
        assert local.rng.bit_generator.state == remote.rng.bit_generator.state
    finally:
        remote.close()


def test_ray_actors_step_the_variant_they_are_given(local_ray):
    # What training does at a switch of environment: new actors on `switch_env_key`, here RWARE's
    # 30-step variant of a run on 20-step episodes.
    variant = "rware-tiny-2ag-v2:max_steps=30"
    config = make_config("rware_tiny", {"env_key": "rware-tiny-2ag-v2:max_steps=20", "switch_env_key": variant,
                                        "switch_env_at": 100, "batch_size_run": 2, "rollout_backend": "ray",
                                        "ray_actors": 2, "rnn_hidden_dim": 16, "seed": 3})
    envs = make_envs(config, config.batch_size_run, variant)
    learner = QLearner(envs[0].info, config)
    policy = NumpyAgentPolicy(learner.agent)
    local = Runner(envs, policy, seed=config.seed)
    remote = RayRunner(config, policy, envs[0].info, seed=config.seed, env_key=variant)
    try:
        for k, epsilon in enumerate((1.0, 0.5)):
            seeds = episode_seeds(config.seed, TRAIN_STREAM, k, config.batch_size_run)
            local_run, remote_run = local.run(epsilon=epsilon, seeds=seeds), remote.run(epsilon=epsilon, seeds=seeds)
            assert_same(local_run, remote_run)
            assert remote_run[1].lengths.tolist() == [30, 30]
    finally:
        remote.close()
