"""LiteRT (TFLite) files of a version: conversion, int8 quantisation and its measured cost.

* `convert(saved_model_dir, signature)` - one SavedModel signature as a
  `.tflite` flatbuffer with builtin operators only (no Flex / Select TF ops);
* `record_greedy_episodes(act, env, env_key, ...)` - greedy episodes of an
  `act` implementation in the run's own environment, step by step (inputs
  and outputs), with fixed seeds: the int8 calibration and evaluation data;
* `quantize_int8(saved_model_dir, calibration)` - the `act` signature with
  int8 weights and activations, float32 / int32 I/O; `quantize_weights` -
  int8 weights only (float activations, no calibration);
* `int8_agreement(run_int8, episodes)` - Q error and greedy-action agreement
  of an int8 agent against the float32 one over recorded episodes.

Why the conversion works with builtins only: `act` is one recurrent step
with the GRU state as an input and an output (no loop in the graph), so it
lowers to FULLY_CONNECTED, LOGISTIC, TANH, GATHER, ...; LiteRT's fused RNN
conversion (LSTM only) and its WHILE / Flex paths are never needed. The
hypernetwork mixer's batched product is the builtin BATCH_MATMUL.

Shape legend: B batch, N agents, A actions, O observation features,
S state features, H GRU width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kqmix_runtime import spec
from kqmix_runtime.errors import ExportError

#: `quantize` modes -> what they store. Both write `agent_int8.tflite` (one int8 file per version).
QUANTIZE_MODES = {
    "int8": "post-training full-integer: int8 weights (per channel) and activations calibrated on "
            "recorded greedy episodes, float32/int32 inputs and outputs, masked greedy choice in float32",
    "int8-weights": "post-training dynamic range: int8 weights (per channel), float32 activations "
                    "(quantised on the fly inside each matmul), float32/int32 inputs and outputs",
}
#: Seed stream of the recorded greedy episodes (after kqmix.evaluation's
#: training, test and evaluation streams 0, 1, 2).
CALIBRATION_STREAM = 3
#: Recorded greedy episodes: the first CALIBRATION_EPISODES calibrate the int8
#: ranges, the next EVALUATION_EPISODES (other seeds) measure its error.
CALIBRATION_EPISODES = 32
EVALUATION_EPISODES = 32
#: At most this many `act` calls (batch N each) feed the calibration.
MAX_CALIBRATION_STEPS = 400
#: The validator refuses an int8 agent whose greedy actions agree with the
#: float32 agent's on fewer than this share of agent-steps of the recorded
#: episodes. Quantisation moves Qs by about a step of the output scale
#: (range / 255); an action flips only where two Qs are closer than that.
INT8_MIN_AGREEMENT = 0.99
#: Operators of the masked greedy choice, kept in float32 in the int8 agent:
#: on int8 Qs the -inf of unavailable actions would clamp to the range's
#: minimum and could tie with (or look like) an available action, so the
#: choice is made on the dequantised `q_values` the agent returns -
#: `action == masked_greedy(q_values)` holds exactly, as in float.
FLOAT_OPS_IN_INT8 = ["SELECT_V2", "ARG_MAX", "REDUCE_MAX", "EQUAL", "GREATER"]
#: Calibration feeds carry all-ones `avail_actions`: the mask enters only the
#: (float) greedy choice, never the network, but a masked row's -inf would
#: otherwise reach the recorded range of the Qs (the quantiser gives a select
#: and its inputs one scale) and quantise every Q to 0.


def _quiet_tf():
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def convert(saved_model_dir, signature: str) -> bytes:
    """One signature of a SavedModel -> `.tflite` bytes, TFLite builtin operators only.

    The converter keeps the signature's name and its input and output names,
    so the file answers `get_signature_runner(signature)` with the contract's
    names. A graph that needs anything else fails here with `ExportError`.
    """
    tf = _quiet_tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[signature])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return converter.convert()
    except Exception as exc:  # ConverterError, or a ValueError from the graph import
        raise ExportError(f"LiteRT conversion of signature {signature!r} failed with builtin ops only: {exc}") from None


def quantize_int8(saved_model_dir, calibration: list[dict]) -> bytes:
    """The `act` signature with int8 weights and activations; float32 / int32 inputs and outputs.

    Post-training full-integer quantisation: the ranges of every activation
    come from running `calibration` (feeds of `act` inputs) through the float
    graph. Inputs and outputs stay float32 (obs, avail_actions, hidden, Qs,
    next_hidden) and int32 (agent_id, last_action, action) so the file keeps
    the contract: a caller passes the same arrays to either file. The masked
    greedy choice stays float (`FLOAT_OPS_IN_INT8`).
    """
    if not calibration:
        raise ExportError("int8 quantisation needs calibration data; none was recorded.")
    tf = _quiet_tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[spec.ACT])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]

    def representative():
        for feed in calibration:
            feed = {name: np.asarray(feed[name]) for name in spec.ACT_INPUTS}
            feed["avail_actions"] = np.ones_like(feed["avail_actions"])  # see FLOAT_OPS_IN_INT8
            yield feed

    converter.representative_dataset = representative
    # The quantisation debugger's non-debug model is TensorFlow's documented way
    # to quantise all but a list of operators (selective quantisation).
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=FLOAT_OPS_IN_INT8)
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the debugger loads TensorFlow's deprecated interpreter
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=representative, debug_options=options)
            return debugger.get_nondebug_quantized_model()
    except Exception as exc:
        raise ExportError(f"LiteRT int8 quantisation of {spec.ACT!r} failed: {exc}") from None


def quantize_weights(saved_model_dir) -> bytes:
    """The `act` signature with int8 weights and float activations (LiteRT's dynamic range quantisation).

    No calibration: each FULLY_CONNECTED quantises its input per call. The
    recurrent state and the Qs stay float32 between operators, so the error
    is the weights' rounding alone.
    """
    tf = _quiet_tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[spec.ACT])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return converter.convert()
    except Exception as exc:
        raise ExportError(f"LiteRT int8-weight quantisation of {spec.ACT!r} failed: {exc}") from None


def interpreter_class():
    """ai-edge-litert's interpreter, or TensorFlow's own when ai-edge-litert is not installed."""
    from kqmix_runtime.errors import BackendUnavailableError
    from kqmix_runtime.litert import interpreter_class as litert_interpreter

    try:
        return litert_interpreter()
    except BackendUnavailableError:
        import warnings

        tf = _quiet_tf()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TensorFlow's deprecation notice points at ai-edge-litert
            cls = tf.lite.Interpreter

        def make(*args, **kwargs):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return cls(*args, **kwargs)

        return make


def operators_of(content: bytes) -> list[str]:
    """Sorted operator names of a `.tflite` model (what the interpreter registers for it)."""
    from kqmix_runtime.litert import operators

    return operators(interpreter_class()(model_content=content))


def check_builtin(name: str, ops: list[str]) -> None:
    """Raises `ExportError` if a converted file needs Flex (Select TF) or custom operators."""
    bad = [op for op in ops if op.startswith("Flex") or op in ("DELEGATE", "CUSTOM") or not op.isupper()]
    if bad:
        raise ExportError(f"{name} uses non-builtin LiteRT operators {bad}; only builtins may ship.")


# --------------------------------------------------------------------------- recorded episodes


def record_greedy_episodes(act, env_name: str, env_key, n_agents: int, hidden_dim: int,
                           episodes: int, seed: int = 0, first: int = 0) -> list[list[dict]]:
    """Greedy episodes of `act` (a function feed -> outputs of the `act` signature) in the environment.

    Episode k is seeded `episode_seeds(seed, CALIBRATION_STREAM, first + k, 1)`.
    Returns one list per episode of steps `{**inputs, "q_values", "action",
    "reward"}` at batch N (all agents), hidden states and last actions carried
    as the runtime carries them.
    """
    from kqmix.envs import make_env
    from kqmix.evaluation import episode_seeds

    env = make_env(env_name, env_key)
    recorded = []
    try:
        for k in range(episodes):
            (episode_seed,) = episode_seeds(seed, CALIBRATION_STREAM, first + k, 1)
            obs, _, avail = env.reset(seed=episode_seed)
            hidden = np.zeros((n_agents, hidden_dim), np.float32)
            last = np.full(n_agents, spec.NO_LAST_ACTION, np.int32)
            steps, done = [], False
            while not done:
                feed = {
                    "obs": np.asarray(obs, np.float32),  # (N, O)
                    "agent_id": np.arange(n_agents, dtype=np.int32),
                    "last_action": last,
                    "avail_actions": np.asarray(avail, np.float32),  # (N, A)
                    "hidden": hidden,  # (N, H)
                }
                out = act(feed)
                steps.append({**feed, "q_values": np.asarray(out["q_values"], np.float32),
                              "action": np.asarray(out["action"], np.int32)})
                hidden, last = np.asarray(out["next_hidden"], np.float32), steps[-1]["action"]
                obs, _, avail, reward, terminated, truncated, _ = env.step(last.astype(np.int64))
                steps[-1]["reward"] = float(reward)
                done = terminated or truncated
            recorded.append(steps)
    finally:
        env.close()
    return recorded


def episode_return(episodes: list[list[dict]]) -> float:
    """Mean team return of recorded episodes."""
    return float(np.mean([sum(step["reward"] for step in episode) for episode in episodes]))


def calibration_feeds(episodes: list[list[dict]], limit: int = MAX_CALIBRATION_STEPS) -> list[dict]:
    """The `act` inputs of recorded steps, evenly thinned to at most `limit`."""
    steps = [{name: step[name] for name in spec.ACT_INPUTS} for episode in episodes for step in episode]
    if len(steps) > limit:
        steps = [steps[i] for i in np.linspace(0, len(steps) - 1, limit).round().astype(int)]
    return steps


@dataclass
class Int8Report:
    """How far the int8 agent is from the float32 one over recorded greedy episodes.

    The int8 agent carries its own hidden state through each episode (its
    rounding accumulates through the recurrence as on a device); the
    observations, masks and last actions are the recorded float32 episode's.
    """

    episodes: int
    agent_steps: int
    action_agreement: float  # share of agent-steps with the same greedy action
    # What a disagreement costs in the float32 agent's own values: Q_f(float's
    # action) - Q_f(int8's action), 0 where they agree. Near 0 = the two actions
    # were all but tied (the float agent was indifferent between them).
    regret_mean: float
    regret_max: float
    q_max_abs_error: float
    q_mean_abs_error: float
    q_abs_scale: float  # mean over agent-steps of max |Q| of the float32 row
    unavailable_actions: int  # int8 actions outside avail_actions (where any was available): must be 0
    float_bytes: int = 0
    int8_bytes: int = 0
    float_return_mean: float | None = None  # greedy returns over the same seeds, each agent acting itself
    int8_return_mean: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def int8_agreement(run_int8, episodes: list[list[dict]]) -> Int8Report:
    """Compares `run_int8` (feed -> `act` outputs) with the recorded float32 outputs."""
    from kqmix_runtime.actions import masked_greedy

    agree = total = unavailable = 0
    errors, scales, regrets, worst = [], [], [], 0.0
    for episode in episodes:
        hidden = None
        for step in episode:
            feed = {name: step[name] for name in spec.ACT_INPUTS}
            if hidden is not None:
                feed["hidden"] = hidden
            out = run_int8(feed)
            q = np.asarray(out["q_values"], np.float64)  # (N, A)
            diff = np.abs(q - step["q_values"])
            worst = max(worst, float(diff.max()))
            errors.append(diff.mean(axis=-1))
            scales.append(np.abs(step["q_values"]).max(axis=-1))
            action = np.asarray(out["action"])
            agree += int((action == step["action"]).sum())
            rows = np.arange(len(action))
            chosen = np.where(action >= 0, action, step["action"])  # NO_ACTION rows: no regret defined
            regrets.append(step["q_values"][rows, step["action"]] - step["q_values"][rows, chosen])
            unavailable += int((action != masked_greedy(out["q_values"], step["avail_actions"])).sum())
            total += step["action"].size
            hidden = np.asarray(out["next_hidden"], np.float32)
    if not total:
        raise ExportError("no recorded steps to measure the int8 agent on.")
    return Int8Report(
        episodes=len(episodes), agent_steps=total, action_agreement=agree / total,
        q_max_abs_error=worst, q_mean_abs_error=float(np.mean(np.concatenate(errors))),
        q_abs_scale=float(np.mean(np.concatenate(scales))), unavailable_actions=unavailable,
        regret_mean=float(np.mean(np.concatenate(regrets))), regret_max=float(np.max(np.concatenate(regrets))),
    )


def write_files(version_dir: Path, quantize: str | None, env: dict, sizes: dict,
                calibration: list[dict] | None = None, seed: int = 0, int8_source=None) -> dict:
    """Writes the LiteRT files next to a version's SavedModel; returns metadata["litert"].

    `quantize="int8"` (or `"int8-weights"`, see `QUANTIZE_MODES`) also
    writes `agent_int8.tflite`, calibrated on
    `calibration` (feeds of `act` inputs) if given, else on greedy episodes
    of the version's float agent in the run's environment (`env["env"]`,
    `env["env_key"]`); the error report uses the held-out episodes.
    Both modes quantise the `act` signature of `int8_source`, a SavedModel
    of the same function written for quantisation
    (`export.graphs.int8_act_function`), when given, else the version's own.
    """
    import tensorflow as tf

    version_dir = Path(version_dir)
    files, ops = {}, {}
    for filename, signature in spec.TFLITE_FILES.items():
        content = convert(version_dir, signature)
        ops[filename] = operators_of(content)
        check_builtin(filename, ops[filename])
        (version_dir / filename).write_bytes(content)
        files[filename] = signature
    meta = {"files": files, "operators": ops, "converter": f"tensorflow {tf.__version__}",
            "ops_set": "TFLITE_BUILTINS"}
    if quantize is None:
        return meta
    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"`quantize` must be None or one of {sorted(QUANTIZE_MODES)}. Received: quantize={quantize!r}")

    from kqmix_runtime.litert import LiteRTModel

    float_agent = LiteRTModel(version_dir / spec.AGENT_TFLITE, spec.ACT, interpreter=interpreter_class())
    n, h = int(sizes["n_agents"]), int(sizes["hidden_dim"])
    if calibration is None:
        recorded = record_greedy_episodes(float_agent.run, env["env"], env.get("env_key"), n, h,
                                          CALIBRATION_EPISODES + EVALUATION_EPISODES, seed)
        calibration = calibration_feeds(recorded[:CALIBRATION_EPISODES])
        held_out = recorded[CALIBRATION_EPISODES:]
        recorded_env = True
        source = (f"{CALIBRATION_EPISODES} greedy episodes of the float32 agent in {env['env']}"
                  f"{'/' + env['env_key'] if env.get('env_key') else ''} (seed {seed}, stream "
                  f"{CALIBRATION_STREAM}); error measured on the next {EVALUATION_EPISODES}")
    else:
        # Given feeds: calibrate on the even ones, measure on the odd ones as one-step
        # "episodes" with the float agent's outputs as the reference.
        held_out = [[{**feed, **{k: v for k, v in float_agent.run(feed).items() if k != "next_hidden"}}]
                    for feed in calibration[1::2]]
        calibration = calibration[0::2]
        recorded_env = False
        source = "caller-supplied feeds (even ones calibrate, odd ones measure)"
    quantized_from = int8_source or version_dir
    content = (quantize_int8(quantized_from, calibration) if quantize == "int8"
               else quantize_weights(quantized_from))
    int8_ops = operators_of(content)
    check_builtin(spec.AGENT_INT8_TFLITE, int8_ops)
    (version_dir / spec.AGENT_INT8_TFLITE).write_bytes(content)
    int8_agent = LiteRTModel(version_dir / spec.AGENT_INT8_TFLITE, spec.ACT, interpreter=interpreter_class())
    report = int8_agreement(int8_agent.run, held_out)
    if recorded_env:
        report.float_return_mean = episode_return(held_out)
        report.int8_return_mean = episode_return(record_greedy_episodes(
            int8_agent.run, env["env"], env.get("env_key"), n, h, EVALUATION_EPISODES, seed,
            first=CALIBRATION_EPISODES))
    report.float_bytes = (version_dir / spec.AGENT_TFLITE).stat().st_size
    report.int8_bytes = len(content)
    ops[spec.AGENT_INT8_TFLITE] = int8_ops
    meta["int8"] = {
        "file": spec.AGENT_INT8_TFLITE,
        "signature": spec.ACT,
        "mode": quantize,
        "scheme": QUANTIZE_MODES[quantize],
        **({"float_ops": FLOAT_OPS_IN_INT8} if quantize == "int8" else {}),
        "calibration": {"source": source, "feeds": len(calibration) if quantize == "int8" else 0, "seed": seed},
        "report": report.as_dict(),
        "min_agreement": INT8_MIN_AGREEMENT,
    }
    return meta
