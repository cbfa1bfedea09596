"""PettingZoo parallel adapter against the real `mpe2` package."""

import builtins
import importlib

import numpy as np
import pytest

pytest.importorskip("mpe2")

from kqmix.envs import EnvContractError, make_env  # noqa: E402

SPREAD = "mpe2.simple_spread_v3"
SPEAKER = "mpe2.simple_speaker_listener_v4"
REFERENCE = "mpe2.simple_reference_v3"


def random_available(avail, rng):
    return np.array([rng.choice(np.flatnonzero(row)) for row in avail], dtype=np.int64)


@pytest.mark.parametrize(
    "key, sizes",
    [(SPREAD, (3, 5, 18, 54, 25)), (SPEAKER, (2, 5, 11, 14, 25)), (REFERENCE, (2, 50, 21, 42, 25))],
)
def test_sizes_shapes_dtypes(key, sizes):
    env = make_env("pettingzoo", key)
    assert (env.n_agents, env.n_actions, env.obs_dim, env.state_dim, env.episode_limit) == sizes
    obs, state, avail = env.reset(seed=0)
    n, a, o, s, _ = sizes
    assert obs.shape == (n, o) and obs.dtype == np.float32
    assert state.shape == (s,) and state.dtype == np.float32
    assert avail.shape == (n, a) and avail.dtype == np.float32
    out = env.step(random_available(avail, np.random.default_rng(0)))
    assert isinstance(out[3], float) and out[4] is False and out[5] is False


def test_real_state_stable_order_and_team_reward():
    env = make_env("pettingzoo", SPREAD)
    pz = env.unwrapped
    assert pz.agent_names == ["agent_0", "agent_1", "agent_2"]
    obs, state, avail = env.reset(seed=3)
    np.testing.assert_array_equal(state, np.asarray(pz._env.state(), np.float32))
    raw_obs = {a: pz._env.unwrapped.observe(a) for a in pz.agent_names}
    for i, a in enumerate(pz.agent_names):
        np.testing.assert_allclose(obs[i], raw_obs[a], rtol=0, atol=0)
    seen = []
    original = pz._env.step

    def spy(actions):
        out = original(actions)
        seen.append(out[1])
        return out

    pz._env.step = spy
    _, _, _, reward, _, _, _ = env.step(np.array([1, 2, 3]))
    assert reward == pytest.approx(sum(seen[0].values()))


def test_heterogeneous_observations_and_actions_are_padded_and_masked():
    env = make_env("pettingzoo", SPEAKER)
    pz = env.unwrapped
    assert pz.agent_names == ["speaker_0", "listener_0"]
    assert any("zero-padded" in note for note in env.notes)
    obs, state, avail = env.reset(seed=0)
    np.testing.assert_array_equal(obs[0, 3:], 0.0)  # speaker's (3,) obs, padded to 11
    np.testing.assert_array_equal(avail, [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with pytest.raises(EnvContractError, match="agent 0 chose action 4"):
        env.step(np.array([4, 0]))


def test_episode_limit_is_truncation():
    env = make_env("pettingzoo", SPREAD)
    obs, state, avail = env.reset(seed=0)
    for t in range(env.episode_limit):
        obs, state, avail, r, term, trunc, _ = env.step(np.zeros(3, np.int64))
        assert not term and trunc == (t + 1 == env.episode_limit)


def test_seeding_makes_runs_identical():
    def run(seed):
        env = make_env("pettingzoo", REFERENCE)
        rng = np.random.default_rng(0)
        obs, state, avail = env.reset(seed=seed)
        out = [obs, state]
        for _ in range(30):
            o, s, avail, r, term, trunc, _ = env.step(random_available(avail, rng))
            out += [o, s, np.float32(r)]
            if term or trunc:
                o, s, avail = env.reset()
                out += [o, s]
        return out

    a, b, c = run(5), run(5), run(6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_illegal_action_is_refused():
    env = make_env("pettingzoo", SPREAD)
    env.reset(seed=0)
    with pytest.raises(EnvContractError, match="agent 2 chose action 5"):
        env.step(np.array([0, 0, 5]))
    with pytest.raises(EnvContractError, match="integers"):
        env.step(np.array([0.0, 0.0, 1.0]))


def test_keyword_arguments_in_the_key():
    env = make_env("pettingzoo", SPREAD + ":N=4,max_cycles=10")
    assert (env.n_agents, env.episode_limit, env.n_actions) == (4, 10, 5)


@pytest.mark.parametrize("via", ["observation", "infos"])
def test_action_mask_from_the_environment(via):
    from gymnasium import spaces

    from kqmix.envs.pettingzoo import PettingZooEnv

    class Masked:
        """A two-agent parallel env whose action_mask comes in dict observations or infos."""

        possible_agents = ["b", "a"]
        max_cycles = 3

        def __init__(self):
            self.agents = []

        def observation_space(self, agent):
            if via == "infos":
                return spaces.Box(0, 1, (2,))
            return spaces.Dict({"observation": spaces.Box(0, 1, (2,)), "action_mask": spaces.MultiBinary(3)})

        def action_space(self, agent):
            return spaces.Discrete(3)

        def _mask(self):
            return np.array([1, 0, 1], np.int8) if self.t % 2 == 0 else np.array([0, 1, 0], np.int8)

        def _obs(self):
            if via == "infos":
                return {a: np.full(2, self.t, np.float32) for a in self.agents}
            return {a: {"observation": np.full(2, self.t, np.float32), "action_mask": self._mask()}
                    for a in self.agents}

        def _infos(self, agents):
            return {a: ({"action_mask": self._mask()} if via == "infos" else {}) for a in agents}

        def reset(self, seed=None, options=None):
            self.agents, self.t = list(self.possible_agents), 0
            return self._obs(), self._infos(self.agents)

        def step(self, actions):
            self.t += 1
            obs = self._obs()
            done = self.t >= 2
            terms = {a: done for a in self.agents}
            truncs = {a: False for a in self.agents}
            if done:
                self.agents = []
            return obs, {a: 1.0 for a in actions}, terms, truncs, self._infos(actions)

        def close(self):
            pass

    env = PettingZooEnv(Masked(), name="masked")
    assert not any("all ones" in note for note in env.notes)
    assert any("concatenated" in note for note in env.notes)  # no state(): fallback announced
    obs, state, avail = env.reset(seed=0)
    np.testing.assert_array_equal(avail, [[1, 0, 1], [1, 0, 1]])
    obs, state, avail, r, term, trunc, _ = env.step(np.array([0, 2]))
    np.testing.assert_array_equal(avail, [[0, 1, 0], [0, 1, 0]])
    assert r == 2.0 and not term
    obs, state, avail, r, term, trunc, _ = env.step(np.array([1, 1]))
    assert term and not trunc  # every agent terminated: a real end, no bootstrap


def test_missing_package_names_the_install_command(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "mpe2" or name.startswith("mpe2."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(importlib, "import_module", lambda name, package=None: fake_import(name))
    with pytest.raises(ImportError, match=r"pip install 'kqmix\[mpe\]'"):
        make_env("pettingzoo", SPREAD)
