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


class BackendNotExportedError(MissingArtifactError):
    """The version was exported without the files a runtime backend needs (e.g. no `agent.tflite`)."""

    def __init__(self, path, backend: str, how: str):
        self.backend = backend
        MissingArtifactError.__init__(self, path, f"this version has no {backend} files; {how}")


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
    """An artifact's output differs from the reference by more than `atol + rtol * |reference|`.

    The message names the worst element (the one furthest outside its
    allowance): its index, both values, the difference and the allowance.
    `magnitude` is the |reference| the allowance was scaled by.
    """

    def __init__(self, artifact: str, output: str, index: tuple, got: float, expected: float,
                 atol: float, rtol: float, magnitude: float, where: str = ""):
        self.artifact, self.output, self.index = artifact, output, tuple(int(i) for i in index)
        self.got, self.expected = float(got), float(expected)
        self.atol, self.rtol, self.magnitude = float(atol), float(rtol), float(magnitude)
        self.abs_diff = abs(self.got - self.expected)
        self.allowed = self.atol + self.rtol * self.magnitude
        super().__init__(
            f"{artifact}: output {output!r} differs from the reference at index {list(self.index)}: "
            f"{self.got!r} vs {self.expected!r}, |diff| {self.abs_diff:.3g} > "
            f"atol {self.atol:.3g} + rtol {self.rtol:.3g} * |reference| {self.magnitude:.3g} "
            f"= {self.allowed:.3g}" + (f" {where}" if where else "")
        )


class MismatchError(ValidationError):
    """An integer output (an action) differs from the Keras model's."""

    def __init__(self, artifact: str, output: str, detail: str):
        self.artifact, self.output = artifact, output
        super().__init__(f"{artifact}: output {output!r} differs from the Keras model: {detail}")


class AgreementError(ValidationError):
    """A quantised agent's greedy actions agree with the float32 agent's less often than required."""

    def __init__(self, artifact: str, agreement: float, required: float, detail: str = ""):
        self.artifact, self.agreement, self.required = artifact, float(agreement), float(required)
        super().__init__(
            f"{artifact}: greedy actions agree with the float32 agent on {self.agreement:.2%} of agent-steps; "
            f"at least {self.required:.2%} required" + (f" ({detail})" if detail else "")
        )


class UnknownMixerError(ValidationError):
    """The version names a mixer signature (and file) this runtime does not know."""

    def __init__(self, path, signatures, known):
        super().__init__(
            f"{path}: the mixer ({', '.join(map(repr, signatures))}) exports signatures this runtime does "
            f"not know (it knows {sorted(known)}); update kqmix-runtime to the kqmix version that exported it."
        )


class RuntimeInputError(ValueError):
    """An input passed to the runtime has the wrong shape, dtype or value."""


class NoAvailableActionError(RuntimeInputError):
    """A row of `avail_actions` has no available action, so no action can be chosen."""


class BackendUnavailableError(ImportError):
    """The Python package a runtime backend needs is not installed; the message names the install command."""
