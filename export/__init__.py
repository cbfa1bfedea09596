"""Deployment: export a trained run to SavedModel + ONNX + LiteRT, validate it, run it without TensorFlow.

* `export_run(run_dir, name=None, out="saved_models") -> Path` writes a new
  TF Serving version directory (needs TensorFlow, tf2onnx).
* `validate_export(version_dir, run_dir=None)` checks every artifact against
  the Keras model (needs TensorFlow, onnxruntime).
* `DecentralisedAgents`, `SingleAgent`, `Mixer` (from `kqmix.export.runtime`)
  run an exported version with numpy and onnxruntime only.

Importing this package imports neither TensorFlow nor onnxruntime; each name
loads its module on first use.
"""

from __future__ import annotations

from kqmix_runtime._lazy import lazy_getattr

from kqmix_runtime.errors import (
    AgreementError,
    BackendNotExportedError,
    BackendUnavailableError,
    CorruptArtifactError,
    ExportError,
    MismatchError,
    MissingArtifactError,
    MissingOutputError,
    NoAvailableActionError,
    RuntimeInputError,
    ShapeMismatchError,
    SignatureMismatchError,
    ToleranceError,
    ValidationError,
)
from kqmix_runtime.spec import FORMAT_VERSION, ONNX_OPSET

_LAZY = {
    "export_run": "kqmix.export.exporter",
    "validate_export": "kqmix.export.validate",
    "ValidationReport": "kqmix.export.validate",
    "DecentralisedAgents": "kqmix_runtime.runtime",
    "SingleAgent": "kqmix_runtime.runtime",
    "Mixer": "kqmix_runtime.runtime",
}

__all__ = [
    *_LAZY,
    "AgreementError",
    "BackendNotExportedError",
    "BackendUnavailableError",
    "CorruptArtifactError",
    "ExportError",
    "FORMAT_VERSION",
    "MismatchError",
    "MissingArtifactError",
    "MissingOutputError",
    "NoAvailableActionError",
    "ONNX_OPSET",
    "RuntimeInputError",
    "ShapeMismatchError",
    "SignatureMismatchError",
    "ToleranceError",
    "ValidationError",
]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
