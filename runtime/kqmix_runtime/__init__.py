"""kqmix-runtime: run exported kqmix agents and mixers with numpy and onnxruntime (or LiteRT) only.

* `DecentralisedAgents(version_dir)` - every agent of a team in one call;
* `SingleAgent(version_dir, agent_id)` - one agent on its own device;
* `Mixer(version_dir)` - Q_tot and dQ_tot/dQ_a of the trained mixer;
* `Critic(version_dir)` - Weighted QMIX's unrestricted critic Q̂* (versions of such runs);
* each takes `backend="onnx"` (default), `"litert"` or `"litert-int8"`; the
  LiteRT ones need `pip install 'kqmix-runtime[litert]'` (ai-edge-litert);
* `LiteRTModel(path, signature)` - one exported `.tflite` file (module `litert`);
* `spec` - the deployment contract (file, signature and tensor names);
* `masked_greedy(q, avail_actions)` - the greedy available action per row,
  `spec.NO_ACTION` for a row with none (module `actions`, numpy only);
* `errors` - the exceptions raised by the runtime, the exporter and the validator.

This package is its own small distribution (`pip install kqmix-runtime`,
depending on numpy and onnxruntime, with the extra `litert` for ai-edge-litert)
for machines without TensorFlow; the full `kqmix` distribution ships the same
package and imports it. Importing it imports neither onnxruntime nor LiteRT:
the runtime classes load them on first use.
"""

from __future__ import annotations

from . import errors, spec
from ._lazy import lazy_getattr
from .errors import (
    BackendNotExportedError,
    BackendUnavailableError,
    NoAvailableActionError,
    RuntimeInputError,
    ValidationError,
)

__version__ = "0.1.0"

_LAZY = {
    "DecentralisedAgents": "kqmix_runtime.runtime",
    "SingleAgent": "kqmix_runtime.runtime",
    "Mixer": "kqmix_runtime.runtime",
    "Critic": "kqmix_runtime.runtime",
    "LiteRTModel": "kqmix_runtime.litert",
    "backend_files": "kqmix_runtime.runtime",
    "load_metadata": "kqmix_runtime.runtime",
    "make_session": "kqmix_runtime.runtime",
    "masked_greedy": "kqmix_runtime.actions",
}

__all__ = [
    *_LAZY,
    "BackendNotExportedError",
    "BackendUnavailableError",
    "NoAvailableActionError",
    "RuntimeInputError",
    "ValidationError",
    "errors",
    "spec",
    "__version__",
]

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
