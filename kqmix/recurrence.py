"""The agent network over whole sequences in one loop with a hand-written backward pass (for CPUs).

`agent_sequence` is `RNNAgent`'s network, Dense(ReLU) -> `keras.layers.GRU`
-> Dense, with the GRU settings `RNNAgent` uses (reset_after=True, tanh,
sigmoid, zero initial state, gate order z, r, h), on the same weights and with
the forward arithmetic of Keras's Dense and GRUCell. What differs is how it
runs: each step of the loop applies the whole network to that step's rows, so
every matmul has a few hundred rows (sizes a CPU multiplies efficiently) and
no (T, M, ...) intermediate is built but the Q-values; and the gradient is
written by hand instead of autodiff through every op of the step:

* the forward loop also keeps what the backward step needs (the first
  layer's output, h_{t-1}, z, r, h~, h_{t-1} @ U_h + b_h, h_t and
  h_{t-1} - h~), each in its own TensorArray, no copies;
* the backward loop does the gate arithmetic (with TensorFlow's fused
  `SigmoidGrad` and `TanhGrad`) and one matmul per step on its critical path
  (dL/dh_{t-1}); the step's weight gradients, accumulated in
  the loop, are matmuls off that path, which TensorFlow can run alongside it
  (`kqmix.threads`: two inter-op threads).

Given how long each sequence runs (`active_rows`, sequences longest first),
each step computes only the rows still running, as cuDNN does with packed
sequences: a batch of episodes of different lengths costs what its steps
cost, not its longest episode times its size.

On a GPU the Keras layers (cuDNN) are faster; `resolve_recurrence` picks.
Shape legend as in `kqmix.layers`; M is any batch of sequences (B*N agents).
"""

from __future__ import annotations

import tensorflow as tf

RECURRENCES = ("auto", "keras", "fused")


def resolve_recurrence(choice: str) -> str:
    """`keras` or `fused` for a `recurrence` setting; `auto` is `keras` when a GPU is visible, else `fused`."""
    if choice not in RECURRENCES:
        raise ValueError(f"`recurrence` must be one of {RECURRENCES}. Received: recurrence={choice!r}")
    if choice != "auto":
        return choice
    return "keras" if tf.config.list_logical_devices("GPU") else "fused"


def active_rows_of(lengths, steps, rows_per_sequence=1):
    """`agent_sequence`'s `active_rows` `(steps,)` for sequences of `lengths` `(B,)`, longest first.

    Sequence b takes rows `[b * rows_per_sequence, (b + 1) * rows_per_sequence)`
    and runs for steps `t < lengths[b]`. Raises `InvalidArgumentError` if the
    lengths are not ordered longest first.
    """
    lengths = tf.cast(lengths, tf.int32)
    check = tf.debugging.assert_non_negative(lengths[:-1] - lengths[1:], "lengths must be ordered longest first")
    with tf.control_dependencies([check]):
        running = lengths[None, :] > tf.range(steps)[:, None]  # (steps, B)
    return rows_per_sequence * tf.reduce_sum(tf.cast(running, tf.int32), axis=1)


def agent_sequence(features, fc1_kernel, fc1_bias, kernel, recurrent_kernel, bias, fc2_kernel, fc2_bias,
                   active_rows=None):
    """Q-values of the agent network over whole sequences from a zero GRU state.

    features `(T, M, F)` time-major; fc1 `(F, H)`, `(H,)`; the GRU's kernel
    `(H, 3H)`, recurrent_kernel `(H, 3H)`, bias `(2, 3H)` (input bias,
    recurrent bias: Keras's GRU weights); fc2 `(H, A)`, `(A,)` -> `(T, M, A)`.
    Differentiable in every weight. The features are data (observations and
    one-hots): they get no gradient (None).

    active_rows `(T,)` int, optional: step t is computed for rows
    `[0, active_rows[t])` only, and its other rows' Q-values are 0. The rows
    must be ordered by how long they run, longest first (active_rows never
    increases): a row that stops does not start again, so its hidden state is
    dropped. Steps after the last active one are not run at all. Default:
    every row at every step.
    """
    packed = active_rows is not None
    if not packed:
        active_rows = tf.fill(tf.shape(features)[:1], tf.shape(features)[1])
    weights = (fc1_kernel, fc1_bias, kernel, recurrent_kernel, bias, fc2_kernel, fc2_bias)
    return _SEQUENCES[packed](tf.stop_gradient(features), tf.cast(active_rows, tf.int32),
                              *(tf.convert_to_tensor(w, features.dtype) for w in weights))


