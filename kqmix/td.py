"""What a mixer's loss is made of: the agents' side of one batch (`TDInputs`) and the loss terms
a mixer returns from it (`LossTerms`).

The learner computes the agents' Q-values, the bootstrap actions and the
rewards once per batch (`kqmix.learner.QLearner`); the mixer turns them into
its loss (`kqmix.layers.Mixer.loss_terms`): plain QMIX and VDN one TD loss,
Weighted QMIX (`kqmix.wqmix`) a weighted TD loss plus its central critic's.
So adding a mixer never touches the learner's step.

Shapes (legend in `kqmix.layers`): the agent side is time-major, `(T, B, ...)`
or `(T+1, B, ...)`, as the agents' recurrence runs; rewards, masks, Q_tot and
targets are `(B, T)`. The batch rows may be in the learner's packing order
(longest episode first); every loss is a sum over steps, so the order does
not matter to it.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf


def lambda_returns(reward, terminated, filled, next_value, gamma, td_lambda):
    """TD(lambda) targets over time, computed backwards.

    `G_t = r_t + gamma * (1 - term_t) * ((1 - lambda) * V_{t+1} + lambda * G_{t+1})`,
    where `G_{t+1}` is replaced by `V_{t+1}` when step t+1 is padded (the
    episode was truncated there, so it bootstraps) or past the end. lambda=0
    gives the 1-step target. All inputs `(B, T)`; returns `(B, T)`.
    """
    not_term = 1.0 - terminated
    if td_lambda == 0.0:
        return reward + gamma * not_term * next_value
    # Whether step t+1 is a real step whose return can be continued.
    next_filled = tf.concat([filled[:, 1:], tf.zeros_like(filled[:, :1])], axis=1)

    def backward(g_next, elems):
        r, nt, v_next, nf = elems  # each (B,)
        cont = nf * g_next + (1.0 - nf) * v_next
        return r + gamma * nt * ((1.0 - td_lambda) * v_next + td_lambda * cont)

    time_major = [tf.transpose(x) for x in (reward, not_term, next_value, next_filled)]
    returns = tf.scan(
        backward, time_major, initializer=tf.zeros_like(reward[:, 0]), reverse=True
    )  # (T, B)
    return tf.transpose(returns)


class TDInputs(NamedTuple):
    """The agents' side of one batch, computed once by the learner for the mixer's loss."""

    features: tf.Tensor  # (T+1, B, N, F) the agents' input features (networks that read them: WQMIX's central agent)
    lengths: tf.Tensor | None  # (B,) steps + 1 per episode when the recurrence skips finished episodes, else None
    q: tf.Tensor  # (T+1, B, N, A) online agents' Qs
    chosen: tf.Tensor  # (T, B, N) online agents' Qs of the taken actions
    actions: tf.Tensor  # (T, B, N) int32, the taken actions
    greedy: tf.Tensor  # (T+1, B, N) int32, the online agents' greedy available actions = argmax of Q_tot
    bootstrap: tf.Tensor  # (T, B, N) int32, the actions the targets value at t+1 (double Q: `greedy[1:]`)
    next_q: tf.Tensor  # (T, B, N) target agents' Qs of `bootstrap`
    state: tf.Tensor  # (T+1, B, S)
    reward: tf.Tensor  # (B, T), standardised when the config says so
    terminated: tf.Tensor  # (B, T), 1 where no bootstrap follows
    filled: tf.Tensor  # (B, T), 1 on real steps
    n_filled: tf.Tensor  # () filled steps of the whole batch (all replicas): every loss is divided by it
    gamma: float
    td_lambda: float

    def returns(self, next_tot):
        """TD(lambda) targets `(B, T)` bootstrapping from `next_tot (T, B)`; they carry no gradient."""
        targets = lambda_returns(self.reward, self.terminated, self.filled, tf.transpose(next_tot),
                                 self.gamma, self.td_lambda)
        return tf.stop_gradient(targets)

    def mean_square(self, td, weights=None):
        """`sum(weights * filled * td^2) / n_filled` for `td (B, T)`."""
        squared = tf.square(td * self.filled)
        if weights is not None:
            squared = weights * squared
        return tf.reduce_sum(squared) / self.n_filled

    def mean(self, values):
        """`sum(filled * values) / n_filled` for `values (B, T)`: a metric that adds up over replicas."""
        return tf.reduce_sum(values * self.filled) / self.n_filled


class LossTerms(NamedTuple):
    """A mixer's loss for one batch (or one replica's share of it).

    `losses` are added into the loss the optimizer minimises (each is logged
    as `loss_<name>` when there are several); `q_tot` and `targets` `(B, T)`
    are the monitored Q_tot of the taken actions and the targets it was fitted
    to; `metrics` are further scalars to log, each already divided by
    `TDInputs.n_filled` so that the replicas' values add up.
    """

    losses: dict
    q_tot: tf.Tensor
    targets: tf.Tensor
    metrics: dict
