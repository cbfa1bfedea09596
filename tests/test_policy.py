"""The numpy acting policy: the agent's step function and the masked choices."""

import numpy as np
import pytest
import tensorflow as tf

from kqmix.layers import RNNAgent
from kqmix.policy import NumpyAgentPolicy
from kqmix_runtime.actions import masked_greedy
from kqmix_runtime.spec import NO_ACTION

N, A, O, H = 3, 5, 7, 16


def _random_agent(use_id, use_last, rng):
    """A built agent whose every weight (biases included) is random, so every input block matters."""
    agent = RNNAgent(N, A, hidden_dim=H, use_agent_id=use_id, use_last_action=use_last)
    agent.build([(None, None, N, O), (None, None, N)])
    for weight in agent.weights:
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype("float32"))
    return agent


@pytest.mark.parametrize("use_id, use_last", [(True, True), (False, True), (True, False), (False, False)])
def test_numpy_step_equals_agent_step(use_id, use_last, rng):
    agent = _random_agent(use_id, use_last, rng)
    policy = NumpyAgentPolicy(agent)
    assert policy.obs_dim == agent.obs_dim == O
    b = 4 * N
    ids = np.tile(np.arange(N, dtype=np.int32), 4)
    hidden = hidden_np = np.zeros((b, H), np.float32)
    last = np.full(b, -1, np.int32)
    for _ in range(4):
        obs = rng.normal(size=(b, O)).astype(np.float32)
        q, hidden = agent.step(obs, ids, last, hidden)
        q_np, hidden_np = policy.step(obs, ids, last, hidden_np)
        np.testing.assert_allclose(q_np, np.asarray(q), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(hidden_np, np.asarray(hidden), rtol=1e-5, atol=1e-5)
        assert q_np.dtype == hidden_np.dtype == np.float32
        last = rng.integers(-1, A, size=b).astype(np.int32)  # -1 (none) included


def test_sync_reads_new_weights(rng):
    agent = _random_agent(True, True, rng)
    policy = NumpyAgentPolicy(agent)
    obs = rng.normal(size=(N, O)).astype(np.float32)
    args = (obs, np.arange(N, dtype=np.int32), np.zeros(N, np.int32), policy.initial_hidden(N))
    before, _ = policy.step(*args)
    agent.fc1.kernel.assign(agent.fc1.kernel + 1.0)
    policy.sync()
    after, _ = policy.step(*args)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, np.asarray(agent.step(*args)[0]), rtol=1e-5, atol=1e-5)


def test_greedy_is_the_best_available_action_and_no_action_for_an_empty_row():
    q = np.array([[3.0, 1.0, 2.0], [3.0, 1.0, 2.0], [3.0, 1.0, 2.0], [0.0, 5.0, 5.0]], np.float32)
    avail = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 0], [1, 1, 1]], np.float32)
    actions = NumpyAgentPolicy.greedy(q, avail)
    np.testing.assert_array_equal(actions, [0, 2, NO_ACTION, 1])  # ties: lowest index
    assert actions.dtype == np.int32
    assert NO_ACTION == -1


def test_epsilon_greedy_picks_only_available_actions_uniformly(rng):
    avail = (rng.random((3000, 6)) < 0.4).astype(np.float32)
    avail[:1000] = [0, 1, 0, 1, 1, 0]
    avail[-5:] = 0.0  # nothing available
    q = rng.normal(size=avail.shape).astype(np.float32)
    actions = NumpyAgentPolicy.epsilon_greedy(q, avail, 1.0, rng)
    has_action = avail.any(axis=1)
    np.testing.assert_array_equal(actions[~has_action], NO_ACTION)
    rows = np.flatnonzero(has_action)
    assert (avail[rows, actions[rows]] == 1).all()
    counts = np.bincount(actions[:1000], minlength=6)
    assert counts[[0, 2, 5]].sum() == 0 and counts[[1, 3, 4]].min() > 250  # about 333 each
    # epsilon = 0 is the greedy choice and draws nothing.
    state = rng.bit_generator.state
    np.testing.assert_array_equal(
        NumpyAgentPolicy.epsilon_greedy(q, avail, 0.0, rng), NumpyAgentPolicy.greedy(q, avail)
    )
    assert rng.bit_generator.state == state


def test_epsilon_greedy_draws_do_not_depend_on_the_masks(rng):
    """Widening the masks of rows whose actions are discarded changes no other row."""
    q = rng.normal(size=(8, 4)).astype(np.float32)
    avail = np.ones((8, 4), np.float32)
    avail[::2, 1:] = 0.0
    changed = avail.copy()
    changed[:2] = 0.0
    first = NumpyAgentPolicy.epsilon_greedy(q, avail, 0.5, np.random.default_rng(7))
    second = NumpyAgentPolicy.epsilon_greedy(q, changed, 0.5, np.random.default_rng(7))
    np.testing.assert_array_equal(first[2:], second[2:])
    np.testing.assert_array_equal(second[:2], NO_ACTION)


def test_masked_greedy_matches_its_tensorflow_twin(rng):
    from export.graphs import masked_greedy as masked_greedy_tf

    q = rng.normal(size=(200, 5)).astype(np.float32)
    avail = (rng.random((200, 5)) < 0.3).astype(np.float32)
    avail[:10] = 0.0
    expected = masked_greedy(q, avail)
    assert (expected[:10] == NO_ACTION).all() and (expected[10:] >= 0).any()
    np.testing.assert_array_equal(masked_greedy_tf(tf.constant(q), tf.constant(avail)).numpy(), expected)
    # Any leading axes.
    np.testing.assert_array_equal(masked_greedy(q.reshape(20, 10, 5), avail.reshape(20, 10, 5)),
                                  expected.reshape(20, 10))
