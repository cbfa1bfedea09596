"""The training loop, run directories and loading a finished run.

A run directory holds:

* `config.json` - the full `Config`;
* `env.json` - environment name, key, sizes, action meanings, fallback notes;
* `metrics.jsonl` and `tb/` - the logged scalars as JSON lines and TensorBoard events;
* `checkpoints/` - see `kqmix.checkpoint`; `train(..., resume=True)` continues from them;
* `model.keras` - the Functional agents + mixer model (written atomically);
* `run.json` - env steps, episodes, train steps, last and best greedy test return.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .config import Config, RunError, write_json_atomic


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


def evaluate(runner, n_episodes: int, seeds_for=None) -> np.ndarray:
    """Greedy returns of `n_episodes` episodes (rounded up to whole runner batches).

    `seeds_for(k)` gives the environment seeds of the k-th runner batch.
    """
    returns, k = [], 0
    while len(returns) < n_episodes:
        _, stats = runner.run(greedy=True, seeds=None if seeds_for is None else seeds_for(k))
        returns.extend(stats.returns.tolist())
        k += 1
    return np.asarray(returns[:n_episodes])


def episode_seeds(seed: int, stream: int, k: int, m: int) -> list[int]:
    """Environment seeds for the k-th batch of M episodes of one stream.

    Every episode's seed is a function of (run seed, stream, batch index), so
    a resumed run replays exactly the episodes an uninterrupted one would.
    """
    return [int(x) for x in np.random.SeedSequence([seed, stream, k]).generate_state(m)]


TRAIN_STREAM, TEST_STREAM = 0, 1
TIMING_KEYS = ("time", "steps_per_sec")
#: Config keys a resumed run may change; anything else would make it a different run.
RESUMABLE_KEYS = ("t_max", "checkpoint_interval", "checkpoint_keep", "checkpoint_buffer",
                  "runs_dir", "tensorboard", "log_interval", "test_interval", "test_nepisode")


class TrainingInterrupted(KeyboardInterrupt):
    """Training was stopped (Ctrl-C); carries the run directory and its newest checkpoint."""

    def __init__(self, run_dir: Path, checkpoint: str | None):
        super().__init__(run_dir, checkpoint)
        self.run_dir, self.checkpoint = run_dir, checkpoint


def check_resumable(saved: Config, requested: Config) -> None:
    changed = [
        f"{k} (run: {getattr(saved, k)!r}, given: {getattr(requested, k)!r})"
        for k in saved.to_dict()
        if k not in RESUMABLE_KEYS and getattr(saved, k) != getattr(requested, k)
    ]
    if changed:
        raise RunError(
            "Cannot resume with an incompatible config; these keys differ: " + "; ".join(changed)
            + f". Only {', '.join(RESUMABLE_KEYS)} may change on resume."
        )


def _truncate_metrics(path: Path, t_env: int) -> None:
    """Keeps the rows up to the checkpoint (and drops a half-written last line)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            break
        if row["t_env"] > t_env:
            break
        kept.append(line)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-metrics-")
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(line + "\n" for line in kept))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def _set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state


