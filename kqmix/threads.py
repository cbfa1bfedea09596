"""The process's thread pools, sized for QMIX's small matrices.

numpy (OpenBLAS) and TensorFlow size their thread pools from environment
variables read once, when each starts them; `apply_defaults()` sets the ones a
user has not set, so it must run before numpy and TensorFlow load (the CLI
and a sweep's trials call it first). Why these values:

* Acting multiplies matrices of a few dozen rows: OpenBLAS's pool costs more
  than it saves there and competes with TensorFlow for the cores, so numpy
  gets one thread.
* A QMIX update is mostly many small ops: the GRU's per-step matmuls of a
  few hundred rows and the gate arithmetic. Splitting each op over every core
  costs a synchronisation per op; running two independent ops at once (the
  online and target agents, the two matmuls of a step) does not. So
  TensorFlow gets two ops at a time (`TF_NUM_INTEROP_THREADS=2`), each on
  half of the cores (`TF_NUM_INTRAOP_THREADS`). Measured on 2 cores
  (README, Speed): the 8m update takes about 0.6 of its time with
  TensorFlow's defaults, the 3m update about 0.7.

Setting a variable to `0` restores TensorFlow's own default for it.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def defaults(cores: int | None = None) -> dict[str, str]:
    """The thread settings `apply_defaults` sets, for `cores` cores (default: `available_cores()`)."""
    cores = available_cores() if cores is None else cores
    return {
        "OPENBLAS_NUM_THREADS": "1",
        "TF_NUM_INTRAOP_THREADS": str(max(1, cores // 2)),
        "TF_NUM_INTEROP_THREADS": "2",
    }


def apply_defaults() -> None:
    """Sets each of `defaults()` unless the environment already has it (a user's setting wins)."""
    for name, value in defaults().items():
        os.environ.setdefault(name, value)
