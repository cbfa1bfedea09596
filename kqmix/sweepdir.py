"""The sweep directory: its trials, its layout, and its summary (no Ray, no training loop here).

`kqmix sweep --out DIR` writes

* `sweep.json` - the manifest: presets, grid, seeds, threshold and every
  trial (name, preset, full config, run directory);
* `runs/<configuration>__seed<k>/` - one ordinary kqmix run directory per
  trial (resumable with `kqmix train --resume`, exportable, plottable);
* `tune/` - Ray Tune's experiment state (what `kqmix sweep --resume` restores);
* `summary.json`, `summary.md` - per configuration, over seeds: mean,
  standard deviation and 95% bootstrap confidence interval of the final and
  the best greedy test return, and steps to a threshold when one was given.

The final test return of a run is the mean of its last three greedy tests
(as logged in `metrics.jsonl`; with `log_interval <= test_interval` every
test is logged).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from . import rundir
from .config import ConfigError, make_config, parse_override
from .files import write_json_atomic, write_text_atomic

MANIFEST_FILE = "sweep.json"
RUNS_DIR = "runs"
TUNE_DIR = "tune"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
#: Greedy tests averaged for a run's final test return.
FINAL_TESTS = 3
BOOTSTRAP_SAMPLES = 10_000


class SweepError(ValueError):
    """A directory is not a sweep, or a sweep cannot be set up as asked."""


# --------------------------------------------------------------------------- the grid


def parse_grid(entries) -> dict:
    """`["lr=1e-3,5e-4", ...]` -> `{"lr": [0.001, 0.0005]}`, each value typed and checked like `--set`."""
    grid = {}
    for entry in entries:
        if "=" not in entry:
            raise ConfigError(f"--grid {entry!r} is not of the form key=value1,value2,...")
        key, raw = (part.strip() for part in entry.split("=", 1))
        values = [parse_override(f"{key}={v.strip()}")[1] for v in raw.split(",") if v.strip()]
        if key == "seed":
            raise ConfigError("Give seeds with --seeds, not --grid seed=...")
        if not values:
            raise ConfigError(f"--grid {key}= lists no values.")
        grid[key] = values
    return grid


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be a comma-separated list of integers. Received: {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must list distinct integers. Received: {text!r}")
    return seeds


def _label(value) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.=" else "-" for ch in str(value))


def expand(sweep_dir, presets, overrides, grid: dict, seeds) -> list[dict]:
    """Every trial of presets x grid points x seeds, each with its full, validated config.

    A bad preset, key or value raises `ConfigError` here, before any trial starts.
    """
    fixed = dict(parse_override(o) for o in overrides)
    if "seed" in fixed:
        raise ConfigError("Give seeds with --seeds, not --set seed=...")
    runs = Path(sweep_dir).resolve() / RUNS_DIR
    trials = []
    for preset in presets:
        for point in itertools.product(*grid.values()):
            settings = dict(zip(grid, point))
            group = "__".join([preset] + [_label(f"{k}={v}") for k, v in settings.items()])
            for seed in seeds:
                config = make_config(preset, {**fixed, **settings, "seed": seed})
                name = f"{group}__seed{seed}"
                trials.append({"name": name, "group": group, "preset": preset, "settings": settings,
                               "seed": seed, "config": config.to_dict(), "run_dir": str(runs / name)})
    return trials


# --------------------------------------------------------------------------- the directory


def is_sweep(path) -> bool:
    return (Path(path) / MANIFEST_FILE).is_file()


def write_manifest(sweep_dir, manifest: dict) -> None:
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(sweep_dir) / MANIFEST_FILE, manifest)


def read_manifest(sweep_dir) -> dict:
    path = Path(sweep_dir) / MANIFEST_FILE
    if not path.is_file():
        reason = "no such directory" if not Path(sweep_dir).exists() else f"no {MANIFEST_FILE}"
        raise SweepError(f"{sweep_dir} is not a kqmix sweep directory ({reason}).")
    return json.loads(path.read_text())


def run_dirs(sweep_dir) -> list[Path]:
    """The run directories of a sweep's trials that exist (have a config), in manifest order."""
    dirs = [Path(t["run_dir"]) for t in read_manifest(sweep_dir)["trials"]]
    return [d for d in dirs if (d / rundir.CONFIG_FILE).is_file()]


