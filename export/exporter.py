"""`export_run`: a finished training run -> one TF Serving version directory.

Layout of `<out>/<name>/<version>/`:

* `saved_model.pb`, `variables/` - SavedModel with signatures `act`
  (also `serving_default`), `mix` and `mix_grad`;
* `agent.onnx`, `mixer.onnx`, `mixer_grad.onnx` - the same functions for
  onnxruntime, same tensor names;
* `agent.tflite`, `mixer.tflite`, `mixer_grad.tflite` - the same signatures
  for LiteRT, builtin operators only (unless `litert=False`), and with
  `quantize="int8"` also `agent_int8.tflite` (see `export/litert.py`);
* `metadata.json` - sizes, input layout, environment, training and
  evaluation figures, versions, opset, sha256 of every file;
* `config.json` - the run's configuration.

The version is assembled in a hidden temporary directory next to the target
and renamed into place in one step, so a model server polling `<out>/<name>/`
never sees a half-written version (TF Serving only picks up numeric names).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from kqmix_runtime import spec
from kqmix_runtime.errors import ExportError

from kqmix import rundir
from kqmix.files import sha256_file, staging_dir


def default_name(config) -> str:
    """Model name from the environment the run ends on, e.g. `two_step` or `matrix-climbing-25`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", config.final_env_name).strip("-.") or "model"


def existing_versions(model_dir) -> list[int]:
    """Integer version directories under `model_dir`, sorted."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir())


def file_checksums(version_dir) -> dict[str, str]:
    """Relative path -> sha256 of every file under `version_dir` except metadata.json."""
    version_dir = Path(version_dir)
    return {
        p.relative_to(version_dir).as_posix(): sha256_file(p)
        for p in sorted(version_dir.rglob("*"))
        if p.is_file() and p.name != spec.METADATA_FILE
    }


def sizes_of(agent, mixer, env: dict) -> dict:
    return {
        "n_agents": int(agent.n_agents),
        "n_actions": int(agent.n_actions),
        "obs_dim": int(agent.obs_dim),
        "state_dim": int(env["state_dim"]),
        "hidden_dim": int(agent.hidden_dim),
        "episode_limit": int(env.get("episode_limit", 0)),
        **{key: int(value) for key, value in mixer.export_sizes().items()},
    }


def mixer_signatures(mixer) -> list[str]:
    """The signatures the mixer exports beside `act`, `mix` and `mix_grad` (`spec.MIXER_SIGNATURES`)."""
    return list(mixer.export_functions())


def onnx_files(mixer) -> dict[str, str]:
    """ONNX file -> signature of every ONNX file a version of this mixer holds."""
    own = set(mixer_signatures(mixer))
    return {**spec.ONNX_FILES, **{f: sig for f, sig in spec.MIXER_ONNX_FILES.items() if sig in own}}


def agent_input_layout(agent) -> list[dict]:
    """The agent network's input blocks in order (`RNNAgent.input_layout()`), for metadata.json."""
    return [part._asdict() for part in agent.input_layout()]


def _signature_doc(inputs: dict, outputs: dict, sizes: dict) -> dict:
    """Documented dtypes and shapes, symbolic (`["B", "O"]`) and concrete (`[null, 3]`)."""

    def as_doc(tensors):
        return {
            k: {"dtype": dt, "shape": list(shape), "dims": list(spec.concrete_shape(shape, sizes))}
            for k, (dt, shape) in tensors.items()
        }

    return {"inputs": as_doc(inputs), "outputs": as_doc(outputs)}


