"""`kqmix sweep`: presets x `--grid` settings x seeds as Ray Tune trials.

Each trial is an ordinary kqmix run directory inside the sweep directory
(layout in `kqmix.sweepdir`). Tune schedules the trials over the cluster,
receives every metrics row as the trial writes it, and retries a trial
whose process dies (`max_failures`); the retried trial finds its run
directory's checkpoint and resumes from it instead of from zero. A sweep
that was interrupted as a whole continues with `Tuner.restore`
(`kqmix sweep --resume DIR`).

Run directories are addressed by absolute path: on a multi-node cluster the
sweep directory must be on storage every node mounts at the same path.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from . import rundir, sweepdir, threads
from .cluster import connect
from .config import Config


def run_trial(params: dict) -> None:
    """The Tune function trainable: trains (or resumes) one trial's run directory, reporting each metrics row."""
    threads.apply_defaults()  # a worker on another node did not inherit the driver's environment
    from ray import tune

    from .training import train

    trial = params["trial"]
    config, run_dir = Config.from_dict(trial["config"]), Path(trial["run_dir"])
    resume = rundir.latest_checkpoint(run_dir) is not None
    if not resume and run_dir.exists():
        # A try that died before its first checkpoint left nothing to resume: start it over.
        shutil.rmtree(run_dir)
    reported = []

    def report(row: dict) -> None:
        reported.append(row["t_env"])
        tune.report({k: v for k, v in row.items() if v is not None})

    train(config, trial["preset"], run_dir, quiet=True, resume=resume, on_metrics=report)
    if not reported:  # resumed at its end (its process died after the last row): report where it stands
        rows = rundir.read_metrics(run_dir)
        tune.report({k: v for k, v in (rows[-1] if rows else {"t_env": 0}).items() if v is not None})


def trial_resources(params: dict):
    """One CPU for the trial, plus one per rollout actor when it collects on Ray actors."""
    from ray import tune

    config = params["trial"]["config"]
    if config["rollout_backend"] != "ray":
        return {"cpu": 1}
    return tune.PlacementGroupFactory([{"CPU": 1}] + [{"CPU": 1}] * config["ray_actors"])


def run_sweep(sweep_dir, resume: bool = False, max_failures: int = 2, max_concurrent: int | None = None,
              address: str | None = None, dashboard: bool = False) -> dict:
    """Runs (or continues) every trial of the sweep in `sweep_dir`; writes and returns its summary.

    The manifest (`sweep.json`) must already be written (`kqmix.sweepdir`).
    """
    import os

    # Tune's newer console output ignores `verbose=0`; the summary is what a user needs here.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune

    sweep_dir = Path(sweep_dir).resolve()
    manifest = sweepdir.read_manifest(sweep_dir)
    connect(address, dashboard=dashboard)
    trainable = tune.with_resources(run_trial, trial_resources)
    tune_path = sweep_dir / sweepdir.TUNE_DIR
    started = time.perf_counter()
    if resume and tune.Tuner.can_restore(str(tune_path)):
        tuner = tune.Tuner.restore(str(tune_path), trainable=trainable, resume_errored=True)
    else:
        # A new sweep, or one interrupted before Tune saved its state: the trials' run directories
        # still resume from their checkpoints.
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(manifest["trials"])},
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent,
                                        trial_dirname_creator=lambda trial: trial.trial_id),
            run_config=tune.RunConfig(name=sweepdir.TUNE_DIR, storage_path=str(sweep_dir), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=max_failures)),
        )
    results = tuner.fit()
    summary = sweepdir.write_summary(sweep_dir)
    summary["errors"] = [str(r.error).splitlines()[0] for r in results if r.error is not None]
    summary["seconds"] = time.perf_counter() - started
    return summary
