"""kqmix: QMIX for Keras 3 on TensorFlow, exportable to SavedModel and ONNX.

Importing `kqmix` does not import TensorFlow; the names below load their
module on first use, so `kqmix.export.runtime` works where only numpy and
onnxruntime are installed.
"""

from __future__ import annotations

import os

from kqmix_runtime._lazy import lazy_getattr

__version__ = "0.1.0"

# Keep TensorFlow's C++ start-up chatter out of the user's terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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
}

__all__ = ["__version__", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
