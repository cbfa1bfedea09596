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
