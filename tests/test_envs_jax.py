"""The JaxMARL backend (`kqmix.envs.jax_vec`): M environments in one jit-compiled call.

Each environment is compiled once per module (SMAX's step takes ~20 s to
compile): the fixtures hold one `JaxMARLVecEnv` per environment, and the
reference that steps one plain JaxMARL environment at a time is shared too.
"""

import importlib.util
import json

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jaxmarl") is None,
                                reason="needs the smax extra (jaxmarl)")

M = 3
SEEDS = [11, 2**32 - 5, 7]


@pytest.fixture(scope="module")
def mpe():
    from kqmix.envs.jax_vec import JaxMARLVecEnv

    return JaxMARLVecEnv("mpe:simple_spread_v3", M)


@pytest.fixture(scope="module")
def smax():
    from kqmix.envs.jax_vec import JaxMARLVecEnv

    return JaxMARLVecEnv("smax:3m", M)


def _random_available(rng, avail):
    """(M, N) actions drawn uniformly among each agent's available ones."""
    return np.array([[rng.choice(np.flatnonzero(row)) for row in env] for env in avail])


def _vectorised_episodes(vec, seeds, steps, rng):
    """Steps `vec` `steps` times from `seeds` with random available actions (auto-resetting)."""
    vec.reset(seeds)
    record = {"actions": [], "obs": [], "state": [], "avail": [], "reward": [], "terminated": [], "truncated": [],
              "current": [vec.current()]}
    for _ in range(steps):
        acts = _random_available(rng, vec.current()[2])
        out = vec.step(acts)
        record["actions"].append(acts)
        for name, value in (("obs", out.obs), ("state", out.state), ("avail", out.avail_actions),
                            ("reward", out.reward), ("terminated", out.terminated), ("truncated", out.truncated)):
            record[name].append(value)
        record["current"].append(vec.current())
    return record


def _one_at_a_time(vec, seed, actions):
    """The same environment stepped alone with plain JaxMARL calls: reset(fold_in(k, 0)),
    step_env(fold_in(k, t)), and the next episode's key fold_in(k, NEXT_EPISODE)."""
    import jax
    import jax.numpy as jnp

    from kqmix.envs.jax_vec import NEXT_EPISODE
    from kqmix.envs.smax import world_state_scale

    core = vec._core
    env = core.env
    step_env, reset = _jitted(env)
    pad = lambda x: np.pad(np.ravel(x), (0, vec.info.obs_dim - np.size(x)))

    def observe(obs, state):
        o = np.stack([pad(obs[a]) for a in core.agents])
        if core.smax:
            s = np.asarray(obs["world_state"])
            s = s * world_state_scale(env, s.size)  # tested in test_envs_smax
            masks = env.get_avail_actions(state)
            av = np.stack([np.asarray(masks[a]) > 0 for a in core.agents]).astype(np.float32)
        else:
            s = np.concatenate([np.ravel(obs[a]) for a in core.agents])
            av = np.ones((len(core.agents), vec.info.n_actions), np.float32)
        return o, s, av

    key = jax.random.PRNGKey(seed)
    obs, state = reset(jax.random.fold_in(key, 0))
    t, out = 0, {"obs": [], "state": [], "avail": [], "reward": [], "terminated": [], "truncated": [],
                 "current": [observe(obs, state)]}
    for acts in actions:
        t += 1
        obs, state, rewards, dones, _ = step_env(jax.random.fold_in(key, t), state,
                                                 {a: jnp.int32(acts[i]) for i, a in enumerate(core.agents)})
        o, s, av = observe(obs, state)
        reward = rewards[core.agents[0]] if core.smax else sum(rewards[a] for a in core.agents)
        terminated = bool(dones["__all__"])
        truncated = t >= vec.info.episode_limit and not terminated
        for name, value in (("obs", o), ("state", s), ("avail", av), ("reward", float(reward)),
                            ("terminated", terminated), ("truncated", truncated)):
            out[name].append(value)
        if terminated or truncated:
            key, t = jax.random.fold_in(key, NEXT_EPISODE), 0
            obs, state = reset(jax.random.fold_in(key, 0))
        out["current"].append(observe(obs, state))
    return out


