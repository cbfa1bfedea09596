"""benchmarks/results/learning.json: every row agrees with the run files it was copied with."""

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from kqmix import rundir
from kqmix.config import Config
from kqmix.evaluation import random_returns

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LEARNING = json.loads((RESULTS / "learning.json").read_text())
ROWS = LEARNING["runs"]
REFERENCES = LEARNING.get("references", [])
COMMIT = re.compile(r"^[0-9a-f]{40}$")
_spec = importlib.util.spec_from_file_location("learning_benchmark", ROOT / "benchmarks" / "learning.py")
learning = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(learning)  # the benchmark script owns the layout of the results


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_final_model_report(report, row):
    """A `kqmix evaluate` report of the run's finished model: its mean is that of its returns."""
    assert report["return_mean"] == pytest.approx(np.mean(report["returns"]), rel=1e-9)
    assert report["t_env"] == row["t_env"] and report["episodes"] == len(report["returns"])


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['task']}-{learning.group_name(r)}-{r['seed']}")
def test_row_matches_its_run_files(row):
    run = learning.row_files(row)
    metrics = lines(run / "metrics.jsonl")
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "run.json").read_text())
    # Each greedy test once, by the step it was played at.
    tests = dict((m["test_t_env"], m["test_return_mean"]) for m in metrics if m["test_return_mean"] is not None)
    values = [tests[t] for t in sorted(tests)]
    assert row["final_test_return"] == pytest.approx(np.mean(values[-3:]), rel=1e-12)
    assert row["best_test_return"] == max(values)
    assert row["t_env"] == summary["t_env"] == metrics[-1]["t_env"] >= config["t_max"]
    assert row["wall_s"] == metrics[-1]["time"]
    final_env_key = Config.from_dict(config).final_env_key
    assert (config["seed"], config["env"], final_env_key or config["env"]) == (row["seed"], row["env"], row["task"])
    assert summary["preset"] == row["preset"]
    # Trained by committed code only, and the commit is the one the run recorded.
    commits = row["kqmix_commit"] if isinstance(row["kqmix_commit"], list) else [row["kqmix_commit"]]
    assert commits == summary["kqmix_revisions"] and all(COMMIT.match(c or "") for c in commits)
    evaluation = run / "evaluation.json"
    assert ("evaluation_return" in row) == evaluation.is_file()
    if evaluation.is_file():  # scored by `kqmix evaluate` after training, on the finished model
        report = json.loads(evaluation.read_text())
        assert (row["evaluation_return"], row["evaluation_episodes"]) == (report["return_mean"], report["episodes"])
        check_final_model_report(report, row)
    # Scored on other variants of the task (`kqmix evaluate --env-key`), each report copied.
    variants = row.get("variant_evaluations", [])
    assert [v["file"] for v in variants] == [p.name for p in rundir.env_variant_evaluation_files(run)]
    for variant in variants:
        report = json.loads((run / variant["file"]).read_text())
        assert variant["file"] == rundir.evaluation_file(env_key=variant["env_key"])
        assert (report["trained_env_key"], report["env_key"]) == (row["task"], variant["env_key"])
        assert (variant["return_mean"], variant["episodes"]) == (report["return_mean"], report["episodes"])
        check_final_model_report(report, row)


def test_collect_files_a_labelled_run_beside_its_preset(reference_runs, tmp_path, monkeypatch):
    """`collect --label`: the same preset's run under a label is a row and a folder of its own, and the
    tables tell the two apart; a label that cannot name a folder is refused."""
    monkeypatch.setattr(learning, "RESULTS", tmp_path)
    monkeypatch.setattr(learning, "LEARNING_JSON", tmp_path / "learning.json")
    monkeypatch.setattr(learning, "RUNS", tmp_path / "runs")
    learning.collect([reference_runs["a"]])
    rows = learning.collect([reference_runs["b"]], label="longer")
    assert [(r["preset"], r.get("label"), r["seed"]) for r in rows] == [("two_step", None, 0),
                                                                       ("two_step", "longer", 0)]
    files = [learning.row_files(r) for r in rows]
    assert files[0] != files[1] and files[1].parent.name == "two_step+longer"
    assert all((f / rundir.METRICS_FILE).is_file() for f in files)
    table_rows = learning.table(rows).splitlines()[2:]
    assert len(table_rows) == 2 and "| `two_step` |" in table_rows[0] and "| `two_step` (longer) |" in table_rows[1]
    with pytest.raises(SystemExit, match="Invalid label 'a/b'"):
        learning.collect([reference_runs["c"]], label="a/b")
    assert len(learning.read_rows()) == 2