def train(config: Config, preset: str = "custom", run_dir=None, quiet: bool = False,
          resume: bool = False) -> TrainResult:
    """Trains QMIX (or VDN) as configured; returns where the run was written and its totals.

    With `resume=True`, `run_dir` must be an existing run: its newest intact
    checkpoint is loaded and training continues exactly where it stopped.
    """
    import keras
    import tensorflow as tf

    from . import checkpoint as ckpt
    from .buffer import EpisodeBuffer
    from .envs import make_env
    from .learner import QLearner
    from .policy import NumpyAgentPolicy
    from .runner import LinearEpsilon, Runner

    if resume:
        if run_dir is None or not (Path(run_dir) / "config.json").is_file():
            raise RunError(f"{run_dir} is not a kqmix run directory (no config.json); nothing to resume.")
        run_dir = Path(run_dir)
        check_resumable(Config.load(run_dir / "config.json"), config)
        latest = ckpt.load_latest(run_dir / "checkpoints")
        if latest is None:
            raise RunError(f"{run_dir} has no intact checkpoint to resume from.")
        preset = json.loads((run_dir / "env.json").read_text()).get("preset", preset)

    elif run_dir is not None and (Path(run_dir) / "config.json").exists():
        raise RunError(f"{run_dir} already holds a run; resume it with --resume or choose another directory.")

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    if not resume:
        run_dir = Path(run_dir) if run_dir is not None else make_run_dir(config, preset)
        run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.json")

    m = config.batch_size_run
    vec = None
    if config.env_workers:
        from .envs.vector import SubprocessVecEnv

        vec = SubprocessVecEnv(config.env, config.env_key, n_envs=m, n_workers=config.env_workers)
        envs = vec.envs
    else:
        envs = [make_env(config.env, config.env_key) for _ in range(m)]
    test_envs = [make_env(config.env, config.env_key) for _ in range(m)]
    write_json_atomic(run_dir / "env.json", {**env_description(config, envs[0]), "preset": preset})
    info = envs[0].info
    if not quiet and not resume:
        for note in envs[0].notes:
            print(f"[kqmix] {config.env}: {note}")

    learner = QLearner(info, config)
    policy = NumpyAgentPolicy(learner.agent)
    runner = Runner(envs, policy, seed=config.seed)
    test_runner = Runner(test_envs, policy, seed=config.seed)
    buffer = EpisodeBuffer(info, config.buffer_size)
    epsilon = LinearEpsilon(config.epsilon_start, config.epsilon_finish, config.epsilon_anneal_time)
    sample_rng = np.random.default_rng([config.seed, 1])

    loop = dict(t_env=0, episodes=0, train_steps=0, batches=0, test_batches=0,
                last_log=-(10**18), last_test=-(10**18), last_ckpt=0,
                test_mean=None, best_test=None, best_checkpoint=None,
                recent_returns=[], last_metrics={}, elapsed=0.0)
    metrics_path = run_dir / "metrics.jsonl"
    if resume:
        path, arrays, state = latest
        learner.set_state(arrays["variables"])
        if "buffer" in arrays:
            buffer.set_state(arrays["buffer"])
        loop.update(state["loop"])
        _set_rng_state(runner.rng, state["rng"]["explore"])
        _set_rng_state(sample_rng, state["rng"]["sample"])
        policy.sync()
        _truncate_metrics(metrics_path, loop["t_env"])
        if not quiet:
            print(f"[kqmix] resuming {run_dir} from {path.name} (env step {loop['t_env']:,})")
    elif metrics_path.exists():
        metrics_path.unlink()

    def save_checkpoint():
        root = run_dir / "checkpoints"
        if loop["test_mean"] is not None and (loop["best_test"] is None or loop["test_mean"] > loop["best_test"]):
            loop["best_test"], loop["best_checkpoint"] = loop["test_mean"], ckpt.checkpoint_name(loop["t_env"])
        arrays = {"variables": learner.get_state()}
        if config.checkpoint_buffer:
            arrays["buffer"] = buffer.get_state()
        state = {"loop": loop, "rng": {"explore": _rng_state(runner.rng), "sample": _rng_state(sample_rng)},
                 "kqmix_version": __version__}
        ckpt.write_checkpoint(root, loop["t_env"], arrays, state)
        best = root / loop["best_checkpoint"] if loop["best_checkpoint"] else None
        ckpt.prune(root, config.checkpoint_keep, protect=best)

    writer = tf.summary.create_file_writer(str(run_dir / "tb")) if config.tensorboard else None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]train[/bold]"), BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} steps"),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
        disable=quiet,
    )
    start = time.perf_counter() - loop["elapsed"]
    try:
        with progress, open(metrics_path, "a") as metrics_file, contextlib.ExitStack() as cleanup:
            if vec is not None:
                cleanup.callback(vec.close)
            task = progress.add_task("train", total=config.t_max, status="", completed=loop["t_env"])
            while loop["t_env"] < config.t_max:
                eps = epsilon(loop["t_env"])
                seeds = episode_seeds(config.seed, TRAIN_STREAM, loop["batches"], m)
                episode_batch, stats = runner.run(epsilon=eps, seeds=seeds)
                loop["batches"] += 1
                buffer.insert(episode_batch)
                loop["t_env"] += stats.steps
                loop["episodes"] += m
                loop["recent_returns"].extend(stats.returns.tolist())
                t_env = loop["t_env"]

                if buffer.can_sample(config.batch_size):
                    loop["last_metrics"] = learner.train(buffer.sample(config.batch_size, sample_rng), loop["episodes"])
                    policy.sync()
                    loop["train_steps"] += 1

                if t_env - loop["last_test"] >= config.test_interval or t_env >= config.t_max:
                    loop["last_test"] = t_env
                    if config.test_nepisode:
                        first = loop["test_batches"]
                        returns = evaluate(test_runner, config.test_nepisode,
                                           lambda k: episode_seeds(config.seed, TEST_STREAM, first + k, m))
                        loop["test_batches"] += -(-config.test_nepisode // m)
                        loop["test_mean"] = float(returns.mean())

                if t_env - loop["last_log"] >= config.log_interval or t_env >= config.t_max:
                    loop["last_log"] = t_env
                    elapsed = time.perf_counter() - start
                    recent = loop["recent_returns"]
                    row = {
                        "t_env": t_env, "episode": loop["episodes"], "train_steps": loop["train_steps"],
                        "return_mean": float(np.mean(recent)) if recent else None,
                        "test_return_mean": loop["test_mean"], "epsilon": eps,
                        **loop["last_metrics"],
                        "steps_per_sec": t_env / max(elapsed, 1e-9), "time": elapsed,
                    }
                    metrics_file.write(json.dumps(row) + "\n")
                    metrics_file.flush()
                    os.fsync(metrics_file.fileno())
                    if writer is not None:
                        with writer.as_default(step=t_env):
                            for key, value in row.items():
                                if isinstance(value, (int, float)) and key != "t_env":
                                    tf.summary.scalar(key, value)
                        writer.flush()
                    loop["recent_returns"] = []
                    status = f"return {row['return_mean']:.3g}" if recent else ""
                    if loop["test_mean"] is not None:
                        status += f"  test {loop['test_mean']:.3g}"
                    progress.update(task, status=status)
                progress.update(task, completed=min(t_env, config.t_max))

                if t_env - loop["last_ckpt"] >= config.checkpoint_interval or t_env >= config.t_max:
                    loop["last_ckpt"] = t_env
                    loop["elapsed"] = time.perf_counter() - start
                    save_checkpoint()
    except KeyboardInterrupt:
        # Work since the newest checkpoint is lost by design; say where to pick up.
        saved = ckpt.list_checkpoints(run_dir / "checkpoints")
        raise TrainingInterrupted(run_dir, saved[-1].name if saved else None) from None

    save_model_atomic(learner.model, run_dir / "model.keras")
    write_json_atomic(
        run_dir / "run.json",
        {
            "t_env": loop["t_env"],
            "episodes": loop["episodes"],
            "train_steps": loop["train_steps"],
            "test_return_mean": loop["test_mean"],
            "best_test_return_mean": loop["best_test"],
            "kqmix_version": __version__,
            "preset": preset,
        },
    )
    return TrainResult(run_dir, loop["t_env"], loop["episodes"], loop["train_steps"], loop["test_mean"], learner)


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
