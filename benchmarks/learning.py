"""The learning benchmark: several seeds per task, collected from `kqmix sweep` directories.

    python benchmarks/learning.py collect SWEEP_OR_RUN_DIR [...] [--label LABEL]
    python benchmarks/learning.py reference JAXMARL_JSON [...] --task TASK --config NAME --commit SHA
    python benchmarks/learning.py report

`collect` reads every finished trial of the given sweeps and

* adds (or replaces) one row per run in `benchmarks/results/learning.json`:
  task, preset, seed, t_env, final_test_return (mean of the last three
  greedy tests), best_test_return, random_return (uniformly random available
  actions over the same test episodes, `kqmix.evaluation.random_returns`),
  wall_s and the kqmix commit(s) that trained the run;
* copies each run's `metrics.jsonl`, `config.json`, `env.json` and `run.json` to
  `benchmarks/results/runs/<task>/<preset>/<seed>/` (`row_files`, the task as a folder name by
  `task_dir`; no checkpoints).

A run directory (not a sweep) is collected the same way, under the preset its
`run.json` names. `--label` files the runs under their preset and a label
(`group_name`: `<preset>+<label>`), so that the same preset at another
budget or with other settings makes rows of its own beside the preset's.
A run that `kqmix evaluate` scored (its `evaluation.json`)
adds `evaluation_return`, the mean over those greedy episodes, and the file is
copied too. So does each report of `kqmix evaluate RUN --env-key KEY` (the
final model on another variant of its environment, such as a longer episode):
one entry of `variant_evaluations` with the variant's key, the mean greedy
return, the episodes and random actions on that variant.

`reference` adds the runs of another implementation from the JSON files its
runner wrote (`benchmarks/jaxmarl_qmix.py` for JaxMARL's QMIX) to the
`references` list: implementation, its config and commit, task, seed, steps,
greedy return and env steps/s, with the file copied to
`benchmarks/results/references/<implementation>/<config>/<seed>.json`.

`report` turns `learning.json` into the table of `docs/results.md` (between
its `learning-table` markers), the README's short table (between the same
markers), the side-by-side table of `docs/results.md` (between its
`reference-table` markers: each task with references, kqmix's evaluated runs
against them), the table of evaluations on variants (between its
`variant-table` markers) and one plot per task under `docs/images/`.

The sweeps behind the published figures (2 trials at a time on 2 cores):

    kqmix sweep --out sweeps/mpe_spread --preset mpe_spread --set t_max=300000 --seeds 0,1,2,3,4 --max-concurrent 2
    kqmix sweep --out sweeps/lbf --preset lbf --seeds 0,1,2,3,4 --threshold 0.9 --max-concurrent 2
    kqmix sweep --out sweeps/mpe_speaker_listener --preset mpe_speaker_listener --set t_max=300000 --seeds 0,1,2 --max-concurrent 2
    kqmix sweep --out sweeps/lbf_2s --preset lbf_2s --set t_max=1000000 --seeds 0,1,2 --max-concurrent 2
    kqmix sweep --out sweeps/rware_tiny_500 --preset rware_tiny --set env_key=rware-tiny-2ag-v2 \
        --set epsilon_anneal_time=200000 --set batch_size=32 --set buffer_size=5000 --set test_nepisode=8 \
        --set t_max=2000000 --seeds 0 --max-concurrent 2

(the last is the recipe `rware_tiny` had before: EPyMARL's 500-step episodes), and, for
RWARE as `rware_tiny` trains it now (100-step episodes, three at a time, scored on the task's
own 500 steps):

    for s in 0 1 2; do kqmix train --preset rware_tiny --set t_max=3000000 --set seed=$s --run-dir rware/$s & done; wait
    for s in 0 1 2; do kqmix evaluate rware/$s --episodes 100
        kqmix evaluate rware/$s --env-key rware-tiny-2ag-v2:max_steps=500 --episodes 100; done
    python benchmarks/learning.py collect rware/0 rware/1 rware/2

(the labelled RWARE rows, `5M` with three seeds and `switch-1.2M` with one; docs/results.md, "How
to reproduce", gives their commands), and, for the side by side with JaxMARL's QMIX on MPE (runs and
JSON files from `benchmarks/jaxmarl_side_by_side.sh OUT`):

    python benchmarks/learning.py collect OUT/kqmix/0 OUT/kqmix/1 OUT/kqmix/2
    python benchmarks/learning.py reference OUT/jaxmarl/*.json --task mpe:simple_spread_v3:max_steps=26 \
        --config ql_rnn_mpe --commit c793d09
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from kqmix import rundir, sweepdir  # noqa: E402
from kqmix.files import write_json_atomic, write_text_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LEARNING_JSON = RESULTS / "learning.json"
RUNS = RESULTS / "runs"
REFERENCES = RESULTS / "references"
DOCS_RESULTS = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
IMAGES = ROOT / "docs" / "images"
#: Files copied from each run directory (checkpoints and the model stay behind).
COPIED = (rundir.METRICS_FILE, rundir.CONFIG_FILE, rundir.ENV_FILE, rundir.SUMMARY_FILE)
MARKERS = ("<!-- learning-table:start -->", "<!-- learning-table:end -->")
REFERENCE_MARKERS = ("<!-- reference-table:start -->", "<!-- reference-table:end -->")
VARIANT_MARKERS = ("<!-- variant-table:start -->", "<!-- variant-table:end -->")


def task_of(config) -> str:
    """The task's name: the key of the environment the run ends on (`Config.final_env_key`, the one its
    final tests are played on), or the environment's name."""
    return config.final_env_key or config.env


