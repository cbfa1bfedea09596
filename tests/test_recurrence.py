"""The fused agent network equals the Keras layers: same Q-values, same gradients, same update.

Tolerances. Both paths compute the same real function in float32 (unit
roundoff u = 2**-24); they differ only in the order of roundings: the
backward pass uses a hand-written formula instead of autodiff's chain, and
sums the weight gradients over the steps in another order (one step's rows
at a time, where autodiff sums each Dense layer's over all steps at once).
A sum or dot product of n terms computed in two orders differs by at most
about 2 * n * u * sum(|terms|) (the standard gamma_n bound, once per order),
and sum(|terms|) is bounded by the gradient entries' magnitude times a small
factor for cancellation. So each comparison allows `4 * n * u * scale`, with
n the longest chain of accumulated terms (T*M rows + a dot product of F or
3H terms) and scale the largest magnitude of the reference tensor.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kqmix.layers import RNNAgent
from kqmix.recurrence import active_rows_of, agent_sequence, resolve_recurrence

U32 = 2.0**-24


def tolerance(terms, reference):
    return 4 * terms * U32 * max(1.0, float(np.max(np.abs(reference))))


def assert_close(actual, reference, terms):
    actual, reference = np.asarray(actual, np.float64), np.asarray(reference, np.float64)
    np.testing.assert_allclose(actual, reference, rtol=0, atol=tolerance(terms, reference))


def make_agents(n_agents=3, n_actions=5, obs_dim=7, hidden=8, dtype=None):
    """A `keras` and a `fused` agent with the same (random, non-zero bias) weights."""
    agents = [RNNAgent(n_agents, n_actions, hidden_dim=hidden, recurrence=r, dtype=dtype) for r in ("keras", "fused")]
    for agent in agents:
        agent.build([(None, None, n_agents, obs_dim), (None, None, n_agents)])
    rng = np.random.default_rng(0)
    agents[0].gru.cell.bias.assign(rng.normal(scale=0.5, size=agents[0].gru.cell.bias.shape))
    agents[1].set_weights(agents[0].get_weights())
    return agents


def q_and_grads(agent, obs, last_action, weights):
    with tf.GradientTape() as tape:
        q = agent([obs, last_action])  # (B, T, N, A)
        loss = tf.reduce_sum(tf.cast(q, tf.float32) * weights)
    return q, tape.gradient(loss, agent.trainable_variables)


@pytest.mark.parametrize("batch, steps, n_agents", [(4, 9, 3), (1, 1, 1), (2, 1, 3), (1, 6, 1)])
@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_fused_agent_equals_keras_agent(batch, steps, n_agents, mode, rng):
    keras_agent, fused_agent = make_agents(n_agents=n_agents)
    obs = rng.normal(size=(batch, steps, n_agents, 7)).astype("float32")
    obs[:, steps // 2 + 1 :] = 0.0  # padded steps are zeros, as in the replay buffer
    last_action = rng.integers(-1, 5, size=(batch, steps, n_agents)).astype("int32")
    weights = tf.constant(rng.normal(size=(batch, steps, n_agents, 5)).astype("float32"))
    run = q_and_grads if mode == "eager" else tf.function(q_and_grads, jit_compile=mode == "xla")
    q_ref, g_ref = run(keras_agent, obs, last_action, weights)
    q, g = run(fused_agent, obs, last_action, weights)
    assert q.shape == (batch, steps, n_agents, 5)
    rows, hidden, features = batch * n_agents, 8, 7 + 5 + n_agents
    assert_close(q, q_ref, steps * (features + 3 * hidden))
    for var, grad, ref in zip(fused_agent.trainable_variables, g, g_ref):
        assert_close(grad, ref, steps * rows + features + 3 * hidden)


def test_agent_sequence_equals_keras_layers_and_leaves_the_features_alone(rng):
    steps, rows, features, units, actions = 11, 5, 6, 4, 3
    fc1 = keras.layers.Dense(units, activation="relu")
    gru = keras.layers.GRU(units, return_sequences=True)
    fc2 = keras.layers.Dense(actions)
    fc1.build((None, features))
    gru.build((None, None, units))
    fc2.build((None, units))
    for layer in (fc1, gru.cell, fc2):
        layer.bias.assign(rng.normal(scale=0.5, size=layer.bias.shape))
    weights = [fc1.kernel, fc1.bias, gru.cell.kernel, gru.cell.recurrent_kernel, gru.cell.bias, fc2.kernel, fc2.bias]
    # Some first-layer units at zero, so the ReLU's gradient is exercised on both sides.
    x = tf.constant(rng.normal(size=(steps, rows, features)).astype("float32"))
    loss_weights = tf.constant(rng.normal(size=(steps, rows, actions)).astype("float32"))
    results = []
    for fn in (lambda x: tf.transpose(fc2(gru(fc1(tf.transpose(x, (1, 0, 2))))), (1, 0, 2)),
               lambda x: agent_sequence(x, *weights)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            q = fn(x)
            loss = tf.reduce_sum(q * loss_weights)
        results.append((q, tape.gradient(loss, [x, *weights])))
    (q_ref, g_ref), (q, g) = results
    assert_close(q, q_ref, steps * (features + 3 * units + units))
    for grad, ref in zip(g[1:], g_ref[1:]):
        assert_close(grad, ref, steps * rows + features + 3 * units)
    assert np.any(np.asarray(fc1(tf.reshape(x, (-1, features)))) == 0.0)
    # The features are data: no gradient flows into them.
    assert g_ref[0] is not None and g[0] is None


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_packed_sequences_equal_the_full_ones_where_they_run(mode, rng):
    steps, episodes, agents, features, units, actions = 7, 4, 2, 5, 4, 3
    lengths = np.array([6, 6, 3, 1], "int32")  # longest first; no episode runs all 7 steps
    _, fused = make_agents(n_agents=agents, n_actions=actions, obs_dim=features, hidden=units)
    weights = fused.sequence_weights()
    width = fused.fc1.kernel.shape[0]  # the observation and the one-hots
    x = tf.constant(rng.normal(size=(steps, episodes * agents, width)).astype("float32"))
    running = (np.arange(steps)[:, None] < np.repeat(lengths, agents)[None, :])[..., None]  # (T, M, 1)
    # The loss reads Q only where the episodes run, as the TD loss does.
    loss_weights = tf.constant(rng.normal(size=(steps, episodes * agents, actions)).astype("float32") * running)

    def q_and_grads(active_rows):
        with tf.GradientTape() as tape:
            q = agent_sequence(x, *weights, active_rows=active_rows)
            loss = tf.reduce_sum(q * loss_weights)
        return q, tape.gradient(loss, weights)

    run = q_and_grads if mode == "eager" else tf.function(q_and_grads)
    active = active_rows_of(lengths, steps, agents)
    np.testing.assert_array_equal(active, [8, 6, 6, 4, 4, 4, 0])
    (q_full, g_full), (q, g) = run(None), run(active)
    # Each running row computes the same arithmetic whether or not the others run (a matmul of
    # fewer rows may block its sums differently: the float32 bound); the others' Qs are 0.
    assert_close(q, np.where(running, q_full, 0.0), steps * (width + 3 * units + units))
    assert np.all(np.asarray(q)[~np.broadcast_to(running, q.shape)] == 0.0)
    for grad, ref in zip(g, g_full):
        assert_close(grad, ref, steps * episodes * agents + width + 3 * units)
    with pytest.raises(tf.errors.InvalidArgumentError, match="longest first"):
        active_rows_of(lengths[::-1], steps, agents)


def test_fused_agent_under_mixed_precision(rng):
    keras_agent, fused_agent = make_agents(dtype="mixed_float16")
    obs = rng.normal(size=(2, 5, 3, 7)).astype("float32")
    last_action = rng.integers(-1, 5, size=(2, 5, 3)).astype("int32")
    weights = tf.constant(rng.normal(size=(2, 5, 3, 5)).astype("float32"))
    (q_ref, g_ref), (q, g) = (q_and_grads(a, obs, last_action, weights) for a in (keras_agent, fused_agent))
    assert q.dtype == tf.float16
    # float16 (u = 2**-11) instead of float32: the same bound with its unit roundoff.
    scale = 2.0**-11 / U32
    for actual, reference in zip([q, *g], [q_ref, *g_ref]):
        actual, reference = np.asarray(actual, np.float64), np.asarray(reference, np.float64)
        np.testing.assert_allclose(actual, reference, rtol=0, atol=scale * tolerance(2 * 3 + 15 + 24, reference))


def test_recurrence_selection():
    assert resolve_recurrence("keras") == "keras"
    assert resolve_recurrence("fused") == "fused"
    expected = "keras" if tf.config.list_logical_devices("GPU") else "fused"
    assert resolve_recurrence("auto") == expected
    with pytest.raises(ValueError, match="recurrence"):
        RNNAgent(2, 3, recurrence="cudnn")
    agent = RNNAgent(2, 3, recurrence="keras")
    assert RNNAgent.from_config(agent.get_config()).recurrence == "keras"
    # A configuration saved before the option existed loads with the default.
    config = agent.get_config()
    del config["recurrence"]
    assert RNNAgent.from_config(config).recurrence == "auto"


def test_learner_update_is_the_same_with_either_recurrence():
    from test_learner import make_batch, make_learner

    batch = make_batch(np.random.default_rng(7))
    learners = [make_learner(seed=3, recurrence=r) for r in ("keras", "fused")]
    learners[1].set_state(learners[0].get_state())
    tensors = {k: tf.constant(v) for k, v in batch.items()}
    n_filled = tf.reduce_sum(tensors["filled"])
    (g_ref, sums_ref), (g, sums) = (lrn._local_gradients(tensors, n_filled) for lrn in learners)
    rows = batch["obs"].shape[0] * batch["obs"].shape[2]
    steps = batch["obs"].shape[1]
    for grad, ref in zip(g, g_ref):
        assert_close(grad, ref, steps * rows + 64)
    for key in sums:
        assert_close(sums[key], sums_ref[key], steps * 64)
    before = learners[0].get_state()
    outs = [lrn.train(batch, episode=300) for lrn in learners]
    after_ref, after = learners[0].get_state(), learners[1].get_state()
    assert max(float(np.abs(after_ref[k] - before[k]).max()) for k in before) > 1e-4
    # RMSprop's first step is lr * g / (sqrt(1 - rho) * |g| + eps): a gradient error d moves a
    # weight by at most lr / eps * d (at g = 0), so the weights get that tolerance.
    config = learners[0].config
    gain = config.lr / config.optim_eps
    grad_tol = max(tolerance(steps * rows + 64, ref) for ref in g_ref)
    for key in before:
        np.testing.assert_allclose(after[key], after_ref[key], rtol=0, atol=gain * grad_tol + 4 * U32)
    for key in outs[0]:
        assert abs(outs[0][key] - outs[1][key]) <= tolerance(steps * 64, outs[0][key]), key
