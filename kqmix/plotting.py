"""Learning curves as a PNG (`kqmix plot`)."""

from __future__ import annotations

import json
import textwrap
from collections import defaultdict
from pathlib import Path

import numpy as np

from . import rundir, sweepdir
from .files import atomic_path


#: Characters per line of a legend entry (the legend sits below the panels).
LEGEND_WIDTH = 130


class PlotError(ValueError):
    """The given directories cannot be plotted."""


def _metrics(run_dir: Path) -> list[dict]:
    rows = rundir.read_metrics(run_dir)
    if not rows:
        raise PlotError(f"{run_dir} holds no metrics yet ({rundir.METRICS_FILE} is missing or empty).")
    return rows


def _group_key(run_dir: Path) -> tuple[str, str]:
    """Runs that differ only in their seed share a curve (mean and band)."""
    config = rundir.read_config(run_dir).to_dict()
    seedless = {k: v for k, v in config.items() if k not in ("seed", "runs_dir")}
    label = config["env"] + (f":{config['env_key']}" if config["env_key"] else "") + f" {config['mixer']}"
    return label, json.dumps(seedless, sort_keys=True)


def run_dirs_of(paths) -> list[Path]:
    """Run directories, with each sweep directory replaced by its trials' run directories."""
    out = []
    for path in map(Path, paths):
        if sweepdir.is_sweep(path):
            found = [d for d in sweepdir.run_dirs(path) if rundir.read_metrics(d)]
            if not found:
                raise PlotError(f"The sweep {path} has no run with metrics yet.")
            out.extend(found)
        else:
            out.append(path)
    return out


def _distinct_settings(keys) -> dict:
    """Per group, the settings that differ between groups (to tell their curves apart)."""
    configs = {key: json.loads(key) for key in keys}
    varying = sorted(k for k in next(iter(configs.values()))
                     if len({json.dumps(c.get(k)) for c in configs.values()}) > 1)
    return {key: ", ".join(f"{k}={c.get(k)}" for k in varying) for key, c in configs.items()}


def aligned(runs, metric: str):
    """`(steps (K,), values (R, K))`: one metric of R runs on common env steps.

    Runs log at the env steps where their episodes happen to end, which
    differ between seeds when episodes vary in length. The steps are every
    logged step inside the range all runs cover; each run is interpolated
    linearly between its own logged points there.
    """
    series = []
    for rows in runs:
        points = [(r["t_env"], r[metric]) for r in rows if r.get(metric) is not None]
        if not points:
            return np.zeros(0), np.zeros((len(runs), 0))
        x, y = np.asarray(points, float).T
        series.append((x, y))
    lo, hi = max(x[0] for x, _ in series), min(x[-1] for x, _ in series)
    steps = np.unique(np.concatenate([x[(x >= lo) & (x <= hi)] for x, _ in series]))
    return steps, np.array([np.interp(steps, x, y) for x, y in series])


def plot_runs(run_dirs, out="curves.png", baselines: dict | None = None) -> Path:
    """Plots return and greedy test return against env steps for each group of runs.

    Runs that log a greedy test win rate (SMAX) get a third panel for it. A
    group of several seeds is drawn as its mean with a band from the lowest
    to the highest seed. `baselines` (label -> return), if given, are drawn
    as dashed horizontal lines on the return axes (e.g. random actions). A
    dotted vertical line marks the step where training moved to another
    variant of the environment (`switch_env_at`). The legend sits below the
    panels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = defaultdict(list)
    labels = {}
    for run_dir in map(Path, run_dirs):
        try:
            label, key = _group_key(run_dir)
        except rundir.RunError as exc:
            raise PlotError(str(exc)) from None
        groups[key].append(_metrics(run_dir))
        labels[key] = label
    if len(groups) > 1:
        for key, extra in _distinct_settings(groups).items():
            labels[key] += f" {extra}" if extra else ""
    panels = [("return_mean", "training return (exploring)"), ("test_return_mean", "greedy test return")]
    if any(row.get("test_win_rate") is not None for runs in groups.values() for rows in runs for row in rows):
        panels.append(("test_win_rate", "greedy test win rate"))
    names = {key: textwrap.fill(f"{labels[key]} ({len(runs)} seed{'s' if len(runs) > 1 else ''})", LEGEND_WIDTH)
             for key, runs in groups.items()}
    legend_lines = sum(name.count("\n") + 1 for name in names.values()) + len(baselines or {})
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4 + 0.2 * legend_lines), sharex=True,
                             layout="constrained")
    for key, runs in groups.items():
        n = len(runs)
        switch_at = json.loads(key)["switch_env_at"]
        for ax, (metric, title) in zip(axes, panels):
            steps, values = aligned(runs, metric)
            if not len(steps):
                continue
            mean = values.mean(0)
            line, = ax.plot(steps, mean, label=names[key])
            if n > 1:
                ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
            if switch_at:  # training moved to `switch_env_key` here (kqmix.config.Config)
                ax.axvline(switch_at, color=line.get_color(), linestyle=":", linewidth=1)
            ax.set_title(title)
    for label, value in (baselines or {}).items():
        for ax in axes[:2]:
            ax.axhline(value, color="grey", linestyle="--", linewidth=1, label=label)
    for ax in axes:
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("episode return")
    if len(panels) > 2:
        axes[2].set_ylim(-0.02, 1.02)
    handles, entries = axes[1].get_legend_handles_labels()
    fig.legend(handles, entries, loc="outside lower center", fontsize="small", frameon=False)
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise PlotError(f"--out must name a .png file. Received: {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
