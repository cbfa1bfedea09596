"""The TensorFlow-free runtime, run where `import tensorflow` fails.

A `sitecustomize` on PYTHONPATH installs an import hook that refuses
TensorFlow (and Keras, tf2onnx) in a fresh interpreter, which then imports
`kqmix.export.runtime` and plays the two-step game with the shipped example.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "saved_models" / "two_step" / "1"

BLOCKER = textwrap.dedent(
    """
    import sys

    class _NoTensorFlow:
        BLOCKED = ("tensorflow", "keras", "tf2onnx", "tf_keras")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"{name} is blocked in this test (no TensorFlow installed)")
            return None

    sys.meta_path.insert(0, _NoTensorFlow())
    """
)

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np

    try:
        import tensorflow  # noqa: F401
    except ImportError:
        blocked = True
    else:
        blocked = False

    import kqmix
    import kqmix.export
    from kqmix.export.runtime import DecentralisedAgents, Mixer, SingleAgent

    # Resolving the exporter must not pull TensorFlow in; only calling it does.
    export_run_resolves = callable(kqmix.export.export_run)

    class TwoStep:  # the QMIX paper's two-step game, inlined to depend on nothing
        def reset(self):
            self.s = 0
            return self.obs()
        def obs(self):
            one_hot = np.eye(3, dtype=np.float32)[self.s]
            return np.tile(one_hot, (2, 1)), one_hot, np.ones((2, 2), np.float32)
        def step(self, a):
            if self.s == 0:
                self.s = 1 if a[0] == 0 else 2
                return (*self.obs(), 0.0, False)
            pay = 7.0 if self.s == 1 else [[0.0, 1.0], [1.0, 8.0]][a[0]][a[1]]
            return (*self.obs(), pay, True)

    version = sys.argv[1]
    team, mixer = DecentralisedAgents(version), Mixer(version)
    singles = [SingleAgent(version, i) for i in range(team.n_agents)]
    env = TwoStep()
    returns, weights, agree = [], [], True
    for episode in range(3):
        obs, state, avail = env.reset()
        team.reset()
        for s in singles:
            s.reset()
        total, done = 0.0, False
        while not done:
            actions, q = team.act(obs, avail, return_q=True)
            agree &= [s.act(obs[i], avail[i]) for i, s in enumerate(singles)] == actions.tolist()
            q_tot, w = mixer.weights(q[np.arange(2), actions], state)
            weights.extend(w.tolist())
            obs, state, avail, reward, done = env.step(actions)
            total += reward
        returns.append(total)
    print(json.dumps({
        "blocked": blocked,
        "export_run_resolves": export_run_resolves,
        "tf_loaded": "tensorflow" in sys.modules,
        "returns": returns,
        "singles_agree": bool(agree),
        "min_weight": min(weights),
    }))
    """
)


def test_runtime_runs_without_tensorflow(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    script = tmp_path / "play.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, str(script), str(SHIPPED)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["blocked"], "the import hook did not block TensorFlow"
    assert report["export_run_resolves"]
    assert not report["tf_loaded"]
    assert report["returns"] == [8.0, 8.0, 8.0]
    assert report["singles_agree"]
    assert report["min_weight"] >= 0.0
