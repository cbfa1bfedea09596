"""SMAX adapter (optional extra): the install hint always, the environment when JaxMARL is present."""

import importlib.util

import numpy as np
import pytest

from kqmix.envs import ENV_REGISTRY, EnvContractError, make_env

HAS_JAXMARL = importlib.util.find_spec("jaxmarl") is not None


def test_registered_lazily():
    assert {"lbf", "rware", "pettingzoo", "smax"} <= set(ENV_REGISTRY)


@pytest.mark.skipif(HAS_JAXMARL, reason="jaxmarl is installed")
def test_missing_extra_names_the_install_command():
    with pytest.raises(ImportError, match=r"pip install 'kqmix\[smax\]'"):
        make_env("smax", "3m")


@pytest.mark.skipif(not HAS_JAXMARL, reason="needs the smax extra (jaxmarl)")
def test_smax_3m_contract():
    env = make_env("smax", "3m")
    assert env.n_agents == 3
    obs, state, avail = env.reset(seed=0)
    assert obs.shape == (3, env.obs_dim) and state.shape == (env.state_dim,)
    assert avail.shape == (3, env.n_actions) and (avail.sum(axis=1) > 0).all()
    rng = np.random.default_rng(0)
    for t in range(env.episode_limit):
        acts = np.array([rng.choice(np.flatnonzero(row)) for row in avail])
        obs, state, avail, r, term, trunc, _ = env.step(acts)
        if term or trunc:
            assert term != trunc
            break
    again = make_env("smax", "3m").reset(seed=0)
    np.testing.assert_array_equal(again[0], make_env("smax", "3m").reset(seed=0)[0])
    _, _, avail = env.reset(seed=0)
    bad = np.argwhere(avail == 0)
    if len(bad):
        acts = np.zeros(3, np.int64)
        acts[bad[0][0]] = bad[0][1]
        with pytest.raises(EnvContractError, match="chose action"):
            env.step(acts)


@pytest.mark.skipif(not HAS_JAXMARL, reason="needs the smax extra (jaxmarl)")
def test_smax_state_has_positions_over_the_map_size():
    env = make_env("smax", "3m")
    _, state, avail = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):  # units move off their start positions
        _, state, avail, *_ = env.step(np.array([rng.choice(np.flatnonzero(row)) for row in avail]))
    adapter = env.unwrapped
    smax = adapter._env._env  # HeuristicEnemySMAX wraps SMAX
    raw = np.asarray(smax.get_world_state(adapter._state.state))
    positions = np.asarray(adapter._state.state.unit_positions)  # (units, 2), map coordinates
    per_unit = len(smax.own_features)
    x, y = smax.own_features.index("position_x"), smax.own_features.index("position_y")
    for unit, (px, py) in enumerate(positions):
        if raw[unit * per_unit] > 0:  # alive (health fraction > 0): its features are filled in
            assert state[unit * per_unit + x] == pytest.approx(px / smax.map_width, rel=1e-6)
            assert state[unit * per_unit + y] == pytest.approx(py / smax.map_height, rel=1e-6)
    others = np.ones(raw.size, bool)
    others[[u * per_unit + i for u in range(smax.num_agents) for i in (x, y)]] = False
    np.testing.assert_array_equal(state[others], raw[others])  # every other feature as SMAX gives it
    assert 0.0 <= state[~others].min() and state[~others].max() <= 1.0
