"""Weighted QMIX (Rashid et al., NeurIPS 2020): OW-QMIX and CW-QMIX.

QMIX's monotonic mixer cannot represent payoffs in which an agent's best
action depends on the others' (the 3x3 game `[[8,-12,-12],[-12,0,0],[-12,0,0]]`):
fitting every joint action equally, it settles on a safe, suboptimal one.
Weighted QMIX keeps QMIX for acting and adds an unrestricted critic Q̂*
(a central agent network, then `CentralMixer`, a feed-forward network over
the central agents' Qs and the state). Both are fitted to the targets
`r + gamma * Q̂*(s', argmax of QMIX's Q_tot)`; QMIX's squared errors are
weighted, 1 where it matters and `alpha` elsewhere:

* OW-QMIX (optimistic): 1 where QMIX underestimates the target (TD error < 0);
* CW-QMIX (centralised): 1 for QMIX's greedy joint action and where the
  target exceeds Q̂* of the greedy joint action.

With small weights on the joint actions that are neither, QMIX's monotonic
fit is free to rank the best joint action first. The reference implementation
is oxwhirl/wqmix (`max_q_learner.py`, `qmix_central_no_hyper.py`); its configs
weight by 0.1.

Acting and the `mix` export use QMIX's mixer; Q̂* is exported beside it for
monitoring. Shapes follow the legend in `kqmix.layers`.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from kqmix_runtime import spec

from .layers import Mixer, QMixer, RNNAgent, _check_positive_int, _flatten_leading, _fresh, _initializer
from .td import LossTerms

_PACKAGE = "kqmix"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CentralMixer(keras.layers.Layer):
    """Q̂*: an unrestricted feed-forward mixer (no monotonicity constraint).

    `Q̂* = f([agent_qs, state]) + V(state)`, with `f` three ReLU layers of
    width `embed_dim` and a linear output, and `V` one ReLU layer and a
    linear output (wqmix's `QMixerCentralFF`).

    Args:
        n_agents: N.
        embed_dim: width of the hidden layers.
        kernel_initializer: initializer of every kernel; defaults to
            `kqmix.layers.default_kernel_initializer()`.

    Inputs: `[agent_qs (..., N), state (..., S)]`. Output: `(...)`.
    """

    def __init__(self, n_agents, embed_dim=256, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.n_agents = _check_positive_int("n_agents", n_agents)
        self.embed_dim = _check_positive_int("embed_dim", embed_dim)
        self.kernel_initializer = _initializer(kernel_initializer)

        def dense(units, activation, name):
            return keras.layers.Dense(units, activation=activation, kernel_initializer=_fresh(self.kernel_initializer),
                                      dtype=self.dtype_policy, name=name)

        self.hidden = [dense(embed_dim, "relu", f"hidden_{i}") for i in range(3)]
        self.out = dense(1, None, "out")
        self.v_hidden = dense(embed_dim, "relu", "v_hidden")
        self.v_out = dense(1, None, "v_out")

    def build(self, input_shape):
        qs_shape, state_shape = input_shape
        if qs_shape[-1] is not None and qs_shape[-1] != self.n_agents:
            raise ValueError(
                f"CentralMixer(n_agents={self.n_agents}) received agent_qs with last "
                f"dimension {qs_shape[-1]}; expected {self.n_agents}."
            )
        shape = (None, self.n_agents + state_shape[-1])
        for layer in self.hidden:
            layer.build(shape)
            shape = (None, self.embed_dim)
        self.out.build(shape)
        self.v_hidden.build((None, state_shape[-1]))
        self.v_out.build((None, self.embed_dim))

    def call(self, inputs):
        agent_qs, state = inputs
        qs, leading = _flatten_leading(agent_qs, 1)  # (M, N)
        s, _ = _flatten_leading(state, 1)  # (M, S)
        x = ops.concatenate([ops.cast(qs, self.compute_dtype), ops.cast(s, self.compute_dtype)], axis=-1)  # (M, N+S)
        for layer in self.hidden:
            x = layer(x)  # (M, E)
        q_tot = self.out(x)[:, 0] + self.v_out(self.v_hidden(s))[:, 0]  # (M,)
        return ops.reshape(q_tot, leading)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])[:-1]

    def get_config(self):
        base_config = super().get_config()
        config = {"n_agents": self.n_agents, "embed_dim": self.embed_dim,
                  "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
        return {**base_config, **config}


class WeightedQMixer(Mixer):
    """QMIX's mixer plus the unrestricted critic Q̂*, trained with Weighted QMIX's losses.

    `call` is QMIX's `Q_tot` (what acting and the `mix` export use); the
    central agent network and `CentralMixer` (Q̂*) live inside the layer, so
    the learner's target copy and checkpoints cover them with the rest.
    Subclasses choose the weighting: `OWQMixer`, `CWQMixer`.

    Args:
        n_agents, n_actions, obs_dim: N, A, O.
        embed_dim, hypernet_layers, hypernet_embed: QMIX's mixer (`QMixer`).
        central_embed_dim: width of `CentralMixer`.
        central_hidden_dim: GRU width of the central agent network.
        use_agent_id, use_last_action, recurrence: the central agent's input
            and recurrence, as the agents' (`RNNAgent`): it reads their inputs.
        alpha: the weight of the joint actions the weighting does not favour, in (0, 1].

    Inputs: `[agent_qs (..., N), state (..., S)]`. Output: QMIX's `q_tot (...)`.
    """

    weighting = ""

    def __init__(self, n_agents, n_actions, obs_dim, embed_dim=32, hypernet_layers=2, hypernet_embed=64,
                 central_embed_dim=256, central_hidden_dim=64, use_agent_id=True, use_last_action=True,
                 recurrence="auto", alpha=0.1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
            raise ValueError(f"`alpha` must be a float in (0, 1]. Received: alpha={alpha!r}")
        self.alpha = float(alpha)
        self.n_agents = _check_positive_int("n_agents", n_agents)
        self.n_actions = _check_positive_int("n_actions", n_actions)
        self.obs_dim = _check_positive_int("obs_dim", obs_dim)
        self.central_embed_dim = _check_positive_int("central_embed_dim", central_embed_dim)
        self.central_hidden_dim = _check_positive_int("central_hidden_dim", central_hidden_dim)
        self.qmix = QMixer(n_agents, embed_dim=embed_dim, hypernet_layers=hypernet_layers,
                           hypernet_embed=hypernet_embed, dtype=self.dtype_policy, name="qmix")
        self.central_agent = RNNAgent(n_agents, n_actions, hidden_dim=central_hidden_dim, use_agent_id=use_agent_id,
                                      use_last_action=use_last_action, recurrence=recurrence,
                                      dtype=self.dtype_policy, name="central_agent")
        self.central_mixer = CentralMixer(n_agents, embed_dim=central_embed_dim, dtype=self.dtype_policy,
                                          name="central_mixer")

    @classmethod
    def from_run_config(cls, info, config, name, dtype=None):
        return cls(info.n_agents, info.n_actions, info.obs_dim, embed_dim=config.mixing_embed_dim,
                   hypernet_layers=config.hypernet_layers, hypernet_embed=config.hypernet_embed,
                   central_embed_dim=config.central_mixing_embed_dim, central_hidden_dim=config.central_rnn_hidden_dim,
                   use_agent_id=config.obs_agent_id, use_last_action=config.obs_last_action,
                   recurrence=config.recurrence, alpha=config.wqmix_alpha, dtype=dtype, name=name)

    def build(self, input_shape):
        self.qmix.build(input_shape)
        self.central_agent.build([(None, None, self.n_agents, self.obs_dim), (None, None, self.n_agents)])
        self.central_mixer.build(input_shape)

    def call(self, inputs):
        return self.qmix(inputs)

    def central_q(self, agent_qs, state):
        """Q̂* of the central agents' Qs `(..., N)` and the state `(..., S)`: `(...)`."""
        return self.central_mixer([agent_qs, state])

    def monotonic_weights(self, agent_qs, state):
        return self.qmix.monotonic_weights(agent_qs, state)

    def export_functions(self, agent_step=None):
        step = agent_step(self.central_agent) if agent_step is not None else None
        return {spec.CRITIC: lambda **inputs: self.critic_step(**inputs, step=step)}

    def export_sizes(self):
        return {"central_hidden_dim": self.central_hidden_dim}

    def critic_step(self, obs, last_action, actions, state, hidden, step=None):
        """Q̂* of B teams' joint actions, one step (the `critic` export signature).

        obs `(B, N, O)`, last_action `(B, N)` (-1 = none), actions `(B, N)`,
        state `(B, S)`, hidden `(B, N, C)` -> `{"q_star": (B,), "next_hidden": (B, N, C)}`.
        `step` runs the central agent one step (default `central_agent.step`).
        """
        n, c = self.n_agents, self.central_hidden_dim
        step = self.central_agent.step if step is None else step
        teams = ops.shape(obs)[0]
        agent_id = ops.tile(ops.arange(n, dtype="int32"), [teams])  # (B*N,): agents in index order
        q, next_hidden = step(ops.reshape(obs, (-1, self.obs_dim)), agent_id, ops.reshape(last_action, (-1,)),
                              ops.reshape(hidden, (-1, c)))
        chosen = ops.take_along_axis(q, ops.reshape(ops.cast(actions, "int32"), (-1, 1)), axis=-1)  # (B*N, 1)
        q_star = self.central_q(ops.reshape(chosen, (-1, n)), state)  # (B,)
        return {"q_star": q_star, "next_hidden": ops.reshape(next_hidden, (-1, n, c))}

    def loss_terms(self, inputs, target):
        central = tf.cast(self.central_agent.sequence_q(inputs.features, inputs.lengths), tf.float32)  # (T+1, B, N, A)
        target_central = tf.cast(target.central_agent.sequence_q(inputs.features, inputs.lengths), tf.float32)
        state = inputs.state  # (T+1, B, S)

        def central_tot(network, qs, at, states):
            """Q̂* `(B, T)` of the joint action `at (T, B, N)` from central agent Qs `qs (T, B, N, A)`."""
            chosen = tf.gather(qs, at, batch_dims=3)  # (T, B, N)
            return tf.transpose(tf.cast(network.central_q(chosen, states), tf.float32))

        # Both losses fit the same targets: Q̂* of the joint action QMIX bootstraps from.
        next_tot = tf.transpose(central_tot(target, target_central[1:], inputs.bootstrap, state[1:]))  # (T, B)
        targets = inputs.returns(next_tot)  # (B, T)
        q_tot = tf.transpose(tf.cast(self.qmix([inputs.chosen, state[:-1]]), tf.float32))  # (B, T)
        central_taken = central_tot(self, central[:-1], inputs.actions, state[:-1])  # (B, T)
        td = q_tot - targets
        favoured = self.favoured(inputs, td, targets, target, target_central)  # (B, T) bool
        weights = tf.stop_gradient(tf.where(favoured, 1.0, self.alpha))  # (B, T)
        losses = {"qmix": inputs.mean_square(td, weights), "central": inputs.mean_square(central_taken - targets)}
        metrics = {"wqmix_weight_mean": inputs.mean(weights), "central_q_taken_mean": inputs.mean(central_taken)}
        return LossTerms(losses, q_tot, targets, metrics)

    def favoured(self, inputs, td, targets, target, target_central):
        """Where QMIX's squared error gets weight 1 rather than `alpha`: `(B, T)` bool."""
        raise NotImplementedError

    def get_config(self):
        base_config = super().get_config()
        config = {
            "n_agents": self.n_agents, "n_actions": self.n_actions, "obs_dim": self.obs_dim,
            "embed_dim": self.qmix.embed_dim, "hypernet_layers": self.qmix.hypernet_layers,
            "hypernet_embed": self.qmix.hypernet_embed, "central_embed_dim": self.central_embed_dim,
            "central_hidden_dim": self.central_hidden_dim, "use_agent_id": self.central_agent.use_agent_id,
            "use_last_action": self.central_agent.use_last_action, "recurrence": self.central_agent.recurrence,
            "alpha": self.alpha,
        }
        return {**base_config, **config}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class OWQMixer(WeightedQMixer):
    """Optimistically-Weighted QMIX: weight 1 where QMIX's Q_tot is below its target (TD error < 0)."""

    weighting = "optimistic"

    def favoured(self, inputs, td, targets, target, target_central):
        return td < 0.0


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CWQMixer(WeightedQMixer):
    """Centrally-Weighted QMIX: weight 1 for QMIX's greedy joint action and where the target exceeds
    Q̂* (target networks) of the greedy joint action."""

    weighting = "centralised"

    def favoured(self, inputs, td, targets, target, target_central):
        greedy = inputs.greedy[:-1]  # (T, B, N)
        is_greedy = tf.transpose(tf.reduce_all(tf.equal(inputs.actions, greedy), axis=-1))  # (B, T)
        chosen = tf.gather(target_central[:-1], greedy, batch_dims=3)  # (T, B, N)
        greedy_tot = tf.transpose(tf.cast(target.central_q(chosen, inputs.state[:-1]), tf.float32))  # (B, T)
        return is_greedy | (targets > greedy_tot)