#: The characters a folder name of the results may hold.
FOLDER_CHARS = "A-Za-z0-9_.-"


def task_dir(task: str) -> str:
    """A task's folder name: its name with every character but letters, digits, `_`, `.`, `-` as `_`
    (an env key such as `mpe:simple_spread_v3:max_steps=26` is no folder name on every system)."""
    return re.sub(f"[^{FOLDER_CHARS}]", "_", task)


LABEL = re.compile(f"^[{FOLDER_CHARS}]+$")


def group_name(row: dict) -> str:
    """The name a row is tabled and filed under: its preset, or `<preset>+<label>` when it was collected
    with a label."""
    return row["preset"] + (f"+{row['label']}" if row.get("label") else "")


def row_files(row: dict) -> Path:
    """Where the files of a row's run are kept: `RUNS/<task_dir>/<group_name>/<seed>`."""
    return RUNS / task_dir(row["task"]) / group_name(row) / str(row["seed"])


def run_row(run_dir: Path, preset: str, random_return_of) -> dict:
    """One row of `learning.json` for a finished run directory; `random_return_of(env, env_key)` is
    random actions' mean return on an environment."""
    config = rundir.read_config(run_dir)
    result = sweepdir.run_result(run_dir, threshold=None)
    summary = rundir.read_summary(run_dir)
    metrics = rundir.read_metrics(run_dir)
    revisions = summary.get("kqmix_revisions") or [None]
    row = {
        "task": task_of(config), "env": config.env, "preset": preset, "seed": config.seed,
        "t_env": summary["t_env"], "final_test_return": result["final_test_return"],
        "best_test_return": result["best_test_return"], "random_return": random_return_of(config.env, config.final_env_key),
        "wall_s": metrics[-1]["time"], "kqmix_commit": revisions[-1] if len(revisions) == 1 else revisions,
    }
    evaluation = run_dir / rundir.EVALUATION_FILE
    if evaluation.is_file():
        report = json.loads(evaluation.read_text())
        row["evaluation_return"], row["evaluation_episodes"] = report["return_mean"], report["episodes"]
    variants = []
    for path in rundir.env_variant_evaluation_files(run_dir):
        report = json.loads(path.read_text())
        variants.append({"env_key": report["env_key"], "file": path.name, "return_mean": report["return_mean"],
                         "episodes": report["episodes"],
                         "random_return": random_return_of(config.env, report["env_key"])})
    if variants:
        row["variant_evaluations"] = variants
    return row


def read_results() -> dict:
    return json.loads(LEARNING_JSON.read_text()) if LEARNING_JSON.is_file() else {}


