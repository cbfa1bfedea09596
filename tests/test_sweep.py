"""`kqmix sweep` on a real local Ray: trials are run directories, a killed trial resumes, the summary is right.

One module-scoped sweep (two seeds of the small two-step run, deterministic)
has one trial killed with SIGKILL after its first checkpoint; Tune retries
it and it resumes from that checkpoint. Its metrics must equal those of the
uninterrupted `kqmix train` run with the same settings (`reference_runs`).
"""

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL_RUN, metrics_without_timing
from kqmix import sweepdir
from kqmix.sweep import run_sweep

#: `SMALL_RUN` of the reference runs, as sweep overrides.
OVERRIDES = [a for a in SMALL_RUN[2:] if a not in ("--set", "--quiet")] + ["t_max=600", "deterministic=true"]


def _ancestors(pid: int):
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return
        yield pid


def trial_processes() -> list[int]:
    """PIDs of Tune function-trial workers started by this test process (Ray names them ImplicitFunc)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"ImplicitFunc" in cmdline and me in _ancestors(int(entry.name)):
                found.append(int(entry.name))
    return found


#: How long the watcher waits for the trial's first checkpoint: only a guard against a hang.
CHECKPOINT_WAIT_S = 900


def kill_after_first_checkpoint(run_dir: Path, killed: dict) -> None:
    """Waits for the run's first checkpoint, then SIGKILLs the trial worker that is writing it.

    The deadline only guards against a hang: on a loaded machine Ray's start and the trial's first
    episodes can take minutes, and killing before the checkpoint would test nothing."""
    deadline = time.time() + CHECKPOINT_WAIT_S
    while not any((run_dir / "checkpoints").glob("ckpt-*")):
        if time.time() > deadline:
            killed["no_checkpoint_after_s"] = CHECKPOINT_WAIT_S
            return
        time.sleep(0.02)
    finished = (run_dir / "run.json").exists()
    for pid in trial_processes():
        # The trial whose run this is: its working files are open in that process.
        try:
            if any(str(run_dir) in os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()
                   if f.is_symlink()):
                os.kill(pid, signal.SIGKILL)
                killed.update(pid=pid, finished_before=finished,
                              checkpoints=sorted(p.name for p in (run_dir / "checkpoints").glob("ckpt-*")))
        except OSError:
            continue


@pytest.fixture(scope="module")
def sweep(local_ray, tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("sweep") / "s"
    trials = sweepdir.expand(sweep_dir, ["two_step"], OVERRIDES, {}, [0, 1])
    sweepdir.write_manifest(sweep_dir, {"presets": ["two_step"], "grid": [], "set": OVERRIDES, "seeds": "0,1",
                                        "threshold": 7.5, "trials": trials})
    killed = {}
    watcher = threading.Thread(target=kill_after_first_checkpoint, args=(Path(trials[0]["run_dir"]), killed))
    watcher.start()
    summary = run_sweep(sweep_dir, max_failures=2)
    watcher.join()
    return sweep_dir, summary, killed


def test_a_two_seed_sweep_gives_two_runs_and_a_summary_of_their_metrics(sweep):
    sweep_dir, summary, _ = sweep
    runs = sweepdir.run_dirs(sweep_dir)
    assert [r.name for r in runs] == ["two_step__seed0", "two_step__seed1"]
    assert not summary["errors"]
    assert json.loads((sweep_dir / "summary.json").read_text())["configurations"] == summary["configurations"]
    assert "| two_step | 2/2 |" in (sweep_dir / "summary.md").read_text()
    finals, bests, reached = [], [], []
    for run in runs:
        assert (run / "run.json").is_file() and (run / "model.keras").is_file()
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        tests = {}
        for row in rows:
            if row["test_return_mean"] is not None:
                tests[row["test_t_env"]] = row["test_return_mean"]
        values = [tests[t] for t in sorted(tests)]
        finals.append(np.mean(values[-3:]))
        bests.append(max(values))
        reached.append(next((t for t in sorted(tests) if tests[t] >= 7.5), None))
    (config,) = summary["configurations"]
    assert config["final_test_return"]["mean"] == pytest.approx(np.mean(finals))
    assert config["final_test_return"]["std"] == pytest.approx(np.std(finals, ddof=1))
    lo, hi = config["final_test_return"]["ci95"]
    assert min(finals) <= lo <= hi <= max(finals)
    assert config["best_test_return"]["mean"] == pytest.approx(np.mean(bests))
    assert config["steps_to_threshold"]["values"] == reached


def test_a_killed_trial_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(sweep, reference_runs):
    sweep_dir, summary, killed = sweep
    assert killed.get("pid"), f"the trial was never killed: {killed}"
    assert not killed["finished_before"] and killed["checkpoints"]
    run = sweepdir.run_dirs(sweep_dir)[0]
    assert (run / "run.json").is_file()
    assert metrics_without_timing(run) == metrics_without_timing(reference_runs["a"])
    assert metrics_without_timing(sweepdir.run_dirs(sweep_dir)[1]) == metrics_without_timing(reference_runs["c"])


def test_plot_draws_one_band_per_configuration(sweep, tmp_path):
    from kqmix.plotting import plot_runs, run_dirs_of

    sweep_dir, _, _ = sweep
    assert run_dirs_of([sweep_dir]) == sweepdir.run_dirs(sweep_dir)
    out = plot_runs(run_dirs_of([sweep_dir]), tmp_path / "sweep.png")
    assert out.stat().st_size > 1000


@pytest.mark.slow
def test_an_interrupted_sweep_continues_with_resume(tmp_path, kqmix):
    """Ctrl-C stops a sweep after its first checkpoints; `--resume` finishes it from them."""
    import subprocess
    import sys

    from conftest import CLI_ENV

    out = tmp_path / "s"
    args = ["sweep", "--preset", "two_step", "--seeds", "0,1", "--set", "t_max=3000", "--set",
            "checkpoint_interval=500", "--set", "log_interval=500", "--set", "test_interval=500",
            "--set", "batch_size=8", "--out", out]
    proc = subprocess.Popen([sys.executable, "-m", "kqmix", *map(str, args)], env=CLI_ENV, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob("runs/*/checkpoints/ckpt-*")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and f"kqmix sweep --resume {out}" in err, err[-2000:]
    assert not any((run / "run.json").exists() for run in sweepdir.run_dirs(out))
    resumed = kqmix("sweep", "--resume", out, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["configurations"][0]["finished"] == 2
    for run in sweepdir.run_dirs(out):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["t_env"] for r in rows] == sorted({r["t_env"] for r in rows})  # no repeated rows
