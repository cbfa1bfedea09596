"""The mixer registry: `Config.mixer` names -> mixer classes, one line each.

A mixer is one registered Keras layer, a subclass of `kqmix.layers.Mixer`:
it maps the agents' chosen Qs and the state to Q_tot (`call`), builds itself
from a run's `Config` (`from_run_config`), gives the learner its loss terms
(`loss_terms`, `kqmix.td`) and the exporter dQ_tot/dQ_a (`monotonic_weights`)
and any signatures of its own (`export_functions`). The learner and the
exporter only ask it; adding a mixer is a class and a line here.

Classes are named as `module:Class` and imported when first asked for, so
that the configuration can check a name without loading Keras.
"""

from __future__ import annotations

import importlib

MIXERS: dict[str, str] = {
    "qmix": "kqmix.layers:QMixer",  # monotonic hypernetwork mixer (Rashid et al., 2018)
    "vdn": "kqmix.layers:VDNMixer",  # sum of the agents' Qs (Sunehag et al., 2017)
    "ow_qmix": "kqmix.wqmix:OWQMixer",  # Optimistically-Weighted QMIX (Rashid et al., 2020)
    "cw_qmix": "kqmix.wqmix:CWQMixer",  # Centrally-Weighted QMIX (Rashid et al., 2020)
}


def mixer_class(name: str) -> type:
    """The mixer class registered as `name`; a `ValueError` naming the choices for any other name."""
    if name not in MIXERS:
        raise ValueError(f"Unknown mixer {name!r}; expected one of {', '.join(map(repr, MIXERS))}.")
    module, _, cls = MIXERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