def build_metadata(loaded, name: str, sizes: dict, opset: int) -> dict:
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    import kqmix

    agent, mixer, env, run = loaded.agent, loaded.mixer, loaded.env, loaded.run
    return {
        "format": spec.FORMAT_NAME,
        "format_version": spec.FORMAT_VERSION,
        "kqmix_version": kqmix.__version__,
        "name": name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "sizes": sizes,
        "agent": {
            "use_agent_id": bool(agent.use_agent_id),
            "use_last_action": bool(agent.use_last_action),
            "input_layout": agent_input_layout(agent),
            "initial_hidden": "zeros (B, H)",
            "initial_last_action": spec.NO_LAST_ACTION,
        },
        # `kind` is the Config.mixer name; `signatures` those of its own (the runtime refuses unknown ones).
        "mixer": {"type": type(mixer).__name__, "kind": loaded.config.mixer, "signatures": mixer_signatures(mixer)},
        "signatures": {
            name_: _signature_doc(*spec.ALL_SIGNATURES[name_], sizes)
            for name_ in [*spec.SIGNATURES, *mixer_signatures(mixer)]
        },
        "serving_default": spec.ACT,
        "onnx": {
            "opset": opset,
            "files": onnx_files(mixer),
            "tf2onnx_version": tf2onnx.__version__,
            "onnx_version": onnx.__version__,
            "exported_with_onnxruntime": onnxruntime.__version__,
        },
        "environment": {
            "env": env.get("env"),
            "env_key": env.get("env_key"),
            "notes": env.get("notes", []),
        },
        "action_meanings": env.get("action_meanings"),
        "training": {
            "t_env": run.get("t_env"),
            "episodes": run.get("episodes"),
            "train_steps": run.get("train_steps"),
            "preset": run.get("preset"),
            "trained_with_kqmix": run.get("kqmix_version"),
        },
        "evaluation": {
            "test_return_mean": run.get("test_return_mean"),
            # Only environments that report wins (SMAX) have a win rate.
            **({"test_win_rate": run["test_win_rate"]} if run.get("test_win_rate") is not None else {}),
            "policy": "greedy",
            "episodes": loaded.config.test_nepisode,
        },
        "source": {"run_dir": str(Path(loaded.run_dir).resolve())},
        "tensorflow_version": tf.__version__,
    }


def write_saved_model(functions: dict, agent, mixer, path) -> None:
    """SavedModel with one signature per function, plus `serving_default` = `act`."""
    import tensorflow as tf

    module = tf.Module()
    # The underlying tf.Variables, listed explicitly: tf.Module's attribute
    # tracking does not reach every variable nested inside Keras 3 layers
    # (a GRU cell's, for one), and an untracked variable is missing when TF
    # Serving restores the checkpoint. keras.export.ExportArchive does the same.
    module.agent_variables = [getattr(v, "value", v) for v in agent.variables]
    module.mixer_variables = [getattr(v, "value", v) for v in mixer.variables]
    for name, fn in functions.items():
        setattr(module, name, fn)
    signatures = {name: fn.get_concrete_function() for name, fn in functions.items()}
    signatures[spec.SERVING_DEFAULT] = signatures[spec.ACT]
    tf.saved_model.save(module, str(path), signatures=signatures)


def write_onnx(fn, path, opset: int, signature: str, sizes: dict) -> None:
    """Converts one exported `tf.function` with tf2onnx; tensor names follow the signature.

    tf2onnx names the free axes `unk__<n>`; they are renamed to `B` and the
    fixed axes written out, so the graph's declared shapes read like the
    documented ones.
    """
    import onnx
    import tf2onnx

    model, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=opset)
    inputs, outputs = spec.ALL_SIGNATURES[signature]
    for value_info in list(model.graph.input) + list(model.graph.output):
        documented = {**inputs, **outputs}.get(value_info.name)
        if documented is None:
            continue
        dims = value_info.type.tensor_type.shape.dim
        for dim, size in zip(dims, spec.concrete_shape(documented[1], sizes)):
            if size is None:
                dim.dim_param = "B"
            else:
                dim.dim_value = size
    model.doc_string = f"kqmix {signature} signature"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _write_version(loaded, tmp: Path, name: str, opset: int, litert: bool = True,
                   quantize: str | None = None, calibration=None) -> None:
    from . import litert as litert_files
    from .graphs import build_functions, int8_act_function

    agent, mixer = loaded.agent, loaded.mixer
    sizes = sizes_of(agent, mixer, loaded.env)
    functions = build_functions(agent, mixer, sizes)
    write_saved_model(functions, agent, mixer, tmp)
    for filename, signature in onnx_files(mixer).items():
        write_onnx(functions[signature], tmp / filename, opset, signature, sizes)
    litert_meta = None
    if litert:
        # Converted from the SavedModel just written, so the .tflite signatures
        # are the SavedModel's, names and all; the int8 agent from a SavedModel
        # of the same `act` in the form quantisation needs (`int8_act_function`).
        int8_act = int8_act_function(agent, sizes) if quantize else None
        staging = tempfile.TemporaryDirectory(prefix="kqmix-int8-") if int8_act else contextlib.nullcontext()
        with staging as int8_dir:  # None when the version's own `act` is quantised
            if int8_act is not None:
                write_saved_model({spec.ACT: int8_act}, agent, mixer, int8_dir)
            litert_meta = litert_files.write_files(tmp, quantize, loaded.env, sizes, calibration,
                                                   seed=int(loaded.config.seed), int8_source=int8_dir)
    shutil.copyfile(Path(loaded.run_dir) / rundir.CONFIG_FILE, tmp / spec.CONFIG_FILE)
    metadata = build_metadata(loaded, name, sizes, opset)
    if litert_meta is not None:
        metadata["litert"] = litert_meta
    metadata["files"] = file_checksums(tmp)
    (tmp / spec.METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=False) + "\n")


