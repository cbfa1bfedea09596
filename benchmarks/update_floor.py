"""How much of one QMIX training update is matrix multiplication, and the floor that sets on this CPU.

Lists every dense matmul of one update at the `benchmarks/train_step.py`
shapes (batch 32, every episode the whole episode limit, double-Q): the
online and target agents' forward passes over the T+1 steps, the online
agents' backward pass, the online and target mixers' forward passes over the
T steps and the online mixer's backward pass. Their shapes come from the
weights of a built learner. The mixer's per-row (1, N) @ (N, E) products and
everything that is not a matmul are left out.

Everything here runs on one core (TensorFlow with one thread per pool): each
distinct matmul in a loop, one product after another, and then the whole
update. The matmuls' sum is their share of the update's work; divided by
the cores it is a floor for the update on all of them, reached only if every
core multiplied all the time and nothing else ran (`benchmarks/train_step.py`
times the update on all cores). The same network in any library does the
same products, so the floor holds for the references too.

    python benchmarks/update_floor.py [--shapes 3m 8m] [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter

from kqmix import threads

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One core: one op at a time, each on one thread (before TensorFlow starts its pools).
os.environ.update(TF_NUM_INTEROP_THREADS="1", TF_NUM_INTRAOP_THREADS="1", OPENBLAS_NUM_THREADS="1")

import tensorflow as tf  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from train_step import BATCH_SIZE, SHAPES, benchmark_config, interleaved_median_ms, synthetic_batch  # noqa: E402

from kqmix.learner import QLearner  # noqa: E402


def dense_kernels(layer) -> list:
    """The kernels of a mixer's Dense layers, each with whether its input is the state (first layers)."""
    kernels = []
    for hyper in (layer.hyper_w1, layer.hyper_w_final, layer.hyper_b1, layer.hyper_v):
        first = True
        for dense in (hyper.hidden, hyper.out):
            if dense is not None:
                kernels.append((tuple(dense.kernel.shape), first))
                first = False
    return kernels


def update_matmuls(learner: QLearner, info) -> Counter:
    """`(m, k, n, transpose_a) -> count`: the dense matmuls of one update, `(m, k) @ (k, n)`.

    transpose_a: the left operand is stored `(k, m)` (weight gradients: inputs^T @ output gradients).
    """
    steps, rows = info.episode_limit + 1, BATCH_SIZE * info.n_agents  # the agents run T+1 steps of B*N rows
    fc1, _, kernel, _, _, fc2, _ = (tuple(w.shape) for w in learner.agent.sequence_weights())
    (f, h), (_, h3), (_, a) = fc1, kernel, fc2
    matmuls = Counter()
    # Agents, forward (online and target): Dense, the GRU's input and recurrent products, Dense.
    for m, k, n in ((rows, f, h), (rows, h, h3), (rows, h, h3), (rows, h, a)):
        matmuls[(m, k, n, False)] += 2 * steps
    # Online agents, backward: dL/dh from the Q-values and through both GRU products, dL/d(first layer's
    # output); the weight gradients of the four kernels (the features are data: no gradient).
    for m, k, n in ((rows, a, h), (rows, h3, h), (rows, h3, h)):
        matmuls[(m, k, n, False)] += steps
    for k_in, n_out in ((f, h), (h, h3), (h, h3), (h, a)):
        matmuls[(k_in, rows, n_out, True)] += steps
    # Mixers over the T steps: forward (online and target); the online one's backward.
    mix_rows = BATCH_SIZE * info.episode_limit
    for (k, n), first in dense_kernels(learner.mixer):
        matmuls[(mix_rows, k, n, False)] += 2
        matmuls[(k, mix_rows, n, True)] += 1  # weight gradient
        if not first:  # the input's gradient, except for the state (data)
            matmuls[(mix_rows, n, k, False)] += 1
    return matmuls


def chain_us(product, loops: int = 100, repeats: int = 7) -> float:
    """Median µs per iteration of a TensorFlow loop computing `product()` `loops` times, one after another."""

    @tf.function
    def chain():
        def body(i, previous):
            # Each product waits for the previous one, so they cannot overlap.
            with tf.control_dependencies([previous]):
                out = product()
            return i + 1, tf.reshape(out, [-1])[0]

        return tf.while_loop(lambda i, _: i < loops, body, (0, tf.constant(0.0)))[1]

    chain()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        chain().numpy()
        times.append((time.perf_counter() - start) / loops)
    return float(np.median(times) * 1e6)


def matmul_us(m: int, k: int, n: int, transpose_a: bool, loop_us: float) -> float:
    """µs of one `(m, k) @ (k, n)` float32 product on one core, less the loop's own `loop_us` per iteration."""
    left = tf.random.normal((k, m) if transpose_a else (m, k))
    right = tf.random.normal((k, n))
    return max(chain_us(lambda: tf.matmul(left, right, transpose_a=transpose_a)) - loop_us, 0.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--repeats", type=int, default=20, help="timed updates per shape")
    args = parser.parse_args()

    console = Console()
    cores = threads.available_cores()
    rng = np.random.default_rng(0)
    scalar = tf.ones((1, 1))
    loop_us = chain_us(lambda: tf.identity(scalar))  # the loop without a product
    matmul_us(1024, 1024, 1024, False, loop_us)  # a warm-up: the core at its working clock before the first timing
    for name in args.shapes:
        info = SHAPES[name]
        learner = QLearner(info, benchmark_config("fused"))
        matmuls = update_matmuls(learner, info)

        table = Table(title=f"{name}: the dense matmuls of one update (batch {BATCH_SIZE}, float32)")
        for col in ("(m, k) @ (k, n)", "per update", "µs each, one core", "GFLOP/s", "ms per update"):
            table.add_column(col, justify="right")
        total_ms = total_flop = 0.0
        by_work = sorted(matmuls.items(), key=lambda item: -np.prod(item[0][:3]) * item[1])
        for (m, k, n, transpose_a), count in by_work:
            us = matmul_us(m, k, n, transpose_a, loop_us)
            flop = 2.0 * m * k * n
            total_ms += count * us / 1e3
            total_flop += count * flop
            shape = f"({k}, {m})ᵀ @ ({k}, {n})" if transpose_a else f"({m}, {k}) @ ({k}, {n})"
            table.add_row(shape, str(count), f"{us:.1f}", f"{flop / us / 1e3:.0f}", f"{count * us / 1e3:.1f}")
        console.print(table)

        batch = {key: tf.constant(value) for key, value in synthetic_batch(info, BATCH_SIZE, rng).items()}
        episode = tf.constant(1, tf.int64)
        for _ in range(3):  # trace, warm up
            learner.train_step(batch, episode)["loss"].numpy()
        update_ms = interleaved_median_ms({None: lambda: learner.train_step(batch, episode)["loss"].numpy()},
                                          args.repeats)[None]
        console.print(
            f"{name}: {total_flop / 1e9:.2f} GFLOP of matmuls per update, {total_ms:.1f} ms on one core "
            f"({total_flop / total_ms / 1e6:.0f} GFLOP/s). The whole update on one core: {update_ms:.1f} ms, "
            f"so the matmuls are {total_ms / update_ms:.0%} of its work. On {cores} cores the matmuls "
            f"alone take at least {total_ms / cores:.1f} ms and the update at least {update_ms / cores:.1f} ms.\n"
        )
    console.print(f"TensorFlow {tf.__version__}, one thread per pool, {cores} cores available; "
                  f"the timing loop's own {loop_us:.1f} µs per product is left out")


if __name__ == "__main__":
    main()
