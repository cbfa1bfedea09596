"""The masked greedy choice in numpy: what "the best available action" means.

The exported `act` graph computes the same choice in TensorFlow
(`kqmix.export.graphs.masked_greedy`); the numpy acting policy used in
training and the export validator call this function.

Shape legend: B batch, A actions.
"""

from __future__ import annotations

import numpy as np

from .spec import NO_ACTION

__all__ = ["NO_ACTION", "masked_greedy"]


def masked_greedy(q, avail_actions) -> np.ndarray:
    """Best available action per row, `NO_ACTION` (-1) for a row with none available.

    Args:
        q: action values `(..., A)`, e.g. `(B, A)`; assumed finite (an
            available action valued -inf is indistinguishable from an
            unavailable one).
        avail_actions: mask `(..., A)`, > 0 = available.

    Returns:
        int32 `(...)`. Ties go to the lowest action index.
    """
    available = np.asarray(avail_actions) > 0  # (..., A)
    best = np.argmax(np.where(available, q, -np.inf), axis=-1)  # (...); 0 for an empty row
    return np.where(available.any(axis=-1), best, NO_ACTION).astype(np.int32)
