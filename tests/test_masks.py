"""Widening the action masks of rows whose choice is never used (`kqmix.masks`)."""

import numpy as np
import tensorflow as tf

from kqmix.masks import widen_masks, widen_masks_tf


def _masks(rng):
    avail = (rng.random((3, 4, 2, 5)) < 0.4).astype(np.float32)  # (B, T+1, N, A)
    avail[0, -1] = 0.0  # a padded step
    avail[1, 2, 1] = 0.0  # one agent's empty row
    return avail


def test_widen_masks_fills_only_empty_rows(rng):
    avail = _masks(rng)
    before = avail.copy()
    wide = widen_masks(avail)
    empty = ~avail.any(axis=-1)  # (B, T+1, N)
    assert empty.sum() >= 3
    np.testing.assert_array_equal(wide[empty], 1.0)
    np.testing.assert_array_equal(wide[~empty], avail[~empty])
    np.testing.assert_array_equal(avail, before)  # a new array
    assert wide.dtype == np.float32


def test_widen_masks_fills_the_given_rows(rng):
    avail = (rng.random((6, 5)) < 0.4).astype(np.float32)  # (M*N, A)
    avail[3] = avail[4] = 0.0  # row 4 is widened, row 3 is not
    rows = np.array([False, True, False, False, True, False])
    wide = widen_masks(avail, rows=rows)
    np.testing.assert_array_equal(wide[rows], 1.0)
    np.testing.assert_array_equal(wide[~rows], avail[~rows])  # empty or not
    assert wide.dtype == np.float32


def test_tensorflow_twin_is_identical(rng):
    avail = _masks(rng)
    np.testing.assert_array_equal(widen_masks_tf(tf.constant(avail)).numpy(), widen_masks(avail))
