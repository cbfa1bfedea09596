"""The training loop, run directories and loading a finished run.

A run directory holds:

* `config.json` - the full `Config`;
* `env.json` - environment name, key, sizes, action meanings, fallback notes;
* `metrics.jsonl` - one JSON object per logged row;
* `model.keras` - the Functional agents + mixer model (written atomically);
* `run.json` - env steps, episodes, train steps, last greedy test return.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .config import Config, write_json_atomic


@dataclass
class TrainResult:
    run_dir: Path
    t_env: int
    episodes: int
    train_steps: int
    test_return_mean: float | None
    learner: object


def make_run_dir(config: Config, preset: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    env = config.env + (f"-{config.env_key}" if config.env_key else "")
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in env)
    base = Path(config.runs_dir) / f"{safe}__{preset}__{config.seed}__{stamp}"
    path, i = base, 1
    while path.exists():
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    path.mkdir(parents=True)
    return path


def env_description(config: Config, env) -> dict:
    info = env.info
    return {
        "env": config.env,
        "env_key": config.env_key,
        **dataclasses.asdict(info),
        "action_meanings": env.action_meanings,
        "notes": list(env.notes),
    }


def save_model_atomic(model, path) -> None:
    """Saves a `.keras` file through a temporary file in the same directory."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def evaluate(runner, n_episodes: int) -> np.ndarray:
    """Greedy returns of `n_episodes` episodes (rounded up to whole runner batches)."""
    returns = []
    while len(returns) < n_episodes:
        _, stats = runner.run(greedy=True)
        returns.extend(stats.returns.tolist())
    return np.asarray(returns[:n_episodes])


def train(config: Config, preset: str = "custom", run_dir=None, quiet: bool = False) -> TrainResult:
    """Trains QMIX (or VDN) as configured; returns where the run was written and its totals."""
    import keras  # noqa: F401  (imports TensorFlow; kept out of module import)

    from .buffer import EpisodeBuffer
    from .envs import make_env
    from .learner import QLearner
    from .policy import NumpyAgentPolicy
    from .runner import LinearEpsilon, Runner

    keras.utils.set_random_seed(config.seed)
    run_dir = Path(run_dir) if run_dir is not None else make_run_dir(config, preset)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.json")

    envs = [make_env(config.env, config.env_key) for _ in range(config.batch_size_run)]
    test_envs = [make_env(config.env, config.env_key) for _ in range(config.batch_size_run)]
    write_json_atomic(run_dir / "env.json", env_description(config, envs[0]))
    info = envs[0].info
    for note in envs[0].notes:
        if not quiet:
            print(f"[kqmix] {config.env}: {note}")

    learner = QLearner(info, config)
    policy = NumpyAgentPolicy(learner.agent)
    runner = Runner(envs, policy, seed=config.seed)
    test_runner = Runner(test_envs, policy, seed=config.seed + 10_000)
    buffer = EpisodeBuffer(info, config.buffer_size)
    epsilon = LinearEpsilon(config.epsilon_start, config.epsilon_finish, config.epsilon_anneal_time)
    rng = np.random.default_rng(config.seed)

    t_env = episodes = train_steps = 0
    last_log = last_test = -10**18
    recent_returns: list[float] = []
    last_metrics: dict[str, float] = {}
    test_mean = None
    start = time.perf_counter()
    metrics_path = run_dir / "metrics.jsonl"

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]train[/bold]"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} steps"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        disable=quiet,
    )
    with progress, open(metrics_path, "a") as metrics_file:
        task = progress.add_task("train", total=config.t_max, status="")
        while t_env < config.t_max:
            eps = epsilon(t_env)
            episode_batch, stats = runner.run(epsilon=eps)
            buffer.insert(episode_batch)
            t_env += stats.steps
            episodes += runner.n_envs
            recent_returns.extend(stats.returns.tolist())

            if buffer.can_sample(config.batch_size):
                last_metrics = learner.train(buffer.sample(config.batch_size, rng), episodes)
                policy.sync()
                train_steps += 1

            if t_env - last_test >= config.test_interval or t_env >= config.t_max:
                last_test = t_env
                if config.test_nepisode:
                    test_mean = float(evaluate(test_runner, config.test_nepisode).mean())

            if t_env - last_log >= config.log_interval or t_env >= config.t_max:
                last_log = t_env
                elapsed = time.perf_counter() - start
                row = {
                    "t_env": t_env,
                    "episode": episodes,
                    "train_steps": train_steps,
                    "return_mean": float(np.mean(recent_returns)) if recent_returns else None,
                    "test_return_mean": test_mean,
                    "epsilon": eps,
                    **last_metrics,
                    "steps_per_sec": t_env / max(elapsed, 1e-9),
                    "time": elapsed,
                }
                metrics_file.write(json.dumps(row) + "\n")
                metrics_file.flush()
                recent_returns.clear()
                status = f"return {row['return_mean']:.3g}"
                if test_mean is not None:
                    status += f"  test {test_mean:.3g}"
                progress.update(task, status=status)
            progress.update(task, completed=min(t_env, config.t_max))

    save_model_atomic(learner.model, run_dir / "model.keras")
    write_json_atomic(
        run_dir / "run.json",
        {
            "t_env": t_env,
            "episodes": episodes,
            "train_steps": train_steps,
            "test_return_mean": test_mean,
            "kqmix_version": __version__,
            "preset": preset,
        },
    )
    return TrainResult(run_dir, t_env, episodes, train_steps, test_mean, learner)


@dataclass
class LoadedRun:
    """A finished run read back from disk."""

    run_dir: Path
    config: Config
    env: dict
    run: dict
    model: object  # keras.Model

    @property
    def agent(self):
        return self.model.get_layer("agent")

    @property
    def mixer(self):
        return self.model.get_layer("mixer")


def load_run(run_dir) -> LoadedRun:
    """Loads a run directory written by `train` (Keras safe mode: no code is executed)."""
    run_dir = Path(run_dir)
    missing = [n for n in ("config.json", "env.json", "run.json", "model.keras") if not (run_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{run_dir} is not a finished kqmix run directory: missing {', '.join(missing)}."
        )
    import keras

    from . import layers, networks  # noqa: F401  (registers the serialisable classes)

    config = Config.load(run_dir / "config.json")
    env = json.loads((run_dir / "env.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    return LoadedRun(run_dir, config, env, run, model)
