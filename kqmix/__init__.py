"""kqmix: QMIX for Keras 3 on TensorFlow, exportable to SavedModel and ONNX.

Importing `kqmix` does not import TensorFlow; the names below load their
module on first use. The TensorFlow-free runtime is the package
`kqmix_runtime`, the distribution `kqmix-runtime` that kqmix depends on.
"""

from __future__ import annotations

from kqmix_runtime._lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "HyperNetwork": "kqmix.layers",
    "QMixer": "kqmix.layers",
    "VDNMixer": "kqmix.layers",
    "RNNAgent": "kqmix.layers",
    "ChosenActionQ": "kqmix.networks",
    "build_qmix_model": "kqmix.networks",
    "QLearner": "kqmix.learner",
    "EpisodeBuffer": "kqmix.buffer",
    "Runner": "kqmix.runner",
    "NumpyAgentPolicy": "kqmix.policy",
    "Config": "kqmix.config",
    "make_config": "kqmix.config",
    "make_env": "kqmix.envs",
    "train": "kqmix.training",
    "load_run": "kqmix.rundir",
}

__all__ = ["__version__", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
