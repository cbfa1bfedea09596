"""Level-Based Foraging adapter against the real `lbforaging` package."""

import numpy as np
import pytest

from kqmix.envs import EnvContractError, make_env

KEY = "Foraging-8x8-2p-2f-coop-v3"


def random_available(avail, rng):
    return np.array([rng.choice(np.flatnonzero(row)) for row in avail], dtype=np.int64)


def forager(obs, avail, rng):
    """LOAD when possible, else step towards the first remaining food (LBF obs: food
    triples (y, x, level) first, then player triples with self first)."""
    n_food = (obs.shape[1] - 3 * obs.shape[0]) // 3
    acts = []
    for o, av in zip(obs, avail):
        if av[5]:
            acts.append(5)
            continue
        foods = [o[3 * k : 3 * k + 2] for k in range(n_food) if o[3 * k + 2] > 0]
        me = o[3 * n_food : 3 * n_food + 2]
        best, options = None, np.flatnonzero(av[:5])
        if foods:
            fy, fx = foods[0]
            # NORTH, SOUTH, WEST, EAST change (row, col) by:
            moves = {1: (-1, 0), 2: (1, 0), 3: (0, -1), 4: (0, 1)}
            dist = {a: abs(me[0] + moves[a][0] - fy) + abs(me[1] + moves[a][1] - fx)
                    for a in options if a in moves}
            if dist and rng.random() > 0.2:
                best = min(dist, key=dist.get)
        acts.append(best if best is not None else rng.choice(options))
    return np.asarray(acts, np.int64)


def rollout(env, seed, n_steps, action_seed=0):
    rng = np.random.default_rng(action_seed)
    obs, state, avail = env.reset(seed=seed)
    trace = [(obs, state, avail)]
    for _ in range(n_steps):
        out = env.step(random_available(avail, rng))
        obs, state, avail = out[:3]
        trace.append(out[:6])
        if out[4] or out[5]:
            obs, state, avail = env.reset()
            trace.append((obs, state, avail))
    return trace


def test_sizes_shapes_dtypes_and_notes():
    env = make_env("lbf", KEY)
    assert (env.n_agents, env.n_actions, env.obs_dim, env.state_dim, env.episode_limit) == (2, 6, 12, 24, 50)
    assert env.action_meanings == ["NONE", "NORTH", "SOUTH", "WEST", "EAST", "LOAD"]
    assert any("concatenated" in note for note in env.notes)
    obs, state, avail = env.reset(seed=0)
    assert obs.shape == (2, 12) and obs.dtype == np.float32
    assert state.shape == (24,) and state.dtype == np.float32
    assert avail.shape == (2, 6) and avail.dtype == np.float32
    np.testing.assert_array_equal(state, obs.reshape(-1))
    out = env.step(random_available(avail, np.random.default_rng(0)))
    assert isinstance(out[3], float) and isinstance(out[4], bool) and isinstance(out[5], bool)


def test_masks_equal_the_environments_valid_actions():
    env = make_env("lbf", KEY)
    lbf = env.unwrapped
    rng = np.random.default_rng(3)
    obs, state, avail = env.reset(seed=3)
    seen_masked = False
    for _ in range(400):
        expected = np.zeros_like(avail)
        for i, actions in enumerate(lbf.valid_actions()):
            expected[i, actions] = 1.0
        np.testing.assert_array_equal(avail, expected)
        # Cross-check against lbforaging's own joint valid actions.
        joint = set(lbf._lbf.get_valid_actions())
        per_agent = [np.flatnonzero(row).tolist() for row in avail]
        assert {tuple(a.value for a in j) for j in joint} == set(
            (a, b) for a in per_agent[0] for b in per_agent[1]
        )
        seen_masked |= bool((avail == 0).any())
        obs, state, avail, r, term, trunc, _ = env.step(random_available(avail, rng))
        if term or trunc:
            obs, state, avail = env.reset()
    assert seen_masked  # LOAD without adjacent food, walls: some actions are unavailable


def test_time_limit_is_truncation_and_collecting_all_food_is_termination():
    env = make_env("lbf", KEY)
    obs, state, avail = env.reset(seed=0)
    for t in range(env.episode_limit):
        obs, state, avail, r, term, trunc, _ = env.step(np.zeros(2, np.int64))  # NONE
        assert not term
        assert trunc == (t + 1 == env.episode_limit)
    # An episode where all food is collected ends as a termination.
    rng = np.random.default_rng(0)
    found = False
    for episode in range(200):
        obs, state, avail = env.reset(seed=episode)
        ret = 0.0
        for t in range(env.episode_limit):
            obs, state, avail, r, term, trunc, _ = env.step(forager(obs, avail, rng))
            ret += r
            if term or trunc:
                break
        if term:
            assert not trunc and ret == pytest.approx(1.0)
            assert int(env.unwrapped._lbf.field.sum()) == 0
            found = True
            break
    assert found


def test_seeding_makes_runs_identical():
    a = rollout(make_env("lbf", KEY), seed=7, n_steps=150)
    b = rollout(make_env("lbf", KEY), seed=7, n_steps=150)
    c = rollout(make_env("lbf", KEY), seed=8, n_steps=150)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0][0], c[0][0])



def test_an_episode_depends_on_its_seed_not_on_the_episodes_before_it():
    """A resumed run steps fresh environments: each seeded reset must start the same episode
    as in an environment that has played before (LBF's players keep their last positions
    otherwise, and a new player is never placed on one of them)."""
    used, rng = make_env("lbf", KEY), np.random.default_rng(0)
    for seed in range(50):
        avail = used.reset(seed=10_000 + seed)[2]
        for _ in range(20):
            avail = used.step(random_available(avail, rng))[2]
        for x, y in zip(rollout(used, seed, n_steps=10), rollout(make_env("lbf", KEY), seed, n_steps=10)):
            for u, v in zip(x, y):
                np.testing.assert_array_equal(u, v, err_msg=f"seed {seed}")

def test_illegal_action_is_refused_with_agent_step_and_value():
    env = make_env("lbf", KEY)
    obs, state, avail = env.reset(seed=0)
    bad = np.argwhere(avail == 0)
    assert len(bad), "seed 0 starts with some unavailable action"
    agent, action = (int(v) for v in bad[0])
    acts = np.zeros(2, np.int64)
    acts[agent] = action
    with pytest.raises(EnvContractError, match=rf"step 0: agent {agent} chose action {action}"):
        env.step(acts)
    with pytest.raises(EnvContractError, match="expected \\(2,\\)"):
        env.step(np.zeros(3, np.int64))
    with pytest.raises(EnvContractError, match="action 6"):
        env.step(np.array([6, 0]))


def test_team_reward_is_sum_of_agent_rewards():
    env = make_env("lbf", KEY)
    lbf = env.unwrapped._lbf
    rng = np.random.default_rng(1)
    total = 0.0
    for episode in range(20):
        obs, state, avail = env.reset(seed=100 + episode)
        for t in range(env.episode_limit):
            obs, state, avail, r, term, trunc, _ = env.step(forager(obs, avail, rng))
            assert r == pytest.approx(sum(p.reward for p in lbf.players))
            total += r
            if term or trunc:
                break
    assert total > 1.0  # food was collected in several episodes


def test_unknown_id_names_close_matches():
    with pytest.raises(ValueError, match="Foraging-8x8-2p-2f-coop-v3"):
        make_env("lbf", "Foraging-8x8-2p-2f-cop-v3")
