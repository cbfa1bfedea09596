"""Run an exported kqmix version with numpy and onnxruntime or LiteRT only (no TensorFlow).

* `DecentralisedAgents(version_dir)` - every agent of a team in one call:
  `reset()`, then `act(obs (N, O), avail_actions (N, A)) -> actions (N,)`.
* `SingleAgent(version_dir, agent_id)` - one agent on its own device:
  `act(obs (O,), avail_actions (A,)) -> action`.
* `Mixer(version_dir)` - `q_tot(agent_qs, state)` and `weights(agent_qs,
  state) -> (q_tot, dQ_tot/dQ_a)` for monitoring.
* `Critic(version_dir)` - Weighted QMIX's unrestricted critic Q̂* of a team's
  joint action, step by step: `reset()`, then `q_star(obs (N, O), actions (N,),
  state (S,)) -> float` (ONNX; versions of a Weighted QMIX run only).

Each agent object keeps its own GRU state and last action between calls, as
decentralised execution requires: agents never exchange anything, and the
team form is just N such agents batched into one onnxruntime call.

Every class takes `backend="onnx"` (default; `agent.onnx` through
onnxruntime), `"litert"` (`agent.tflite` through ai-edge-litert's
interpreter) or `"litert-int8"` (`agent_int8.tflite`); the contract checks
and errors are the same. The ONNX step runs through onnxruntime's I/O
binding on preallocated arrays, one thread, sequential execution: at these
sizes the Python-to-C++ conversion of a plain `session.run` costs more than
the network itself. The LiteRT interpreter is resized to the team's batch
once, so a step is only the copies in and out and `invoke()`.

Shape legend: B batch, N agents, A actions, O observation features,
S state features, H GRU width.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from . import spec
from .errors import (
    BackendNotExportedError,
    CorruptArtifactError,
    MissingArtifactError,
    NoAvailableActionError,
    RuntimeInputError,
    UnknownMixerError,
)

__all__ = ["DecentralisedAgents", "SingleAgent", "Mixer", "Critic", "backend_files", "load_metadata", "make_session"]


def load_metadata(version_dir) -> dict:
    """Reads and checks `metadata.json` of an exported version."""
    path = Path(version_dir) / spec.METADATA_FILE
    if not path.is_file():
        raise MissingArtifactError(path, "not a kqmix export version directory?")
    try:
        metadata = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CorruptArtifactError(path, f"cannot parse JSON: {exc}") from None
    if metadata.get("format") != spec.FORMAT_NAME:
        raise CorruptArtifactError(path, f"format is {metadata.get('format')!r}, expected {spec.FORMAT_NAME!r}")
    if metadata.get("format_version") != spec.FORMAT_VERSION:
        raise CorruptArtifactError(
            path,
            f"format_version {metadata.get('format_version')!r} is not supported by this runtime "
            f"(supports {spec.FORMAT_VERSION})",
        )
    unknown = [s for s in (metadata.get("mixer") or {}).get("signatures", []) if s not in spec.MIXER_SIGNATURES]
    if unknown:
        raise UnknownMixerError(path, unknown, spec.MIXER_SIGNATURES)
    return metadata


def backend_files(version_dir, backend: str) -> tuple:
    """`(agent, mixer, mixer_grad)` paths of `backend` in a version (`spec.BACKEND_FILES`).

    Raises `RuntimeInputError` for an unknown backend and `BackendNotExportedError`
    when the version was exported without that backend's agent file (versions
    exported before LiteRT support have ONNX files only).
    """
    if backend not in spec.BACKEND_FILES:
        raise RuntimeInputError(f"`backend` must be one of {sorted(spec.BACKEND_FILES)}; got {backend!r}.")
    version_dir = Path(version_dir)
    paths = tuple(version_dir / name for name in spec.BACKEND_FILES[backend])
    if backend != spec.ONNX_BACKEND and not paths[0].is_file():
        how = ("export the run again with `kqmix export RUN --quantize int8` (or int8-weights)"
               if backend == spec.LITERT_INT8_BACKEND else
               "export the run again with `kqmix export RUN` (LiteRT files are written by default)")
        raise BackendNotExportedError(paths[0], backend, how)
    return paths


def make_session(path, threads: int = 1):
    """An onnxruntime CPU session tuned for many tiny calls (no thread pool hand-offs)."""
    import onnxruntime as ort  # here, so the LiteRT backend runs where onnxruntime is not installed

    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning workers would burn a core between environment steps.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated classes
        raise CorruptArtifactError(path, f"onnxruntime cannot load it: {exc}") from None


def _as_float_array(name: str, value, shape: tuple) -> np.ndarray:
    """`value` as a real-valued array of exactly `shape`, or a `RuntimeInputError` saying why not.

    Kept to attribute look-ups on the hot path: numpy reductions cost
    microseconds each here, a noticeable share of a ~20 us step.
    """
    if type(value) is not np.ndarray:
        value = np.asarray(value)
    if value.shape != shape:
        raise RuntimeInputError(f"`{name}` must have shape {shape}; got {value.shape}.")
    if value.dtype.kind not in "fiub":
        raise RuntimeInputError(f"`{name}` must hold real numbers; got dtype {value.dtype}.")
    return value


class _AgentStep:
    """The `act` function of one backend bound to fixed-size buffers of batch B.

    onnxruntime reads and writes the buffers in place (I/O binding); the
    LiteRT interpreter is resized to batch B once and copies them in and out.
    """

    def __init__(self, version_dir, agent_ids, threads: int = 1, backend: str = spec.ONNX_BACKEND):
        self.version_dir = Path(version_dir)
        self.metadata = load_metadata(self.version_dir)
        sizes = self.metadata["sizes"]
        self.n_agents, self.n_actions = int(sizes["n_agents"]), int(sizes["n_actions"])
        self.obs_dim, self.hidden_dim = int(sizes["obs_dim"]), int(sizes["hidden_dim"])
        self.action_meanings = self.metadata.get("action_meanings")
        self.backend = backend
        agent_file = backend_files(self.version_dir, backend)[0]

        ids = np.asarray(agent_ids, dtype=np.int64)
        bad = ids[(ids < 0) | (ids >= self.n_agents)]
        if bad.size:
            raise RuntimeInputError(
                f"agent_id {int(bad[0])} is out of range for a team of {self.n_agents} agents."
            )
        b = len(ids)
        self.batch = b
        self._obs = np.zeros((b, self.obs_dim), np.float32)
        self._agent_id = ids.astype(np.int32)
        self._last_action = np.full(b, spec.NO_LAST_ACTION, np.int32)
        self._avail = np.ones((b, self.n_actions), np.float32)
        self._hidden = np.zeros((b, self.hidden_dim), np.float32)
        self._q = np.zeros((b, self.n_actions), np.float32)
        self._action = np.zeros(b, np.int32)
        self._next_hidden = np.zeros((b, self.hidden_dim), np.float32)
        inputs = (
            ("obs", self._obs),
            ("agent_id", self._agent_id),
            ("last_action", self._last_action),
            ("avail_actions", self._avail),
            ("hidden", self._hidden),
        )
        outputs = (("q_values", self._q), ("action", self._action), ("next_hidden", self._next_hidden))

        if backend == spec.ONNX_BACKEND:
            import onnxruntime as ort

            self.session = make_session(agent_file, threads)
            # Buffers the session reads and writes in place (OrtValues share their memory).
            binding = self.session.io_binding()
            for name, array in inputs:
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
            for name, array in outputs:
                binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(array))
            self._binding = binding
            self._run = functools.partial(self.session.run_with_iobinding, binding)
        else:
            from .litert import LiteRTModel

            self.model = LiteRTModel(agent_file, spec.ACT, threads)
            input_index, output_index = self.model.bind(b)
            interpreter = self.model.interpreter
            set_tensor, get_tensor, invoke = interpreter.set_tensor, interpreter.get_tensor, interpreter.invoke
            feeds = [(input_index[name], array) for name, array in inputs]
            fetches = [(output_index[name], array) for name, array in outputs]

            def run():
                for index, array in feeds:
                    set_tensor(index, array)
                invoke()
                for index, array in fetches:
                    array[...] = get_tensor(index)

            self._run = run

    def reset(self) -> None:
        self._hidden[...] = 0.0
        self._last_action[...] = spec.NO_LAST_ACTION

    def step(self, obs, avail_actions, check: bool) -> None:
        """Runs one step on already shape-checked inputs (broadcastable to the buffers)."""
        self._obs[...] = obs
        self._avail[...] = avail_actions
        self._run()
        if check and spec.NO_ACTION in self._action.tolist():
            # The graph answers NO_ACTION for a mask row with nothing
            # available; the state is left as it was.
            row = self._action.tolist().index(spec.NO_ACTION)
            raise NoAvailableActionError(
                f"agent {int(self._agent_id[row])} has no available action "
                f"(avail_actions row {self._avail[row].tolist()})."
            )
        # The recurrent state and the one-hot of the chosen action feed the next step.
        self._hidden[...] = self._next_hidden
        self._last_action[...] = self._action

    def state(self) -> dict:
        return {"hidden": self._hidden.copy(), "last_action": self._last_action.copy()}

    def set_state(self, hidden, last_action) -> None:
        self._hidden[...] = _as_float_array("hidden", hidden, self._hidden.shape)
        last = np.asarray(last_action)
        if last.shape != self._last_action.shape or last.dtype.kind not in "iu":
            raise RuntimeInputError(
                f"`last_action` must be integers of shape {self._last_action.shape}; "
                f"got {last.dtype} {last.shape}."
            )
        if ((last < spec.NO_LAST_ACTION) | (last >= self.n_actions)).any():
            raise RuntimeInputError(f"`last_action` values must be in [-1, {self.n_actions}); got {last}.")
        self._last_action[...] = last


class DecentralisedAgents:
    """All N agents of a team, each acting on its own observation and recurrent state.

    Args:
        version_dir: an exported version, e.g. `saved_models/two_step/1`.
        backend: `"onnx"` (onnxruntime, `agent.onnx`), `"litert"` (the LiteRT
            interpreter, `agent.tflite`) or `"litert-int8"` (`agent_int8.tflite`,
            written by `kqmix export --quantize int8`). LiteRT needs
            `pip install 'kqmix-runtime[litert]'`.
        threads: intra-op threads of onnxruntime / the interpreter (1 is fastest at these sizes).
        check: validate shapes and dtypes on every call and raise
            `NoAvailableActionError` for a mask row with nothing available
            (without it such an agent gets action `spec.NO_ACTION`, -1).
            Observations are not scanned for NaN: that would cost more than
            the network.

    `act(obs (N, O), avail_actions (N, A))` returns the greedy available
    action of every agent, `(N,)` int32 (and `q_values (N, A)` with
    `return_q=True`). Call `reset()` at the start of every episode.
    """

    def __init__(self, version_dir, threads: int = 1, check: bool = True, backend: str = spec.ONNX_BACKEND):
        probe = load_metadata(version_dir)
        n = int(probe["sizes"]["n_agents"])
        self._step = _AgentStep(version_dir, np.arange(n), threads, backend)
        self.backend = backend
        self.metadata = self._step.metadata
        self.n_agents, self.n_actions = n, self._step.n_actions
        self.obs_dim, self.hidden_dim = self._step.obs_dim, self._step.hidden_dim
        self.action_meanings = self._step.action_meanings
        self.check = check
        self._obs_shape, self._avail_shape = (n, self.obs_dim), (n, self.n_actions)

    def reset(self) -> None:
        """Zero GRU state and "no last action" for every agent (start of an episode)."""
        self._step.reset()

    def act(self, obs, avail_actions, return_q: bool = False):
        """obs `(N, O)`, avail_actions `(N, A)` (> 0 = available) -> actions `(N,)` [, q `(N, A)`]."""
        if self.check:
            obs = _as_float_array("obs", obs, self._obs_shape)
            avail_actions = _as_float_array("avail_actions", avail_actions, self._avail_shape)
        self._step.step(obs, avail_actions, self.check)
        actions = self._step._action.copy()
        return (actions, self._step._q.copy()) if return_q else actions

    @property
    def hidden(self) -> np.ndarray:
        """Current GRU state, `(N, H)` (a copy)."""
        return self._step._hidden.copy()

    @property
    def last_action(self) -> np.ndarray:
        """Each agent's previous action, `(N,)`, -1 before the first step (a copy)."""
        return self._step._last_action.copy()

    def set_state(self, hidden, last_action) -> None:
        """Restores `hidden (N, H)` and `last_action (N,)`, e.g. after a restart."""
        self._step.set_state(hidden, last_action)