def read_rows() -> list[dict]:
    return read_results().get("runs", [])


def write_results(runs: list[dict] | None = None, references: list[dict] | None = None) -> None:
    """`learning.json` with its runs and references (each kept as it is when not given), in a fixed order."""
    results = read_results()
    runs = results.get("runs", []) if runs is None else runs
    references = results.get("references", []) if references is None else references
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(LEARNING_JSON, {
        "final_test_return": f"mean of the last {sweepdir.FINAL_TESTS} greedy tests",
        "random_return": "uniformly random available actions over 100 test-stream episodes (seed 0)",
        "evaluation_return": "mean over the greedy episodes of `kqmix evaluate`, when the run was evaluated",
        "runs": sorted(runs, key=lambda r: (r["task"], group_name(r), r["seed"])),
        "references": sorted(references, key=lambda r: (r["task"], r["implementation"], r["config"], r["seed"]))})


def finished_runs(paths) -> list[tuple[Path, str]]:
    """(run directory, preset) of every finished run in the given sweeps and run directories."""
    runs = []
    for path in map(Path, paths):
        if sweepdir.is_sweep(path):
            runs += [(Path(t["run_dir"]), t["preset"]) for t in sweepdir.read_manifest(path)["trials"]]
        else:
            runs.append((path, None))
    finished = []
    for run_dir, preset in runs:
        if not (run_dir / rundir.SUMMARY_FILE).is_file():
            print(f"skipped (not a finished run): {run_dir}", file=sys.stderr)
            continue
        finished.append((run_dir, preset or rundir.read_summary(run_dir)["preset"]))
    return finished


def collect(paths, label: str | None = None) -> list[dict]:
    from kqmix.evaluation import random_returns

    if label is not None and not LABEL.match(label):
        raise SystemExit(f"Invalid label {label!r}: expected letters, digits, '_', '.' or '-' (it names a folder).")
    rows = {(r["task"], group_name(r), r["seed"]): r for r in read_rows()}
    randoms = {}

    def random_return_of(env: str, env_key: str | None) -> float:
        if (env, env_key) not in randoms:
            randoms[env, env_key] = float(random_returns(env, env_key).mean())
        return randoms[env, env_key]

    for run_dir, preset in finished_runs(paths):
        config = rundir.read_config(run_dir)
        task = task_of(config)
        row = run_row(run_dir, preset, random_return_of)
        if label:
            row["label"] = label
        rows[(row["task"], group_name(row), row["seed"])] = row
        target = row_files(row)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for name in (COPIED + ((rundir.EVALUATION_FILE,) if "evaluation_return" in row else ())
                     + tuple(v["file"] for v in row.get("variant_evaluations", []))):
            shutil.copy2(run_dir / name, target / name)
        print(f"{task} {group_name(row)} seed {config.seed}: final {row['final_test_return']:.4g}, "
              f"best {row['best_test_return']:.4g}, random {row['random_return']:.4g}")
    write_results(runs=list(rows.values()))
    return read_rows()


def reference_files(implementation: str, config: str, seed: int) -> Path:
    """Where the result file of one run of another implementation is kept."""
    return REFERENCES / implementation / config / f"{seed}.json"


