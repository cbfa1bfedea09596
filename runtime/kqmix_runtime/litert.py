"""LiteRT (formerly TensorFlow Lite) models for the TensorFlow-free runtime.

* `interpreter_class()` - ai-edge-litert's `Interpreter`, or a
  `BackendUnavailableError` naming the install command;
* `LiteRTModel(path, signature)` - one exported `.tflite` file, checked
  against the documented signature (names, dtypes, ranks) when it loads;
  `run(feed)` at any batch size, or `bind(batch)` for a fixed-batch step on
  preallocated tensors (what `DecentralisedAgents` calls).

Every exported `.tflite` file holds one signature, named like the SavedModel
signature it was converted from (`act`, `mix`, `mix_grad`), with the same
input and output names as the SavedModel and the ONNX files.

Shape legend: B batch, N agents, A actions, O observation features,
S state features, H GRU width.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import spec
from .errors import (
    BackendUnavailableError,
    CorruptArtifactError,
    MissingArtifactError,
    MissingOutputError,
    SignatureMismatchError,
)

__all__ = ["LiteRTModel", "interpreter_class", "operators"]

_DTYPES = {"float32": np.float32, "int32": np.int32}


def interpreter_class():
    """`ai_edge_litert.interpreter.Interpreter`; raises `BackendUnavailableError` when it is not installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise BackendUnavailableError(
            f"The LiteRT backend needs the ai-edge-litert package ({exc}). Install it with: {spec.LITERT_INSTALL}"
        ) from None
    return Interpreter


def operators(interpreter) -> list[str]:
    """Sorted names of the operators a loaded model uses (custom and Flex ops included as named)."""
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


class LiteRTModel:
    """One `.tflite` file of an exported version, loaded and checked against its signature.

    Args:
        path: the file, e.g. `<version>/agent.tflite`.
        signature: `spec.ACT`, `spec.MIX` or `spec.MIX_GRAD`.
        threads: interpreter threads (1 is fastest at these sizes).
        interpreter: an `Interpreter` class to use instead of ai-edge-litert's
            (the validator passes TensorFlow's when ai-edge-litert is absent).

    Raises `MissingArtifactError` for an absent file, `CorruptArtifactError`
    for one the interpreter rejects, `MissingOutputError` for a missing
    signature, input or output and `SignatureMismatchError` for a wrong
    dtype or rank.
    """

    def __init__(self, path, signature: str, threads: int = 1, interpreter=None):
        self.path = Path(path)
        self.signature = signature
        if not self.path.is_file():
            raise MissingArtifactError(self.path)
        cls = interpreter or interpreter_class()
        try:
            self.interpreter = cls(model_path=str(self.path), num_threads=threads)
            found = self.interpreter.get_signature_list()
        except Exception as exc:  # the interpreter raises ValueError or RuntimeError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CorruptArtifactError(self.path, f"the LiteRT interpreter cannot load it: {first}") from None
        if signature not in found:
            raise MissingOutputError(str(self.path), "signature", signature, found)
        runner = self.interpreter.get_signature_runner(signature)
        self.input_details = runner.get_input_details()
        self.output_details = runner.get_output_details()
        # A signature runner holds a reference to the interpreter's buffers,
        # which would make the interpreter refuse to resize or invoke directly;
        # its tensor indices are all this class needs (one signature, subgraph 0).
        del runner
        inputs, outputs = spec.SIGNATURES[signature]
        artifact = f"{self.path} signature {signature!r}"
        for kind, documented, declared in (("input", inputs, self.input_details),
                                           ("output", outputs, self.output_details)):
            for tensor, (dtype, shape) in documented.items():
                if tensor not in declared:
                    raise MissingOutputError(artifact, kind, tensor, declared)
                got = np.dtype(declared[tensor]["dtype"]).name
                if got != dtype:
                    raise SignatureMismatchError(f"{artifact}: {kind} {tensor!r} has dtype {got}; expected {dtype}")
                rank = len(declared[tensor]["shape_signature"])
                if rank != len(shape):
                    raise SignatureMismatchError(
                        f"{artifact}: {kind} {tensor!r} has rank {rank}; expected {len(shape)} {shape}"
                    )
        self.output_names = list(outputs)
        self._input_index = {name: self.input_details[name]["index"] for name in inputs}
        self._output_index = {name: self.output_details[name]["index"] for name in outputs}
        self._shapes = {}

    @property
    def operators(self) -> list[str]:
        return operators(self.interpreter)

    def run(self, feed: dict) -> dict:
        """Documented inputs (any batch size) -> documented outputs (fresh arrays).

        The interpreter is resized only when the batch size changes.
        """
        interpreter = self.interpreter
        arrays = {name: np.ascontiguousarray(feed[name], _DTYPES[dtype])
                  for name, (dtype, _) in spec.SIGNATURES[self.signature][0].items()}
        shapes = {name: array.shape for name, array in arrays.items()}
        if shapes != self._shapes:
            for name, shape in shapes.items():
                interpreter.resize_tensor_input(self._input_index[name], shape, strict=True)
            interpreter.allocate_tensors()
            self._shapes = shapes
        for name, array in arrays.items():
            interpreter.set_tensor(self._input_index[name], array)
        interpreter.invoke()
        return {name: interpreter.get_tensor(index) for name, index in self._output_index.items()}

    def bind(self, batch: int):
        """Resizes every input to batch `batch` once; returns `(set_inputs, invoke, get_outputs)` index maps.

        The interpreter then runs without reallocating: `set_tensor` /
        `invoke` / `get_tensor` on these indices is the step's whole cost.
        """
        inputs = spec.SIGNATURES[self.signature][0]
        shapes = {name: (batch, *(int(d) for d in self.input_details[name]["shape_signature"][1:]))
                  for name in inputs}
        for name, shape in shapes.items():
            self.interpreter.resize_tensor_input(self._input_index[name], shape, strict=True)
        self.interpreter.allocate_tensors()
        self._shapes = shapes
        return dict(self._input_index), dict(self._output_index)