_JITTED = {}


def _jitted(env):
    import jax

    if id(env) not in _JITTED:
        _JITTED[id(env)] = (jax.jit(env.step_env), jax.jit(env.reset))
    return _JITTED[id(env)]


def _assert_same_as_one_at_a_time(vec, steps, rng):
    record = _vectorised_episodes(vec, SEEDS, steps, rng)
    ends = np.array(record["terminated"]) | np.array(record["truncated"])  # (T, M)
    assert (ends.sum(axis=0) >= 1).all(), "every environment must cross an episode end"
    for i, seed in enumerate(SEEDS):
        ref = _one_at_a_time(vec, seed, [a[i] for a in record["actions"]])
        for name in ("obs", "state", "avail", "reward"):
            np.testing.assert_allclose(np.array([x[i] for x in record[name]]), np.array(ref[name]),
                                       rtol=1e-5, atol=1e-5, err_msg=f"{name} of environment {i}")
        for name in ("terminated", "truncated"):
            np.testing.assert_array_equal(np.array([x[i] for x in record[name]]), np.array(ref[name]),
                                          err_msg=f"{name} of environment {i}")
        for k, what in enumerate(("obs", "state", "avail")):  # the auto-reset continuations
            np.testing.assert_allclose(np.array([c[k][i] for c in record["current"]]),
                                       np.array([c[k] for c in ref["current"]]), rtol=1e-5, atol=1e-5,
                                       err_msg=f"current {what} of environment {i}")
    return record


def test_mpe_equals_one_environment_at_a_time(mpe):
    assert mpe.info.n_agents == 3 and mpe.info.n_actions == 5 and mpe.info.obs_dim == 18
    assert mpe.info.state_dim == 3 * 18 and mpe.info.episode_limit == 25 and not mpe.reports_wins
    record = _assert_same_as_one_at_a_time(mpe, 40, np.random.default_rng(0))
    # MPE's time limit is a truncation at step 25 in every environment.
    assert np.array(record["truncated"])[24].all() and not np.array(record["terminated"]).any()


def test_smax_equals_one_environment_at_a_time(smax):
    info = smax.info
    assert (info.n_agents, info.n_actions, info.episode_limit) == (3, 8, 100) and smax.reports_wins
    _assert_same_as_one_at_a_time(smax, 105, np.random.default_rng(1))


def test_seeds_give_reproducible_episodes(mpe):
    from kqmix.envs.jax_vec import JaxMARLVecEnv

    acts = np.zeros((M, 3), np.int64)

    def play(seeds, env=mpe):
        env.reset(seeds)
        return [env.step(acts).obs for _ in range(3)]

    first, again = play([5, 6, 7]), play([5, 6, 7])
    np.testing.assert_array_equal(first, again)
    # An episode depends only on its seed, not on its environment's position or M.
    swapped = play([7, 5, 6])
    np.testing.assert_array_equal(np.array(swapped)[:, [1, 2, 0]], first)
    assert not np.allclose(play([8, 9, 10])[0], first[0])
    with pytest.raises(ValueError, match=r"int in \[0, 2\*\*32\)"):
        mpe.reset([-1, 0, 0])
    # None continues each environment's key chain: reproducible too.
    mpe.reset([5, 6, 7])
    a = mpe.reset(None)[0]
    mpe.reset([5, 6, 7])
    np.testing.assert_array_equal(mpe.reset([None, None, None])[0], a)
    assert JaxMARLVecEnv("mpe:simple_spread_v3", 2)._core is mpe._core  # compiled functions shared