@pytest.mark.parametrize("row", REFERENCES, ids=lambda r: f"{r['implementation']}-{r['config']}-{r['seed']}")
def test_reference_row_matches_its_file(row):
    result = json.loads(learning.reference_files(row["implementation"], row["config"], row["seed"]).read_text())
    assert (result["seed"], result["t_env"]) == (row["seed"], row["t_env"])
    assert row["greedy_return"] == result["final_test"]["returned_episode_returns"]
    assert row["greedy_episodes"] == result["alg"]["TEST_NUM_ENVS"]
    assert row["env_steps_per_s"] == pytest.approx(result["t_env"] / result["run_s"], rel=1e-12)
    # The same budget as kqmix's runs of the task it is compared with.
    kqmix = [r for r in ROWS if r["task"] == row["task"] and "evaluation_return" in r]
    assert kqmix and all(abs(r["t_env"] - row["t_env"]) <= 1000 for r in kqmix)


def test_every_copied_run_has_a_row():
    copied = {p for p in learning.RUNS.glob("*/*/*") if p.is_dir()}
    assert copied == {learning.row_files(r) for r in ROWS}


def test_random_return_is_the_evaluation_baseline():
    row = min(ROWS, key=lambda r: r["task"])  # one task suffices: every task's baseline comes from one function
    for other in ROWS:
        if other["task"] == row["task"]:
            assert other["random_return"] == row["random_return"]
    config = json.loads((learning.row_files(row) / "config.json").read_text())
    final_env_key = Config.from_dict(config).final_env_key
    assert row["random_return"] == pytest.approx(random_returns(config["env"], final_env_key).mean(), rel=1e-12)


def test_random_return_on_a_variant_is_the_evaluation_baseline():
    variants = [(r["env"], v) for r in ROWS for v in r.get("variant_evaluations", [])]
    if not variants:
        pytest.skip("no run of the benchmark was evaluated on a variant of its task")
    env, variant = variants[0]
    for other_env, other in variants:
        if (other_env, other["env_key"]) == (env, variant["env_key"]):
            assert other["random_return"] == variant["random_return"]
    assert variant["random_return"] == pytest.approx(random_returns(env, variant["env_key"]).mean(), rel=1e-12)


TIME_TO_SOLVE = RESULTS / "time_to_solve" / "lbf"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lbf_time_to_solve_agrees_with_both_sides_files(seed):
    """benchmarks/lbf_time_to_solve.py's figures against the kqmix metrics and EPyMARL's own test log."""
    summary = json.loads((TIME_TO_SOLVE / "time_to_solve.json").read_text())
    (run,) = [r for r in summary["runs"] if r["seed"] == seed]
    kqmix = [m for m in lines(TIME_TO_SOLVE / f"kqmix_{seed}_metrics.jsonl") if m["test_return_mean"] is not None]
    # kqmix was stopped at its first greedy test at the threshold: the last one logged, the only one.
    assert kqmix[-1]["test_return_mean"] >= summary["threshold"] > max(m["test_return_mean"] for m in kqmix[:-1])
    assert kqmix[-1]["time"] <= run["kqmix_s"]  # the wall-clock also counts start-up
    info = json.loads((TIME_TO_SOLVE / f"epymarl_{seed}_info.json").read_text())
    config = json.loads((TIME_TO_SOLVE / f"epymarl_{seed}_config.json").read_text())
    assert (config["seed"], config["env_args"]["key"]) == (seed, f"lbforaging:{summary['task']}")
    assert config["use_rnn"] and config["evaluation_epsilon"] == 0.0  # GRU agent, greedy tests
    assert (config["test_interval"], config["test_nepisode"]) == (summary["test_interval"], summary["test_episodes"])
    # EPyMARL never reached the threshold before it was stopped, at three times kqmix's time.
    assert run["epymarl_s"] is None and max(v["value"] for v in info["test_return_mean"]) < summary["threshold"]
    assert run["stopped_at_s"] == pytest.approx(3 * run["kqmix_s"], rel=1e-12)
