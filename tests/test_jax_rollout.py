"""Compiled rollouts (`kqmix.envs.jax_rollout`, `kqmix.policy_jax`): the per-step runner's episodes in one call.

Each environment and M is compiled once per module (the fixtures); the policy
is a `NumpyAgentPolicy` with random weights from `from_params` (no Keras).
"""

import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jaxmarl") is None,
                                reason="needs the smax extra (jaxmarl)")

M = 3
SEEDS = [11, 2**32 - 5, 7]
H = 32


def _random_policy(info, seed=0, last_action=True, agent_id=True):
    from kqmix.policy import NumpyAgentPolicy

    rng = np.random.default_rng(seed)
    n, a, o = info.n_agents, info.n_actions, info.obs_dim

    def w(*shape, scale=0.5):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    return NumpyAgentPolicy.from_params({
        "n_agents": n, "n_actions": a, "hidden_dim": H, "use_agent_id": agent_id,
        "use_last_action": last_action, "obs_dim": o, "version": 1,
        "w_obs": w(o, H, scale=0.3), "w_last": w(a, H) if last_action else None, "w_id": w(n, H) if agent_id else None,
        "b1": w(H), "kernel": w(H, 3 * H, scale=0.3), "rec": w(H, 3 * H, scale=0.3), "b_in": w(3 * H),
        "b_rec": w(3 * H), "w2": w(H, a), "b2": w(a)})


@pytest.fixture(scope="module")
def mpe():
    from kqmix.envs import make_batched_env

    return make_batched_env("jaxmarl", "mpe:simple_spread_v3", M)


@pytest.fixture(scope="module")
def smax():
    from kqmix.envs import make_batched_env

    return make_batched_env("jaxmarl", "smax:3m", M)


