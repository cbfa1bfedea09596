"""Training on the real environments: a short smoke run always, full learning runs when slow."""

import json

import numpy as np
import pytest

from kqmix.config import DEFAULT_PRESET, make_config
from kqmix.envs import make_env
from kqmix.evaluation import random_returns
from kqmix.sweepdir import greedy_tests
from kqmix.training import final_env, train


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_default_preset_is_lbf():
    config = make_config()
    assert DEFAULT_PRESET == "lbf"
    assert (config.env, config.env_key) == ("lbf", "Foraging-8x8-2p-2f-coop-v3")
    assert (config.optimizer, config.lr, config.batch_size, config.buffer_size) == ("adam", 5e-4, 32, 5000)
    assert (config.target_update_interval, config.epsilon_anneal_time, config.standardise_rewards) == (200, 50_000, True)
    assert (config.td_lambda, config.t_max) == (0.8, 500_000)


# Tracing the train step dominates a short run, so only LBF trains in the
# default suite; the MPE smoke run checks the loop with the adapter without
# filling a batch.
@pytest.mark.parametrize("preset, trains", [("lbf", True), ("mpe_spread", False)])
def test_smoke_training_writes_metrics(preset, trains, tmp_path):
    config = make_config(preset, {
        "t_max": 1_500, "batch_size": 4 if trains else 100, "buffer_size": 100, "test_interval": 750,
        "test_nepisode": 2, "log_interval": 500, "runs_dir": str(tmp_path), "batch_size_run": 2,
    })
    result = train(config, preset=preset, quiet=True)
    rows = read_metrics(result.run_dir)
    assert result.t_env >= 1_500 and (result.train_steps > 0) == trains
    assert len(rows) >= 3 and rows[-1]["t_env"] == result.t_env
    assert all(np.isfinite(r["return_mean"]) for r in rows)
    assert rows[-1]["test_return_mean"] is not None
    if trains:
        assert np.isfinite(rows[-1]["loss"])
    env_json = json.loads((result.run_dir / "env.json").read_text())
    assert env_json["notes"]  # the fallbacks are recorded with the run


@pytest.mark.slow
def test_lbf_default_preset_reaches_0_9(tmp_path):
    result = train(make_config(overrides={"runs_dir": str(tmp_path)}), preset="lbf", quiet=True)
    tests = [r["test_return_mean"] for r in read_metrics(result.run_dir) if r["test_return_mean"] is not None]
    # Reaches 0.9 and holds it at the end (the last three greedy tests).
    assert max(tests) >= 0.9 and np.mean(tests[-3:]) >= 0.9, tests


@pytest.mark.slow
def test_mpe_spread_improves_over_random(tmp_path):
    baseline = random_returns("pettingzoo", "mpe2.simple_spread_v3").mean()
    result = train(make_config("mpe_spread", {"t_max": 300_000, "runs_dir": str(tmp_path)}),
                   preset="mpe_spread", quiet=True)
    rows = read_metrics(result.run_dir)
    tests = [value for _, value in greedy_tests(rows)]
    final, best = np.mean(tests[-3:]), max(tests)
    # Returns are negative distances; "clearly better" = a quarter of random's return closed.
    assert final > baseline + 0.25 * abs(baseline), (baseline, final, tests)
    # No collapse: the end keeps all but 15% of the gain of the best test over random.
    assert final >= best - 0.15 * (best - baseline), (baseline, best, final, tests)


@pytest.mark.parametrize("preset", ["lbf", "lbf_2s", "rware_tiny", "mpe_spread", "mpe_speaker_listener",
                                    "mpe_reference", "smax_3m"])
def test_environment_presets_build(preset):
    config = make_config(preset)
    assert config.optimizer == "adam" and config.standardise_rewards
    if config.env == "smax":
        pytest.importorskip("jaxmarl")
    if config.env == "rware":
        pytest.importorskip("rware")
    if config.env == "pettingzoo":
        pytest.importorskip("mpe2")
    env = make_env(config.env, config.env_key)
    assert env.n_agents >= 2
    # A preset that switches environments switches to one its model fits.
    assert final_env(config, env).info.episode_limit >= env.info.episode_limit


@pytest.mark.slow
def test_jax_smax_3m_reaches_0_9_win_rate(tmp_path):
    pytest.importorskip("jaxmarl")
    result = train(make_config("jax_smax_3m", {"t_max": 1_000_000, "runs_dir": str(tmp_path)}),
                   preset="jax_smax_3m", quiet=True)
    wins = [r["test_win_rate"] for r in read_metrics(result.run_dir) if r.get("test_win_rate") is not None]
    # Greedy win rate over 32 test episodes every 10k steps: reaches 0.9 (docs/environments.md, "SMAX").
    assert max(wins) >= 0.9, wins