# --------------------------------------------------------------------------- the summary


def greedy_tests(rows) -> list[tuple[int, float]]:
    """`(env step, greedy test return)` of each distinct test in a run's metric rows."""
    tests = {}
    for row in rows:
        if row.get("test_return_mean") is not None:
            tests[row.get("test_t_env", row["t_env"])] = row["test_return_mean"]
    return sorted(tests.items())


def run_result(run_dir, threshold: float | None) -> dict:
    """Final (mean of the last three tests) and best test return, and the first step reaching `threshold`."""
    run_dir = Path(run_dir)
    tests = greedy_tests(rundir.read_metrics(run_dir))
    values = [v for _, v in tests]
    reached = [t for t, v in tests if threshold is not None and v >= threshold]
    return {
        "finished": (run_dir / rundir.SUMMARY_FILE).is_file(),
        "tests": len(tests),
        "final_test_return": float(np.mean(values[-FINAL_TESTS:])) if values else None,
        "best_test_return": float(max(values)) if values else None,
        "steps_to_threshold": reached[0] if reached else None,
    }


def describe(values) -> dict:
    """Mean, standard deviation (ddof=1) and a 95% percentile-bootstrap confidence interval of the mean."""
    x = np.asarray([v for v in values if v is not None], float)
    if len(x) == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": None}
    rng = np.random.default_rng(0)  # a fixed stream: the same runs give the same summary
    means = x[rng.integers(0, len(x), (BOOTSTRAP_SAMPLES, len(x)))].mean(axis=1)
    return {"n": len(x), "mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
            "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]}


def summarise(sweep_dir) -> dict:
    """The summary of a sweep from its run directories (what `kqmix sweep` writes at the end)."""
    manifest = read_manifest(sweep_dir)
    threshold = manifest.get("threshold")
    trials, groups = [], {}
    for trial in manifest["trials"]:
        result = run_result(trial["run_dir"], threshold)
        trials.append({"name": trial["name"], "group": trial["group"], "seed": trial["seed"],
                       "run_dir": trial["run_dir"], **result})
        groups.setdefault(trial["group"], (trial, []))[1].append(trials[-1])
    configurations = []
    for group, (first, results) in groups.items():
        done = [r for r in results if r["finished"]]
        steps = [r["steps_to_threshold"] for r in done]
        configurations.append({
            "name": group, "preset": first["preset"], "settings": first["settings"],
            "seeds": [r["seed"] for r in results], "finished": len(done),
            "final_test_return": describe(r["final_test_return"] for r in done),
            "best_test_return": describe(r["best_test_return"] for r in done),
            "steps_to_threshold": None if threshold is None else {
                **describe(steps), "reached": sum(s is not None for s in steps), "values": steps},
        })
    return {"sweep_dir": str(Path(sweep_dir).resolve()), "threshold": threshold,
            "final_test_return": f"mean of the last {FINAL_TESTS} greedy tests of each finished run",
            "configurations": configurations, "trials": trials}


def _fmt(stats: dict) -> str:
    if not stats or stats["mean"] is None:
        return "n/a"
    lo, hi = stats["ci95"]
    return f"{stats['mean']:.4g} ± {stats['std']:.3g} [{lo:.4g}, {hi:.4g}]"


def summary_markdown(summary: dict) -> str:
    threshold = summary["threshold"]
    head = ["configuration", "finished seeds", "final test return", "best test return"]
    if threshold is not None:
        head.append(f"steps to {threshold:g} (reached)")
    lines = [f"# Sweep {summary['sweep_dir']}", "",
             f"Final test return: {summary['final_test_return']}. Cells: mean ± standard deviation over "
             "seeds [95% bootstrap confidence interval of the mean].", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in summary["configurations"]:
        cells = [c["name"], f"{c['finished']}/{len(c['seeds'])}", _fmt(c["final_test_return"]),
                 _fmt(c["best_test_return"])]
        if threshold is not None:
            s = c["steps_to_threshold"]
            cells.append(f"{_fmt(s)} ({s['reached']}/{c['finished']})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir) -> dict:
    summary = summarise(sweep_dir)
    write_json_atomic(Path(sweep_dir) / SUMMARY_JSON, summary)
    write_text_atomic(Path(sweep_dir) / SUMMARY_MD, summary_markdown(summary))
    return summary