class SingleAgent:
    """One agent (one robot) of a team: its own observation in, its own action out.

    Args:
        version_dir: an exported version.
        agent_id: this agent's index in the team, `0 <= agent_id < N` (it
            selects the agent-id one-hot the shared network was trained with).
        threads, check, backend: as for `DecentralisedAgents`.

    `act(obs (O,), avail_actions (A,))` returns the greedy available action
    as an int (and `q_values (A,)` with `return_q=True`).
    """

    def __init__(self, version_dir, agent_id: int, threads: int = 1, check: bool = True,
                 backend: str = spec.ONNX_BACKEND):
        if isinstance(agent_id, bool) or not isinstance(agent_id, (int, np.integer)):
            raise RuntimeInputError(f"`agent_id` must be an integer; got {agent_id!r}.")
        self._step = _AgentStep(version_dir, [int(agent_id)], threads, backend)
        self.backend = backend
        self.agent_id = int(agent_id)
        self.metadata = self._step.metadata
        self.n_agents, self.n_actions = self._step.n_agents, self._step.n_actions
        self.obs_dim, self.hidden_dim = self._step.obs_dim, self._step.hidden_dim
        self.action_meanings = self._step.action_meanings
        self.check = check
        self._obs_shape, self._avail_shape = (self.obs_dim,), (self.n_actions,)
        self._all_available = np.ones(self.n_actions, np.float32)

    def reset(self) -> None:
        """Zero GRU state and "no last action" (start of an episode)."""
        self._step.reset()

    def act(self, obs, avail_actions=None, return_q: bool = False):
        """obs `(O,)`, avail_actions `(A,)` or None (all available) -> action int [, q `(A,)`]."""
        if avail_actions is None:
            avail_actions = self._all_available
        if self.check:
            obs = _as_float_array("obs", obs, self._obs_shape)
            avail_actions = _as_float_array("avail_actions", avail_actions, self._avail_shape)
        self._step.step(obs, avail_actions, self.check)
        action = int(self._step._action[0])
        return (action, self._step._q[0].copy()) if return_q else action

    @property
    def hidden(self) -> np.ndarray:
        """Current GRU state, `(H,)` (a copy)."""
        return self._step._hidden[0].copy()

    @property
    def last_action(self) -> int:
        return int(self._step._last_action[0])

    def set_state(self, hidden, last_action: int) -> None:
        """Restores `hidden (H,)` and `last_action` (-1 = none)."""
        self._step.set_state(np.reshape(hidden, (1, -1)), np.asarray([last_action]))


