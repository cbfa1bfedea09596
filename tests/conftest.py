import os

# Quiet TensorFlow's start-up logging; it must be set before TF loads, and
# TF must load before numpy for the setting to take effect.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# The embedded Ray of the tests listens on 127.0.0.1 only, whichever test imports Ray first
# (kqmix.cluster.SINGLE_MACHINE_ENV; tests/test_cluster.py checks kqmix sets it by itself).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
from kqmix import threads  # noqa: E402

threads.apply_defaults()  # the thread pools the CLI gives TensorFlow and numpy

import tensorflow as tf  # noqa: E402,F401
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# --------------------------------------------------------------------------- the CLI and small runs

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

CLI_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
#: A two-step run small enough for the default suite, with frequent checkpoints, logs and tests.
SMALL_RUN = ["--preset", "two_step", "--set", "rnn_hidden_dim=16", "--set", "checkpoint_interval=100",
             "--set", "log_interval=50", "--set", "test_interval=100", "--set", "test_nepisode=4",
             "--set", "checkpoint_buffer=true", "--set", "batch_size=8", "--quiet"]
TIMING = ("time", "steps_per_sec")


def run_cli(*args, timeout=600, cwd=None):
    """`python -m kqmix ARGS` in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "kqmix", *map(str, args)], capture_output=True, text=True,
                          env=CLI_ENV, timeout=timeout, cwd=cwd)


def metrics_without_timing(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


@pytest.fixture
def kqmix():
    return run_cli


@pytest.fixture(scope="session")
def reference_runs(tmp_path_factory):
    """Two uninterrupted deterministic runs with seed 0 and one with seed 1."""
    base = tmp_path_factory.mktemp("reference")
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = run_cli("train", *SMALL_RUN, "--set", "t_max=600", "--set", f"seed={seed}", "--deterministic",
                      "--run-dir", base / name)
        assert out.returncode == 0, out.stderr
        runs[name] = base / name
    return runs


# --------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray for one test module: 2 CPUs, on 127.0.0.1, no dashboard (kqmix's embedded default)."""
    from kqmix.cluster import connect

    ray = connect(num_cpus=2)
    yield ray
    ray.shutdown()
