"""Agent and mixer construction, and the Functional model wiring them together."""

from __future__ import annotations

import keras
from keras import ops

from .layers import RNNAgent


@keras.saving.register_keras_serializable(package="kqmix")
class ChosenActionQ(keras.layers.Layer):
    """Picks each agent's Q of the action it took.

    Inputs: `[q (..., A), actions (...)]` int. Output: `(...)`.
    """

    def call(self, inputs):
        q, actions = inputs
        index = ops.expand_dims(ops.cast(actions, "int32"), -1)
        return ops.squeeze(ops.take_along_axis(q, index, axis=-1), -1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1])


def agent_from_config(info, config, name="agent") -> RNNAgent:
    """Builds the shared agent network for an environment (`EnvInfo`) and a `Config`."""
    agent = RNNAgent(
        n_agents=info.n_agents,
        n_actions=info.n_actions,
        hidden_dim=config.rnn_hidden_dim,
        use_agent_id=config.obs_agent_id,
        use_last_action=config.obs_last_action,
        recurrence=config.recurrence,
        dtype="mixed_float16" if config.mixed_precision else None,
        name=name,
    )
    agent.build([(None, None, info.n_agents, info.obs_dim), (None, None, info.n_agents)])
    return agent


def mixer_from_config(info, config, name="mixer"):
    """Builds the mixer `config.mixer` names (`kqmix.mixers.MIXERS`)."""
    from .mixers import mixer_class

    dtype = "mixed_float16" if config.mixed_precision else None
    mixer = mixer_class(config.mixer).from_run_config(info, config, name=name, dtype=dtype)
    mixer.build([(None, None, info.n_agents), (None, None, info.state_dim)])
    return mixer


def build_qmix_model(agent: RNNAgent, mixer, state_dim: int) -> keras.Model:
    """A Functional model over whole episodes, sharing the given layers' weights.

    Inputs (dict): `obs (B, T, N, O)`, `last_action (B, T, N)` int32 (-1 = none),
    `actions (B, T, N)` int32, `state (B, T, S)`.
    Outputs (dict): `q_values (B, T, N, A)` and `q_tot (B, T)` of the taken actions.
    """
    n, obs_dim = agent.n_agents, agent.obs_dim
    obs = keras.Input((None, n, obs_dim), name="obs")
    last_action = keras.Input((None, n), dtype="int32", name="last_action")
    actions = keras.Input((None, n), dtype="int32", name="actions")
    state = keras.Input((None, state_dim), name="state")
    q_values = agent([obs, last_action])  # (B, T, N, A)
    chosen = ChosenActionQ(name="chosen_q")([q_values, actions])  # (B, T, N)
    q_tot = mixer([chosen, state])  # (B, T)
    return keras.Model(
        inputs={"obs": obs, "last_action": last_action, "actions": actions, "state": state},
        outputs={"q_values": q_values, "q_tot": q_tot},
        name="qmix",
    )
