"""The training loop: determinism, kill -9 and resume, checkpoint retention, Ctrl-C, loop state."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import kqmix

from conftest import CLI_ENV as ENV, SMALL_RUN as SMALL, metrics_without_timing as metrics
from kqmix import checkpoint as ckpt
from kqmix.provenance import DIRTY_SUFFIX, source_revision
from kqmix.training import LoopState


def test_same_seed_same_metrics_different_seed_differs(reference_runs):
    a, b, c = (metrics(reference_runs[k]) for k in "abc")
    assert len(a) > 5
    assert a == b
    assert a != c


def test_kill_9_then_resume_continues_exactly(reference_runs, tmp_path, kqmix):
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


def test_keeps_last_k_and_the_best(reference_runs):
    run_dir = reference_runs["a"]
    names = [p.name for p in ckpt.list_checkpoints(run_dir / "checkpoints")]
    state = json.loads((run_dir / "checkpoints" / names[-1] / "state.json").read_text())
    best = state["loop"]["best_checkpoint"]
    assert best in names
    assert len([n for n in names if n != best]) <= 3
    assert names[-1] == "ckpt-000000000600"
    run = json.loads((run_dir / "run.json").read_text())
    tests = [row["test_return_mean"] for row in metrics(run_dir) if row["test_t_env"] == row["t_env"]]
    assert run["best_test_return_mean"] == max(tests) >= run["test_return_mean"]  # every test, not only checkpoints
    assert (run_dir / "tb").is_dir() and any((run_dir / "tb").iterdir())


def test_run_records_the_source_revision(reference_runs):
    revision = source_revision()
    run = json.loads((reference_runs["a"] / "run.json").read_text())
    assert run["kqmix_revisions"] == [revision]
    root = Path(kqmix.__file__).resolve().parent.parent
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0 and (root / ".git").exists():  # a checkout, as in CI: the commit, marked if dirty
        assert revision in (head.stdout.strip(), head.stdout.strip() + DIRTY_SUFFIX)


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



def test_loop_state_round_trips_and_reads_old_checkpoints():
    state = LoopState(t_env=5, last_log=0, recent_returns=[1.0], last_metrics={"loss": 0.5})
    from dataclasses import asdict

    assert LoopState.from_dict(json.loads(json.dumps(asdict(state)))) == state
    # kqmix 0.1.0 wrote a large negative step for "never".
    old = {k: v for k, v in asdict(LoopState(best_test=-3.0)).items() if k != "best_checkpoint_test"}
    old = LoopState.from_dict({**old, "last_log": -(10**18), "last_test": -(10**18)})
    assert old.last_log is None and old.last_test is None and old.best_checkpoint_test == -3.0