def reference(files, task: str, config: str, commit: str) -> list[dict]:
    """Rows for JaxMARL QMIX runs (`benchmarks/jaxmarl_qmix.py` files) on `task`, kqmix's name of its environment."""
    references = {(r["task"], r["implementation"], r["config"], r["seed"]): r
                  for r in read_results().get("references", [])}
    for path in map(Path, files):
        result = json.loads(path.read_text())
        row = {"task": task, "implementation": "jaxmarl", "config": config, "commit": commit,
               "seed": result["seed"], "t_env": result["t_env"],
               "greedy_return": result["final_test"]["returned_episode_returns"],
               "greedy_episodes": result["alg"]["TEST_NUM_ENVS"], "env_steps_per_s": result["env_steps_per_s"]}
        references[(task, row["implementation"], config, row["seed"])] = row
        target = reference_files(row["implementation"], config, row["seed"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        print(f"{task} {row['implementation']} {config} seed {row['seed']}: greedy {row['greedy_return']:.4g}")
    write_results(references=list(references.values()))
    return read_results()["references"]


def preset_cell(row: dict) -> str:
    """A row's preset as the tables show it, with its label when it has one."""
    return f"`{row['preset']}`" + (f" ({row['label']})" if row.get("label") else "")


def _minutes(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def table(rows, short: bool = False) -> str:
    """The results table: per task and preset, the final test return over seeds with its 95% CI.

    `short` (the README's) leaves out wall-clock, best test and the plot links.
    """
    groups = {}
    for row in rows:
        groups.setdefault((row["task"], group_name(row)), []).append(row)
    head = ["task", "preset", "steps", "seeds", "final test return, mean [95% CI]", "worst seed",
            "random actions"]
    if not short:
        head += ["best test (mean)", "wall-clock per run", "curves"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (task, _), runs in groups.items():
        stats = sweepdir.describe([r["final_test_return"] for r in runs])
        lo, hi = stats["ci95"]
        worst = min(runs, key=lambda r: r["final_test_return"])
        cells = [f"`{task}`", preset_cell(runs[0]), f"{max(r['t_env'] for r in runs):,}", str(len(runs)),
                 f"{stats['mean']:.3g} [{lo:.3g}, {hi:.3g}]",
                 f"{worst['final_test_return']:.3g} (seed {worst['seed']})", f"{runs[0]['random_return']:.3g}"]
        if not short:
            cells += [f"{np.mean([r['best_test_return'] for r in runs]):.3g}",
                      _minutes(float(np.median([r["wall_s"] for r in runs]))), f"[plot](images/{plot_name(task)})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def runs_table(rows) -> str:
    """One line per run: its seed, final and best test return, wall-clock and commit."""
    head = ["task", "preset", "seed", "steps", "final test return", "best test return", "wall-clock", "commit"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        commits = r["kqmix_commit"] if isinstance(r["kqmix_commit"], list) else [r["kqmix_commit"]]
        lines.append("| " + " | ".join([
            f"`{r['task']}`", preset_cell(r), str(r["seed"]), f"{r['t_env']:,}", f"{r['final_test_return']:.4g}",
            f"{r['best_test_return']:.4g}", _minutes(r["wall_s"]), ", ".join(f"`{(c or 'unknown')[:10]}`" for c in commits),
        ]) + " |")
    return "\n".join(lines) + "\n"


def reference_table(results: dict) -> str:
    """Per task with references: each reference configuration and each kqmix preset with evaluated runs,
    greedy return over seeds (mean [95% CI], each seed) and env steps/s where known."""
    head = ["task", "implementation", "steps", "seeds", "greedy return, mean [95% CI]", "each seed", "episodes",
            "commits"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task in sorted({r["task"] for r in results.get("references", [])}):
        groups = {}  # name -> [(seed, steps, greedy return, episodes, commits)]
        for r in results["references"]:
            if r["task"] == task:
                groups.setdefault(f"{r['implementation']} `{r['config']}`", []).append(
                    (r["seed"], r["t_env"], r["greedy_return"], r["greedy_episodes"], [r["commit"]]))
        for r in results.get("runs", []):
            if r["task"] == task and "evaluation_return" in r:
                commits = r["kqmix_commit"] if isinstance(r["kqmix_commit"], list) else [r["kqmix_commit"]]
                groups.setdefault(f"kqmix {preset_cell(r)}", []).append(
                    (r["seed"], r["t_env"], r["evaluation_return"], r["evaluation_episodes"], commits))
        for name, runs in groups.items():
            runs.sort()
            stats = sweepdir.describe([run[2] for run in runs])
            lo, hi = stats["ci95"]
            commits = sorted({c[:7] for run in runs for c in run[4]})
            lines.append("| " + " | ".join([
                f"`{task}`", name, f"{max(run[1] for run in runs):,}", str(len(runs)),
                f"{stats['mean']:.4g} [{lo:.4g}, {hi:.4g}]", ", ".join(f"{run[2]:.4g}" for run in runs),
                ", ".join(sorted({str(run[3]) for run in runs})), ", ".join(f"`{c}`" for c in commits)]) + " |")
    return "\n".join(lines) + "\n"


def variant_table(rows) -> str:
    """Per task, preset and variant: the final models' greedy return on that variant of the task
    (`kqmix evaluate --env-key`) over seeds (mean [95% CI], each seed), against random actions there."""
    head = ["trained on", "preset", "steps", "seeds", "evaluated on", "greedy return, mean [95% CI]", "each seed",
            "episodes", "random actions"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups = {}
    for r in rows:
        for v in r.get("variant_evaluations", []):
            groups.setdefault((r["task"], preset_cell(r), v["env_key"]), []).append((r["seed"], r["t_env"], v))
    for (task, preset, variant), runs in sorted(groups.items()):
        runs.sort(key=lambda run: run[0])
        stats = sweepdir.describe([v["return_mean"] for _, _, v in runs])
        lo, hi = stats["ci95"]
        lines.append("| " + " | ".join([
            f"`{task}`", preset, f"{max(t for _, t, _ in runs):,}", str(len(runs)), f"`{variant}`",
            f"{stats['mean']:.4g} [{lo:.4g}, {hi:.4g}]", ", ".join(f"{v['return_mean']:.4g}" for _, _, v in runs),
            ", ".join(sorted({str(v["episodes"]) for _, _, v in runs})), f"{runs[0][2]['random_return']:.3g}"]) + " |")
    return "\n".join(lines) + "\n"


def plot_name(task: str) -> str:
    return "learning_" + re.sub(r"[^A-Za-z0-9_-]", "_", task) + ".png"


def replace_block(path: Path, block: str, markers=MARKERS) -> None:
    text = path.read_text()
    start, end = (text.index(m) for m in markers)
    write_text_atomic(path, text[: start + len(markers[0])] + "\n" + block + text[end:])


def report() -> None:
    from kqmix.plotting import plot_runs

    rows = read_rows()
    if not rows:
        raise SystemExit(f"{LEARNING_JSON} holds no runs; run `collect` first.")
    block = table(rows)
    replace_block(DOCS_RESULTS, block + "\nEvery run:\n\n" + runs_table(rows))
    replace_block(README, table(rows, short=True))
    replace_block(DOCS_RESULTS, reference_table(read_results()), REFERENCE_MARKERS)
    replace_block(DOCS_RESULTS, variant_table(rows), VARIANT_MARKERS)
    for task in sorted({r["task"] for r in rows}):
        # Every preset's seeds of the task in one plot: one band per preset.
        runs = [row_files(r) for r in rows if r["task"] == task]
        random = next(r["random_return"] for r in rows if r["task"] == task)
        plot_runs(runs, IMAGES / plot_name(task), baselines={"random actions": random})
    print(block)


def main() -> None:
    parser = argparse.ArgumentParser(description="The learning benchmark: collect sweeps, write the results.")
    sub = parser.add_subparsers(dest="command", required=True)
    col = sub.add_parser("collect", help="rows and copies from sweep and run directories")
    col.add_argument("paths", nargs="+")
    col.add_argument("--label", help="file the runs under their preset and this label (letters, digits, _ . -): "
                     "rows of their own, e.g. the same preset at another budget")
    ref = sub.add_parser("reference", help="JaxMARL QMIX runs (benchmarks/jaxmarl_qmix.py files) as references")
    ref.add_argument("files", nargs="+")
    ref.add_argument("--task", required=True, help="kqmix's name of the environment (a run's env_key)")
    ref.add_argument("--config", required=True, help="JaxMARL's algorithm config, e.g. ql_rnn_mpe")
    ref.add_argument("--commit", required=True, help="the JaxMARL commit the runs used")
    sub.add_parser("report", help="docs/results.md, README table and plots from learning.json")
    args = parser.parse_args()
    if args.command == "collect":
        collect(args.paths, args.label)
    elif args.command == "reference":
        reference(args.files, args.task, args.config, args.commit)
    else:
        report()


if __name__ == "__main__":
    main()