def test_runner_on_the_vectorised_env(mpe):
    from kqmix.envs.batched import CheckedBatchedEnv
    from kqmix.runner import Runner

    class FirstAction:
        n_actions, hidden_dim = 5, 2

        def initial_hidden(self, b):
            return np.zeros((b, 2), np.float32)

        def step(self, obs, agent_id, last_action, hidden):
            return np.tile(np.arange(5, dtype=np.float32), (len(obs), 1)) * (obs[:, :1] > 0), hidden

        def greedy(self, q, avail):
            return np.argmax(np.where(avail > 0, q, -np.inf), axis=1).astype(np.int32)

    runner = Runner(CheckedBatchedEnv(mpe, "jaxmarl:mpe"), FirstAction())
    ep, stats = runner.run(greedy=True, seeds=SEEDS)
    assert ep["obs"].shape == (M, 26, 3, 18) and ep["state"].shape == (M, 26, 54)
    np.testing.assert_array_equal(stats.lengths, [25] * M)
    np.testing.assert_array_equal(ep["filled"], np.ones((M, 25)))
    assert ep["terminated"].sum() == 0 and stats.won is None
    np.testing.assert_allclose(stats.returns, ep["reward"].sum(1), rtol=1e-5)
    again, _ = runner.run(greedy=True, seeds=SEEDS[::-1])
    np.testing.assert_array_equal(again["obs"][::-1], ep["obs"])


def test_smax_win_rate_on_constructed_states(smax):
    """Env 0: every enemy dead (won); env 1: both teams dead (a draw); env 2: a running battle."""
    import jax.numpy as jnp

    n_allies = smax._core.env.num_allies
    smax.reset([1, 2, 3])
    ekeys, t, state = smax._carry
    alive = np.array(state.state.unit_alive)
    health = np.array(state.state.unit_health)
    alive[0, n_allies:], health[0, n_allies:] = False, 0.0
    alive[1, :], health[1, :] = False, 0.0
    inner = state.state.replace(unit_alive=jnp.asarray(alive), unit_health=jnp.asarray(health))
    smax._carry = (ekeys, t, state.replace(state=inner))
    out = smax.step(np.zeros((M, 3), np.int64))  # no-ops
    np.testing.assert_array_equal(out.terminated, [True, True, False])
    np.testing.assert_array_equal(out.won, [1.0, 0.0, 0.0])
    # SMAX pays its won-battle bonus exactly when kqmix counts a win.
    assert out.reward[0] >= smax._core.env.won_battle_bonus and out.reward[1] < 1.0


def test_runner_and_greedy_tests_report_wins():
    """Contract environments report a win as `info["battle_won"]`; the runner keeps the last step's."""
    from kqmix.envs import CheckedEnv, MultiAgentEnv
    from kqmix.evaluation import greedy_episodes
    from kqmix.runner import Runner

    class Duel(MultiAgentEnv):
        n_agents, n_actions, obs_dim, state_dim, episode_limit = 1, 2, 1, 1, 3
        reports_wins = True

        def reset(self, seed=None):
            self.t, self.seed = 0, seed
            return np.zeros((1, 1)), np.zeros(1), np.ones((1, 2))

        def step(self, actions):
            self.t += 1
            end = self.t == 1 + self.seed % 3
            info = {"battle_won": end and self.seed % 2 == 0} if end else {}
            return np.zeros((1, 1)), np.zeros(1), np.ones((1, 2)), 1.0, end, False, info

    class Zero:
        n_actions, hidden_dim = 2, 1

        def initial_hidden(self, b):
            return np.zeros((b, 1), np.float32)

        def step(self, obs, agent_id, last_action, hidden):
            return np.zeros((len(obs), 2), np.float32), hidden

        def greedy(self, q, avail):
            return np.zeros(len(q), np.int32)

    runner = Runner([CheckedEnv(Duel()) for _ in range(4)], Zero())
    _, stats = runner.run(greedy=True, seeds=[0, 1, 2, 4])
    np.testing.assert_array_equal(stats.lengths, [1, 2, 3, 2])
    np.testing.assert_array_equal(stats.won, [1.0, 0.0, 1.0, 1.0])
    returns, won = greedy_episodes(runner, 6, seed=0, stream=1)
    assert returns.shape == won.shape == (6,)


def test_registry_single_env_and_errors():
    from kqmix.envs import CheckedEnv, make_batched_env, make_env

    env = make_env("jaxmarl", "mpe:simple_spread_v3")
    assert isinstance(env, CheckedEnv) and "concatenated" in " ".join(env.notes)
    obs, state, avail = env.reset(seed=3)
    assert obs.shape == (3, 18) and state.shape == (54,) and avail.shape == (3, 5)
    batched = make_batched_env("jaxmarl", "mpe:simple_spread_v3", M)  # compiled for M already
    np.testing.assert_array_equal(batched.reset([3, 4, 5])[0][0], obs)
    for key, match in (("3m", "smax:SCENARIO"), ("smax:4x", "Unknown SMAX scenario"),
                       ("mpe:simple_spreed_v3", "Unknown JaxMARL MPE environment")):
        with pytest.raises(ValueError, match=match):
            make_env("jaxmarl", key)


