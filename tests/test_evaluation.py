"""`kqmix evaluate` of a run and of an export, and the episode seed streams."""

import json
import os

import numpy as np

from kqmix import rundir
from kqmix.evaluation import EVAL_STREAM, TEST_STREAM, TRAIN_STREAM, episode_seeds, random_returns


def test_evaluate_run_and_export(reference_runs, tmp_path, kqmix):
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


def test_the_report_on_an_export_goes_into_its_run_never_the_current_directory(reference_runs, tmp_path, kqmix):
    from kqmix.export import export_run

    version = export_run(reference_runs["c"], name="small", out=tmp_path / "models")
    out = kqmix("evaluate", version, "--episodes", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = reference_runs["c"] / "evaluation-export-small-1.json"
    assert json.loads(report.read_text())["path"] == str(version)
    assert not (version / "evaluation.json").exists() and not (tmp_path / "evaluation.json").exists()
    # The shipped example's run is not shipped: the report needs a place.
    shipped = os.path.join(os.path.dirname(__file__), "..", "saved_models", "two_step", "1")
    out = kqmix("evaluate", shipped, "--episodes", "2", cwd=tmp_path)
    assert out.returncode == 2 and "say where the report goes with --report PATH" in out.stderr
    assert not (tmp_path / "evaluation.json").exists()


def test_episode_seeds_are_one_function_of_seed_stream_and_batch():
    assert episode_seeds(3, TEST_STREAM, 2, 4) == episode_seeds(3, TEST_STREAM, 2, 4)
    assert len({TRAIN_STREAM, TEST_STREAM, EVAL_STREAM}) == 3
    streams = [set(episode_seeds(3, s, 0, 8)) for s in (TRAIN_STREAM, TEST_STREAM, EVAL_STREAM)]
    assert not (streams[0] & streams[1]) and not (streams[1] & streams[2])
    assert episode_seeds(3, EVAL_STREAM, 0, 8)[:1] == episode_seeds(3, EVAL_STREAM, 0, 1)


def test_random_returns_match_the_two_step_games_expectation():
    # Agent 0's first action picks 2A (7 for any joint action) or 2B ([[0, 1], [1, 8]]) with
    # probability 1/2 each: E = 7/2 + (0 + 1 + 1 + 8)/8 = 4.75, standard deviation 3.19.
    returns = random_returns("two_step", None, n_episodes=4000, seed=5)
    assert set(np.unique(returns)) == {0.0, 1.0, 7.0, 8.0}
    assert abs(returns.mean() - 4.75) < 5 * 3.19 / np.sqrt(4000)  # five standard errors
    assert np.array_equal(returns, random_returns("two_step", None, n_episodes=4000, seed=5))
    assert not np.array_equal(returns, random_returns("two_step", None, n_episodes=4000, seed=6))


def test_evaluate_on_a_variant_of_the_runs_environment(tmp_path, kqmix):
    run = tmp_path / "run"
    out = kqmix("train", "--preset", "matrix_non_monotonic", "--set", "env_key=non_monotonic@4",
                "--set", "t_max=200", "--set", "rnn_hidden_dim=8", "--quiet", "--run-dir", run)
    assert out.returncode == 0, out.stderr
    # Same agents, observations and actions, another payoff table: four one-shot climbing games.
    out = kqmix("evaluate", run, "--episodes", "3", "--env-key", "climbing@4")
    assert out.returncode == 0, out.stderr
    report = json.loads((run / "evaluation-env-climbing@4.json").read_text())
    assert (report["env_key"], report["trained_env_key"]) == ("climbing@4", "non_monotonic@4")
    climbing = {11.0, -30.0, 0.0, 7.0, 6.0, 5.0}
    sums = {a + b + c + d for a in climbing for b in climbing for c in climbing for d in climbing}
    assert set(report["returns"]) <= sums and not (run / "evaluation.json").exists()
    # The run's own key is no variant: the report is the run's evaluation.json.
    out = kqmix("evaluate", run, "--episodes", "2", "--env-key", "non_monotonic@4")
    assert out.returncode == 0, out.stderr
    assert "trained_env_key" not in json.loads((run / "evaluation.json").read_text())
    # A matrix game's observation is the one-hot of the step: 8 steps do not fit a 4-step policy.
    out = kqmix("evaluate", run, "--episodes", "2", "--env-key", "non_monotonic@8")
    assert out.returncode == 2
    assert "obs_dim=8, but the policy was trained on 'non_monotonic@4' with obs_dim=4" in out.stderr
    out = kqmix("evaluate", run, "--env-key", "chess")
    assert out.returncode == 2 and "--env-key 'chess': Unknown matrix game 'chess'" in out.stderr
    assert sorted(p.name for p in run.glob("evaluation*.json")) == ["evaluation-env-climbing@4.json",
                                                                     "evaluation.json"]
    assert rundir.env_variant_evaluation_files(run) == [run / "evaluation-env-climbing@4.json"]
