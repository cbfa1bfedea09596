"""The training loop: collect episodes, learn, test, log and checkpoint until `t_max` env steps.

`train(config)` reads top to bottom; the work of each line is a method of
`Trainer`, whose counters are one `LoopState` dataclass that checkpoints
store as it is. Where the run's files go is `kqmix.rundir`'s business.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from . import __version__
from . import checkpoint as ckpt
from . import rundir
from .config import Config, ConfigError
from .evaluation import TEST_STREAM, TRAIN_STREAM, episode_seeds, greedy_episodes
from .provenance import source_revision


@dataclass
class TrainResult:
    run_dir: Path
    t_env: int
    episodes: int
    train_steps: int
    test_return_mean: float | None
    learner: object


class TrainingInterrupted(KeyboardInterrupt):
    """Training was stopped (Ctrl-C); carries the run directory and its newest checkpoint."""

    def __init__(self, run_dir: Path, checkpoint: str | None):
        super().__init__(run_dir, checkpoint)
        self.run_dir, self.checkpoint = run_dir, checkpoint


@dataclass
class LoopState:
    """The loop's counters and running figures; a checkpoint stores them as they are."""

    t_env: int = 0
    episodes: int = 0
    train_steps: int = 0
    batches: int = 0  # training batches of M episodes collected: the index into their seed stream
    test_batches: int = 0  # the same for greedy test episodes
    last_log: int | None = None  # env step of the last metrics row (None: never)
    last_test: int | None = None
    last_ckpt: int = 0
    test_mean: float | None = None
    test_win_rate: float | None = None  # of the last greedy test, where the environment reports wins
    best_test: float | None = None  # the best greedy test so far
    best_checkpoint: str | None = None  # the checkpoint kept for its test return (never pruned)
    best_checkpoint_test: float | None = None  # that checkpoint's test return
    recent_returns: list = field(default_factory=list)  # training returns since the last row
    last_metrics: dict = field(default_factory=dict)  # the learner's latest scalars
    elapsed: float = 0.0  # seconds of training before this process (resumed runs)
    revisions: list = field(default_factory=list)  # source revision of each sitting (kqmix.provenance)
    switched: bool = False  # training has moved to `Config.switch_env_key`

    @classmethod
    def from_dict(cls, data: dict) -> "LoopState":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise rundir.RunError(f"The checkpoint's loop state has unknown keys {unknown}; "
                                  f"it was written by another kqmix version than {__version__}.")
        # Checkpoints of kqmix 0.1.0 marked "never" with a large negative step.
        never = {k: None for k in ("last_log", "last_test") if data.get(k) is not None and data[k] < 0}
        # ... and tracked only the best test seen at a checkpoint.
        kept = {} if "best_checkpoint_test" in data else {"best_checkpoint_test": data.get("best_test")}
        return cls(**{**data, **never, **kept})


def due(last: int | None, t_env: int, interval: int) -> bool:
    return last is None or t_env - last >= interval


@contextlib.contextmanager
def _environment_of(config: Config, key: str):
    """Turns a bad `env` / `key` (a `ValueError` from the registry or the adapter) into a `ConfigError`."""
    try:
        yield
    except ValueError as exc:
        name = "switch_env_key" if key == config.switch_env_key else "env_key"
        raise ConfigError(f"Invalid environment (env={config.env!r}, {name}={key!r}): {exc}") from None


def make_envs(config: Config, count: int, key: str | None = None) -> list:
    """`count` in-process environments (`key`, by default `config.env_key`); a bad `env` / key is a `ConfigError`."""
    from .envs import make_env

    key = config.env_key if key is None else key
    with _environment_of(config, key):
        return [make_env(config.env, key) for _ in range(count)]


def make_batched(config: Config, count: int, key: str | None = None):
    """`count` in-process environments (`key`, by default `config.env_key`) behind the batched interface
    the runner steps (one vectorised environment for `env=jaxmarl`); a bad `env` / key is a `ConfigError`."""
    from .envs import make_batched_env

    key = config.env_key if key is None else key
    with _environment_of(config, key):
        return make_batched_env(config.env, key, count)