def export_run(run_dir, name: str | None = None, out="saved_models", *, check: bool = False,
               opset: int = spec.ONNX_OPSET, quiet: bool = True, litert: bool = True,
               quantize: str | None = None, calibration=None,
               int8_min_agreement: float | None = None) -> Path:
    """Exports a finished run as a new version `<out>/<name>/<version>/`; returns its path.

    Args:
        run_dir: a finished run directory (see `kqmix.rundir`).
        name: model name (TF Serving's MODEL_NAME); default from the environment.
        out: model base directory; created if needed.
        check: validate every artifact against the Keras model before the
            version is published; a failed check publishes nothing.
        opset: ONNX opset for the converted graphs.
        quiet: silence tf2onnx's logging.
        litert: also write `agent.tflite`, `mixer.tflite`, `mixer_grad.tflite`
            (LiteRT, builtin operators only; about a second each).
        quantize: `"int8"` also writes `agent_int8.tflite`, int8 weights and
            activations calibrated on greedy episodes of the float agent in
            the run's environment; `"int8-weights"` int8 weights only. The Q
            error and action agreement against float32 go into metadata.json.
        int8_min_agreement: with `check`, the validator's bar for the int8 agent.
        calibration: int8 calibration feeds (`act` inputs) instead of
            recorded episodes, e.g. for a network without an environment.

    The version is the next integer after the highest existing one; an
    existing version is never overwritten.
    """
    if quiet:
        _quiet_converters()
    if quantize is not None:
        from .litert import QUANTIZE_MODES

        if quantize not in QUANTIZE_MODES or not litert:
            raise ExportError(f"`quantize` must be None or one of {sorted(QUANTIZE_MODES)} (with litert=True). "
                              f"Received: quantize={quantize!r}")
    loaded = rundir.load_run(run_dir)
    name = name or default_name(loaded.config)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise ExportError(
            f"Invalid model name {name!r}: use letters, digits, '_', '-', '.' "
            "(it becomes a directory and TF Serving's MODEL_NAME)."
        )
    model_dir = Path(out) / name
    created = _make_dirs(model_dir)
    try:
        with staging_dir(model_dir, "export-") as tmp:
            _write_version(loaded, tmp, name, opset, litert, quantize, calibration)
            if check:
                from .validate import validate_export

                validate_export(tmp, run_dir=run_dir, loaded=loaded, int8_min_agreement=int8_min_agreement)
            os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the model from a server user
            return _publish(tmp, model_dir)
    except BaseException:
        # A failed export leaves the disk as it found it: the directories it
        # made for this version go too, if nothing else has appeared in them.
        for directory in reversed(created):
            try:
                directory.rmdir()
            except OSError:
                break
        raise


def _make_dirs(path: Path) -> list[Path]:
    """Creates `path` and its missing parents; returns the ones created, outermost first."""
    missing = [p for p in (path, *path.parents) if not p.exists()][::-1]
    path.mkdir(parents=True, exist_ok=True)
    return missing


def _publish(tmp: Path, model_dir: Path) -> Path:
    """Renames `tmp` to the next free version; never replaces a non-empty version."""
    version = (existing_versions(model_dir) or [0])[-1] + 1
    for _ in range(1000):
        target = model_dir / str(version)
        if not target.exists():
            try:
                os.rename(tmp, target)
                return target
            except OSError:
                pass  # another exporter took this number in between
        version += 1
    raise ExportError(f"Could not find a free version number under {model_dir}.")


def _quiet_converters() -> None:
    import logging

    for logger in ("tf2onnx", "tensorflow"):
        logging.getLogger(logger).setLevel(logging.ERROR)
