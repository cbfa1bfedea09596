"""Fast acting: the agent network's forward step in numpy.

Acting runs one small recurrent step per environment step; at these sizes a
TensorFlow call costs hundreds of microseconds of dispatch, numpy tens. The
policy mirrors the Keras `RNNAgent` weights (re-read with `sync()` after
each update) and computes exactly the same function, which the tests check.
"""

from __future__ import annotations

import numpy as np

from kqmix_runtime.actions import masked_greedy


def _sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


class NumpyAgentPolicy:
    """The `RNNAgent.step` function on numpy arrays, with masked greedy and epsilon-greedy choice.

    Shapes: `obs (B, O)`, `agent_id (B,)`, `last_action (B,)` (-1 = none),
    `hidden (B, H)`, `avail (B, A)`; B is any set of agents (e.g. M envs x N agents).

    Neither choice ever returns an unavailable action: a row with nothing
    available gets `NO_ACTION` (-1), as from the exported graph. Training never
    asks for one (environments must offer every agent an action, and the
    runner widens the masks of finished environments, see `kqmix.masks`).
    """

    def __init__(self, agent):
        self.agent = agent
        self.n_agents = agent.n_agents
        self.n_actions = agent.n_actions
        self.hidden_dim = agent.hidden_dim
        self.use_agent_id = agent.use_agent_id
        self.use_last_action = agent.use_last_action
        self.version = 0  # counts `sync()` calls: which weights a remote copy holds
        self._flat = None
        self.sync()

    @classmethod
    def from_params(cls, params: dict) -> "NumpyAgentPolicy":
        """A policy from `params()` alone (no Keras, no TensorFlow): how rollout actors act."""
        policy = cls.__new__(cls)
        policy.agent = None
        policy.load_params(params)
        return policy

    def _read_weights(self):
        """All agent weights in one device-to-host copy (one call, one transfer)."""
        if self._flat is None:
            import tensorflow as tf

            variables = self.agent.sequence_weights()  # fc1 kernel, bias, GRU kernel, recurrent, bias, fc2 ...
            shapes = [tuple(v.shape) for v in variables]
            flat = tf.function(
                lambda: tf.concat([tf.reshape(tf.cast(v.value, tf.float32), [-1]) for v in variables], 0)
            )
            self._flat = (flat, shapes)
        flat, shapes = self._flat
        values = flat().numpy()
        out, offset = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            out.append(values[offset : offset + size].reshape(shape))
            offset += size
        return out

    def sync(self):
        """Copies the current weights out of the Keras agent."""
        a = self.agent
        w1, b1, kernel, rec, bias, w2, b2 = self._read_weights()
        # Split fc1 so one-hot inputs become row lookups instead of matmuls.
        rows = {block.name: w1[block.start : block.stop] for block in a.input_layout()}
        self.load_params({
            "n_agents": a.n_agents, "n_actions": a.n_actions, "hidden_dim": a.hidden_dim,
            "use_agent_id": a.use_agent_id, "use_last_action": a.use_last_action, "obs_dim": a.obs_dim,
            "version": self.version + 1,
            "w_obs": rows["obs"],  # (O, H)
            "w_last": rows.get("last_action_one_hot"),  # (A, H) or None
            "w_id": rows.get("agent_id_one_hot"),  # (N, H) or None
            "b1": b1, "kernel": kernel, "rec": rec, "b_in": bias[0], "b_rec": bias[1], "w2": w2, "b2": b2,
        })

    def params(self) -> dict:
        """Sizes and numpy weights: everything `from_params` needs, small enough for one object-store put."""
        return dict(self._params)

    def load_params(self, params: dict) -> None:
        self._params = dict(params)
        for key in ("n_agents", "n_actions", "hidden_dim", "use_agent_id", "use_last_action", "obs_dim",
                    "version"):
            setattr(self, key, params[key])
        self._w_obs, self._w_last, self._w_id, self._b1 = params["w_obs"], params["w_last"], params["w_id"], params["b1"]
        self._kernel, self._rec, self._b_in, self._b_rec = params["kernel"], params["rec"], params["b_in"], params["b_rec"]
        self._w2, self._b2 = params["w2"], params["b2"]

    def initial_hidden(self, batch_size: int) -> np.ndarray:
        return np.zeros((batch_size, self.hidden_dim), np.float32)

    def step(self, obs, agent_id, last_action, hidden):
        """One step: returns `(q (B, A), next_hidden (B, H))`."""
        x = obs @ self._w_obs + self._b1  # (B, H)
        if self._w_last is not None:
            x += np.where((last_action >= 0)[:, None], self._w_last[np.maximum(last_action, 0)], 0.0)
        if self._w_id is not None:
            x += self._w_id[agent_id]
        np.maximum(x, 0.0, out=x)
        h = self.hidden_dim
        xg = x @ self._kernel + self._b_in  # (B, 3H), gate order z, r, h
        hg = hidden @ self._rec + self._b_rec  # (B, 3H)
        z = _sigmoid(xg[:, :h] + hg[:, :h])
        r = _sigmoid(xg[:, h : 2 * h] + hg[:, h : 2 * h])
        cand = np.tanh(xg[:, 2 * h :] + r * hg[:, 2 * h :])
        next_hidden = (z * hidden + (1.0 - z) * cand).astype(np.float32)
        q = next_hidden @ self._w2 + self._b2  # (B, A)
        return q, next_hidden

    @staticmethod
    def greedy(q, avail):
        """Best available action per row, `NO_ACTION` for an empty row: `(B,)` int32.

        `kqmix_runtime.actions.masked_greedy`, the choice the exported graph makes.
        """
        return masked_greedy(q, avail)

    @staticmethod
    def epsilon_greedy(q, avail, epsilon: float, rng: np.random.Generator):
        """Per row, with probability epsilon a uniformly random available action, else greedy.

        `NO_ACTION` for an empty row. Draws `rng.random(B)`, then, if any row
        explores, `rng.random((B, A))`, whatever the masks hold.
        """
        actions = NumpyAgentPolicy.greedy(q, avail)
        if epsilon > 0:
            explore = rng.random(len(actions)) < epsilon
            if explore.any():
                # The best of i.i.d. uniform scores is uniform over the available actions.
                random_actions = masked_greedy(rng.random(avail.shape), avail)
                actions = np.where(explore, random_actions, actions)
        return actions
