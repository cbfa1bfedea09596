"""The train step under `tf.distribute.MirroredStrategy` equals the single-device step.

Logical devices must be configured before TensorFlow runs its first op, so
the comparison runs in a fresh interpreter with two logical CPU devices.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import CLI_ENV

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    from test_learner import make_batch, make_learner

    results = {}
    for options in (dict(standardise_rewards=True, td_lambda=0.8),):
        single = make_learner(seed=3, **options)
        mirrored = make_learner(seed=3, distribute="mirrored", **options)
        assert mirrored.strategy.num_replicas_in_sync == 2, mirrored.strategy.num_replicas_in_sync
        before = single.get_state()
        mirrored.set_state(before)  # the same starting point
        # Five episodes: the replicas get 2 and 3 rows, an uneven split.
        batch = make_batch(np.random.default_rng(7), lengths=(5, 3, 1, 4, 2), terminal=(True, False, True, False, True))
        out_single = single.train(batch, episode=300)
        out_mirrored = mirrored.train(batch, episode=300)
        a, b = single.get_state(), mirrored.get_state()
        changed = max(float(np.abs(a[k] - v).max()) for k, v in before.items())
        results[json.dumps(options)] = {
            "max_abs_diff": max(float(np.abs(a[k] - b[k]).max()) for k in a),
            "max_rel_ok": all(np.allclose(a[k], b[k], atol=1e-6, rtol=1e-5) for k in a),
            "update_size": changed,
            "metrics": [out_single, out_mirrored],
        }
    print(json.dumps(results))
""")


def test_mirrored_update_equals_single_device_update():
    tests_dir = Path(__file__).parent
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tests_dir)], capture_output=True, text=True,
                         env=CLI_ENV, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for options, result in results.items():
        assert result["update_size"] > 1e-4, options  # the update did change the weights
        assert result["max_rel_ok"], (options, result["max_abs_diff"])
        single, mirrored = result["metrics"]
        for key in single:
            assert abs(single[key] - mirrored[key]) <= 1e-5 + 1e-5 * abs(single[key]), (options, key)
