"""The runner with M environments collects exactly what stepping them one by one gives."""

import functools

import numpy as np
import pytest

from kqmix.config import make_config
from kqmix.envs import EnvContractError, make_env
from kqmix.learner import QLearner
from kqmix.policy import NumpyAgentPolicy
from kqmix.runner import Runner

ENVS = [("lbf", "Foraging-8x8-2p-2f-coop-v3"), ("pettingzoo", "mpe2.simple_speaker_listener_v4")]


@functools.lru_cache(maxsize=None)
def make_policy(name, key, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    info = make_env(name, key).info
    config = make_config("lbf", {"env": name, "env_key": key, "obs_last_action": True})
    return NumpyAgentPolicy(QLearner(info, config).agent)


def manual_episode(env, policy, seed, epsilon=0.0, rng=None):
    """One episode on one environment, acting for its N agents alone."""
    info = env.info
    n = info.n_agents
    obs, state, avail = env.reset(seed=seed)
    hidden = policy.initial_hidden(n)
    last = np.full(n, -1, np.int32)
    steps = {"obs": [obs], "state": [state], "avail_actions": [avail], "actions": [], "reward": [],
             "terminated": []}
    for t in range(info.episode_limit):
        q, hidden = policy.step(obs, np.arange(n, dtype=np.int32), last, hidden)
        if rng is None:
            actions = policy.greedy(q, avail)
        else:
            actions = policy.epsilon_greedy(q, avail, epsilon, rng)
        last = actions
        obs, state, avail, reward, terminated, truncated, _ = env.step(actions)
        for k, v in (("obs", obs), ("state", state), ("avail_actions", avail), ("actions", actions),
                     ("reward", reward), ("terminated", float(terminated))):
            steps[k].append(v)
        if terminated or truncated:
            break
    return steps


def assert_episode_equal(ep, i, steps, info):
    length = len(steps["actions"])
    np.testing.assert_array_equal(ep["filled"][i], (np.arange(info.episode_limit) < length).astype(np.float32))
    for key in ("obs", "state", "avail_actions"):
        np.testing.assert_array_equal(ep[key][i, : length + 1], np.asarray(steps[key], np.float32))
        np.testing.assert_array_equal(ep[key][i, length + 1 :], 0.0)  # padding
    for key in ("actions", "reward", "terminated"):
        np.testing.assert_array_equal(ep[key][i, :length], np.asarray(steps[key], ep[key].dtype))
        np.testing.assert_array_equal(ep[key][i, length:], 0)


@pytest.mark.parametrize("name, key", ENVS)
@pytest.mark.parametrize("m", [1, 4])
def test_runner_matches_stepping_envs_one_by_one(name, key, m):
    policy = make_policy(name, key)
    runner = Runner([make_env(name, key) for _ in range(m)], policy, seed=11)
    ep, stats = runner.run(greedy=True)
    manual_envs = [make_env(name, key) for _ in range(m)]
    for i in range(m):
        steps = manual_episode(manual_envs[i], policy, seed=11 + i)
        assert_episode_equal(ep, i, steps, runner.info)
        assert stats.lengths[i] == len(steps["actions"])
        assert stats.returns[i] == pytest.approx(float(np.sum(steps["reward"])))
    # Later episodes continue the environments' RNG streams (no re-seeding).
    ep2, _ = runner.run(greedy=True)
    for i in range(m):
        steps = manual_episode(manual_envs[i], policy, seed=None)
        assert_episode_equal(ep2, i, steps, runner.info)


def test_epsilon_greedy_with_one_env_matches_manual_rng_use():
    name, key = ENVS[0]
    policy = make_policy(name, key, seed=1)
    runner = Runner([make_env(name, key)], policy, seed=5)
    ep, _ = runner.run(epsilon=0.5)
    steps = manual_episode(make_env(name, key), policy, seed=5, epsilon=0.5, rng=np.random.default_rng(5))
    assert_episode_equal(ep, 0, steps, runner.info)
    assert len(set(map(tuple, steps["actions"]))) > 2


def test_episodes_of_different_lengths_are_padded():
    # LBF episodes end early when all food is collected; MPE's never do, so
    # lengths come from a short-horizon LBF variant with a forced end.
    name, key = "lbf", "Foraging-8x8-2p-2f-coop-v3"
    policy = make_policy(name, key)
    envs = [make_env(name, key) for _ in range(3)]
    runner = Runner(envs, policy, seed=0)
    original = envs[1].env.step

    def short(actions):  # environment 1 terminates at its 3rd step
        out = list(original(actions))
        if envs[1].env._t == 3:
            out[4], out[5] = True, False
        return tuple(out)

    envs[1].env.step = short
    ep, stats = runner.run(greedy=True)
    assert stats.lengths.tolist() == [50, 3, 50]
    np.testing.assert_array_equal(ep["filled"][1], (np.arange(50) < 3).astype(np.float32))
    assert ep["terminated"][1, 2] == 1.0 and ep["terminated"][0].sum() == 0


@pytest.fixture(scope="module")
def pool():
    from kqmix.envs.vector import SubprocessVecEnv

    with SubprocessVecEnv("lbf", "Foraging-8x8-2p-2f-coop-v3", n_envs=4, n_workers=2) as vec:
        yield vec


def test_subprocess_envs_collect_the_same_episodes(pool):
    name, key = "lbf", "Foraging-8x8-2p-2f-coop-v3"
    policy = make_policy(name, key, seed=2)
    assert pool.envs[0].info == make_env(name, key).info
    assert pool.envs[0].notes == make_env(name, key).notes
    local = Runner([make_env(name, key) for _ in range(4)], policy, seed=3)
    remote = Runner(pool.envs, policy, seed=3)
    for _ in range(2):  # the second episode continues unseeded streams
        ep_local, stats_local = local.run(epsilon=0.3)
        ep_remote, stats_remote = remote.run(epsilon=0.3)
        for k in ep_local:
            np.testing.assert_array_equal(ep_local[k], ep_remote[k])
        np.testing.assert_array_equal(stats_local.returns, stats_remote.returns)
    # Explicit per-episode seeds reach the workers too.
    ep_local, _ = local.run(greedy=True, seeds=[50, 51, 52, 53])
    ep_remote, _ = remote.run(greedy=True, seeds=[50, 51, 52, 53])
    for k in ep_local:
        np.testing.assert_array_equal(ep_local[k], ep_remote[k])
    # The plain Runner drives the proxies unchanged (one environment at a time).
    ep_plain, _ = Runner(pool.envs, policy, seed=4).run(greedy=True)
    ep_ref, _ = Runner([make_env(name, key) for _ in range(4)], policy, seed=4).run(greedy=True)
    for k in ep_ref:
        np.testing.assert_array_equal(ep_plain[k], ep_ref[k])


def test_subprocess_errors_name_agent_step_and_value(pool):
    _, _, avail = pool.envs[2].reset(seed=0)
    agent, action = (int(v) for v in np.argwhere(avail == 0)[0])
    acts = np.zeros(2, np.int64)
    acts[agent] = action
    with pytest.raises(EnvContractError, match=rf"step 0: agent {agent} chose action {action}"):
        pool.envs[2].step(acts)
    # The worker survives a refused action.
    pool.envs[2].step(np.zeros(2, np.int64))
