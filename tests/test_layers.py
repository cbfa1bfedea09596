"""Layer tests in the manner of keras's run_layer_test, plus the QMIX monotonicity property."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kqmix.layers import HyperNetwork, QMixer, RNNAgent, VDNMixer
from kqmix.networks import build_qmix_model

N, A, O, S, H, E = 3, 5, 7, 11, 16, 8


def _roundtrip_layer(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)
    return clone


@pytest.mark.parametrize("hidden", [None, 6])
def test_hypernetwork_shapes_weights_config(hidden, rng):
    layer = HyperNetwork(N * E, hidden_units=hidden, non_negative=True)
    out = layer(rng.normal(size=(4, 2, S)).astype("float32"))
    assert tuple(out.shape) == (4, 2, N * E)
    assert layer.compute_output_shape((4, 2, S)) == (4, 2, N * E)
    assert (np.asarray(out) >= 0).all()
    expected = S * N * E + N * E if hidden is None else S * hidden + hidden + hidden * N * E + N * E
    assert sum(int(np.prod(w.shape)) for w in layer.trainable_weights) == expected
    assert len(layer.trainable_weights) == (2 if hidden is None else 4)
    _roundtrip_layer(layer)


def test_hypernetwork_bias_is_unconstrained(rng):
    layer = HyperNetwork(32, non_negative=False)
    out = np.asarray(layer(rng.normal(size=(64, S)).astype("float32")))
    assert (out < 0).any()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_agents=0), "n_agents"),
        (dict(n_agents=2, embed_dim=-1), "embed_dim"),
        (dict(n_agents=2, hypernet_layers=3), "hypernet_layers"),
        (dict(n_agents=2.5), "n_agents"),
    ],
)
def test_qmixer_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"{match}.*Received"):
        QMixer(**kwargs)


def test_agent_rejects_bad_arguments():
    with pytest.raises(ValueError, match="hidden_dim=0"):
        RNNAgent(2, 3, hidden_dim=0)
    with pytest.raises(ValueError, match="use_agent_id"):
        RNNAgent(2, 3, use_agent_id="yes")


@pytest.mark.parametrize("hypernet_layers", [1, 2])
def test_qmixer_shapes_weights_config(hypernet_layers, rng):
    mixer = QMixer(N, embed_dim=E, hypernet_layers=hypernet_layers, hypernet_embed=6)
    qs = rng.normal(size=(4, 5, N)).astype("float32")
    state = rng.normal(size=(4, 5, S)).astype("float32")
    out = mixer([qs, state])
    assert tuple(out.shape) == (4, 5)
    assert mixer.compute_output_shape([(4, 5, N), (4, 5, S)]) == (4, 5)
    hyper = (lambda units: S * units + units) if hypernet_layers == 1 else (
        lambda units: S * 6 + 6 + 6 * units + units
    )
    expected = hyper(N * E) + hyper(E) + (S * E + E) + (S * E + E + E + 1)
    assert sum(int(np.prod(w.shape)) for w in mixer.trainable_weights) == expected
    clone = _roundtrip_layer(mixer)
    clone([qs, state])
    clone.set_weights(mixer.get_weights())
    np.testing.assert_allclose(clone([qs, state]), out, rtol=1e-6)


def test_qmixer_rejects_wrong_agent_count(rng):
    with pytest.raises(ValueError, match="expected 3"):
        QMixer(3)([np.zeros((2, 4), "float32"), np.zeros((2, S), "float32")])


@pytest.mark.parametrize("hypernet_layers", [1, 2])
def test_qmixer_is_monotonic_in_every_agent_q(hypernet_layers, rng):
    mixer = QMixer(N, embed_dim=E, hypernet_layers=hypernet_layers, hypernet_embed=12)
    for scale in (0.1, 1.0, 10.0):
        qs = tf.constant(rng.normal(scale=scale, size=(256, N)).astype("float32"))
        state = tf.constant(rng.normal(scale=scale, size=(256, S)).astype("float32"))
        with tf.GradientTape() as tape:
            tape.watch(qs)
            q_tot = mixer([qs, state])
        grads = tape.gradient(q_tot, qs).numpy()
        assert grads.shape == (256, N)
        assert (grads >= 0).all()
        assert (grads > 0).any()


def test_qmixer_state_dependence_is_not_monotonic(rng):
    # The state enters only through hypernetworks, so dQ_tot/ds takes both signs.
    mixer = QMixer(N, embed_dim=E)
    qs = tf.constant(rng.normal(size=(256, N)).astype("float32"))
    state = tf.constant(rng.normal(size=(256, S)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(state)
        q_tot = mixer([qs, state])
    grads = tape.gradient(q_tot, state).numpy()
    assert (grads > 0).any() and (grads < 0).any()


def test_default_kernels_are_pytorch_scaled_and_distinct():
    mixer = QMixer(2, embed_dim=E, hypernet_layers=2, hypernet_embed=64)
    mixer.build([(None, 2), (None, 24)])
    first = mixer.hyper_w1.hidden.kernel.numpy()  # (24, 64)
    # Uniform with variance 1 / (3 * fan_in), as torch.nn.Linear.
    assert abs(first.std() - 1.0 / np.sqrt(3 * 24)) < 0.01
    assert np.abs(first).max() <= 1.0 / np.sqrt(24)
    # Same shape, separate draws (an unseeded Keras initializer fixes its seed).
    assert not np.allclose(first, mixer.hyper_w_final.hidden.kernel.numpy())
    agent = RNNAgent(2, 6, hidden_dim=H)
    agent.build([(None, None, 2, O), (None, None, 2)])
    assert np.abs(agent.fc2.kernel.numpy()).max() <= 1.0 / np.sqrt(H)


def test_kernel_initializer_is_an_argument_and_survives_config():
    mixer = QMixer(N, embed_dim=E, kernel_initializer="glorot_uniform")
    assert type(_roundtrip_layer(mixer).kernel_initializer).__name__ == "GlorotUniform"
    agent = RNNAgent(N, A, hidden_dim=H, kernel_initializer="zeros")
    agent.build([(None, None, N, O), (None, None, N)])
    assert not agent.fc1.kernel.numpy().any()
    assert type(_roundtrip_layer(agent).kernel_initializer).__name__ == "Zeros"


def test_vdn_is_the_sum(rng):
    mixer = VDNMixer(N)
    qs = rng.normal(size=(4, 6, N)).astype("float32")
    out = mixer([qs, rng.normal(size=(4, 6, S)).astype("float32")])
    np.testing.assert_allclose(out, qs.sum(-1), rtol=1e-6)
    assert mixer.trainable_weights == []
    _roundtrip_layer(mixer)


def _agent(use_id=True, use_last=True):
    agent = RNNAgent(N, A, hidden_dim=H, use_agent_id=use_id, use_last_action=use_last, name="agent")
    agent.build([(None, None, N, O), (None, None, N)])
    return agent


def test_agent_sequence_shapes_and_weights(rng):
    agent = _agent()
    obs = rng.normal(size=(2, 6, N, O)).astype("float32")
    last = rng.integers(-1, A, size=(2, 6, N)).astype("int32")
    q = agent([obs, last])
    assert tuple(q.shape) == (2, 6, N, A)
    features = O + A + N
    expected = (features * H + H) + (3 * H * H + 3 * H * H + 2 * 3 * H) + (H * A + A)
    assert sum(int(np.prod(w.shape)) for w in agent.trainable_weights) == expected
    _roundtrip_layer(agent)


@pytest.mark.parametrize("use_id, use_last", [(True, True), (False, True), (True, False), (False, False)])
def test_agent_step_matches_sequence(use_id, use_last, rng):
    """The numpy policy's equality with `step` is in test_policy.py."""
    agent = _agent(use_id, use_last)
    T = 5
    obs = rng.normal(size=(3, T, N, O)).astype("float32")
    actions = rng.integers(0, A, size=(3, T, N)).astype("int32")
    last = np.concatenate([-np.ones((3, 1, N), "int32"), actions[:, :-1]], axis=1)
    seq = np.asarray(agent([obs, last]))
    hidden = np.zeros((3 * N, H), "float32")
    ids = np.tile(np.arange(N, dtype="int32"), 3)
    for t in range(T):
        q, hidden = agent.step(obs[:, t].reshape(3 * N, O), ids, last[:, t].reshape(-1), hidden)
        np.testing.assert_allclose(np.asarray(q).reshape(3, N, A), seq[:, t], atol=1e-5)


