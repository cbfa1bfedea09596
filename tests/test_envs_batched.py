"""The batched environment interface: EnvList, CheckedBatchedEnv, make_batched_env."""

import numpy as np
import pytest

from kqmix.envs import CheckedBatchedEnv, EnvContractError, EnvList, make_batched_env, make_env
from kqmix.runner import Runner


class _Uniform:
    n_actions, hidden_dim = 3, 1

    def initial_hidden(self, b):
        return np.zeros((b, 1), np.float32)

    def step(self, obs, agent_id, last_action, hidden):
        return np.zeros((len(obs), 3), np.float32), hidden

    def epsilon_greedy(self, q, avail, epsilon, rng):
        scores = rng.random(q.shape) * avail
        return scores.argmax(1).astype(np.int32)


def test_env_list_steps_active_environments_only():
    envs = EnvList([make_env("matrix", "climbing@3"), make_env("matrix", "climbing@3")])
    assert envs.n_envs == 2 and not envs.reports_wins
    obs, state, avail = envs.reset([0, 1])
    assert obs.shape == (2, 2, envs.info.obs_dim) and avail.shape == (2, 2, 3)
    out = envs.step(np.zeros((2, 2), np.int64), np.array([True, False]))
    assert out.reward.tolist() == [11.0, 0.0] and out.won is None
    assert make_batched_env("matrix", "climbing@3", 2).n_envs == 2
    with pytest.raises(ValueError, match="n_envs"):
        make_batched_env("matrix", "climbing@3", 0)


def test_runner_over_a_checked_env_list_equals_the_plain_list():
    def episodes(envs):
        ep, stats = Runner(envs, _Uniform(), seed=3).run(epsilon=1.0, seeds=[5, 6, 7])
        return ep, stats

    plain = episodes([make_env("matrix", "climbing@4") for _ in range(3)])
    checked = episodes(CheckedBatchedEnv(EnvList([make_env("matrix", "climbing@4") for _ in range(3)])))
    for key in plain[0]:
        np.testing.assert_array_equal(plain[0][key], checked[0][key], err_msg=key)
    np.testing.assert_array_equal(plain[1].returns, checked[1].returns)


def test_checked_batched_env_names_what_was_wrong():
    class OneMove(EnvList):
        def reset(self, seeds):
            obs, state, avail = super().reset(seeds)
            avail[:, :, 1:] = 0.0  # only action 0
            return obs, state, avail

    env = CheckedBatchedEnv(OneMove([make_env("matrix", "climbing@3") for _ in range(2)]), name="one_move")
    with pytest.raises(EnvContractError, match=r"step\(\) before reset\(\)"):
        env.step(np.zeros((2, 2), np.int64), np.ones(2, bool))
    env.reset([0, 1])
    with pytest.raises(EnvContractError, match=r"shape \(2,\); expected \(2, 2\)"):
        env.step(np.zeros(2, np.int64), np.ones(2, bool))
    bad = np.zeros((2, 2), np.int64)
    bad[1, 0] = 2
    with pytest.raises(EnvContractError, match=r"agent 0 of environment 1 chose action 2, which is not available"):
        env.step(bad, np.ones(2, bool))
    env.step(bad, np.array([True, False]))  # a finished environment's actions are not checked