def final_env(config: Config, probe):
    """The environment the run ends on (`probe`, one of `env_key`'s, unless it switches), checked to
    fit the model built for `env_key`; a variant of other sizes is a `ConfigError`."""
    from .envs.base import MODEL_SIZES, size_mismatch

    if not config.switch_env_key:
        return probe
    final = make_envs(config, 1, config.switch_env_key)[0]
    size = size_mismatch(final.info, probe.info, MODEL_SIZES)
    if size:
        raise ConfigError(
            f"Invalid value for `switch_env_key`: {config.switch_env_key!r} gives {config.env} with "
            f"{size}={getattr(final.info, size)}, but env_key={config.env_key!r} has {size}="
            f"{getattr(probe.info, size)}; expected a variant with the same {', '.join(MODEL_SIZES)} "
            "(for example another time limit)."
        )
    return final


class Trainer:
    """The parts of one run (environments, learner, buffer, runners, RNGs) and its `LoopState`."""

    def __init__(self, config: Config, run_dir: Path):
        from .learner import QLearner
        from .policy import NumpyAgentPolicy
        from .runner import LinearEpsilon

        self.config, self.run_dir = config, run_dir
        self._cleanup = contextlib.ExitStack()  # the training environments' workers or actors
        self.state = LoopState()
        test_envs = make_batched(config, config.batch_size_run)
        self.learner = QLearner(test_envs.info, config)
        self.policy = NumpyAgentPolicy(self.learner.agent)
        self._use_envs(test_envs)
        self.epsilon = LinearEpsilon(config.epsilon_start, config.epsilon_finish, config.epsilon_anneal_time)
        self.sample_rng = np.random.default_rng([config.seed, 1])
        self._started = time.perf_counter()

    def _use_envs(self, test_envs=None) -> None:
        """Runners and an empty replay buffer for the training environment of `state.switched`
        (`test_envs`: its greedy test environments, if made already)."""
        from .buffer import EpisodeBuffer
        from .runner import Runner

        c, m = self.config, self.config.batch_size_run
        key = c.env_key_at(self.state.switched)
        self._cleanup.close()
        test_envs = test_envs or make_batched(c, m, key)
        info = test_envs.info
        if c.rollout_backend == "ray":
            from .runner_ray import RayRunner

            self.runner = RayRunner(c, self.policy, info, seed=c.seed, env_key=key)
            self._cleanup.callback(self.runner.close)
        elif c.env_workers:
            from .envs.vector import SubprocessVecEnv

            vec = SubprocessVecEnv(c.env, key, n_envs=m, n_workers=c.env_workers)
            self._cleanup.callback(vec.close)
            self.runner = Runner(vec.envs, self.policy, seed=c.seed)
        else:
            self.runner = Runner(make_batched(c, m, key), self.policy, seed=c.seed, compiled=c.compiled_rollout)
        self.test_runner = Runner(test_envs, self.policy, seed=c.seed, compiled=c.compiled_rollout)
        self.buffer = EpisodeBuffer(info, c.buffer_size)
        self.learner.use_env(info)

    def switch_due(self) -> bool:
        c, s = self.config, self.state
        return bool(c.switch_env_key) and not s.switched and s.t_env >= c.switch_env_at

    def switch_envs(self) -> None:
        """Moves training to `switch_env_key`; the exploration stream goes on where it was."""
        explore = self.runner.rng.bit_generator.state
        self.state.switched = True
        self._use_envs()
        self.runner.rng.bit_generator.state = explore

    def start_clock(self) -> None:
        """Training time counts from here (plus `state.elapsed` of earlier sittings); the sitting's
        source revision joins the run's list."""
        self._started = time.perf_counter()
        revision = source_revision()
        if not self.state.revisions or self.state.revisions[-1] != revision:
            self.state.revisions.append(revision)

    def close(self) -> None:
        self._cleanup.close()

    # -- one iteration ---------------------------------------------------

    def collect(self) -> float:
        """One batch of M exploring episodes into the buffer; returns the epsilon used."""
        s, m = self.state, self.config.batch_size_run
        eps = self.epsilon(s.t_env)
        episodes, stats = self.runner.run(epsilon=eps, seeds=episode_seeds(self.config.seed, TRAIN_STREAM, s.batches, m))
        self.buffer.insert(episodes)
        s.batches += 1
        s.t_env += stats.steps
        s.episodes += m
        s.recent_returns.extend(stats.returns.tolist())
        return eps

    def learn(self) -> None:
        """One learner update once the buffer holds a batch; the acting policy follows it."""
        c, s = self.config, self.state
        if self.buffer.can_sample(c.batch_size):
            self.learner.update_learning_rate(s.t_env)
            s.last_metrics = self.learner.train(self.buffer.sample(c.batch_size, self.sample_rng), s.episodes)
            self.policy.sync()
            s.train_steps += 1

    def test(self) -> None:
        """Greedy test episodes from their own seed stream."""
        c, s = self.config, self.state
        s.last_test = s.t_env
        if c.test_nepisode:
            returns, won = greedy_episodes(self.test_runner, c.test_nepisode, c.seed, TEST_STREAM, s.test_batches)
            s.test_batches += -(-c.test_nepisode // c.batch_size_run)
            s.test_mean = float(returns.mean())
            s.test_win_rate = float(won.mean()) if won is not None else None
            if s.best_test is None or s.test_mean > s.best_test:
                s.best_test = s.test_mean

    def metrics_row(self, eps: float) -> dict:
        """The next row of `metrics.jsonl`; starts a new window of training returns."""
        s = self.state
        s.last_log = s.t_env
        elapsed = self.elapsed()
        recent, s.recent_returns = s.recent_returns, []
        # Environments that report wins (SMAX) add the greedy test win rate next to the return.
        wins = {"test_win_rate": s.test_win_rate} if self.test_runner.envs.reports_wins else {}
        return {
            "t_env": s.t_env, "episode": s.episodes, "train_steps": s.train_steps,
            "return_mean": float(np.mean(recent)) if recent else None,
            "test_return_mean": s.test_mean, **wins,
            "test_t_env": s.last_test if s.test_mean is not None else None,
            "epsilon": eps,
            **s.last_metrics,
            "steps_per_sec": s.t_env / max(elapsed, 1e-9), "time": elapsed,
        }

    def elapsed(self) -> float:
        return self.state.elapsed + time.perf_counter() - self._started

    # -- checkpoints -----------------------------------------------------

    def save_checkpoint(self) -> None:
        s, root = self.state, rundir.checkpoints_dir(self.run_dir)
        s.last_ckpt = s.t_env
        if s.test_mean is not None and (s.best_checkpoint_test is None or s.test_mean > s.best_checkpoint_test):
            s.best_checkpoint_test, s.best_checkpoint = s.test_mean, ckpt.checkpoint_name(s.t_env)
        arrays = {"variables": self.learner.get_state()}
        if self.config.checkpoint_buffer:
            arrays["buffer"] = self.buffer.get_state()
        loop = asdict(s)
        loop["elapsed"] = self.elapsed()
        state = {"loop": loop, "kqmix_version": __version__,
                 "rng": {"explore": self.runner.rng.bit_generator.state,
                         "sample": self.sample_rng.bit_generator.state}}
        ckpt.write_checkpoint(root, s.t_env, arrays, state)
        ckpt.prune(root, self.config.checkpoint_keep, protect=root / s.best_checkpoint if s.best_checkpoint else None)

    def restore(self, latest) -> None:
        """Continues from `(path, arrays, state)` of a checkpoint exactly where it was written."""
        _, arrays, state = latest
        self.learner.set_state(arrays["variables"])
        self.state = LoopState.from_dict(state["loop"])
        if self.state.switched:
            self._use_envs()
        if "buffer" in arrays:
            self.buffer.set_state(arrays["buffer"])
        self.runner.rng.bit_generator.state = state["rng"]["explore"]
        self.sample_rng.bit_generator.state = state["rng"]["sample"]
        self.policy.sync()
        rundir.truncate_metrics(self.run_dir, self.state.t_env)

    def summary(self, preset: str) -> dict:
        s = self.state
        return {"t_env": s.t_env, "episodes": s.episodes, "train_steps": s.train_steps,
                "test_return_mean": s.test_mean, "best_test_return_mean": s.best_test,
                **({"test_win_rate": s.test_win_rate} if s.test_win_rate is not None else {}),
                "kqmix_version": __version__, "kqmix_revisions": s.revisions, "preset": preset}


class MetricsLog:
    """Appends metric rows to `metrics.jsonl` (synced per row) and, optionally, TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool):
        import tensorflow as tf

        self._tf = tf
        self._file = open(rundir.metrics_path(run_dir), "a")
        self._writer = tf.summary.create_file_writer(str(rundir.tensorboard_dir(run_dir))) if tensorboard else None

    def write(self, row: dict) -> None:
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        if self._writer is not None:
            with self._writer.as_default(step=row["t_env"]):
                for key, value in row.items():
                    if isinstance(value, (int, float)) and key != "t_env":
                        self._tf.summary.scalar(key, value)
            self._writer.flush()

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def _progress(quiet: bool):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]train[/bold]"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} steps"),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"), disable=quiet)


def _status(row: dict) -> str:
    status = f"return {row['return_mean']:.3g}" if row["return_mean"] is not None else ""
    status += f"  test {row['test_return_mean']:.3g}" if row["test_return_mean"] is not None else ""
    return status + (f"  won {row['test_win_rate']:.0%}" if row.get("test_win_rate") is not None else "")


@contextlib.contextmanager
def _stop_on_ctrl_c():
    """Yields `requested()`: Ctrl-C asks the loop to stop at the end of its iteration.

    Stopping between iterations keeps the interrupt out of TensorFlow and
    file writes (where it could leave a trace half-built or be lost); a
    second Ctrl-C interrupts at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False  # signal handlers can only be set from the main thread
        return
    requested = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    signal.signal(signal.SIGINT, handler)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


def _seed_everything(config: Config) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


def train(config: Config, preset: str = "custom", run_dir=None, quiet: bool = False,
          resume: bool = False, on_metrics=None) -> TrainResult:
    """Trains QMIX (or VDN) as configured; returns where the run was written and its totals.

    Every input, the environment included, is checked before anything is
    written. With `resume=True`, `run_dir` must be an existing run: its
    newest intact checkpoint is loaded and training continues exactly where
    it stopped. `on_metrics(row)`, if given, is called with every metrics
    row once it is on disk (a sweep reports them to Ray Tune).
    """
    if resume:
        config, preset, latest = rundir.open_for_resume(run_dir, requested=config)
    else:
        rundir.check_new(run_dir)
        latest = None
    probe = make_envs(config, 1)[0]  # a bad environment stops here, before any file exists
    final = final_env(config, probe)
    _seed_everything(config)
    run_dir = Path(run_dir) if run_dir is not None else rundir.new_run_path(config, preset)
    trainer = Trainer(config, run_dir)
    with contextlib.closing(trainer):
        if latest is None:
            rundir.create(run_dir, config, rundir.describe_env(config, final), preset)
            for note in [] if quiet else probe.notes:
                print(f"[kqmix] {config.env}: {note}")
        else:
            # Resumable keys (t_max ...) may have changed, and with the switch keys the final environment.
            config.save(run_dir / rundir.CONFIG_FILE)
            rundir.write_env(run_dir, rundir.describe_env(config, final), preset)
            trainer.restore(latest)
            if not quiet:
                print(f"[kqmix] resuming {run_dir} from {latest[0].name} (env step {trainer.state.t_env:,})")
        s = trainer.state
        trainer.start_clock()
        try:
            with _progress(quiet) as progress, contextlib.closing(MetricsLog(run_dir, config.tensorboard)) as log, \
                    _stop_on_ctrl_c() as stop_requested:
                task = progress.add_task("train", total=config.t_max, status="", completed=s.t_env)
                while s.t_env < config.t_max:
                    if stop_requested():
                        raise KeyboardInterrupt
                    if trainer.switch_due():
                        trainer.switch_envs()
                        if not quiet:
                            progress.console.print(f"[kqmix] env step {s.t_env:,}: training moves to "
                                                   f"{config.env} {config.switch_env_key!r}", markup=False)
                    eps = trainer.collect()
                    trainer.learn()
                    end = s.t_env >= config.t_max
                    if end or due(s.last_test, s.t_env, config.test_interval):
                        trainer.test()
                    if end or due(s.last_log, s.t_env, config.log_interval):
                        row = trainer.metrics_row(eps)
                        log.write(row)
                        if on_metrics is not None:
                            on_metrics(row)
                        progress.update(task, status=_status(row))
                    progress.update(task, completed=min(s.t_env, config.t_max))
                    if end or due(s.last_ckpt, s.t_env, config.checkpoint_interval):
                        trainer.save_checkpoint()
        except KeyboardInterrupt:
            # Work since the newest checkpoint is lost by design; say where to pick up.
            saved = ckpt.list_checkpoints(rundir.checkpoints_dir(run_dir))
            raise TrainingInterrupted(run_dir, saved[-1].name if saved else None) from None
    rundir.save_model(run_dir, trainer.learner.model)
    rundir.write_summary(run_dir, trainer.summary(preset))
    return TrainResult(run_dir, s.t_env, s.episodes, s.train_steps, s.test_mean, trainer.learner)
