"""Exceptions raised by the exporter, the validator and the runtime.

Every validation failure has its own class so a caller (or a CI job) can tell
a missing file from a numerical drift without parsing messages; every message
names the artifact (file and signature) it is about.
"""

from __future__ import annotations


class ExportError(RuntimeError):
    """Exporting a run failed; nothing was written to the output directory."""


class ValidationError(AssertionError):
    """Base class: an exported version does not match its contract or its Keras model."""


class MissingArtifactError(ValidationError):
    """A file the export format requires is absent."""

    def __init__(self, path, detail: str = ""):
        self.path = str(path)
        super().__init__(f"missing artifact: {self.path}" + (f" ({detail})" if detail else ""))


class CorruptArtifactError(ValidationError):
    """A file exists but cannot be read, or its checksum differs from metadata.json."""

    def __init__(self, path, detail: str):
        self.path = str(path)
        super().__init__(f"corrupt artifact: {self.path}: {detail}")


class MissingOutputError(ValidationError):
    """A signature or ONNX graph lacks a documented input or output."""

    def __init__(self, artifact: str, kind: str, name: str, found):
        self.artifact, self.kind, self.name = artifact, kind, name
        super().__init__(
            f"{artifact}: missing {kind} {name!r}; it has {sorted(found)}"
        )


class SignatureMismatchError(ValidationError):
    """A documented input or output has the wrong dtype or declared shape."""


class ShapeMismatchError(ValidationError):
    """An artifact returned an array of a different shape than the Keras model."""

    def __init__(self, artifact: str, output: str, got, expected):
        self.artifact, self.output = artifact, output
        self.got, self.expected = tuple(got), tuple(expected)
        super().__init__(
            f"{artifact}: output {output!r} has shape {self.got}; expected {self.expected}"
        )


class ToleranceError(ValidationError):
    """An artifact's output differs from the Keras model's by more than the tolerance."""

    def __init__(self, artifact: str, output: str, max_abs_diff: float, atol: float, where: str = ""):
        self.artifact, self.output = artifact, output
        self.max_abs_diff, self.atol = float(max_abs_diff), float(atol)
        super().__init__(
            f"{artifact}: output {output!r} differs from the Keras model by "
            f"{self.max_abs_diff:.3g} (tolerance {self.atol:.3g})" + (f" {where}" if where else "")
        )


class MismatchError(ValidationError):
    """An integer output (an action) differs from the Keras model's."""

    def __init__(self, artifact: str, output: str, detail: str):
        self.artifact, self.output = artifact, output
        super().__init__(f"{artifact}: output {output!r} differs from the Keras model: {detail}")


class RuntimeInputError(ValueError):
    """An input passed to the runtime has the wrong shape, dtype or value."""


class NoAvailableActionError(RuntimeInputError):
    """A row of `avail_actions` has no available action, so no action can be chosen."""
