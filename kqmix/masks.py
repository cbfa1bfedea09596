"""Widening the action masks of rows whose choice is never used.

Training meets action-mask rows that no decision is made from:

* an environment's masks at a terminal step (`CheckedEnv`): nothing
  bootstraps from them, so an environment may leave them empty;
* the masks of finished environments in the runner, which ride along in the
  batched agent step until every environment is done; their actions are
  never sent;
* the learner's padded steps (all-zero masks): their TD terms are multiplied
  out of the loss.

A masked max over an empty row is -inf, and -inf times the zero that removes
the row from the loss is NaN, which would poison the whole update. So these
rows get every action marked available, which keeps every masked max and
argmax finite, and no mask a decision is made from is ever changed. (An empty
row on a real decision is an error: `CheckedEnv` raises, and the masked
greedy choice answers `NO_ACTION`.)

Masks hold 0 and 1 (the environment contract). Shape legend: A actions; the
leading axes are any, e.g. (B, T+1, N) in the learner.
"""

from __future__ import annotations

import numpy as np


def widen_masks(avail, rows=None) -> np.ndarray:
    """Marks every action available in the mask rows whose choice is never used.

    Args:
        avail: masks `(..., A)`, 1 = available.
        rows: bool `(...)`, the rows to widen; by default the rows with no
            available action.

    Returns:
        float32 `(..., A)`, a new array; the other rows are unchanged.
    """
    avail = np.asarray(avail, np.float32)
    if rows is None:
        # An empty row becomes max(0, 1 - 0) = 1, any other max(a, 1 - 1) = a.
        return np.maximum(avail, 1.0 - avail.max(axis=-1, keepdims=True))
    return np.where(np.asarray(rows, bool)[..., None], np.float32(1.0), avail)


def widen_masks_tf(avail):
    """`widen_masks(avail)` for a TensorFlow tensor (inside a `tf.function`), same arithmetic."""
    import tensorflow as tf  # here, so that environments and the runner never load TensorFlow

    has_action = tf.reduce_max(avail, axis=-1, keepdims=True)  # (..., 1)
    return tf.maximum(avail, 1.0 - has_action)  # (..., A)
