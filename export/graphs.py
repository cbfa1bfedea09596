"""The exported functions, written once in TensorFlow and shared by SavedModel and ONNX.

`act`, `mix` and `mix_grad` wrap the trained Keras layers in `tf.function`s
with fixed input signatures (batch axis free). Feature building (agent-id
and last-action one-hots) and the masked greedy argmax live inside the graph,
so every consumer - TF Serving, onnxruntime, the Python runtime - passes raw
observations, ids and masks and gets the same answer.

Shape legend: B batch, N agents, A actions, O observation features,
S state features, H GRU width, E mixing embed.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kqmix_runtime import spec
from kqmix_runtime.errors import ExportError


def _specs(inputs: dict, sizes: dict) -> list:
    """`tf.TensorSpec`s for one signature, in the documented input order."""
    return [
        tf.TensorSpec(spec.concrete_shape(shape, sizes), tf.as_dtype(dtype), name=name)
        for name, (dtype, shape) in inputs.items()
    ]


def input_signatures(sizes: dict, names=None) -> dict:
    """Signature name -> list of `tf.TensorSpec` (names are the documented input names), for
    `spec.SIGNATURES` or the given names of `spec.ALL_SIGNATURES`."""
    names = spec.SIGNATURES if names is None else names
    return {name: _specs(spec.ALL_SIGNATURES[name][0], sizes) for name in names}


def masked_greedy(q, avail_actions):
    """Best available action per row, `spec.NO_ACTION` for a row with no available action.

    q `(B, A)`, avail_actions `(B, A)` (> 0 = available) -> `(B,)` int32.
    The TensorFlow twin of `kqmix_runtime.actions.masked_greedy`, which
    defines the choice (the validator compares the two).
    """
    masked = tf.where(avail_actions > 0, q, tf.constant(float("-inf"), q.dtype))  # (B, A)
    best = tf.argmax(masked, axis=-1, output_type=tf.int32)  # (B,); 0 for an all -inf row
    empty = tf.cast(tf.equal(tf.reduce_max(masked, axis=-1), float("-inf")), tf.int32)  # (B,) 1 = empty
    # An empty row's argmax is 0, so adding NO_ACTION there gives NO_ACTION.
    # Arithmetic rather than tf.where: tf2onnx lowers a select into a chain
    # of casts and multiplies, and at batch 1 every ONNX node is a measurable
    # share of the step's latency; for NO_ACTION = -1 it is one subtraction.
    if spec.NO_ACTION == -1:
        return best - empty
    return best + spec.NO_ACTION * empty


def mixer_weights_fn(mixer):
    """Returns `f(agent_qs (B, N), state (B, S)) -> dQ_tot/dQ_a (B, N)`: the mixer's own closed form
    (`kqmix.layers.Mixer.monotonic_weights`), which the ONNX converters translate."""
    from kqmix.layers import Mixer

    if not isinstance(mixer, Mixer):
        raise ExportError(f"Cannot export the mixer gradient of {type(mixer).__name__}: it is not a kqmix "
                          "Mixer (kqmix.layers.Mixer), which gives dQ_tot/dQ_a in closed form.")
    return mixer.monotonic_weights


def fast_step_supported(agent) -> bool:
    """True when `agent` is a float32 `RNNAgent` whose GRU `fused_agent_step` reproduces."""
    gru = getattr(getattr(agent, "gru", None), "cell", None)
    return (
        gru is not None
        and agent.compute_dtype == "float32"
        and getattr(gru, "reset_after", False)
        and getattr(gru, "use_bias", False)
        and gru.activation is keras.activations.tanh
        and gru.recurrent_activation is keras.activations.sigmoid
        and agent.fc1.activation is keras.activations.relu
        and agent.fc2.activation is keras.activations.linear
    )


def fused_agent_step(agent, obs, agent_id, last_action, hidden):
    """`RNNAgent.step` rewritten for a short inference graph.

    Same function as `agent.step` (the validator checks it to 1e-5), but the
    one-hot inputs become row lookups into slices of the first Dense kernel
    and the GRU's two matmuls become one over `[x, h]`, which roughly halves
    the ONNX node count - at batch 1 the per-node dispatch is most of the
    latency. Weights are read from the layers' variables inside the graph, so
    the SavedModel keeps them as variables and tf2onnx folds the slicing.

    obs `(B, O)`, agent_id `(B,)`, last_action `(B,)` (-1 = none), hidden
    `(B, H)` -> q `(B, A)`, next_hidden `(B, H)`.
    """
    h_dim = agent.hidden_dim
    x, (k, rk, bias, kernel2, bias2) = _agent_features(agent, obs, agent_id, last_action)
    zeros = tf.zeros((h_dim, h_dim))
    # [x, h] @ W -> [z|r pre-activations (2H), x part of h~ (H), h part of h~ (H)]
    w = tf.concat(
        [
            tf.concat([k[:, : 2 * h_dim], k[:, 2 * h_dim :], zeros], 1),
            tf.concat([rk[:, : 2 * h_dim], zeros, rk[:, 2 * h_dim :]], 1),
        ],
        0,
    )  # (2H, 4H)
    b = tf.concat([bias[0, : 2 * h_dim] + bias[1, : 2 * h_dim], bias[0, 2 * h_dim :], bias[1, 2 * h_dim :]], 0)
    gates = tf.matmul(tf.concat([x, hidden], 1), w) + b  # (B, 4H)
    zr, x_h, h_h = tf.split(gates, [2 * h_dim, h_dim, h_dim], axis=1)
    z, r = tf.split(tf.sigmoid(zr), 2, axis=1)
    candidate = tf.tanh(x_h + r * h_h)
    next_hidden = candidate + z * (hidden - candidate)  # = z * h + (1 - z) * h~
    q = tf.matmul(next_hidden, kernel2) + bias2  # (B, A)
    return q, next_hidden


def _agent_features(agent, obs, agent_id, last_action):
    """The first Dense layer and its ReLU as row lookups: x `(B, H)`, and the GRU's and the output
    layer's weights (k, rk `(H, 3H)`, gates z, r, h; bias `(2, 3H)`: input, recurrent; kernel2, bias2)."""
    h_dim = agent.hidden_dim
    kernel1, bias1, k, rk, bias, kernel2, bias2 = (tf.convert_to_tensor(w) for w in agent.sequence_weights())
    rows = {block.name: kernel1[block.start : block.stop] for block in agent.input_layout()}
    x = tf.matmul(obs, rows["obs"]) + bias1  # (B, H)
    if "last_action_one_hot" in rows:
        # Row 0 is the zero row of `spec.NO_LAST_ACTION` (-1), hence the shift.
        table = tf.concat([tf.zeros((1, h_dim)), rows["last_action_one_hot"]], 0)  # (A + 1, H)
        x = x + tf.gather(table, last_action - spec.NO_LAST_ACTION)
    if "agent_id_one_hot" in rows:
        x = x + tf.gather(rows["agent_id_one_hot"], agent_id)
    return tf.nn.relu(x), (k, rk, bias, kernel2, bias2)