def _sequence_with_gradient(packed: bool):
    """`agent_sequence` with its hand-written gradient; `packed`: skip the rows `active_rows` leaves out.

    Unpacked, every shape is static (as XLA needs); packed, the number of rows changes from step to step.
    """

    @tf.custom_gradient
    def sequence_and_gradient(features, active_rows, *weights):
        return _agent_sequence(features, active_rows, *weights, packed=packed)

    return sequence_and_gradient


def _agent_sequence(features, active_rows, fc1_kernel, fc1_bias, kernel, recurrent_kernel, bias, fc2_kernel,
                    fc2_bias, packed):
    all_steps, rows = tf.shape(features)[0], tf.shape(features)[1]
    # The leading steps with a row to compute.
    steps = tf.reduce_sum(tf.cast(active_rows > 0, tf.int32)) if packed else all_steps
    units, n_actions = recurrent_kernel.shape[0], fc2_kernel.shape[1]
    dtype = features.dtype
    row_shape = tf.TensorShape([None if packed else features.shape[1], units])  # (m, H): a step's active rows

    def sequence(element_shape):
        # Packed, the elements' number of rows varies (an eager TensorArray would insist on one).
        return tf.TensorArray(dtype, size=steps, element_shape=element_shape, infer_shape=not packed)

    if packed:
        # Per-step slice sizes and paddings, computed once: in the loops each is one lookup.
        next_rows = tf.concat([active_rows[1:], [0]], axis=0)  # rows that step t+1 runs (none after the last)
        sizes = tf.stack([active_rows, -tf.ones_like(active_rows)], axis=1)  # (T, 2): the first m rows
        zero = tf.zeros_like(active_rows)

        def paddings(extra):  # (T, 2, 2): `extra[t]` zero rows after a step's rows
            return tf.stack([tf.stack([zero, extra], axis=1), tf.zeros((all_steps, 2), tf.int32)], axis=1)

        q_paddings, carry_paddings = paddings(rows - active_rows), paddings(active_rows - next_rows)
    else:
        sizes = q_paddings = carry_paddings = None  # nothing is cut or padded

    def first_rows(tensor, t):
        """The first `active_rows[t]` rows of a 2-D `tensor` (the tensor itself, unpacked)."""
        return tf.slice(tensor, [0, 0], sizes[t]) if packed else tensor

    def padded(tensor, table, t):
        """`tensor` followed by `table[t]`'s zero rows (the tensor itself, unpacked)."""
        return tf.pad(tensor, table[t]) if packed else tensor

    input_bias, recurrent_bias = tf.unstack(bias)  # (3H,) each
    # Loop variables whose number of rows changes from step to step.
    invariants = (tf.TensorShape([]), row_shape, tf.TensorShape(None), (tf.TensorShape(None),) * 9) if packed else None

    def forward(t, h, qs, saved):
        h = first_rows(h, t)  # rows that stopped drop out
        inputs = first_rows(features[t], t)  # (m, F)
        # Keras's Dense and GRUCell (reset_after=True) arithmetic; `bias_add` lets
        # TensorFlow fuse each bias (and the ReLU) into its matmul.
        x = tf.nn.relu(tf.nn.bias_add(tf.matmul(inputs, fc1_kernel), fc1_bias))  # (m, H)
        projected = tf.nn.bias_add(tf.matmul(x, kernel), input_bias)  # (m, 3H)
        inner = tf.nn.bias_add(tf.matmul(h, recurrent_kernel), recurrent_bias)  # (m, 3H)
        x_z, x_r, x_h = tf.split(projected, 3, axis=-1)
        inner_z, inner_r, inner_h = tf.split(inner, 3, axis=-1)
        z = tf.sigmoid(x_z + inner_z)
        r = tf.sigmoid(x_r + inner_r)
        candidate = tf.tanh(x_h + r * inner_h)
        gap = h - candidate
        h_next = candidate + z * gap  # (m, H): z * h + (1 - z) * h~
        q = tf.nn.bias_add(tf.matmul(h_next, fc2_kernel), fc2_bias)  # (m, A)
        # What the backward step needs, each (m, H) but the inputs (m, F).
        values = (inputs, x, h, z, r, candidate, inner_h, h_next, gap)
        saved = tuple(ta.write(t, value) for ta, value in zip(saved, values))
        return t + 1, h_next, qs.write(t, padded(q, q_paddings, t)), saved

    h0 = tf.zeros((rows, units), dtype)
    saved = (sequence(tf.TensorShape([row_shape[0], features.shape[2]])),) + tuple(sequence(row_shape) for _ in range(8))
    start = (0, h0, sequence(tf.TensorShape([features.shape[1], n_actions])), saved)
    _, _, qs, saved = tf.while_loop(lambda t, *_: t < steps, forward, start, shape_invariants=invariants)
    q_out = qs.stack()  # (steps, M, A)
    if packed:  # the steps after the last active one are 0
        q_out = tf.pad(q_out, [[0, all_steps - steps], [0, 0], [0, 0]])

    def backward(d_out):
        # d_out (T, M, A): dLoss/dq_t from outside the network.
        fc2_t, k_t, u_t = (tf.transpose(w) for w in (fc2_kernel, kernel, recurrent_kernel))  # (A, H), (3H, H), (3H, H)

        def step_back(t, carry, grads):
            inputs, x, h_prev, z, r, candidate, inner_h, h, gap = (ta.read(t) for ta in saved)
            dq = first_rows(d_out[t], t)  # (m, A)
            # Rows that stopped after this step get nothing back from later steps.
            dh = tf.matmul(dq, fc2_t) + padded(carry, carry_paddings, t)  # (m, H): total dLoss/dh_t
            # Through h_t = h~ + z * (h - h~), h~ = tanh(x_h + r * inner_h), z and r sigmoids;
            # SigmoidGrad(y, dy) = dy * y * (1 - y) and TanhGrad(y, dy) = dy * (1 - y * y), one op each.
            dh_z = dh * z  # also the direct part of dLoss/dh_{t-1}
            d_h = tf.raw_ops.TanhGrad(y=candidate, dy=dh - dh_z)  # d pre-activation of h~
            d_z = tf.raw_ops.SigmoidGrad(y=z, dy=dh * gap)
            d_r = tf.raw_ops.SigmoidGrad(y=r, dy=d_h * inner_h)
            d_inner = tf.concat([d_z, d_r, d_h * r], axis=-1)  # (m, 3H): d(h @ U + b_h)
            carry = dh_z + tf.matmul(d_inner, u_t)  # (m, H): dLoss/dh_{t-1}, the critical path
            # Off the critical path: this step's share of every weight gradient.
            d_projected = tf.concat([d_z, d_r, d_h], axis=-1)  # (m, 3H): d(x @ W + b_x)
            d_fc1 = tf.raw_ops.ReluGrad(gradients=tf.matmul(d_projected, k_t), features=x)  # (m, H): d pre-ReLU
            step = (
                tf.matmul(inputs, d_fc1, transpose_a=True),  # (F, H)
                tf.reduce_sum(d_fc1, axis=0),  # (H,)
                tf.matmul(x, d_projected, transpose_a=True),  # (H, 3H)
                tf.matmul(h_prev, d_inner, transpose_a=True),  # (H, 3H)
                tf.stack([tf.reduce_sum(d_projected, axis=0), tf.reduce_sum(d_inner, axis=0)]),  # (2, 3H)
                tf.matmul(h, dq, transpose_a=True),  # (H, A)
                tf.reduce_sum(dq, axis=0),  # (A,)
            )
            return t - 1, carry, tuple(total + g for total, g in zip(grads, step))

        weights = (fc1_kernel, fc1_bias, kernel, recurrent_kernel, bias, fc2_kernel, fc2_bias)
        start = (steps - 1, tf.zeros((0 if packed else rows, units), dtype), tuple(tf.zeros_like(w) for w in weights))
        invariants = (tf.TensorShape([]), row_shape, tuple(w.shape for w in weights)) if packed else None
        _, _, grads = tf.while_loop(lambda t, *_: t >= 0, step_back, start, shape_invariants=invariants)
        return (None, None, *grads)

    return q_out, backward


_SEQUENCES = {packed: _sequence_with_gradient(packed) for packed in (False, True)}
