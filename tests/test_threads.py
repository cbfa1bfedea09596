"""The thread-pool defaults: sized from the cores, never overriding a user's setting."""

import os
import subprocess
import sys

from kqmix import threads


def test_defaults_follow_the_cores():
    for cores, intra in ((1, "1"), (2, "1"), (3, "1"), (8, "4")):
        settings = threads.defaults(cores)
        assert settings["TF_NUM_INTRAOP_THREADS"] == intra
        assert settings["TF_NUM_INTEROP_THREADS"] == "2"
        assert settings["OPENBLAS_NUM_THREADS"] == "1"


def test_cli_sets_them_before_tensorflow_starts_and_a_users_setting_wins():
    # A fresh interpreter: the CLI module sets the variables when imported, and TensorFlow,
    # imported afterwards, reads them when its runtime starts.
    script = (
        "import os, kqmix.cli, tensorflow as tf; tf.constant(1.0) + 1.0; "
        "print(os.environ['TF_NUM_INTRAOP_THREADS'], os.environ['TF_NUM_INTEROP_THREADS'])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_NUM_", "OPENBLAS_"))}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    expected = threads.defaults()
    assert out.stdout.split() == [expected["TF_NUM_INTRAOP_THREADS"], expected["TF_NUM_INTEROP_THREADS"]]
    env["TF_NUM_INTEROP_THREADS"] = "3"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[1] == "3"