def quantizable_agent_step(agent, obs, agent_id, last_action, hidden):
    """`fused_agent_step` with the GRU's input and recurrent products kept apart, for int8.

    The same function (the validator holds the int8 file to it), but `x @ k`
    and `h @ rk` stay two matmuls, as in the GRU itself, so quantisation
    gives the ReLU features and the recurrent state (|h| <= 1) a scale each;
    one matmul over `[x, h]` would quantise h on the features' coarser
    scale. It also drops `fused_agent_step`'s zero blocks from the weights,
    which int8 would store.
    """
    h_dim = agent.hidden_dim
    x, (k, rk, bias, kernel2, bias2) = _agent_features(agent, obs, agent_id, last_action)
    x_gates = tf.matmul(x, k) + bias[0]  # (B, 3H): z, r, h~ parts from the input
    h_gates = tf.matmul(hidden, rk) + bias[1]  # (B, 3H): the same from the state
    x_zr, x_h = tf.split(x_gates, [2 * h_dim, h_dim], axis=1)
    h_zr, h_h = tf.split(h_gates, [2 * h_dim, h_dim], axis=1)
    z, r = tf.split(tf.sigmoid(x_zr + h_zr), 2, axis=1)
    candidate = tf.tanh(x_h + r * h_h)
    next_hidden = candidate + z * (hidden - candidate)  # = z * h + (1 - z) * h~
    return tf.matmul(next_hidden, kernel2) + bias2, next_hidden


