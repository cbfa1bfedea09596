"""Greedy evaluation, and the seeds of every episode kqmix plays.

* `episode_seeds(seed, stream, k, m)` - the environment seeds of the k-th
  batch of M episodes of one stream; training, its greedy tests and
  `kqmix evaluate` each have their own stream of the run's seed;
* `greedy_episodes(runner, n, seed, stream)` - greedy returns (and wins, where
  the environment reports them) over a `Runner` (the training loop's tests);
* `random_returns(env, env_key, n)` - the same test episodes played with
  uniformly random available actions: the baseline results are compared with;
* `evaluate_path(path)` - `kqmix evaluate` of a run directory or an exported
  version, through the same `reset()` / `act()` interface the export runtime
  offers, with a JSON report; on the run's own environment or on a variant of
  it with the same agents, observations and actions (e.g. another time limit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kqmix_runtime.spec import NO_LAST_ACTION

from . import rundir
from .files import write_json_atomic

#: Seed streams: training episodes, greedy test episodes during training, `kqmix evaluate`.
TRAIN_STREAM, TEST_STREAM, EVAL_STREAM = 0, 1, 2


class EvaluationError(ValueError):
    """The path cannot be evaluated as asked."""


def episode_seeds(seed: int, stream: int, k: int, m: int) -> list[int]:
    """Environment seeds for the k-th batch of M episodes of one stream.

    Every episode's seed is a function of (run seed, stream, batch index), so
    a resumed run replays exactly the episodes an uninterrupted one would.
    """
    return [int(x) for x in np.random.SeedSequence([seed, stream, k]).generate_state(m)]


def greedy_episodes(runner, n_episodes: int, seed: int, stream: int, first_batch: int = 0):
    """`(returns (n,), won (n,) or None)` of `n_episodes` greedy episodes (played in whole batches of
    the runner's M); `won` (1.0 = won) where the environment reports wins (SMAX), else None.

    Batch k of the runner plays the seeds `episode_seeds(seed, stream, first_batch + k, M)`.
    """
    returns, won, k = [], [], 0
    while len(returns) < n_episodes:
        _, stats = runner.run(greedy=True, seeds=episode_seeds(seed, stream, first_batch + k, runner.n_envs))
        returns.extend(stats.returns.tolist())
        if stats.won is not None:
            won.extend(stats.won.tolist())
        k += 1
    wins = np.asarray(won[:n_episodes], np.float64) if len(won) >= n_episodes else None
    return np.asarray(returns[:n_episodes]), wins


def random_returns(env: str, env_key: str | None, n_episodes: int = 100, seed: int = 0, stream: int = TEST_STREAM) -> np.ndarray:
    """Team returns of `n_episodes` episodes in which every agent picks uniformly among its available actions.

    Episode k is seeded like the k-th greedy test episode of a run with one
    environment and this seed; the action draws have their own generator.
    """
    from .envs import make_env

    environment = make_env(env, env_key)
    rng = np.random.default_rng([seed, stream])
    returns = np.zeros(n_episodes)
    try:
        for k in range(n_episodes):
            _, _, avail = environment.reset(seed=episode_seeds(seed, stream, k, 1)[0])
            for _ in range(environment.episode_limit):
                actions = np.array([rng.choice(np.flatnonzero(row)) for row in avail])
                _, _, avail, reward, terminated, truncated, _ = environment.step(actions)
                returns[k] += reward
                if terminated or truncated:
                    break
    finally:
        environment.close()
    return returns


class _GreedyTeam:
    """A trained agent network with the `reset()` / `act(obs, avail)` interface of the export runtime."""

    def __init__(self, policy):
        self.policy = policy

    def reset(self):
        n = self.policy.n_agents
        self._ids = np.arange(n, dtype=np.int32)
        self._hidden = self.policy.initial_hidden(n)
        self._last = np.full(n, NO_LAST_ACTION, np.int32)

    def act(self, obs, avail_actions):
        q, self._hidden = self.policy.step(obs, self._ids, self._last, self._hidden)
        self._last = self.policy.greedy(q, avail_actions)
        return self._last


def _run_policy(path: Path):
    """(greedy team, config, extra report fields) for a run directory."""
    from .policy import NumpyAgentPolicy

    config = rundir.read_config(path)
    if (path / rundir.MODEL_FILE).is_file():
        run = rundir.load_run(path)
        return (_GreedyTeam(NumpyAgentPolicy(run.agent)), config,
                {"t_env": run.run.get("t_env"), "weights": rundir.MODEL_FILE})
    latest = rundir.latest_checkpoint(path)
    if latest is None:
        raise EvaluationError(f"{path} has neither {rundir.MODEL_FILE} nor an intact checkpoint to evaluate.")
    from .envs import make_env
    from .learner import QLearner

    ckpt_path, arrays, state = latest
    learner = QLearner(make_env(config.env, config.env_key).info, config)
    learner.set_state(arrays["variables"])
    return _GreedyTeam(NumpyAgentPolicy(learner.agent)), config, {"t_env": state["loop"]["t_env"], "weights": ckpt_path.name}


def _export_report_path(version_dir: Path, meta: dict, env_key: str | None) -> Path:
    """Where the report on an exported version goes by default: into the run it was exported from
    (a published version directory is never written to, nor is the current directory)."""
    run_dir = (meta.get("source") or {}).get("run_dir")
    if not run_dir or not (Path(run_dir) / rundir.CONFIG_FILE).is_file():
        raise EvaluationError(
            f"{version_dir} was exported from a run directory that is not here ({run_dir or 'not recorded'}); "
            "say where the report goes with --report PATH."
        )
    export = (meta.get("name", version_dir.parent.name), version_dir.name)
    return Path(run_dir) / rundir.evaluation_file(export=export, env_key=env_key)


def _variant_env(env_name: str, trained_key: str, env_key: str):
    """The environment `env_key` names, checked to fit a policy trained on `trained_key`."""
    from .envs import make_env
    from .envs.base import POLICY_SIZES, size_mismatch

    try:
        env = make_env(env_name, env_key)
    except ValueError as exc:
        raise EvaluationError(f"--env-key {env_key!r}: {exc}") from exc
    trained = make_env(env_name, trained_key).info
    size = size_mismatch(env.info, trained)
    if size:
        raise EvaluationError(
            f"--env-key {env_key!r} gives {env_name} with {size}={getattr(env.info, size)}, but the policy "
            f"was trained on {trained_key or 'the default'!r} with {size}={getattr(trained, size)}. Expected a "
            f"variant with the same {', '.join(POLICY_SIZES)} (for example another time limit)."
        )
    return env


def evaluate_path(path, episodes: int = 100, seed: int = 12345, report_path=None, render: bool = False,
                  env_key: str | None = None) -> dict:
    """Runs `episodes` greedy episodes and writes a JSON report; returns the report.

    `env_key` plays them on that variant of the run's environment instead of its own (same agents,
    observations and actions, e.g. a longer time limit); the report then goes to its own file.
    """
    from kqmix_runtime import spec

    from .envs import make_env

    path = Path(path)
    if episodes < 1:
        raise EvaluationError(f"--episodes must be at least 1. Received: {episodes}")
    if (path / spec.METADATA_FILE).is_file():
        source = "export"
        from kqmix_runtime import DecentralisedAgents, load_metadata

        meta = load_metadata(path)
        env_name, trained_key = meta["environment"]["env"], meta["environment"]["env_key"]
        agents = DecentralisedAgents(path)
        extra = {"t_env": meta.get("training", {}).get("t_env"), "weights": "agent.onnx"}
    elif (path / rundir.CONFIG_FILE).is_file():
        source = "run"
        agents, config, extra = _run_policy(path)
        env_name, trained_key = config.env, config.final_env_key
    else:
        raise EvaluationError(
            f"{path} is neither a run directory ({rundir.CONFIG_FILE}) nor an export version "
            f"({spec.METADATA_FILE})."
        )
    variant = env_key if env_key not in (None, trained_key) else None
    if report_path is None:
        report_path = (_export_report_path(path, meta, variant) if source == "export"
                       else path / rundir.evaluation_file(env_key=variant))
    if variant is None:
        env_key, env = trained_key, make_env(env_name, trained_key)
    else:
        env = _variant_env(env_name, trained_key, variant)
        extra["trained_env_key"] = trained_key
    renderer = getattr(env.unwrapped, "render", None) if render else None
    if render and not callable(renderer):
        raise EvaluationError(f"Environment {env_name!r} cannot render.")

    from .envs.batched import WON_KEY

    reports_wins = bool(getattr(env.unwrapped, "reports_wins", False))
    returns, wins = [], []
    for k in range(episodes):
        (episode_seed,) = episode_seeds(seed, EVAL_STREAM, k, 1)
        obs, state, avail = env.reset(seed=episode_seed)
        agents.reset()
        total, done = 0.0, False
        while not done:
            actions = agents.act(obs, avail)
            obs, state, avail, reward, terminated, truncated, info = env.step(np.asarray(actions, np.int64))
            total += reward
            if renderer is not None:
                renderer()
            done = terminated or truncated
        returns.append(total)
        wins.append(float(bool((info or {}).get(WON_KEY, False))))
    returns = np.asarray(returns)
    report = {
        "path": str(path), "source": source, "env": env_name, "env_key": env_key,
        "episodes": episodes, "seed": seed, "policy": "greedy",
        "return_mean": float(returns.mean()), "return_std": float(returns.std()),
        "return_min": float(returns.min()), "return_max": float(returns.max()),
        **({"win_rate": float(np.mean(wins))} if reports_wins else {}),
        "returns": returns.tolist(), **extra, "report_path": str(report_path),
    }
    write_json_atomic(report_path, report)
    return report
