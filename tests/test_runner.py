"""Epsilon schedule and the episode runner."""

import numpy as np
import pytest

from kqmix.envs import make_env
from kqmix.policy import NumpyAgentPolicy
from kqmix.runner import LinearEpsilon, Runner


def test_linear_epsilon():
    eps = LinearEpsilon(1.0, 0.05, 100)
    assert eps(0) == 1.0 and eps(100) == pytest.approx(0.05) and eps(10**6) == pytest.approx(0.05)
    assert eps(50) == pytest.approx(0.525)


class _UniformPolicy(NumpyAgentPolicy):
    """Zero Qs: the greedy choice is the first available action."""

    def __init__(self, n_actions, hidden=4):
        self.n_actions, self.hidden_dim = n_actions, hidden

    def step(self, obs, agent_id, last_action, hidden):
        return np.zeros((len(obs), self.n_actions), np.float32), hidden


def test_runner_layout_on_two_step():
    runner = Runner([make_env("two_step") for _ in range(3)], _UniformPolicy(2), seed=0)
    ep, stats = runner.run(epsilon=1.0)
    assert ep["obs"].shape == (3, 3, 2, 3)
    np.testing.assert_array_equal(ep["filled"], np.ones((3, 2)))
    np.testing.assert_array_equal(ep["terminated"], [[0, 1]] * 3)
    for i in range(3):
        second = 1 if ep["actions"][i, 0, 0] == 0 else 2
        np.testing.assert_array_equal(ep["state"][i, 1], np.eye(3)[second])
    np.testing.assert_array_equal(stats.lengths, [2, 2, 2])
    assert stats.steps == 6
    np.testing.assert_array_equal(stats.returns, ep["reward"].sum(1))


def test_runner_episode_limit_is_a_truncation():
    runner = Runner([make_env("matrix", "climbing@4")], _UniformPolicy(3))
    ep, stats = runner.run(greedy=True)
    assert stats.lengths.tolist() == [4]
    assert ep["terminated"].sum() == 0  # truncated: the learner bootstraps
    assert ep["reward"].tolist() == [[11.0] * 4]