@pytest.mark.parametrize("use_id, use_last", [(True, True), (False, True), (True, False), (False, False)])
def test_input_layout_is_what_build_features_builds(use_id, use_last, rng):
    agent = _agent(use_id, use_last)
    assert agent.obs_dim == O
    layout = agent.input_layout()
    expected = [("obs", O, "obs")]
    if use_last:
        expected.append(("last_action_one_hot", A, "last_action"))
    if use_id:
        expected.append(("agent_id_one_hot", N, "agent_id"))
    assert [(b.name, b.size, b.source) for b in layout] == expected
    assert [b.start for b in layout] == [0] + [b.stop for b in layout[:-1]]
    assert all(b.stop - b.start == b.size for b in layout)
    assert layout[-1].stop == sum(b.size for b in layout) == O + agent.extra_features
    assert agent.fc1.kernel.shape[0] == layout[-1].stop

    obs = rng.normal(size=(4, O)).astype("float32")
    ids = np.array([0, 2, 1, 2], "int32")
    last = np.array([-1, 4, 0, 3], "int32")
    features = np.asarray(agent.build_features(obs, ids, last))  # (4, F)
    encoded = {"obs": obs, "last_action": np.eye(A)[last] * (last >= 0)[:, None], "agent_id": np.eye(N)[ids]}
    for block in layout:
        np.testing.assert_array_equal(features[:, block.start : block.stop], encoded[block.source])