@pytest.mark.parametrize("last_action, agent_id", [(True, True), (False, True), (False, False)])
def test_policy_step_equals_numpy(last_action, agent_id):
    """Tolerance: float32 has unit roundoff u = 2**-24 ~ 6e-8, and a length-K dot product computed in any
    order is within K*u*sum|terms| of the exact one; numpy (BLAS) and XLA sum in different orders, so
    two results differ by at most 2*K*u*sum|terms| per layer, plus a few ulp from tanh. Here K <= 3H = 96
    and sum|terms| < 20 per layer, so each layer adds < 2*96*6e-8*20 ~ 2.3e-4 at worst; the GRU and
    fc2 carry it over three layers and five chained steps: 2e-3 absolute bounds it with margin (typical
    differences are ~1e-6)."""
    import jax
    import jax.numpy as jnp

    from kqmix.envs.base import EnvInfo
    from kqmix.policy_jax import agent_step, masked_greedy, weights

    info = EnvInfo(n_agents=3, n_actions=6, obs_dim=10, state_dim=1, episode_limit=1)
    policy = _random_policy(info, 3, last_action, agent_id)
    rng = np.random.default_rng(0)
    b = 12
    step = jax.jit(agent_step)
    w = weights(policy.params())
    agent = np.tile(np.arange(3, dtype=np.int32), b // 3)
    last = rng.integers(-1, 6, b).astype(np.int32)
    h_np = h_jax = policy.initial_hidden(b)
    for _ in range(5):  # chained: the hidden state carries any difference forward
        obs = rng.standard_normal((b, 10)).astype(np.float32)
        q_np, h_np = policy.step(obs, agent, last, h_np)
        q_jax, h_jax = step(w, obs, agent, last, jnp.asarray(h_jax))
        np.testing.assert_allclose(np.asarray(q_jax), q_np, atol=2e-3, rtol=0)
        np.testing.assert_allclose(np.asarray(h_jax), h_np, atol=2e-3, rtol=0)
        avail = (rng.random((b, 6)) < 0.5).astype(np.float32)
        avail[0] = 0.0  # an empty row: NO_ACTION from both
        np.testing.assert_array_equal(np.asarray(masked_greedy(q_np, avail)), policy.greedy(q_np, avail))
        last = policy.greedy(q_np, np.ones_like(avail))


#: Real-valued outputs of the environment (positions, velocities, health, rewards): the same float32 math
#: compiled into another XLA program (fused with the policy inside a loop) may round differently in the last
#: bit (fusion order, FMA contraction); observed differences are <= 2 ulp (~2.4e-7 at magnitude 3). Discrete
#: outputs (actions, masks, ends, lengths, wins) must be identical.
FLOAT_TOL = dict(rtol=1e-5, atol=1e-5)


def _compare(a, b, exact=False):
    (ep_a, stats_a), (ep_b, stats_b) = a, b
    assert ep_a.keys() == ep_b.keys()
    for key in ep_a:
        assert ep_a[key].dtype == ep_b[key].dtype, key
        if exact or key in ("actions", "avail_actions", "terminated", "filled"):
            np.testing.assert_array_equal(ep_a[key], ep_b[key], err_msg=key)
        else:
            np.testing.assert_allclose(ep_a[key], ep_b[key], err_msg=key, **FLOAT_TOL)
    np.testing.assert_allclose(stats_a.returns, stats_b.returns, **FLOAT_TOL)
    np.testing.assert_array_equal(stats_a.lengths, stats_b.lengths)
    assert (stats_a.won is None) == (stats_b.won is None)
    if stats_a.won is not None:
        np.testing.assert_array_equal(stats_a.won, stats_b.won)


@pytest.mark.parametrize("name", ["mpe", "smax"])
def test_greedy_episodes_equal_the_per_step_loop(name, request):
    """All episode arrays and stats, including padding after episodes of different lengths (SMAX), and the
    environments continue from the same place (the next `run()` without seeds)."""
    from kqmix.runner import Runner

    env = request.getfixturevalue(name)
    policy = _random_policy(env.info, seed=5)
    loop, fast = Runner(env, policy, seed=1, compiled=False), Runner(env, policy, seed=1)
    assert fast.compiled and not loop.compiled
    # Each runner plays seeded episodes, then continues each environment's key chain from where it left it.
    by_loop = [loop.run(greedy=True, seeds=SEEDS), loop.run(greedy=True)]
    by_fast = [fast.run(greedy=True, seeds=SEEDS), fast.run(greedy=True)]
    for expected, got in zip(by_loop, by_fast):
        _compare(expected, got)
    if name == "smax":
        lengths = np.concatenate([stats.lengths for _, stats in by_loop])
        assert len(set(lengths.tolist())) > 1 and lengths.max() < env.info.episode_limit  # padding checked


def _within(counts, probs, sigmas=5.0):
    """Each count of n draws is within `sigmas` binomial standard deviations of n*p: a uniform (or any
    given) distribution fails this for a given action with probability < 6e-7 at 5 sigma."""
    n = counts.sum()
    sd = np.sqrt(n * probs * (1 - probs))
    assert np.all(np.abs(counts - n * probs) <= sigmas * sd + 1e-9), (counts, n * probs, sd)


def test_uniform_and_epsilon_greedy_choice():
    """`NumpyAgentPolicy.epsilon_greedy`'s rule: with probability epsilon uniform among the available
    actions, else the masked greedy one; never an unavailable action; NO_ACTION for an empty row."""
    import jax

    from kqmix.policy_jax import epsilon_greedy, uniform_available
    from kqmix_runtime.actions import NO_ACTION

    patterns = np.array([[1, 1, 1, 1, 1], [0, 1, 0, 1, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], np.float32)
    reps = 40_000
    avail = np.repeat(patterns, reps, 0)  # (4*reps, 5)
    q = np.tile(np.array([0.0, 1.0, 3.0, 2.0, -1.0], np.float32), (len(avail), 1))
    draw = jax.jit(uniform_available)(jax.random.PRNGKey(0), avail)
    chosen = np.asarray(jax.jit(epsilon_greedy)(jax.random.PRNGKey(1), q, avail, 0.25))
    for i, (mask, acts) in enumerate(zip(patterns, np.asarray(draw).reshape(4, reps))):
        if not mask.any():
            assert (acts == NO_ACTION).all()
            assert (chosen[i * reps:(i + 1) * reps] == NO_ACTION).all()
            continue
        c = mask.sum()
        assert mask[acts].all()  # only available actions
        _within(np.bincount(acts, minlength=5)[mask > 0], np.full(int(c), 1 / c))
        greedy = int(np.argmax(np.where(mask > 0, q[0], -np.inf)))
        probs = np.where(np.arange(5) == greedy, 0.75, 0.0) + 0.25 / c
        eg = chosen[i * reps:(i + 1) * reps]
        assert mask[eg].all()
        _within(np.bincount(eg, minlength=5)[mask > 0], probs[mask > 0])


def test_exploring_rollouts_take_available_actions_uniformly(smax):
    """epsilon = 1 on SMAX (action masks change every step): only available actions, uniform among them
    (pooled by mask pattern), and a runner's seed reproduces its rollouts."""
    from kqmix.runner import Runner

    policy = _random_policy(smax.info, seed=2)
    runner = Runner(smax, policy, seed=4)
    batches = [runner.run(epsilon=1.0, seeds=[100 + 3 * k + i for i in range(M)]) for k in range(6)]
    by_pattern: dict = {}
    for ep, stats in batches:
        filled = ep["filled"] > 0  # (M, T)
        acts, avail = ep["actions"], ep["avail_actions"][:, :-1]  # (M, T, N), (M, T, N, A)
        chosen = np.take_along_axis(avail, acts[..., None], -1)[..., 0]
        assert (chosen[filled] == 1).all()  # never an unavailable action
        assert (acts[~filled] == 0).all() and stats.steps == filled.sum()
        for mask, a in zip(avail[filled].reshape(-1, smax.info.n_actions), acts[filled].reshape(-1)):
            by_pattern.setdefault(mask.tobytes(), [mask, []])[1].append(a)
    tested = 0
    for mask, acts in by_pattern.values():
        if len(acts) >= 100:
            c = int(mask.sum())
            _within(np.bincount(acts, minlength=len(mask))[mask > 0], np.full(c, 1 / c))
            tested += len(acts)
    assert tested >= 300
    # The same runner seed replays the same exploration; another seed explores differently.
    again = Runner(smax, policy, seed=4)
    ep, _ = again.run(epsilon=1.0, seeds=[100, 101, 102])
    _compare(batches[0], (ep, _), exact=True)
    other, _ = Runner(smax, policy, seed=5).run(epsilon=1.0, seeds=[100, 101, 102])
    assert not np.array_equal(other["actions"], ep["actions"])


def test_recorded_episodes_are_checked(smax):
    """`CheckedBatchedEnv.check_episodes` applies the per-step checks to a compiled rollout's arrays."""
    from kqmix.envs.base import EnvContractError
    from kqmix.runner import Runner

    ep, stats = Runner(smax, _random_policy(smax.info), seed=0).run(greedy=True, seeds=SEEDS)
    end = int(stats.lengths[0])  # environment 0's final observation is at index `end`
    bad = {k: v.copy() for k, v in ep.items()}
    bad["actions"][1, 2, 0] = smax.info.n_actions
    with pytest.raises(EnvContractError, match="step 2: agent 0 of environment 1 chose action"):
        smax.check_episodes(bad)
    bad = {k: v.copy() for k, v in ep.items()}
    bad["obs"][2, 1, 1, 0] = np.nan
    with pytest.raises(EnvContractError, match="step 1: `obs` holds a non-finite value"):
        smax.check_episodes(bad)
    bad = {k: v.copy() for k, v in ep.items()}
    bad["avail_actions"][0, 1, 2] = 0.0  # a decision step
    with pytest.raises(EnvContractError, match="step 1: agent 2 of environment 0 has no available action"):
        smax.check_episodes(bad)
    ok = {k: v.copy() for k, v in ep.items()}
    ok["avail_actions"][0, end, 1] = 0.0  # the episode's end: no decision, widened as `step` widens it
    smax.check_episodes(ok)
    assert (ok["avail_actions"][0, end, 1] == 1.0).all()
