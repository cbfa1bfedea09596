"""Replay buffer, epsilon schedule, episode runner, and the train command."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kqmix.batch import episode_arrays
from kqmix.buffer import EpisodeBuffer
from kqmix.config import Config
from kqmix.envs import EnvInfo, make_env
from kqmix.policy import NumpyAgentPolicy
from kqmix.runner import LinearEpsilon, Runner

INFO = EnvInfo(2, 3, 4, 5, 6)


def test_buffer_wraps_and_samples_without_replacement(rng):
    buffer = EpisodeBuffer(INFO, capacity=5)
    for i in range(7):
        ep = episode_arrays(INFO, 1)
        ep["reward"][:] = i
        buffer.insert(ep)
    assert len(buffer) == 5 and buffer.episodes_in == 7
    assert sorted(buffer.data["reward"][:, 0].tolist()) == [2, 3, 4, 5, 6]
    sample = buffer.sample(5, rng)
    assert sorted(sample["reward"][:, 0].tolist()) == [2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="Cannot sample 6 episodes from a buffer holding 5"):
        buffer.sample(6, rng)
    bad = episode_arrays(EnvInfo(2, 3, 4, 5, 7), 1)
    with pytest.raises(ValueError, match="`obs` has shape"):
        buffer.insert(bad)


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


def test_epsilon_greedy_only_picks_available_actions(rng):
    avail = (rng.random((500, 6)) < 0.3).astype(np.float32)
    avail[:, 5] = 1.0
    q = rng.normal(size=(500, 6))
    actions = NumpyAgentPolicy.epsilon_greedy(q, avail, 1.0, rng)
    assert (avail[np.arange(500), actions] == 1).all()
    assert len(np.unique(actions)) > 1
    greedy = NumpyAgentPolicy.greedy(q, avail)
    np.testing.assert_array_equal(greedy, np.argmax(np.where(avail > 0, q, -np.inf), -1))


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


def test_kqmix_train_cli(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "kqmix", "train", "--preset", "two_step", "--set", "t_max=80",
           "--set", "batch_size=8", "--set", "test_interval=40", "--quiet", "--run-dir", str(run_dir)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Run directory" in out.stdout
    config = Config.load(run_dir / "config.json")
    assert (config.t_max, config.batch_size) == (80, 8)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["t_env"] == 80 and "loss" in rows[-1]
    assert (run_dir / "model.keras").is_file()

    bad = subprocess.run([sys.executable, "-m", "kqmix", "train", "--set", "bach_size=3"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2
    assert "Did you mean 'batch_size'" in bad.stderr