class Mixer:
    """The trained mixer, for monitoring a team: Q_tot and each agent's weight in it.

    `weights()` returns dQ_tot/dQ_a, computed in closed form inside
    `mixer_grad.onnx` (exact, not finite differences). For QMIX every weight
    is >= 0 - the monotonicity that lets agents act greedily on their own Qs;
    a weight near 0 means that agent's choice barely matters in this state.

    Accepts one team `agent_qs (N,)`, `state (S,)` or a batch `(B, N)`, `(B, S)`.
    `backend` as for `DecentralisedAgents` ("litert-int8" runs the float
    LiteRT mixer: only the agent is quantised).
    """

    def __init__(self, version_dir, threads: int = 1, backend: str = spec.ONNX_BACKEND):
        self.version_dir = Path(version_dir)
        self.metadata = load_metadata(self.version_dir)
        sizes = self.metadata["sizes"]
        self.n_agents, self.state_dim = int(sizes["n_agents"]), int(sizes["state_dim"])
        self.backend = backend
        _, mixer_file, grad_file = backend_files(self.version_dir, backend)
        if backend == spec.ONNX_BACKEND:
            mix, grad = make_session(mixer_file, threads), make_session(grad_file, threads)
            self._mix = lambda feed: mix.run(["q_tot"], feed)
            self._grad = lambda feed: grad.run(["q_tot", "dq_tot_dq"], feed)
        else:
            from .litert import LiteRTModel

            mix, grad = LiteRTModel(mixer_file, spec.MIX, threads), LiteRTModel(grad_file, spec.MIX_GRAD, threads)
            self._mix = lambda feed: [mix.run(feed)["q_tot"]]
            self._grad = lambda feed: list(grad.run(feed).values())

    def _inputs(self, agent_qs, state):
        qs = np.asarray(agent_qs)
        s = np.asarray(state)
        single = qs.ndim == 1
        if single:
            qs, s = qs[None], s[None] if s.ndim == 1 else s
        for name, array, width in (("agent_qs", qs, self.n_agents), ("state", s, self.state_dim)):
            if array.dtype.kind not in "fiub":
                raise RuntimeInputError(f"`{name}` must hold real numbers; got dtype {array.dtype}.")
            if array.ndim != 2 or array.shape[1] != width:
                raise RuntimeInputError(
                    f"`{name}` must have shape ({'' if single else 'B, '}{width},)"
                    f"; got {np.shape(agent_qs if name == 'agent_qs' else state)}."
                )
        if qs.shape[0] != s.shape[0]:
            raise RuntimeInputError(
                f"`agent_qs` and `state` have different batch sizes: {qs.shape[0]} and {s.shape[0]}."
            )
        feed = {
            "agent_qs": np.ascontiguousarray(qs, np.float32),
            "state": np.ascontiguousarray(s, np.float32),
        }
        return feed, single

    def q_tot(self, agent_qs, state):
        """agent_qs `(N,)` / `(B, N)`, state `(S,)` / `(B, S)` -> Q_tot float / `(B,)`."""
        feed, single = self._inputs(agent_qs, state)
        (q_tot,) = self._mix(feed)
        return float(q_tot[0]) if single else q_tot

    __call__ = q_tot

    def weights(self, agent_qs, state):
        """-> `(q_tot, dq_tot_dq)`: Q_tot and dQ_tot/dQ_a, shapes `()`/`(N,)` or `(B,)`/`(B, N)`."""
        feed, single = self._inputs(agent_qs, state)
        q_tot, grad = self._grad(feed)
        return (float(q_tot[0]), grad[0]) if single else (q_tot, grad)


