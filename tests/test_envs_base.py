"""The environment contract: every violation fails with a message naming agent, step and value."""

import numpy as np
import pytest

from kqmix.envs import CheckedEnv, EnvContractError, MultiAgentEnv, make_env


class Toy(MultiAgentEnv):
    n_agents, n_actions, obs_dim, state_dim, episode_limit = 2, 3, 4, 5, 3

    def __init__(self, obs_shape_at=None, empty_mask=None, nan_at=None, crash_at=None):
        self.obs_shape_at, self.empty_mask, self.nan_at, self.crash_at = obs_shape_at, empty_mask, nan_at, crash_at
        self.t = 0

    def _out(self):
        obs = np.zeros((2, 4), np.float32)
        if self.obs_shape_at == self.t:
            obs = np.zeros((2, 5), np.float32)
        if self.nan_at == self.t:
            obs[1, 2] = np.nan
        avail = np.ones((2, 3), np.float32)
        if self.empty_mask is not None and self.empty_mask[0] == self.t:
            avail[self.empty_mask[1]] = 0
        avail[0, 2] = 0  # action 2 is never available to agent 0
        return obs, np.zeros(5, np.float32), avail

    def reset(self, seed=None):
        self.t = 0
        return self._out()

    def step(self, actions):
        if self.crash_at == self.t:
            raise RuntimeError("boom")
        self.t += 1
        return (*self._out(), 1.0, self.t >= 3, False, {})


def test_wrong_obs_shape_names_step():
    env = CheckedEnv(Toy(obs_shape_at=1), name="toy")
    env.reset()
    with pytest.raises(EnvContractError, match=r"toy at step 1: `obs` has shape \(2, 5\); expected \(2, 4\)"):
        env.step(np.array([0, 0]))


def test_all_zero_mask_names_agent_and_step():
    env = CheckedEnv(Toy(empty_mask=(1, 1)), name="toy")
    env.reset()
    with pytest.raises(EnvContractError, match="toy at step 1: agent 1 has no available action"):
        env.step(np.array([0, 0]))


def test_all_zero_mask_on_reset():
    with pytest.raises(EnvContractError, match="step 0: agent 0 has no available action"):
        CheckedEnv(Toy(empty_mask=(0, 0))).reset()


def test_nan_names_agent_and_feature():
    env = CheckedEnv(Toy(nan_at=2), name="toy")
    env.reset()
    env.step(np.array([0, 0]))
    with pytest.raises(EnvContractError, match="step 2: `obs` holds a non-finite value nan \\(agent 1, feature 2\\)"):
        env.step(np.array([0, 0]))


def test_illegal_action_names_agent_and_value():
    env = CheckedEnv(Toy(), name="toy")
    env.reset()
    with pytest.raises(EnvContractError, match=r"step 0: agent 0 chose action 2, which is not available \(available: \[0, 1\]\)"):
        env.step(np.array([2, 0]))
    with pytest.raises(EnvContractError, match="agent 1 chose action 7"):
        env.step(np.array([0, 7]))
    with pytest.raises(EnvContractError, match=r"actions have shape \(3,\); expected \(2,\)"):
        env.step(np.array([0, 0, 0]))
    with pytest.raises(EnvContractError, match="actions must be integers"):
        env.step(np.array([0.0, 1.0]))


def test_environment_crash_is_reported_with_step_and_actions():
    env = CheckedEnv(Toy(crash_at=1), name="toy")
    env.reset()
    env.step(np.array([0, 1]))
    with pytest.raises(EnvContractError, match=r"toy at step 1: step\(actions=\[1, 0\]\) raised RuntimeError\('boom'\)"):
        env.step(np.array([1, 0]))


def test_bad_static_size():
    class NoActions(Toy):
        n_actions = 0

    with pytest.raises(EnvContractError, match="`n_actions` must be a positive integer; got 0"):
        CheckedEnv(NoActions())


def test_two_step_game_dynamics():
    env = make_env("two_step")
    obs, state, avail = env.reset(seed=0)
    np.testing.assert_array_equal(state, [1, 0, 0])
    obs, state, avail, r, term, trunc, _ = env.step(np.array([1, 0]))
    np.testing.assert_array_equal(state, [0, 0, 1])
    assert (r, term) == (0.0, False)
    *_, r, term, trunc, _ = env.step(np.array([1, 1]))
    assert (r, term, trunc) == (8.0, True, False)


def test_repeated_matrix_game_truncates():
    env = make_env("matrix", "climbing@3")
    env.reset()
    flags = [env.step(np.array([0, 0]))[4:6] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    with pytest.raises(ValueError, match="Unknown matrix game 'nope'"):
        make_env("matrix", "nope")


def test_unknown_environment_suggests():
    with pytest.raises(ValueError, match="Unknown environment 'two_stp'.*Did you mean 'two_step'"):
        make_env("two_stp")