def test_train_smoke_on_jax_mpe_spread(tmp_path, mpe, monkeypatch):
    from kqmix.config import make_config
    from kqmix.envs import jax_rollout
    from kqmix.evaluation import evaluate_path
    from kqmix.training import train

    calls = []  # the compiled rollout (Config.compiled_rollout, on by default) plays every batch
    play = jax_rollout.play
    monkeypatch.setattr(jax_rollout, "play", lambda *a, **k: calls.append(k["greedy"]) or play(*a, **k))

    config = make_config("jax_mpe_spread", {
        "batch_size_run": M, "t_max": 150, "batch_size": 4, "buffer_size": 8, "rnn_hidden_dim": 16,
        "test_interval": 75, "test_nepisode": 3, "log_interval": 75, "tensorboard": False,
        "runs_dir": str(tmp_path)})
    result = train(config, preset="jax_mpe_spread", run_dir=tmp_path / "run", quiet=True)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows and rows[-1]["t_env"] == 150 and rows[-1]["test_return_mean"] is not None
    assert result.train_steps >= 1 and "test_win_rate" not in rows[-1]  # MPE reports no wins
    assert calls.count(False) == 150 // (25 * M) and True in calls  # every training batch, and the tests
    env_json = json.loads((result.run_dir / "env.json").read_text())
    assert env_json["env"] == "jaxmarl" and env_json["env_key"] == "mpe:simple_spread_v3"
    assert env_json["state_dim"] == 54 and env_json["episode_limit"] == 25
    report = evaluate_path(result.run_dir, episodes=2)
    assert report["episodes"] == 2 and "win_rate" not in report


def test_jaxmarls_logged_mpe_return_is_the_team_sum_kqmix_reports():
    """JaxMARL's QMIX logs MPE returns through `MPELogWrapper`, which multiplies every agent's
    reward by the number of agents: its per-agent `returned_episode_returns` is the team sum
    kqmix reports (over 26 steps, JaxMARL's episode, against kqmix's 25). The same actions and
    keys through both must give the same figures, so the two stay on one scale."""
    import jax
    import jax.numpy as jnp
    from jaxmarl.wrappers.baselines import MPELogWrapper

    from kqmix.envs.jax_vec import _core

    core = _core("mpe:simple_spread_v3")
    logged = MPELogWrapper(core.env)
    ekey = jax.random.PRNGKey(2024)
    carry, *_ = core.reset_one(ekey)
    _, log_state = logged.reset(jax.random.fold_in(ekey, 0))
    rng = np.random.default_rng(0)
    team, n = [], core.n_agents
    for t in range(1, core.episode_limit + 2):  # JaxMARL's episode is one step longer
        actions = rng.integers(0, core.n_actions, n)
        acts = {a: jnp.int32(actions[i]) for i, a in enumerate(core.agents)}
        _, log_state, rewards, dones, info = logged.step(jax.random.fold_in(ekey, t), log_state, acts)
        team.append(float(sum(rewards[a] for a in core.agents)))
        if t <= core.episode_limit:
            carry, final, _ = core.step_one(carry, jnp.asarray(actions, jnp.int32))
            np.testing.assert_allclose(float(final[3]), team[-1], rtol=1e-6)  # kqmix's team reward
            assert bool(final[5]) == (t == core.episode_limit)  # kqmix truncates at 25 steps
        if t == core.episode_limit:
            # The wrapper's running per-agent return = n x each agent's own: averaged, the team sum.
            np.testing.assert_allclose(float(jnp.mean(log_state.episode_returns)), sum(team), rtol=1e-5)
    assert bool(dones["__all__"]) and len(team) == 26
    np.testing.assert_allclose(float(jnp.mean(info["returned_episode_returns"])), sum(team), rtol=1e-5)