class Critic:
    """Weighted QMIX's unrestricted critic Q̂*(history, joint action), for monitoring a team.

    Q̂* is what Weighted QMIX fits QMIX towards: unlike QMIX's Q_tot it is not
    monotonic in the agents' Qs, so it values joint actions QMIX's mixer
    cannot rank (`critic.onnx`, the `critic` signature). It is recurrent: its
    central agent network keeps a GRU state per agent, advanced by every
    `q_star` call, and each agent's last action is the one passed to the
    previous call. Call `reset()` at the start of every episode.
    """

    def __init__(self, version_dir, threads: int = 1):
        self.version_dir = Path(version_dir)
        self.metadata = load_metadata(self.version_dir)
        if spec.CRITIC not in (self.metadata.get("mixer") or {}).get("signatures", []):
            raise MissingArtifactError(self.version_dir / spec.CRITIC_ONNX,
                                       f"this version's mixer ({self.metadata.get('mixer', {}).get('kind')}) has "
                                       "no critic; only Weighted QMIX (ow_qmix, cw_qmix) exports one")
        sizes = self.metadata["sizes"]
        self.n_agents, self.n_actions = int(sizes["n_agents"]), int(sizes["n_actions"])
        self.obs_dim, self.state_dim = int(sizes["obs_dim"]), int(sizes["state_dim"])
        self.hidden_dim = int(sizes["central_hidden_dim"])
        self._session = make_session(self.version_dir / spec.CRITIC_ONNX, threads)
        self._outputs = list(spec.CRITIC_OUTPUTS)
        self.reset()

    def reset(self) -> None:
        self._hidden = np.zeros((1, self.n_agents, self.hidden_dim), np.float32)  # (1, N, C)
        self._last = np.full((1, self.n_agents), spec.NO_LAST_ACTION, np.int32)  # (1, N)

    def q_star(self, obs, actions, state) -> float:
        """obs `(N, O)`, actions `(N,)` (the joint action taken now), state `(S,)` -> Q̂*."""
        obs = _as_float_array("obs", obs, (self.n_agents, self.obs_dim))
        state = _as_float_array("state", state, (self.state_dim,))
        actions = np.asarray(actions)
        if actions.shape != (self.n_agents,) or actions.dtype.kind not in "iu":
            raise RuntimeInputError(f"`actions` must be {self.n_agents} integers; got {actions!r}.")
        if ((actions < 0) | (actions >= self.n_actions)).any():
            raise RuntimeInputError(f"`actions` values must be in [0, {self.n_actions}); got {actions}.")
        feed = {"obs": obs[None].astype(np.float32), "last_action": self._last,
                "actions": actions[None].astype(np.int32), "state": state[None].astype(np.float32),
                "hidden": self._hidden}
        q_star, self._hidden = self._session.run(self._outputs, feed)
        self._last = actions[None].astype(np.int32)
        return float(q_star[0])

    __call__ = q_star
