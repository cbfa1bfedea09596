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


class _GreedyTeam:
    """A trained agent network with the `reset()` / `act(obs, avail)` interface of the export runtime."""

    def __init__(self, policy):
        self.policy = policy

    def reset(self):
        n = self.policy.n_agents
        self._ids = np.arange(n, dtype=np.int32)
        self._hidden = self.policy.initial_hidden(n)
        self._last = np.full(n, -1, np.int32)

    def act(self, obs, avail_actions):
        q, self._hidden = self.policy.step(obs, self._ids, self._last, self._hidden)
        self._last = self.policy.greedy(q, avail_actions)
        return self._last


def _run_policy(path: Path):
    """(greedy team, config, extra report fields) for a run directory."""
    from . import checkpoint as ckpt
    from .policy import NumpyAgentPolicy
    from .training import load_run

    config = Config.load(path / "config.json")
    if (path / "model.keras").is_file():
        run = load_run(path)
        return _GreedyTeam(NumpyAgentPolicy(run.agent)), config, {"t_env": run.run.get("t_env"), "weights": "model.keras"}
    latest = ckpt.load_latest(path / "checkpoints")
    if latest is None:
        raise EvaluationError(f"{path} has neither model.keras nor an intact checkpoint to evaluate.")
    from .envs import make_env
    from .learner import QLearner

    ckpt_path, arrays, state = latest
    learner = QLearner(make_env(config.env, config.env_key).info, config)
    learner.set_state(arrays["variables"])
    return _GreedyTeam(NumpyAgentPolicy(learner.agent)), config, {"t_env": state["loop"]["t_env"], "weights": ckpt_path.name}


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
        from kqmix_runtime import DecentralisedAgents

        agents = DecentralisedAgents(path)
        extra = {"t_env": meta.get("training", {}).get("t_env"), "weights": "agent.onnx"}
    elif (path / "config.json").is_file():
        source = "run"
        agents, config, extra = _run_policy(path)
        env_name, env_key = config.env, config.env_key
    else:
        raise EvaluationError(
            f"{path} is neither a run directory (config.json) nor an export version (metadata.json)."
        )
    env = make_env(env_name, env_key)
    renderer = getattr(env.unwrapped, "render", None) if render else None
    if render and not callable(renderer):
        raise EvaluationError(f"Environment {env_name!r} cannot render.")

    returns = []
    for k in range(episodes):
        obs, state, avail = env.reset(seed=_episode_seed(seed, k))
        agents.reset()
        total, done = 0.0, False
        while not done:
            actions = agents.act(obs, avail)
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
