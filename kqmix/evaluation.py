"""Greedy evaluation of a run directory or an exported version (`kqmix evaluate`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .config import Config, write_json_atomic

EVAL_STREAM = 2


class EvaluationError(ValueError):
    """The path cannot be evaluated as asked."""


def _episode_seed(seed: int, k: int) -> int:
    return int(np.random.SeedSequence([seed, EVAL_STREAM, k]).generate_state(1)[0])


def _run_policy(path: Path):
    """(policy-like object, env name, env key, extra report fields) for a run directory."""
    from . import checkpoint as ckpt
    from .policy import NumpyAgentPolicy
    from .training import load_run

    config = Config.load(path / "config.json")
    if (path / "model.keras").is_file():
        run = load_run(path)
        return NumpyAgentPolicy(run.agent), config, {"t_env": run.run.get("t_env"), "weights": "model.keras"}
    latest = ckpt.load_latest(path / "checkpoints")
    if latest is None:
        raise EvaluationError(f"{path} has neither model.keras nor an intact checkpoint to evaluate.")
    from .envs import make_env
    from .learner import QLearner

    ckpt_path, arrays, state = latest
    learner = QLearner(make_env(config.env, config.env_key).info, config)
    learner.set_state(arrays["variables"])
    return NumpyAgentPolicy(learner.agent), config, {"t_env": state["loop"]["t_env"], "weights": ckpt_path.name}


def evaluate_path(path, episodes: int = 100, seed: int = 12345, report_path=None, render: bool = False) -> dict:
    """Runs `episodes` greedy episodes and writes a JSON report; returns the report."""
    from .envs import make_env

    path = Path(path)
    if episodes < 1:
        raise EvaluationError(f"--episodes must be at least 1. Received: {episodes}")
    if (path / "metadata.json").is_file():
        source = "export"
        meta = json.loads((path / "metadata.json").read_text())
        env_name, env_key = meta["environment"]["env"], meta["environment"]["env_key"]
        from .export.runtime import DecentralisedAgents

        agents = DecentralisedAgents(path)
        extra = {"t_env": meta.get("training", {}).get("t_env"), "weights": "agent.onnx"}
    elif (path / "config.json").is_file():
        source = "run"
        policy, config, extra = _run_policy(path)
        env_name, env_key = config.env, config.env_key
        agents = None
    else:
        raise EvaluationError(
            f"{path} is neither a run directory (config.json) nor an export version (metadata.json)."
        )
    env = make_env(env_name, env_key)
    renderer = getattr(env.unwrapped, "render", None) if render else None
    if render and not callable(renderer):
        raise EvaluationError(f"Environment {env_name!r} cannot render.")

    n = env.n_agents
    returns = []
    for k in range(episodes):
        obs, state, avail = env.reset(seed=_episode_seed(seed, k))
        if agents is not None:
            agents.reset()
        else:
            hidden = policy.initial_hidden(n)
            last = np.full(n, -1, np.int32)
        total, done = 0.0, False
        while not done:
            if agents is not None:
                actions = agents.act(obs, avail)
            else:
                q, hidden = policy.step(obs, np.arange(n, dtype=np.int32), last, hidden)
                actions = policy.greedy(q, avail)
                last = actions
            obs, state, avail, reward, terminated, truncated, _ = env.step(np.asarray(actions, np.int64))
            total += reward
            if renderer is not None:
                renderer()
            done = terminated or truncated
        returns.append(total)
    returns = np.asarray(returns)
    if report_path is None:
        report_path = path / "evaluation.json" if source == "run" else Path("evaluation.json")
    report = {
        "path": str(path), "source": source, "env": env_name, "env_key": env_key,
        "episodes": episodes, "seed": seed, "policy": "greedy",
        "return_mean": float(returns.mean()), "return_std": float(returns.std()),
        "return_min": float(returns.min()), "return_max": float(returns.max()),
        "returns": returns.tolist(), **extra, "report_path": str(report_path),
    }
    write_json_atomic(report_path, report)
    return report