def test_obs_dim_needs_a_built_agent():
    agent = RNNAgent(N, A, hidden_dim=H)
    with pytest.raises(ValueError, match="no observation size until it is built"):
        agent.obs_dim
    with pytest.raises(ValueError, match="no observation size until it is built"):
        agent.input_layout()
    agent.build([(None, None, N, O), (None, None, N)])
    assert agent.obs_dim == O
    restored = RNNAgent.from_config(agent.get_config())
    restored.build([(None, None, N, 9), (None, None, N)])
    assert restored.obs_dim == 9


def test_last_action_minus_one_is_zero_one_hot():
    agent = _agent(use_id=False)
    feats = np.asarray(agent.build_features(np.zeros((2, O), "float32"), np.zeros(2), np.array([-1, 2])))
    np.testing.assert_array_equal(feats[0, O:], np.zeros(A))
    np.testing.assert_array_equal(feats[1, O:], np.eye(A)[2])


def test_functional_model_keras_roundtrip(tmp_path, rng):
    agent = _agent()
    mixer = QMixer(N, embed_dim=E, name="mixer")
    mixer.build([(None, None, N), (None, None, S)])
    model = build_qmix_model(agent, mixer, S)
    inputs = {
        "obs": rng.normal(size=(2, 4, N, O)).astype("float32"),
        "last_action": rng.integers(-1, A, size=(2, 4, N)).astype("int32"),
        "actions": rng.integers(0, A, size=(2, 4, N)).astype("int32"),
        "state": rng.normal(size=(2, 4, S)).astype("float32"),
    }
    out = model(inputs)
    assert tuple(out["q_values"].shape) == (2, 4, N, A)
    assert tuple(out["q_tot"].shape) == (2, 4)
    path = tmp_path / "qmix.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    again = restored(inputs)
    for key in ("q_values", "q_tot"):
        np.testing.assert_allclose(np.asarray(again[key]), np.asarray(out[key]), atol=1e-6)
    assert isinstance(restored.get_layer("agent"), RNNAgent)
    assert isinstance(restored.get_layer("mixer"), QMixer)
