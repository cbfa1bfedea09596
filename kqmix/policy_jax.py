"""The acting policy of `kqmix.policy.NumpyAgentPolicy` as pure JAX functions.

What a compiled rollout (`kqmix.envs.jax_rollout`) runs inside its loop: the
same `RNNAgent` step (fc1 + ReLU, Keras GRU cell with `reset_after=True`,
gate order z, r, h; fc2) in the same order of operations, the same masked
greedy choice, and epsilon-greedy with the same rule. The weights are an
argument (`weights(policy.params())`), so new weights never recompile.

Shapes (legend in `kqmix.layers`): `obs (B, O)`, `agent_id (B,)`,
`last_action (B,)` (-1 = none), `hidden (B, H)`, `avail (B, A)`; B is any
set of agents (e.g. M envs x N agents).
"""

from __future__ import annotations

import numpy as np

from kqmix_runtime.actions import NO_ACTION

#: The entries of `NumpyAgentPolicy.params()` that are weights (`w_last` / `w_id` may be None).
WEIGHT_KEYS = ("w_obs", "w_last", "w_id", "b1", "kernel", "rec", "b_in", "b_rec", "w2", "b2")


def weights(params: dict) -> dict:
    """The float32 weights of `NumpyAgentPolicy.params()`, a pytree for a jit-compiled call
    (None entries are absent inputs: the compiled function depends only on which are None)."""
    return {k: None if params[k] is None else np.asarray(params[k], np.float32) for k in WEIGHT_KEYS}


def _sigmoid(x):
    import jax.numpy as jnp

    return 0.5 * (jnp.tanh(0.5 * x) + 1.0)  # as NumpyAgentPolicy computes it


def agent_step(w: dict, obs, agent_id, last_action, hidden):
    """`NumpyAgentPolicy.step`: returns `(q (B, A), next_hidden (B, H))`."""
    import jax.numpy as jnp

    x = obs @ w["w_obs"] + w["b1"]  # (B, H)
    if w["w_last"] is not None:
        x = x + jnp.where((last_action >= 0)[:, None], w["w_last"][jnp.maximum(last_action, 0)], 0.0)
    if w["w_id"] is not None:
        x = x + w["w_id"][agent_id]
    x = jnp.maximum(x, 0.0)
    h = hidden.shape[-1]
    xg = x @ w["kernel"] + w["b_in"]  # (B, 3H), gate order z, r, h
    hg = hidden @ w["rec"] + w["b_rec"]  # (B, 3H)
    z = _sigmoid(xg[:, :h] + hg[:, :h])
    r = _sigmoid(xg[:, h : 2 * h] + hg[:, h : 2 * h])
    cand = jnp.tanh(xg[:, 2 * h :] + r * hg[:, 2 * h :])
    next_hidden = z * hidden + (1.0 - z) * cand  # (B, H)
    q = next_hidden @ w["w2"] + w["b2"]  # (B, A)
    return q, next_hidden


def masked_greedy(q, avail):
    """`kqmix_runtime.actions.masked_greedy`: best available action per row (ties to the lowest
    index), `NO_ACTION` for a row with none available: `(B,)` int32."""
    import jax.numpy as jnp

    available = avail > 0  # (B, A)
    best = jnp.argmax(jnp.where(available, q, -jnp.inf), axis=-1)  # (B,)
    return jnp.where(available.any(axis=-1), best, NO_ACTION).astype(jnp.int32)


def uniform_available(key, avail):
    """One action per row drawn uniformly among the available ones, `NO_ACTION` for an empty row: `(B,)` int32.

    Draws the rank k in [0, count) of the available action, then takes the k-th
    available one: exactly uniform (no ties, unlike an argmax of float scores).
    """
    import jax
    import jax.numpy as jnp

    available = avail > 0  # (B, A)
    count = available.sum(axis=-1)  # (B,)
    rank = jax.random.randint(key, count.shape, 0, jnp.maximum(count, 1))  # (B,)
    pick = jnp.argmax(jnp.cumsum(available, axis=-1) > rank[:, None], axis=-1)  # (B,) first index past rank
    return jnp.where(count > 0, pick, NO_ACTION).astype(jnp.int32)


def epsilon_greedy(key, q, avail, epsilon):
    """`NumpyAgentPolicy.epsilon_greedy`'s rule: per row, with probability `epsilon` a uniformly random
    available action, else the masked greedy one; `NO_ACTION` for an empty row. `(B,)` int32."""
    import jax

    explore_key, action_key = jax.random.split(key)
    explore = jax.random.uniform(explore_key, q.shape[:1]) < epsilon  # (B,)
    return jax.numpy.where(explore, uniform_available(action_key, avail), masked_greedy(q, avail))
