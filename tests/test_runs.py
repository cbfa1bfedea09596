"""Runs a person can trust: checkpoints, kill -9 and resume, determinism, evaluation, plots, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from kqmix import checkpoint as ckpt

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
TIMING = ("time", "steps_per_sec")
SMALL = ["--preset", "two_step", "--set", "rnn_hidden_dim=16", "--set", "checkpoint_interval=100",
         "--set", "log_interval=50", "--set", "test_interval=100", "--set", "test_nepisode=4",
         "--set", "checkpoint_buffer=true", "--set", "batch_size=8", "--quiet"]


def kqmix(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "kqmix", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """Two uninterrupted deterministic runs with seed 0 and one with seed 1."""
    base = tmp_path_factory.mktemp("reference")
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = kqmix("train", *SMALL, "--set", "t_max=600", "--set", f"seed={seed}", "--deterministic",
                    "--run-dir", str(base / name))
        assert out.returncode == 0, out.stderr
        runs[name] = base / name
    return runs


def test_same_seed_same_metrics_different_seed_differs(reference_runs):
    a, b, c = (metrics(reference_runs[k]) for k in "abc")
    assert len(a) > 5
    assert a == b
    assert a != c


def test_kill_9_then_resume_continues_exactly(reference_runs, tmp_path):
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kqmix", "train", *SMALL, "--set", "t_max=600", "--deterministic",
         "--run-dir", str(run_dir)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300
    while not ckpt.list_checkpoints(run_dir / "checkpoints"):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(np.random.default_rng().uniform(0.0, 0.5))
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "model.keras").exists()

    # Every checkpoint on disk is intact; no temporary directory is mistaken for one.
    for path in ckpt.list_checkpoints(run_dir / "checkpoints"):
        ckpt.verify_checkpoint(path)
    out = kqmix("train", "--resume", str(run_dir), "--quiet")
    assert out.returncode == 0, out.stderr
    resumed = metrics(run_dir)
    steps = [row["t_env"] for row in resumed]
    assert steps == sorted(set(steps)), "duplicated or reordered metric rows"
    assert resumed == metrics(reference_runs["a"])


def test_damaged_checkpoint_falls_back_to_previous(tmp_path):
    root = tmp_path / "checkpoints"
    for t in (100, 200):
        ckpt.write_checkpoint(root, t, {"variables": {"v0000": np.full(3, t, np.float32)}}, {"t": t})
    newest = ckpt.list_checkpoints(root)[-1]
    data = (newest / "variables.npz").read_bytes()
    (newest / "variables.npz").write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match=r"ckpt-000000000200/variables.npz: checksum mismatch"):
        path, arrays, state = ckpt.load_latest(root)
    assert path.name == "ckpt-000000000100" and state == {"t": 100}
    np.testing.assert_array_equal(arrays["variables"]["v0000"], [100, 100, 100])
    (path / "manifest.json").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ckpt.load_latest(root) is None
    assert any("manifest.json" in str(w.message) for w in caught)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.json, "dump", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.write_checkpoint(root, 5, {"variables": {"v0000": np.zeros(2)}}, {})
    assert list(root.iterdir()) == []


def test_keeps_last_k_and_the_best(reference_runs):
    run_dir = reference_runs["a"]
    names = [p.name for p in ckpt.list_checkpoints(run_dir / "checkpoints")]
    state = json.loads((run_dir / "checkpoints" / names[-1] / "state.json").read_text())
    best = state["loop"]["best_checkpoint"]
    assert best in names
    assert len([n for n in names if n != best]) <= 3
    assert names[-1] == "ckpt-000000000600"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["best_test_return_mean"] >= run["test_return_mean"]
    assert (run_dir / "tb").is_dir() and any((run_dir / "tb").iterdir())


def test_evaluate_run_and_export(reference_runs, tmp_path):
    out = kqmix("evaluate", str(reference_runs["a"]), "--episodes", "6")
    assert out.returncode == 0, out.stderr
    report = json.loads((reference_runs["a"] / "evaluation.json").read_text())
    assert report["episodes"] == 6 and len(report["returns"]) == 6
    assert set(report["returns"]) <= {0.0, 1.0, 7.0, 8.0}
    assert f"{report['return_mean']:.4g} ± {report['return_std']:.4g}" in out.stdout

    shipped = os.path.join(os.path.dirname(__file__), "..", "saved_models", "two_step", "1")
    out = kqmix("evaluate", shipped, "--episodes", "3", "--report", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "r.json").read_text())["return_mean"] == 8.0


def test_plot_writes_a_png(reference_runs, tmp_path):
    import matplotlib.image

    out_png = tmp_path / "curves.png"
    out = kqmix("plot", str(reference_runs["a"]), str(reference_runs["c"]), "--out", str(out_png))
    assert out.returncode == 0, out.stderr
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(out_png)
    assert image.shape[0] >= 300 and image.shape[1] >= 800
    assert image[..., :3].std() > 0.01  # not a blank canvas


def test_bad_input_is_refused_and_changes_nothing(reference_runs, tmp_path):
    run_dir = reference_runs["a"]
    before = tree(run_dir), (run_dir / "metrics.jsonl").read_text()
    cases = [
        (["train", "--preset", "two_stepp", "--set", f"runs_dir={tmp_path / 'x'}"], "Did you mean 'two_step'"),
        (["train", "--set", "bach_size=4", "--set", f"runs_dir={tmp_path / 'x'}"], "Did you mean 'batch_size'"),
        (["train", "--set", "lr=fast", "--set", f"runs_dir={tmp_path / 'x'}"], "`lr`: 'fast'"),
        (["train", "--resume", str(tmp_path)], "is not a kqmix run directory"),
        (["train", "--resume", str(run_dir), "--set", "lr=0.1"], "incompatible config; these keys differ: lr"),
        (["train", "--resume", str(run_dir), "--preset", "two_step"], "cannot be combined with --resume"),
        (["train", "--preset", "two_step", "--run-dir", str(run_dir)], "already holds a run"),
        (["evaluate", str(tmp_path)], "neither a run directory"),
        (["plot", str(tmp_path)], "not a kqmix run directory"),
    ]
    for args, message in cases:
        out = kqmix(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr, (args, out.stderr)
    assert (tree(run_dir), (run_dir / "metrics.jsonl").read_text()) == before
    assert not (tmp_path / "x").exists()


def test_loading_never_runs_code(tmp_path):
    import keras

    from kqmix.training import load_run

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model.save(run_dir / "model.keras")
    from kqmix.config import Config

    Config().save(run_dir / "config.json")
    for name in ("env.json", "run.json"):
        (run_dir / name).write_text("{}")
    with pytest.raises(ValueError, match="(?i)lambda|unsafe|safe_mode"):
        load_run(run_dir)


def test_ctrl_c_points_to_the_resume_command(tmp_path):
    run_dir = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kqmix", "train", *SMALL, "--set", "t_max=100000", "--run-dir", str(run_dir)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 300
    while not ckpt.list_checkpoints(run_dir / "checkpoints"):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert f"kqmix train --resume {run_dir}" in stderr
    assert "Traceback" not in stderr