def one_step(agent):
    """The one-step function an exported graph runs `agent` with: `fused_agent_step` where it
    reproduces the agent, else the agent's own `step`."""
    return (lambda *args: fused_agent_step(agent, *args)) if fast_step_supported(agent) else agent.step


def _typed_function(fn, specs: list, outputs: dict):
    """`fn(**inputs) -> dict` as a `tf.function` of the documented input signature `specs`,
    its outputs cast to the documented dtypes."""

    def exported(*args):
        got = fn(**{tensor.name: value for tensor, value in zip(specs, args)})
        return {key: tf.cast(got[key], tf.as_dtype(dtype)) for key, (dtype, _) in outputs.items()}

    return tf.function(exported, input_signature=specs, autograph=False)


def act_function(step, sizes: dict):
    """The `act` signature's `tf.function` around a one-step function `step(obs, agent_id, last_action,
    hidden) -> (q, next_hidden)`: the Qs, the masked greedy action and the next hidden state."""

    @tf.function(input_signature=input_signatures(sizes)[spec.ACT], autograph=False)
    def act(obs, agent_id, last_action, avail_actions, hidden):
        q, next_hidden = step(obs, agent_id, last_action, hidden)
        q = tf.cast(q, tf.float32)  # (B, A)
        return {
            "q_values": q,
            "action": masked_greedy(q, avail_actions),
            "next_hidden": tf.cast(next_hidden, tf.float32),  # (B, H)
        }

    return act


def int8_act_function(agent, sizes: dict):
    """`act` as int8 quantisation should see it: `quantizable_agent_step` where the agent allows
    it, else None (the exported `act`, the agent's own step, serves)."""
    if not fast_step_supported(agent):
        return None
    return act_function(lambda *args: quantizable_agent_step(agent, *args), sizes)


def build_functions(agent, mixer, sizes: dict) -> dict:
    """Signature name -> `tf.function` with a fixed input signature.

    `agent` is a built `RNNAgent`, `mixer` a built `kqmix.layers.Mixer`;
    `sizes` is metadata["sizes"]. Every output is float32/int32 whatever the
    layers' compute dtype, because the contract fixes the dtypes.
    """
    signatures = input_signatures(sizes)
    weights = mixer_weights_fn(mixer)
    act = act_function(one_step(agent), sizes)

    @tf.function(input_signature=signatures[spec.MIX], autograph=False)
    def mix(agent_qs, state):
        return {"q_tot": tf.cast(mixer([agent_qs, state]), tf.float32)}  # (B,)

    @tf.function(input_signature=signatures[spec.MIX_GRAD], autograph=False)
    def mix_grad(agent_qs, state):
        return {
            "q_tot": tf.cast(mixer([agent_qs, state]), tf.float32),  # (B,)
            "dq_tot_dq": tf.cast(weights(agent_qs, state), tf.float32),  # (B, N)
        }

    functions = {spec.ACT: act, spec.MIX: mix, spec.MIX_GRAD: mix_grad}
    # Signatures of the mixer's own (Weighted QMIX's critic), typed by the contract.
    extra = mixer.export_functions(agent_step=one_step)
    for name, specs in input_signatures(sizes, extra).items():
        functions[name] = _typed_function(extra[name], specs, spec.ALL_SIGNATURES[name][1])
    return functions
