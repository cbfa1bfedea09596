"""QMIX building blocks as Keras 3 layers.

Shape legend (used in every shape comment): B batch (episodes), T time,
N agents, A actions, O observation features, S state features, H GRU width,
E mixing embed.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
from keras import ops

from .recurrence import RECURRENCES, active_rows_of, agent_sequence, resolve_recurrence
from .td import LossTerms

_PACKAGE = "kqmix"


def default_kernel_initializer():
    """PyTorch's `nn.Linear` default, as in the pymarl/EPyMARL references.

    Uniform with variance `1 / (3 * fan_in)`: a third of Glorot's variance
    for square layers such as the hypernetworks' second ones. With raw,
    unnormalised state features (grid coordinates on LBF) Glorot gives an
    untrained mixer a gain dQ_tot/dQ_a near 40, which amplifies the
    max-operator's overestimation in the TD targets; this initialisation
    keeps it near 8.
    """
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


def _initializer(value):
    return default_kernel_initializer() if value is None else keras.initializers.get(value)


def _fresh(initializer):
    """A new instance per layer: an unseeded Keras initializer fixes its seed
    when created, so one instance shared by layers of equal shape would give
    them identical weights."""
    return initializer.__class__.from_config(initializer.get_config())


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}"
        )
    return value


def _flatten_leading(x, trailing: int):
    """Collapses every leading axis of `x` into one; returns (flat, leading_shape)."""
    shape = ops.shape(x)
    leading = shape[: len(x.shape) - trailing]
    flat = ops.reshape(x, (-1,) + tuple(x.shape[len(x.shape) - trailing :]))
    return flat, leading


@keras.saving.register_keras_serializable(package=_PACKAGE)
class HyperNetwork(keras.layers.Layer):
    """Generates the weights (or biases) of one mixing layer from the global state.

    With `hidden_units=None` the hypernetwork is one linear layer
    `state @ W + b`; otherwise it is `relu(state @ W1 + b1) @ W2 + b2`.
    With `non_negative=True` the generated values pass through `abs`, which is
    what makes the QMIX mixer monotonic in each agent's Q; biases are generated
    with `non_negative=False`.

    Args:
        units: number of generated values (e.g. `n_agents * embed_dim`).
        hidden_units: width of the hidden layer, or None for a single linear layer.
        non_negative: apply `abs` to the output.
        kernel_initializer: initializer of the Dense kernels (biases start
            at zero); defaults to `default_kernel_initializer()`.

    Input shape: `(..., S)`. Output shape: `(..., units)`.
    """

    def __init__(self, units, hidden_units=None, non_negative=True, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = _check_positive_int("units", units)
        if hidden_units is not None:
            _check_positive_int("hidden_units", hidden_units)
        self.hidden_units = hidden_units
        if not isinstance(non_negative, bool):
            raise ValueError(
                "`non_negative` must be a bool. "
                f"Received: non_negative={non_negative!r}"
            )
        self.non_negative = non_negative
        self.kernel_initializer = _initializer(kernel_initializer)
        if hidden_units is None:
            self.hidden = None
        else:
            self.hidden = keras.layers.Dense(
                hidden_units, activation="relu", kernel_initializer=_fresh(self.kernel_initializer),
                dtype=self.dtype_policy, name="hidden",
            )
        self.out = keras.layers.Dense(
            units, kernel_initializer=_fresh(self.kernel_initializer), dtype=self.dtype_policy, name="out"
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.hidden is not None:
            self.hidden.build(shape)
            shape = shape[:-1] + (self.hidden_units,)
        self.out.build(shape)

    def call(self, state):
        x = state  # (..., S)
        if self.hidden is not None:
            x = self.hidden(x)
        x = self.out(x)  # (..., units)
        return ops.abs(x) if self.non_negative else x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def get_config(self):
        base_config = super().get_config()
        config = {
            "units": self.units,
            "hidden_units": self.hidden_units,
            "non_negative": self.non_negative,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
        return {**base_config, **config}


class Mixer(keras.layers.Layer):
    """Base class of the mixers `Config.mixer` names (`kqmix.mixers.MIXERS`).

    A mixer maps the agents' chosen Qs and the global state to Q_tot:
    `call([agent_qs (..., N), state (..., S)]) -> (...)`. Besides being a
    layer, it is asked by the learner for its loss and by the exporter for
    what it exports:

    * `from_run_config(info, config, name, dtype)` builds it for a run;
    * `loss_terms(inputs, target)`: the loss of one batch from the agents'
      side (`kqmix.td.TDInputs`) and the mixer's target copy; here the TD
      loss of Q_tot against TD(lambda) targets from the target mixer;
    * `monotonic_weights(agent_qs, state)`: dQ_tot/dQ_a `(B, N)` as a
      graph the ONNX converters translate (no gradient kernels);
    * `export_functions()` and `export_sizes()`: signatures of its own beside
      `act`, `mix` and `mix_grad` (`kqmix_runtime.spec.MIXER_SIGNATURES` names
      their inputs and outputs) and the sizes they need; none here.
    """

    @classmethod
    def from_run_config(cls, info, config, name: str, dtype=None) -> "Mixer":
        raise NotImplementedError

    def loss_terms(self, inputs, target) -> LossTerms:
        q_tot = ops.transpose(ops.cast(self([inputs.chosen, inputs.state[:-1]]), "float32"))  # (B, T)
        next_tot = ops.cast(target([inputs.next_q, inputs.state[1:]]), "float32")  # (T, B)
        targets = inputs.returns(next_tot)  # (B, T)
        return LossTerms({"td": inputs.mean_square(q_tot - targets)}, q_tot, targets, {})

    def monotonic_weights(self, agent_qs, state):
        raise NotImplementedError(f"{type(self).__name__} does not give dQ_tot/dQ_a in closed form.")

    def export_functions(self, agent_step=None) -> dict:
        """Signature name -> function of its inputs (as keyword arguments) returning a dict of its outputs.

        `agent_step(agent)`, if given, returns the one-step function to run an `RNNAgent` of the
        mixer's with (the exporter's shorter graph); default `agent.step`.
        """
        return {}

    def export_sizes(self) -> dict:
        """Sizes (metadata["sizes"] keys) the functions of `export_functions` need beyond the agent's."""
        return {}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QMixer(Mixer):
    """The monotonic QMIX mixing network (Rashid et al., 2018).

    `Q_tot = elu(q @ |W1(s)| + b1(s)) @ |W2(s)| + V(s)`, where every weight is
    generated from the global state `s` by a hypernetwork. The `abs` on the
    mixing weights gives dQ_tot/dQ_a >= 0 for every agent, so the per-agent
    greedy actions are the greedy joint action; `s` only enters through the
    hypernetworks, so Q_tot may depend on it in any (non-monotonic) way.

    Args:
        n_agents: N.
        embed_dim: E, width of the mixing hidden layer.
        hypernet_layers: 1 (linear hypernetworks) or 2 (one ReLU hidden layer).
        hypernet_embed: width of the hypernetworks' hidden layer when
            `hypernet_layers=2`.
        kernel_initializer: initializer of every hypernetwork kernel;
            defaults to `default_kernel_initializer()`.

    Inputs: `[agent_qs, state]` with shapes `(..., N)` and `(..., S)` (same
    leading axes, e.g. `(B, T)`). Output: `q_tot` of shape `(...)`.
    """

    def __init__(
        self, n_agents, embed_dim=32, hypernet_layers=2, hypernet_embed=64, kernel_initializer=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.n_agents = _check_positive_int("n_agents", n_agents)
        self.embed_dim = _check_positive_int("embed_dim", embed_dim)
        if hypernet_layers not in (1, 2) or isinstance(hypernet_layers, bool):
            raise ValueError(
                "`hypernet_layers` must be 1 or 2. "
                f"Received: hypernet_layers={hypernet_layers!r}"
            )
        self.hypernet_layers = hypernet_layers
        self.hypernet_embed = _check_positive_int("hypernet_embed", hypernet_embed)
        self.kernel_initializer = _initializer(kernel_initializer)
        hidden = None if hypernet_layers == 1 else hypernet_embed
        common = dict(kernel_initializer=_fresh(self.kernel_initializer), dtype=self.dtype_policy)
        self.hyper_w1 = HyperNetwork(n_agents * embed_dim, hidden, non_negative=True, name="hyper_w1", **common)
        self.hyper_w_final = HyperNetwork(embed_dim, hidden, non_negative=True, name="hyper_w_final", **common)
        self.hyper_b1 = HyperNetwork(embed_dim, None, non_negative=False, name="hyper_b1", **common)
        # V(s) is always two layers with a ReLU, as in the paper.
        self.hyper_v = HyperNetwork(1, embed_dim, non_negative=False, name="hyper_v", **common)

    def build(self, input_shape):
        qs_shape, state_shape = input_shape
        if qs_shape[-1] is not None and qs_shape[-1] != self.n_agents:
            raise ValueError(
                f"QMixer(n_agents={self.n_agents}) received agent_qs with last "
                f"dimension {qs_shape[-1]}; expected {self.n_agents}."
            )
        flat_state = (None, state_shape[-1])
        for hyper in (self.hyper_w1, self.hyper_w_final, self.hyper_b1, self.hyper_v):
            hyper.build(flat_state)

    def call(self, inputs):
        agent_qs, state = inputs
        qs, leading = _flatten_leading(agent_qs, 1)  # (M, N), M = prod(leading)
        s, _ = _flatten_leading(state, 1)  # (M, S)
        qs = ops.cast(qs, self.compute_dtype)
        w1 = ops.reshape(self.hyper_w1(s), (-1, self.n_agents, self.embed_dim))  # (M, N, E)
        b1 = self.hyper_b1(s)  # (M, E)
        hidden = ops.elu(ops.matmul(qs[:, None, :], w1)[:, 0] + b1)  # (M, E): M products (1, N) @ (N, E)
        w_final = self.hyper_w_final(s)  # (M, E)
        v = self.hyper_v(s)[:, 0]  # (M,)
        q_tot = ops.sum(hidden * w_final, axis=-1) + v  # (M,)
        return ops.reshape(q_tot, leading)

    @classmethod
    def from_run_config(cls, info, config, name, dtype=None):
        gain = config.mixer_orthogonal_gain
        return cls(info.n_agents, embed_dim=config.mixing_embed_dim, hypernet_layers=config.hypernet_layers,
                   hypernet_embed=config.hypernet_embed, dtype=dtype, name=name,
                   kernel_initializer=keras.initializers.Orthogonal(gain=gain) if gain > 0 else None)

    def monotonic_weights(self, agent_qs, state):
        """dQ_tot/dQ_a in closed form: `sum_e |W1|[a, e] * elu'(h_e) * |w_final|[e]`, `(B, N)`.

        Written out (rather than taken with a GradientTape) because ONNX converters
        do not translate TensorFlow's gradient kernels; the export validator checks
        it against a GradientTape. agent_qs `(B, N)`, state `(B, S)`.
        """
        qs = ops.cast(agent_qs, self.compute_dtype)
        s = ops.cast(state, self.compute_dtype)
        w1 = ops.reshape(self.hyper_w1(s), (-1, self.n_agents, self.embed_dim))  # (B, N, E)
        pre = ops.einsum("bn,bne->be", qs, w1) + self.hyper_b1(s)  # (B, E)
        elu_slope = ops.where(pre > 0, ops.ones_like(pre), ops.exp(pre))  # ELU with alpha 1
        w_final = self.hyper_w_final(s)  # (B, E)
        return ops.einsum("bne,be->bn", w1, elu_slope * w_final)  # (B, N)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])[:-1]

    def get_config(self):
        base_config = super().get_config()
        config = {
            "n_agents": self.n_agents,
            "embed_dim": self.embed_dim,
            "hypernet_layers": self.hypernet_layers,
            "hypernet_embed": self.hypernet_embed,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
        return {**base_config, **config}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class VDNMixer(Mixer):
    """Value decomposition (Sunehag et al., 2017): `Q_tot = sum_a Q_a`.

    The state input is accepted (and ignored) so that VDN is a drop-in
    replacement for `QMixer`.

    Args:
        n_agents: N, or None to accept any number of agents.

    Inputs: `[agent_qs, state]` with shapes `(..., N)` and `(..., S)`.
    Output: `q_tot` of shape `(...)`.
    """

    def __init__(self, n_agents=None, **kwargs):
        super().__init__(**kwargs)
        if n_agents is not None:
            _check_positive_int("n_agents", n_agents)
        self.n_agents = n_agents

    def build(self, input_shape):
        qs_shape = input_shape[0]
        if self.n_agents is not None and qs_shape[-1] not in (None, self.n_agents):
            raise ValueError(
                f"VDNMixer(n_agents={self.n_agents}) received agent_qs with last "
                f"dimension {qs_shape[-1]}; expected {self.n_agents}."
            )

    def call(self, inputs):
        agent_qs, _state = inputs
        return ops.sum(ops.cast(agent_qs, self.compute_dtype), axis=-1)

    @classmethod
    def from_run_config(cls, info, config, name, dtype=None):
        return cls(info.n_agents, dtype=dtype, name=name)

    def monotonic_weights(self, agent_qs, state):
        return ops.ones_like(agent_qs)  # (B, N)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])[:-1]

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "n_agents": self.n_agents}


class InputSlice(NamedTuple):
    """One block of the agent network's input features (see `RNNAgent.input_layout`).

    Features `start:stop` of the network's input (rows `start:stop` of the
    first Dense kernel) are the block `name`, built from the `step` argument
    `source`.
    """

    name: str
    size: int
    start: int
    stop: int
    source: str


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RNNAgent(keras.layers.Layer):
    """The shared recurrent agent network: Dense(ReLU) -> GRU -> Dense.

    One set of weights serves every agent. Its input is the agent's own
    observation, optionally followed by the one-hot of its last action (an
    integer, -1 for "none yet", which becomes all zeros) and the one-hot of
    its agent index; `input_layout()` gives the exact layout.

    Two entry points share the same weights:

    * `call([obs, last_action])` runs whole episodes for training:
      `obs (B, T, N, O)`, `last_action (B, T, N)` int -> `q (B, T, N, A)`.
      The recurrence is the Keras `GRU` over time (cuDNN on a GPU), or the
      same network computed by `kqmix.recurrence.agent_sequence` (see `recurrence`).
      The agent index is the position on the N axis. It is
      `sequence_q(sequence_features(obs, last_action))`, time-major inside;
      the learner calls those two itself.
    * `step(obs, agent_id, last_action, hidden)` advances one timestep for
      acting: `obs (B, O)`, `agent_id (B,)`, `last_action (B,)`, `hidden (B, H)`
      -> `(q (B, A), next_hidden (B, H))`. B is any batch of agents.

    Args:
        n_agents: N (size of the agent-id one-hot).
        n_actions: A.
        hidden_dim: H, the GRU width (also the first Dense layer's width).
        use_agent_id: append the agent-index one-hot to the input.
        use_last_action: append the last-action one-hot to the input.
        kernel_initializer: initializer of the two Dense kernels (the GRU
            keeps Keras's defaults); defaults to `default_kernel_initializer()`.
        recurrence: how `call` runs the GRU: `keras` (the `GRU` layer),
            `fused` (`agent_sequence`: the same function of the same weights in
            fewer ops, faster on a CPU) or `auto` (`keras` when a GPU is
            visible, else `fused`; decided when `call` is traced). `step`
            always uses the GRU cell.
    """

    def __init__(
        self,
        n_agents,
        n_actions,
        hidden_dim=64,
        use_agent_id=True,
        use_last_action=True,
        kernel_initializer=None,
        recurrence="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if recurrence not in RECURRENCES:
            raise ValueError(f"`recurrence` must be one of {RECURRENCES}. Received: recurrence={recurrence!r}")
        self.recurrence = recurrence
        self.n_agents = _check_positive_int("n_agents", n_agents)
        self.n_actions = _check_positive_int("n_actions", n_actions)
        self.hidden_dim = _check_positive_int("hidden_dim", hidden_dim)
        for name, value in (("use_agent_id", use_agent_id), ("use_last_action", use_last_action)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r}")
        self.use_agent_id = use_agent_id
        self.use_last_action = use_last_action
        self.kernel_initializer = _initializer(kernel_initializer)
        policy = self.dtype_policy
        self.fc1 = keras.layers.Dense(
            hidden_dim, activation="relu", kernel_initializer=_fresh(self.kernel_initializer), dtype=policy, name="fc1"
        )
        # Default GRU settings (tanh, sigmoid, reset_after=True) keep the
        # cuDNN kernel eligible on a GPU.
        self.gru = keras.layers.GRU(
            hidden_dim, return_sequences=True, return_state=False, dtype=policy, name="gru"
        )
        self.fc2 = keras.layers.Dense(
            n_actions, kernel_initializer=_fresh(self.kernel_initializer), dtype=policy, name="fc2"
        )

    @property
    def extra_features(self):
        """Input features appended to the observation (last-action and agent-id one-hots)."""
        return (self.n_actions if self.use_last_action else 0) + (
            self.n_agents if self.use_agent_id else 0
        )

    @property
    def obs_dim(self) -> int:
        """O, the observation size, known once the layer is built."""
        obs_dim = getattr(self, "_obs_dim", None)
        if obs_dim is None:
            raise ValueError(
                f"RNNAgent '{self.name}' has no observation size until it is built; "
                "call `build()` or the layer first."
            )
        return obs_dim

    def input_layout(self) -> list[InputSlice]:
        """The blocks of the network's input, in the order `build_features` concatenates them.

        * `obs` (O features, from `obs`): the observation as given;
        * `last_action_one_hot` (A, from `last_action`), if `use_last_action`:
          the one-hot of the previous action, all zeros for -1 ("none yet");
        * `agent_id_one_hot` (N, from `agent_id`), if `use_agent_id`: the
          one-hot of the agent index.

        Returns a list of `InputSlice(name, size, start, stop, source)`; the
        sizes sum to the first Dense layer's input width, O + `extra_features`.
        Needs a built layer (O comes from the input shape).
        """
        blocks = [("obs", self.obs_dim, "obs")]
        if self.use_last_action:
            blocks.append(("last_action_one_hot", self.n_actions, "last_action"))
        if self.use_agent_id:
            blocks.append(("agent_id_one_hot", self.n_agents, "agent_id"))
        layout, start = [], 0
        for name, size, source in blocks:
            layout.append(InputSlice(name, size, start, start + size, source))
            start += size
        return layout

    def build(self, input_shape):
        obs_shape = input_shape[0]  # (B, T, N, O)
        if obs_shape[-1] is None:
            raise ValueError(
                f"RNNAgent needs a known observation size. Received: obs shape {obs_shape}"
            )
        self._obs_dim = int(obs_shape[-1])
        self.fc1.build((None, self.obs_dim + self.extra_features))
        self.gru.build((None, None, self.hidden_dim))
        self.fc2.build((None, self.hidden_dim))

    def _one_hot_or_zero(self, index, depth):
        index = ops.cast(index, "int32")
        valid = ops.cast(index >= 0, self.compute_dtype)
        hot = ops.one_hot(ops.maximum(index, 0), depth, dtype=self.compute_dtype)
        return hot * ops.expand_dims(valid, -1)

    def build_features(self, obs, agent_id, last_action):
        """The network's input as `input_layout()` describes it.

        obs `(..., O)`, agent_id `(...)`, last_action `(...)` -> `(..., F)`,
        F = O + `extra_features`.
        """
        sources = {"obs": obs, "agent_id": agent_id, "last_action": last_action}
        parts = [
            ops.cast(obs, self.compute_dtype)
            if block.name == "obs"
            else self._one_hot_or_zero(sources[block.source], block.size)
            for block in self.input_layout()
        ]
        return ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    def call(self, inputs):
        obs, last_action = inputs  # (B, T, N, O), (B, T, N)
        q = self.sequence_q(self.sequence_features(obs, last_action))  # (T, B, N, A)
        return ops.transpose(q, (1, 0, 2, 3))  # (B, T, N, A)

    def sequence_features(self, obs, last_action):
        """The network's input over whole episodes, time-major.

        obs `(B, T, N, O)`, last_action `(B, T, N)` -> `(T, B, N, F)`. It
        depends on the layout only, not on the weights: agents of one
        configuration (a learner's online and target agents) can share it.
        """
        obs = ops.transpose(obs, (1, 0, 2, 3))  # (T, B, N, O)
        last_action = ops.transpose(last_action, (1, 0, 2))  # (T, B, N)
        agent_id = ops.broadcast_to(ops.arange(self.n_agents, dtype="int32"), ops.shape(last_action))  # (T, B, N)
        return self.build_features(obs, agent_id, last_action)

    def sequence_q(self, features, lengths=None):
        """Q-values of whole episodes from `sequence_features`: `(T, B, N, F)` -> `(T, B, N, A)`.

        lengths `(B,)` int, optional, with episodes ordered longest first:
        episode b needs its Q-values at steps `t < lengths[b]` only. The
        fused recurrence then skips the rest (they come out 0); the Keras
        GRU computes them anyway. Raises `InvalidArgumentError` if the
        lengths are not in order.
        """
        n = self.n_agents
        steps = ops.shape(features)[0]
        if resolve_recurrence(self.recurrence) == "fused":
            active_rows = None if lengths is None else active_rows_of(lengths, steps, n)  # rows b*N + i
            x = ops.reshape(features, (steps, -1, features.shape[-1]))  # (T, B*N, F)
            weights = (ops.cast(w, self.compute_dtype) for w in self.sequence_weights())
            q = agent_sequence(x, *weights, active_rows=active_rows)
        else:
            x = ops.reshape(self.fc1(features), (steps, -1, self.hidden_dim))  # (T, B*N, H)
            h = ops.transpose(self.gru(ops.transpose(x, (1, 0, 2))), (1, 0, 2))  # the GRU is batch-major
            q = self.fc2(h)  # (T, B*N, A)
        return ops.reshape(q, (steps, -1, n, self.n_actions))  # (T, B, N, A)

    def sequence_weights(self) -> list:
        """The seven weights of the agent network in one order, which everything that reads them
        asks for here (`kqmix.recurrence.agent_sequence`'s arguments, the acting policy's copy,
        the export's one-step graph): fc1 kernel and bias, the GRU's kernel, recurrent kernel
        and bias, fc2 kernel and bias."""
        cell = self.gru.cell
        return [self.fc1.kernel, self.fc1.bias, cell.kernel, cell.recurrent_kernel, cell.bias,
                self.fc2.kernel, self.fc2.bias]

    def step(self, obs, agent_id, last_action, hidden):
        """One recurrent step for acting (on a built layer); see the class docstring for shapes."""
        x = self.fc1(self.build_features(obs, agent_id, last_action))  # (B, H)
        hidden = ops.cast(hidden, self.compute_dtype)
        next_hidden, _ = self.gru.cell(x, [hidden])  # (B, H)
        next_hidden = next_hidden[0] if isinstance(next_hidden, (list, tuple)) else next_hidden
        return self.fc2(next_hidden), next_hidden

    def initial_hidden(self, batch_size):
        """Zero recurrent state, shape `(batch_size, H)`."""
        return ops.zeros((batch_size, self.hidden_dim), dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        obs_shape = input_shape[0]
        return tuple(obs_shape[:-1]) + (self.n_actions,)

    def get_config(self):
        base_config = super().get_config()
        config = {
            "n_agents": self.n_agents,
            "n_actions": self.n_actions,
            "hidden_dim": self.hidden_dim,
            "use_agent_id": self.use_agent_id,
            "use_last_action": self.use_last_action,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrence": self.recurrence,
        }
        return {**base_config, **config}
