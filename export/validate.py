"""`validate_export`: load every artifact of a version and compare it with the Keras model.

Checks, in order, each failing with its own exception class (see `errors`):

1. every required file exists (`MissingArtifactError`) and matches the sha256
   recorded in metadata.json, and loads (`CorruptArtifactError`);
2. the SavedModel - loaded the way TF Serving loads it, TF1 loader with tag
   `serve` - and the ONNX graphs declare every documented input and output
   (`MissingOutputError`) with the documented dtype (`SignatureMismatchError`);
3. over recurrent rollouts with random masks and episode resets, the Keras
   agent, the SavedModel, onnxruntime and the ONNX standard's reference
   evaluator (`onnx.reference`) return arrays of the reference's
   shape (`ShapeMismatchError`), Qs / hidden states / Q_tot / mixer weights
   within tolerance (`ToleranceError`: |diff| <= atol + rtol * |reference|,
   see `ATOL`) and identical actions (`MismatchError`);
4. Weighted QMIX's critic (`critic`, `critic.onnx`), when the mixer exports
   one: over recurrent rollouts of random joint actions, as the agents;
5. the LiteRT files, when the version has them: run by the LiteRT
   interpreter (ai-edge-litert; TensorFlow's own when that is not installed)
   in the same rollouts at the same float32 tolerances, and the int8 agent
   (`agent_int8.tflite`) over greedy episodes of the run's environment, where
   its actions must agree with the float32 reference's on at least
   `INT8_MIN_AGREEMENT` of agent-steps (`AgreementError`) and never be
   unavailable (`MismatchError`).

Shape legend: B batch, N agents, A actions, O observation features,
S state features, H GRU width.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kqmix_runtime import spec
from kqmix_runtime.actions import masked_greedy
from kqmix_runtime.errors import (
    AgreementError,
    CorruptArtifactError,
    MismatchError,
    MissingArtifactError,
    MissingOutputError,
    ShapeMismatchError,
    SignatureMismatchError,
    ToleranceError,
)

REQUIRED_FILES = (
    spec.METADATA_FILE,
    spec.CONFIG_FILE,
    spec.SAVED_MODEL_FILE,
    "variables/variables.index",
    spec.AGENT_ONNX,
    spec.MIXER_ONNX,
    spec.MIXER_GRAD_ONNX,
)

_ONNX_DTYPES = {"float32": "tensor(float)", "int32": "tensor(int32)"}


#: Default tolerances, |artifact - reference| <= atol + rtol * |reference| element-wise
#: (`numpy.allclose`'s rule, with |reference| the largest magnitude in the
#: element's row: see `row_magnitude`). Two correct implementations of one float32 graph
#: differ because they sum in different orders (oneDNN vs onnxruntime's MLAS vs LiteRT's XNNPACK,
#: AVX-512 vs AVX2 blocking, fused vs separate multiply-adds): a dot product of
#: length K then differs by about sqrt(K) * u * sum|terms| (u = 2**-24 ~ 6e-8,
#: the float32 unit roundoff), up to K * u * sum|terms| at worst. The agent is a
#: chain of such products with K <= 3H = 192 (Dense, three GRU gates, Dense)
#: carried through 20 recurrent steps, the mixer two of them with K <= 64: a few
#: times 1e-6 relative to the values is what reordering alone produces, so
#: rtol = 1e-5 (84 float32 ulps) leaves a margin of several times. `atol`
#: covers outputs near zero that come from cancelling terms of order one, where
#: a relative bound means nothing; 1e-5 is the same margin on O(1) terms.
ATOL = 1e-5
RTOL = 1e-5
#: dQ_tot/dQ_a: the reference is a GradientTape through the mixer, the artifact
#: a closed form (`mixer_grad`), so the two differ by more than summation
#: order; both are sums of products of the hypernetwork outputs.
GRAD_ATOL = 1e-4
GRAD_RTOL = 1e-4


@dataclass
class ValidationReport:
    """What was compared, and per artifact and output the largest difference and its share of the allowance."""

    version_dir: Path
    reference: str
    max_abs_diff: dict = field(default_factory=dict)  # "artifact:signature:output" -> float
    max_ratio: dict = field(default_factory=dict)  # same keys -> max of |diff| / allowed
    steps: int = 0
    batch_sizes: tuple = ()
    litert_interpreter: str | None = None  # which interpreter ran the .tflite files
    int8: dict | None = None  # the int8 agent's agreement report (see export.litert.Int8Report)
    notes: list = field(default_factory=list)

    def record(self, key: str, abs_diff: float, ratio: float) -> None:
        self.max_abs_diff[key] = max(self.max_abs_diff.get(key, 0.0), float(abs_diff))
        self.max_ratio[key] = max(self.max_ratio.get(key, 0.0), float(ratio))

    def summary(self) -> str:
        lines = [f"{self.version_dir}: OK (reference: {self.reference}; {self.steps} steps "
                 f"at batch sizes {list(self.batch_sizes)})"]
        for key, value in sorted(self.max_abs_diff.items()):
            lines.append(f"  {key:<40} max |diff| {value:.2e} ({self.max_ratio[key]:.2f} of the tolerance)")
        if self.litert_interpreter:
            lines.append(f"  LiteRT files run by {self.litert_interpreter}")
        if self.int8:
            r = self.int8
            lines.append(
                f"  {spec.AGENT_INT8_TFLITE} ({r['mode']}): greedy-action agreement {r['action_agreement']:.2%} "
                f"(>= {r['min_agreement']:.0%} required) over {r['agent_steps']} agent-steps of "
                f"{r['episodes']} episodes; |Q error| mean {r['q_mean_abs_error']:.2e}, max "
                f"{r['q_max_abs_error']:.2e} (mean max|Q| {r['q_abs_scale']:.2e}); regret mean "
                f"{r['regret_mean']:.2e}; return {r['int8_return_mean']} (float32 {r['float_return_mean']})"
            )
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


# --------------------------------------------------------------------------- loading


def check_files(version_dir: Path) -> dict:
    """Existence and checksums of every artifact; returns the parsed metadata."""
    from kqmix_runtime.runtime import load_metadata

    from kqmix.files import sha256_file

    for name in REQUIRED_FILES:
        if not (version_dir / name).is_file():
            raise MissingArtifactError(version_dir / name)
    metadata = load_metadata(version_dir)
    for rel, digest in metadata.get("files", {}).items():
        path = version_dir / rel
        if not path.is_file():
            raise MissingArtifactError(path, "listed in metadata.json")
        if sha256_file(path) != digest:
            raise CorruptArtifactError(path, "sha256 differs from the one recorded in metadata.json")
    try:
        json.loads((version_dir / spec.CONFIG_FILE).read_text())
    except ValueError as exc:
        raise CorruptArtifactError(version_dir / spec.CONFIG_FILE, f"cannot parse JSON: {exc}") from None
    return metadata


class SavedModelRunner:
    """A SavedModel loaded as TF Serving loads it: TF1 loader, tag `serve`, `signature_def`."""

    def __init__(self, path):
        import tensorflow as tf

        self.path = Path(path)
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")  # the TF1 loader's deprecation notice is expected here
        try:
            with self.graph.as_default():
                self.meta_graph = tf.compat.v1.saved_model.loader.load(
                    self.session, ["serve"], str(self.path)
                )
        except Exception as exc:  # TF raises a different class per kind of damage
            self.session.close()
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CorruptArtifactError(
                self.path / spec.SAVED_MODEL_FILE, f"TensorFlow cannot load the SavedModel: {first_line}"
            ) from None
        finally:
            logger.setLevel(level)
        self.signatures = self.meta_graph.signature_def

    def check_signature(self, name: str, inputs: dict, outputs: dict) -> None:
        import tensorflow as tf

        artifact = f"{self.path / spec.SAVED_MODEL_FILE} signature {name!r}"
        if name not in self.signatures:
            raise MissingOutputError(str(self.path / spec.SAVED_MODEL_FILE), "signature", name,
                                     self.signatures.keys())
        sig = self.signatures[name]
        for kind, documented, declared in (("input", inputs, sig.inputs), ("output", outputs, sig.outputs)):
            for tensor, (dtype, shape) in documented.items():
                if tensor not in declared:
                    raise MissingOutputError(artifact, kind, tensor, declared.keys())
                got = tf.dtypes.as_dtype(declared[tensor].dtype).name
                if got != dtype:
                    raise SignatureMismatchError(f"{artifact}: {kind} {tensor!r} has dtype {got}; expected {dtype}")
                rank = len(declared[tensor].tensor_shape.dim)
                if rank != len(shape):
                    raise SignatureMismatchError(
                        f"{artifact}: {kind} {tensor!r} has rank {rank}; expected {len(shape)} {shape}"
                    )

    def run(self, name: str, feed: dict) -> dict:
        sig = self.signatures[name]
        fetches = {key: info.name for key, info in sig.outputs.items()}
        return self.session.run(fetches, {sig.inputs[k].name: v for k, v in feed.items()})

    def close(self) -> None:
        self.session.close()


class OnnxRunner:
    """An onnxruntime session for one exported ONNX file, checked against its signature."""

    def __init__(self, path, signature: str):
        from kqmix_runtime.runtime import make_session

        self.path = Path(path)
        self.signature = signature
        self.session = make_session(self.path)
        inputs, outputs = spec.ALL_SIGNATURES[signature]
        for kind, documented, declared in (
            ("input", inputs, self.session.get_inputs()),
            ("output", outputs, self.session.get_outputs()),
        ):
            by_name = {arg.name: arg for arg in declared}
            for tensor, (dtype, shape) in documented.items():
                if tensor not in by_name:
                    raise MissingOutputError(str(self.path), kind, tensor, by_name)
                if by_name[tensor].type != _ONNX_DTYPES[dtype]:
                    raise SignatureMismatchError(
                        f"{self.path}: {kind} {tensor!r} has type {by_name[tensor].type}; expected {dtype}"
                    )
                if len(by_name[tensor].shape) != len(shape):
                    raise SignatureMismatchError(
                        f"{self.path}: {kind} {tensor!r} has rank {len(by_name[tensor].shape)}; "
                        f"expected {len(shape)} {shape}"
                    )
        self.output_names = list(outputs)

    def run(self, feed: dict) -> dict:
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))


class OnnxReferenceRunner:
    """An ONNX file run by `onnx.reference.ReferenceEvaluator`, the ONNX standard's own implementation.

    A second, independent executor (numpy code written from the operator
    specifications, nothing shared with onnxruntime): agreement shows the
    files mean what the standard says, not only what one runtime does.
    """

    def __init__(self, path, signature: str):
        import onnx
        from onnx.reference import ReferenceEvaluator

        self.path = Path(path)
        try:
            self.evaluator = ReferenceEvaluator(onnx.load(str(self.path)))
        except Exception as exc:  # onnx raises several unrelated classes
            raise CorruptArtifactError(self.path, f"the ONNX reference evaluator cannot load it: {exc}") from None
        self.output_names = list(spec.ALL_SIGNATURES[signature][1])

    def run(self, feed: dict) -> dict:
        return dict(zip(self.output_names, self.evaluator.run(self.output_names, feed)))


# --------------------------------------------------------------------------- reference


class KerasReference:
    """The trained Keras layers as the reference every artifact is compared with."""

    def __init__(self, agent, mixer):
        import tensorflow as tf

        self.agent, self.mixer = agent, mixer
        self._step = tf.function(agent.step, reduce_retracing=True)
        self._mix = tf.function(lambda qs, s: mixer([qs, s]), reduce_retracing=True)

        @tf.function(reduce_retracing=True)
        def grad(qs, s):
            with tf.GradientTape() as tape:
                tape.watch(qs)
                q_tot = mixer([qs, s])
            return tape.gradient(q_tot, qs)

        self._grad = grad

    def act(self, feed: dict) -> dict:
        q, next_hidden = self._step(feed["obs"], feed["agent_id"], feed["last_action"], feed["hidden"])
        q = np.asarray(q, np.float32)
        return {
            "q_values": q,
            "action": masked_greedy(q, feed["avail_actions"]),
            "next_hidden": np.asarray(next_hidden, np.float32),
        }

    def mix(self, feed: dict) -> dict:
        return {"q_tot": np.asarray(self._mix(feed["agent_qs"], feed["state"]), np.float32)}

    def mix_grad(self, feed: dict) -> dict:
        return {
            **self.mix(feed),
            "dq_tot_dq": np.asarray(self._grad(feed["agent_qs"], feed["state"]), np.float32),
        }

    def critic(self, feed: dict) -> dict:
        out = self.mixer.critic_step(**feed)
        return {key: np.asarray(value, np.float32) for key, value in out.items()}


# --------------------------------------------------------------------------- comparison


def row_magnitude(ref: np.ndarray) -> np.ndarray:
    """|reference| as the tolerance scales it: the largest magnitude in each row.

    The values of one row (one agent's Qs, its hidden state) are sums over the
    same terms, and rounding error is relative to the size of those terms, not
    of the result: a Q near zero made by cancelling Qs of 1e3 carries the
    error of 1e3. The row's largest |value| is the observable bound on them.
    A 1-D output (Q_tot per batch row) is its own row.
    """
    magnitude = np.abs(ref)
    if ref.ndim >= 2:
        magnitude = np.broadcast_to(magnitude.max(axis=-1, keepdims=True), ref.shape)
    return magnitude


def compare(report: ValidationReport, artifact: str, signature: str, got: dict, expected: dict,
            atol: float, rtol: float, where: str) -> None:
    """Raises the matching `ValidationError` unless `got` reproduces `expected`.

    Float outputs must satisfy |got - expected| <= atol + rtol * |expected|
    element-wise, |expected| taken row-wise (`row_magnitude`); integer
    outputs (actions) must be equal.
    """
    for name, ref in expected.items():
        label = f"{artifact} [{signature}]"
        if name not in got:
            raise MissingOutputError(label, "output", name, got.keys())
        value = np.asarray(got[name])
        if value.shape != ref.shape:
            raise ShapeMismatchError(label, name, value.shape, ref.shape)
        if ref.dtype.kind in "iu":
            if not np.array_equal(value, ref):
                bad = np.flatnonzero(value.reshape(-1) != ref.reshape(-1))
                raise MismatchError(
                    label, name, f"{len(bad)} of {ref.size} differ, first at row {int(bad[0])}: "
                    f"{int(value.reshape(-1)[bad[0]])} vs {int(ref.reshape(-1)[bad[0]])} {where}"
                )
            continue
        if not ref.size:
            continue
        ref64, value64 = ref.astype(np.float64), value.astype(np.float64)
        diff = np.abs(value64 - ref64)
        magnitude = row_magnitude(ref64)
        ratio = diff / (atol + rtol * magnitude)
        ratio[~np.isfinite(value64)] = np.inf
        worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        if not ratio[worst] <= 1.0:
            raise ToleranceError(label, name, worst, value64[worst], ref64[worst], atol, rtol,
                                 magnitude[worst], where)
        report.record(f"{artifact}:{signature}:{name}", float(diff.max()), float(ratio[worst]))


def random_mask(rng, batch: int, n_actions: int, p_empty: float = 0.0) -> np.ndarray:
    """`(B, A)` float32 mask with at least one available action per row (unless drawn empty)."""
    mask = (rng.random((batch, n_actions)) < 0.6).astype(np.float32)
    mask[np.arange(batch), rng.integers(0, n_actions, batch)] = 1.0
    if p_empty:
        mask[rng.random(batch) < p_empty] = 0.0
    return mask


def rollout_compare(reference, runners: dict, sizes: dict, report: ValidationReport, batch: int,
                    steps: int, rng, atol: float, rtol: float, p_reset: float = 0.15,
                    p_empty: float = 0.05) -> None:
    """Runs every `act` implementation side by side for `steps` recurrent steps.

    Each implementation carries its own hidden state forward, so drift that
    accumulates through the recurrence shows up; last actions follow the
    reference's choices; random rows restart (zero state, last action -1,
    a new agent id) as at an episode boundary.
    """
    n, a = int(sizes["n_agents"]), int(sizes["n_actions"])
    o, h = int(sizes["obs_dim"]), int(sizes["hidden_dim"])
    agent_id = rng.integers(0, n, batch).astype(np.int32)
    last_action = np.full(batch, spec.NO_LAST_ACTION, np.int32)
    hidden = {name: np.zeros((batch, h), np.float32) for name in ["keras", *runners]}
    for t in range(steps):
        common = {
            "obs": rng.normal(size=(batch, o)).astype(np.float32),
            "agent_id": agent_id,
            "last_action": last_action,
            "avail_actions": random_mask(rng, batch, a, p_empty),
        }
        expected = reference.act({**common, "hidden": hidden["keras"]})
        where = f"(batch {batch}, step {t})"
        for name, run in runners.items():
            got = run({**common, "hidden": hidden[name]})
            compare(report, name, spec.ACT, got, expected, atol, rtol, where)
            hidden[name] = np.asarray(got["next_hidden"], np.float32)
        hidden["keras"] = expected["next_hidden"]
        last_action = np.where(expected["action"] >= 0, expected["action"], rng.integers(0, a, batch))
        last_action = last_action.astype(np.int32)
        reset = rng.random(batch) < p_reset
        if reset.any():
            for name in hidden:
                hidden[name] = hidden[name].copy()
                hidden[name][reset] = 0.0
            last_action[reset] = spec.NO_LAST_ACTION
            agent_id = np.where(reset, rng.integers(0, n, batch), agent_id).astype(np.int32)


def mix_compare(reference, runners: dict, sizes: dict, report: ValidationReport, batch: int,
                rng, atol: float, rtol: float, grad_atol: float, grad_rtol: float) -> None:
    n, s = int(sizes["n_agents"]), int(sizes["state_dim"])
    feed = {
        "agent_qs": (rng.normal(size=(batch, n)) * 5.0).astype(np.float32),
        "state": rng.normal(size=(batch, s)).astype(np.float32),
    }
    where = f"(batch {batch})"
    expected = reference.mix(feed)
    expected_grad = reference.mix_grad(feed)
    for name, (mix, mix_grad) in runners.items():
        compare(report, name, spec.MIX, mix(feed), expected, atol, rtol, where)
        got = mix_grad(feed)
        compare(report, name, spec.MIX_GRAD, {"q_tot": got.get("q_tot", np.empty(0))},
                {"q_tot": expected_grad["q_tot"]}, atol, rtol, where)
        compare(report, name, spec.MIX_GRAD, {"dq_tot_dq": got.get("dq_tot_dq", np.empty(0))},
                {"dq_tot_dq": expected_grad["dq_tot_dq"]}, grad_atol, grad_rtol, where)


def critic_compare(reference, runners: dict, sizes: dict, report: ValidationReport, batch: int, steps: int,
                   rng, atol: float, rtol: float) -> None:
    """Weighted QMIX's critic over a recurrent rollout of `batch` teams with random joint actions;
    each runner carries its own hidden state, as a deployment does."""
    n, o, s, a = (int(sizes[k]) for k in ("n_agents", "obs_dim", "state_dim", "n_actions"))
    c = int(sizes["central_hidden_dim"])
    hidden = {name: np.zeros((batch, n, c), np.float32) for name in ["reference", *runners]}
    last_action = np.full((batch, n), spec.NO_LAST_ACTION, np.int32)
    for t in range(steps):
        actions = rng.integers(0, a, (batch, n)).astype(np.int32)
        common = {"obs": rng.normal(size=(batch, n, o)).astype(np.float32), "last_action": last_action,
                  "actions": actions, "state": rng.normal(size=(batch, s)).astype(np.float32)}
        expected = reference.critic({**common, "hidden": hidden["reference"]})
        for name, run in runners.items():
            got = run({**common, "hidden": hidden[name]})
            compare(report, name, spec.CRITIC, got, expected, atol, rtol, f"(batch {batch}, step {t})")
            hidden[name] = np.asarray(got["next_hidden"], np.float32)
        hidden["reference"] = expected["next_hidden"]
        last_action = actions


# --------------------------------------------------------------------------- entry point


def validate_export(version_dir, run_dir=None, *, loaded=None, atol: float = ATOL,
                    rtol: float = RTOL, grad_atol: float = GRAD_ATOL, grad_rtol: float = GRAD_RTOL,
                    batch_sizes=(1, 7), steps: int = 20, seed: int = 0,
                    int8_min_agreement: float | None = None) -> ValidationReport:
    """Validates an exported version; returns a `ValidationReport` or raises a `ValidationError`.

    Args:
        version_dir: `<out>/<name>/<version>`.
        run_dir: the run it was exported from. If omitted, the run recorded
            in metadata.json is used when it still exists; otherwise the
            SavedModel serves as the reference for the ONNX graphs.
        loaded: an already loaded `LoadedRun` (saves reloading it).
        atol, rtol: tolerance for Qs, hidden states and Q_tot:
            |artifact - reference| <= atol + rtol * |reference| element-wise
            (see `ATOL` and `RTOL` for why these defaults).
        grad_atol, grad_rtol: the same for the mixer weights dQ_tot/dQ_a
            (compared with a GradientTape, whose summation order differs).
        batch_sizes, steps, seed: shape and length of the generated rollouts.
        int8_min_agreement: the share of agent-steps on which the int8 agent's
            greedy action must equal the float32 reference's (default
            `export.litert.INT8_MIN_AGREEMENT`, 0.99).
    """
    version_dir = Path(version_dir)
    if not version_dir.is_dir():
        raise MissingArtifactError(version_dir, "no such version directory")
    metadata = check_files(version_dir)
    sizes = metadata["sizes"]

    saved_model = SavedModelRunner(version_dir)
    try:
        for name, (inputs, outputs) in spec.SIGNATURES.items():
            saved_model.check_signature(name, inputs, outputs)
        saved_model.check_signature(spec.SERVING_DEFAULT, spec.ACT_INPUTS, spec.ACT_OUTPUTS)
        onnx = {f: OnnxRunner(version_dir / f, sig) for f, sig in spec.ONNX_FILES.items()}
        standard = {f: OnnxReferenceRunner(version_dir / f, sig) for f, sig in spec.ONNX_FILES.items()}

        reference, reference_name = _reference(metadata, run_dir, loaded)
        act_runners = {
            "saved_model": lambda feed: saved_model.run(spec.ACT, feed),
            "saved_model/serving_default": lambda feed: saved_model.run(spec.SERVING_DEFAULT, feed),
            spec.AGENT_ONNX: onnx[spec.AGENT_ONNX].run,
            f"onnx.reference/{spec.AGENT_ONNX}": standard[spec.AGENT_ONNX].run,
        }
        mix_runners = {
            "saved_model": (lambda feed: saved_model.run(spec.MIX, feed),
                            lambda feed: saved_model.run(spec.MIX_GRAD, feed)),
            "onnx": (onnx[spec.MIXER_ONNX].run, onnx[spec.MIXER_GRAD_ONNX].run),
            "onnx.reference": (standard[spec.MIXER_ONNX].run, standard[spec.MIXER_GRAD_ONNX].run),
        }
        if reference is None:
            reference_name = "saved_model (no Keras run available)"
            reference = _SavedModelReference(saved_model)
            act_runners.pop("saved_model")
            mix_runners.pop("saved_model")

        report = ValidationReport(version_dir, reference_name, steps=steps, batch_sizes=tuple(batch_sizes))
        litert = _litert_models(version_dir, metadata, report)
        if litert:
            act_runners[spec.AGENT_TFLITE] = litert[spec.AGENT_TFLITE].run
            mix_runners["litert"] = (litert[spec.MIXER_TFLITE].run, litert[spec.MIXER_GRAD_TFLITE].run)
        rng = np.random.default_rng(seed)
        for batch in batch_sizes:
            rollout_compare(reference, act_runners, sizes, report, batch, steps, rng, atol, rtol)
            mix_compare(reference, mix_runners, sizes, report, batch, rng, atol, rtol, grad_atol, grad_rtol)
        if spec.AGENT_INT8_TFLITE in litert:
            _check_int8(version_dir, metadata, reference, litert[spec.AGENT_INT8_TFLITE], report,
                        int8_min_agreement)
        own = metadata.get("mixer", {}).get("signatures", [])
        if spec.CRITIC in own:
            saved_model.check_signature(spec.CRITIC, spec.CRITIC_INPUTS, spec.CRITIC_OUTPUTS)
            critic_runners = {
                "saved_model": lambda feed: saved_model.run(spec.CRITIC, feed),
                spec.CRITIC_ONNX: OnnxRunner(version_dir / spec.CRITIC_ONNX, spec.CRITIC).run,
                f"onnx.reference/{spec.CRITIC_ONNX}": OnnxReferenceRunner(version_dir / spec.CRITIC_ONNX, spec.CRITIC).run,
            }
            if isinstance(reference, _SavedModelReference):
                critic_runners.pop("saved_model")
            for batch in batch_sizes:
                critic_compare(reference, critic_runners, sizes, report, batch, steps, rng, atol, rtol)
        return report
    finally:
        saved_model.close()


def _litert_models(version_dir: Path, metadata: dict, report: ValidationReport) -> dict:
    """File name -> `LiteRTModel` for every LiteRT file metadata.json lists (none for older versions)."""
    from kqmix_runtime.errors import BackendUnavailableError
    from kqmix_runtime.litert import LiteRTModel
    from kqmix_runtime.litert import interpreter_class as litert_interpreter

    litert = metadata.get("litert")
    if not litert:
        report.notes.append("no LiteRT files in this version (exported without them)")
        return {}
    files = dict(litert["files"])
    if "int8" in litert:
        files[litert["int8"]["file"]] = litert["int8"]["signature"]
    try:
        interpreter = litert_interpreter()
        report.litert_interpreter = "ai-edge-litert"
    except BackendUnavailableError:
        from .litert import interpreter_class

        interpreter = interpreter_class()
        report.litert_interpreter = f"TensorFlow's tf.lite.Interpreter (ai-edge-litert is not installed: {spec.LITERT_INSTALL})"
    models = {}
    for filename, signature in files.items():
        if not (version_dir / filename).is_file():
            raise MissingArtifactError(version_dir / filename, "listed in metadata.json")
        models[filename] = LiteRTModel(version_dir / filename, signature, interpreter=interpreter)
    return models


def _check_int8(version_dir: Path, metadata: dict, reference, model, report: ValidationReport,
                required: float | None) -> None:
    """The int8 agent over the held-out greedy episodes the exporter measured it on, replayed with the reference."""
    from . import litert as litert_files

    int8 = metadata["litert"]["int8"]
    artifact = str(version_dir / int8["file"])
    env = metadata.get("environment", {})
    sizes = metadata["sizes"]
    try:
        episodes = litert_files.record_greedy_episodes(
            reference.act, env.get("env"), env.get("env_key"), int(sizes["n_agents"]), int(sizes["hidden_dim"]),
            litert_files.EVALUATION_EPISODES, seed=int(int8["calibration"].get("seed", 0)),
            first=litert_files.CALIBRATION_EPISODES)
    except Exception as exc:  # an environment that cannot be made here (a synthetic network, a missing extra)
        report.notes.append(f"{int8['file']}: agreement not re-measured, environment {env.get('env')!r} "
                            f"unavailable ({type(exc).__name__}: {exc}); the export measured "
                            f"{int8['report']['action_agreement']:.2%}")
        return
    result = litert_files.int8_agreement(model.run, episodes)
    result.float_return_mean = litert_files.episode_return(episodes)
    sizes_ = metadata["sizes"]
    result.int8_return_mean = litert_files.episode_return(litert_files.record_greedy_episodes(
        model.run, env.get("env"), env.get("env_key"), int(sizes_["n_agents"]), int(sizes_["hidden_dim"]),
        litert_files.EVALUATION_EPISODES, seed=int(int8["calibration"].get("seed", 0)),
        first=litert_files.CALIBRATION_EPISODES))
    required = litert_files.INT8_MIN_AGREEMENT if required is None else float(required)
    report.int8 = {**result.as_dict(), "min_agreement": required, "mode": int8.get("mode", "int8")}
    if result.unavailable_actions:
        raise MismatchError(artifact, "action", f"{result.unavailable_actions} actions are not the greedy "
                            "available action of the returned q_values")
    if result.action_agreement < required:
        raise AgreementError(artifact, result.action_agreement, required,
                             f"{result.agent_steps} agent-steps of {result.episodes} greedy episodes; "
                             f"mean |Q error| {result.q_mean_abs_error:.3g}")


class _SavedModelReference:
    def __init__(self, saved_model: SavedModelRunner):
        self._sm = saved_model

    def act(self, feed):
        return {k: np.asarray(v) for k, v in self._sm.run(spec.ACT, feed).items()}

    def mix(self, feed):
        return self._sm.run(spec.MIX, feed)

    def mix_grad(self, feed):
        return self._sm.run(spec.MIX_GRAD, feed)

    def critic(self, feed):
        return self._sm.run(spec.CRITIC, feed)


def _reference(metadata: dict, run_dir, loaded):
    if loaded is None:
        from kqmix import rundir

        candidate = run_dir or metadata.get("source", {}).get("run_dir")
        if candidate is None or not (Path(candidate) / rundir.MODEL_FILE).is_file():
            if run_dir is not None:
                raise MissingArtifactError(Path(run_dir) / rundir.MODEL_FILE, "the run to compare with")
            return None, None
        loaded = rundir.load_run(candidate)
    return KerasReference(loaded.agent, loaded.mixer), f"Keras model of {loaded.run_dir}"
