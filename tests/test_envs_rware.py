"""Multi-Robot Warehouse adapter against the real `rware` package."""

import numpy as np
import pytest

pytest.importorskip("rware")

from kqmix.envs import EnvContractError, make_env  # noqa: E402

KEY = "rware-tiny-2ag-v2"


def test_sizes_shapes_notes_and_truncation():
    env = make_env("rware", KEY + ":max_steps=20")
    assert (env.n_agents, env.n_actions, env.obs_dim, env.state_dim, env.episode_limit) == (2, 5, 71, 142, 20)
    assert any("all ones" in note for note in env.notes)
    assert any("concatenated" in note for note in env.notes)
    obs, state, avail = env.reset(seed=0)
    assert obs.shape == (2, 71) and obs.dtype == np.float32
    assert state.shape == (142,) and avail.shape == (2, 5)
    np.testing.assert_array_equal(avail, 1.0)
    rng = np.random.default_rng(0)
    for t in range(env.episode_limit):
        obs, state, avail, r, term, trunc, _ = env.step(rng.integers(0, 5, 2))
        assert not term and trunc == (t + 1 == env.episode_limit)


def test_default_limit_and_seeding():
    assert make_env("rware", KEY).episode_limit == 500

    def run(seed):
        env = make_env("rware", KEY)
        rng = np.random.default_rng(0)
        out = list(env.reset(seed=seed)[:2])
        for _ in range(40):
            o, s, _, r, *_ = env.step(rng.integers(0, 5, 2))
            out += [o, s, np.float32(r)]
        return out

    a, b, c = run(1), run(1), run(2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_illegal_action_is_refused():
    env = make_env("rware", KEY)
    env.reset(seed=0)
    with pytest.raises(EnvContractError, match="agent 1 chose action 5"):
        env.step(np.array([0, 5]))
