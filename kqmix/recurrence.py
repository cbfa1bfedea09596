"""The agent's GRU over whole sequences with a hand-written backward pass (for CPUs).

`gru_sequence` is `keras.layers.GRU` with the settings `RNNAgent` uses
(reset_after=True, tanh, sigmoid, zero initial state, gate order z, r, h) on
the same weights, with the forward pass of Keras's GRUCell. What differs is
the gradient: autodiff through a Keras RNN costs four matmuls per step (the
input, recurrent and both weight gradients) plus slicing gradients; here

* the forward loop also keeps each step's gates (z, r, h~ and h @ U_h + b_h);
* the backward loop does the gate arithmetic and one matmul per step (dL/dh_{t-1});
* the weight gradients and dL/dx are single matmuls over all steps after the loop.

On a GPU the Keras layer (cuDNN) is faster; `resolve_recurrence` picks.
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


def gru_sequence(x, kernel, recurrent_kernel, bias):
    """Hidden states of a GRU from a zero state.

    x `(T, M, F)` time-major, kernel `(F, 3H)`, recurrent_kernel `(H, 3H)`,
    bias `(2, 3H)` (input bias, recurrent bias: Keras's GRU weights) -> `(T, M, H)`.
    Differentiable in every argument.
    """
    kernel, recurrent_kernel, bias = (tf.convert_to_tensor(w, x.dtype) for w in (kernel, recurrent_kernel, bias))
    return _recurrence(x, kernel, recurrent_kernel, bias)


@tf.custom_gradient
def _recurrence(x, kernel, recurrent_kernel, bias):
    """`gru_sequence` with its hand-written gradient."""
    steps, rows = tf.shape(x)[0], tf.shape(x)[1]
    units = recurrent_kernel.shape[0]
    dtype = x.dtype
    row_shape = tf.TensorShape([x.shape[1], units])  # (M, H)
    inputs = tf.TensorArray(dtype, size=steps, element_shape=x.shape[1:]).unstack(x)

    def forward(t, h, hs, saved):
        # Keras's GRUCell arithmetic (reset_after=True).
        projected = tf.matmul(inputs.read(t), kernel) + bias[0]  # (M, 3H)
        inner = tf.matmul(h, recurrent_kernel) + bias[1]  # (M, 3H)
        x_z, x_r, x_h = tf.split(projected, 3, axis=-1)
        inner_z, inner_r, inner_h = tf.split(inner, 3, axis=-1)
        z = tf.sigmoid(x_z + inner_z)
        r = tf.sigmoid(x_r + inner_r)
        candidate = tf.tanh(x_h + r * inner_h)
        h_next = z * h + (1 - z) * candidate  # (M, H)
        # What the backward pass needs of this step: (M, 4H).
        saved = saved.write(t, tf.concat([z, r, candidate, inner_h], axis=-1))
        return t + 1, h_next, hs.write(t, h_next), saved

    h0 = tf.zeros((rows, units), dtype)
    hs = tf.TensorArray(dtype, size=steps, element_shape=row_shape)
    saved = tf.TensorArray(dtype, size=steps, element_shape=row_shape[:1].concatenate([4 * units]))
    _, _, hs, saved = tf.while_loop(lambda t, *_: t < steps, forward, (0, h0, hs, saved))
    h_out = hs.stack()  # (T, M, H)

    def backward(d_out):
        # d_out (T, M, H): dLoss/dh_t from outside the recurrence.
        d_out = tf.TensorArray(dtype, size=steps, element_shape=row_shape).unstack(d_out)
        h_prev = tf.concat([h0[None], h_out[:-1]], axis=0)  # (T, M, H): h_{t-1}
        h_prevs = tf.TensorArray(dtype, size=steps, element_shape=row_shape).unstack(h_prev)
        u_t = tf.transpose(recurrent_kernel)  # (3H, H)

        def step_back(t, carry, d_inners, d_projected):
            z, r, candidate, inner_h = tf.split(saved.read(t), 4, axis=-1)
            dh = d_out.read(t) + carry  # (M, H): total dLoss/dh_t
            # Through h_t = z * h + (1 - z) * h~, h~ = tanh(x_h + r * inner_h), z and r sigmoids.
            d_h = dh * (1 - z) * (1 - candidate * candidate)  # d pre-activation of h~
            d_z = dh * (h_prevs.read(t) - candidate) * z * (1 - z)
            d_r = d_h * inner_h * r * (1 - r)
            d_inner = tf.concat([d_z, d_r, d_h * r], axis=-1)  # (M, 3H): d(h @ U + b_h)
            carry = dh * z + tf.matmul(d_inner, u_t)  # (M, H): dLoss/dh_{t-1}
            d_projected = d_projected.write(t, tf.concat([d_z, d_r, d_h], axis=-1))  # d(x @ W + b_x)
            return t - 1, carry, d_inners.write(t, d_inner), d_projected

        shape_3h = row_shape[:1].concatenate([3 * units])
        grads = [tf.TensorArray(dtype, size=steps, element_shape=shape_3h) for _ in range(2)]
        _, _, d_inners, d_projected = tf.while_loop(
            lambda t, *_: t >= 0, step_back, (steps - 1, tf.zeros_like(h0), *grads))
        # The weight gradients: sums over all steps, as one matmul each.
        d_inners = tf.reshape(d_inners.stack(), (-1, 3 * units))  # (T*M, 3H)
        d_projected = tf.reshape(d_projected.stack(), (-1, 3 * units))  # (T*M, 3H)
        flat_x = tf.reshape(x, (-1, x.shape[-1]))  # (T*M, F)
        d_x = tf.reshape(tf.matmul(d_projected, kernel, transpose_b=True), tf.shape(x))
        d_kernel = tf.matmul(flat_x, d_projected, transpose_a=True)  # (F, 3H)
        d_recurrent = tf.matmul(tf.reshape(h_prev, (-1, units)), d_inners, transpose_a=True)  # (H, 3H)
        d_bias = tf.stack([tf.reduce_sum(d_projected, axis=0), tf.reduce_sum(d_inners, axis=0)])  # (2, 3H)
        return d_x, d_kernel, d_recurrent, d_bias

    return h_out, backward
