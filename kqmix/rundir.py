"""The run directory: what `kqmix train` writes, and the one place that knows its layout.

`runs/<env>__<preset>__<seed>__<time>/` holds

* `config.json` - the full `Config`;
* `env.json` - environment name, key, sizes, action meanings, fallback notes, preset;
* `metrics.jsonl` and `tb/` - the logged scalars as JSON lines and TensorBoard events;
* `checkpoints/` - see `kqmix.checkpoint`; a resumed run continues from the newest intact one;
* `model.keras` - the Functional agents + mixer model, written when training ends;
* `run.json` - env steps, episodes, train steps, last and best greedy test return, and the
  source revision of each sitting that trained it (`kqmix.provenance`);
* `evaluation.json` - the report of `kqmix evaluate RUN_DIR`, if it was run,
  `evaluation-export-<name>-<version>.json` that of an exported version of the run, and
  either with `-env-<key>` before `.json` when it was played on another variant of the
  run's environment (`kqmix evaluate --env-key`).

Training, evaluation, plotting, the CLI and the exporter all read and write
runs through this module; none of them imports the training loop to do so.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from . import checkpoint as ckpt
from .config import Config, ConfigError
from .files import atomic_path, write_json_atomic, write_text_atomic

CONFIG_FILE = "config.json"
ENV_FILE = "env.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tb"
CHECKPOINTS_DIR = "checkpoints"
MODEL_FILE = "model.keras"
SUMMARY_FILE = "run.json"
_EVALUATION, _ON_ENV = "evaluation", "-env-"  # evaluation reports: see `evaluation_file`


def evaluation_file(export: tuple[str, str] | None = None, env_key: str | None = None) -> str:
    """The report `kqmix evaluate` writes into a run: of its final model, or of one of its exported
    versions (`export=(model name, version)`); `env_key` names the environment variant the episodes
    were played on when it is not the run's own (characters other than letters, digits and `._=@-`
    become `_`)."""
    name = _EVALUATION
    if export is not None:
        name += "-export-{}-{}".format(*export)
    if env_key:
        name += _ON_ENV + re.sub(r"[^A-Za-z0-9._=@-]+", "_", env_key)
    return name + ".json"


EVALUATION_FILE = evaluation_file()


def env_variant_evaluation_files(run_dir: str | Path) -> list[Path]:
    """The reports of `kqmix evaluate RUN_DIR --env-key KEY` in a run (its final model played on
    other variants of its environment), in name order."""
    return sorted(Path(run_dir).glob(f"{_EVALUATION}{_ON_ENV}*.json"))


#: Files a finished run has; `load_run` needs all of them.
FINISHED_FILES = (CONFIG_FILE, ENV_FILE, SUMMARY_FILE, MODEL_FILE)

#: Config keys a resumed run may change; anything else would make it a different run.
RESUMABLE_KEYS = ("t_max", "checkpoint_interval", "checkpoint_keep", "checkpoint_buffer",
                  "runs_dir", "tensorboard", "log_interval", "test_interval", "test_nepisode",
                  # Where episodes are stepped and updates computed, not what they are.
                  "rollout_backend", "ray_actors", "distribute")


class RunError(ValueError):
    """A run directory is missing, not a run, or cannot be resumed as asked."""


# --------------------------------------------------------------------------- creating


def new_run_path(config: Config, preset: str) -> Path:
    """A fresh `runs_dir/<env>__<preset>__<seed>__<time>` path (not created yet)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in config.final_env_name)
    base = Path(config.runs_dir) / f"{safe}__{preset}__{config.seed}__{stamp}"
    path, i = base, 1
    while path.exists():
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    return path


def check_new(run_dir) -> None:
    """Refuses a directory that already holds a run (it would be overwritten)."""
    if run_dir is not None and (Path(run_dir) / CONFIG_FILE).exists():
        raise RunError(f"{run_dir} already holds a run; resume it with --resume or choose another directory.")


def create(run_dir: Path, config: Config, env_description: dict, preset: str) -> Path:
    """Makes the directory and writes `config.json` and `env.json`; call once every input is valid."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / CONFIG_FILE)
    write_env(run_dir, env_description, preset)
    return run_dir


def write_env(run_dir, env_description: dict, preset: str) -> None:
    """Writes `env.json`: `describe_env`'s description and the preset the run was started with."""
    write_json_atomic(Path(run_dir) / ENV_FILE, {**env_description, "preset": preset})


def describe_env(config: Config, env) -> dict:
    """What `env.json` records about the run's final environment (`env`, a `CheckedEnv` of
    `config.final_env_key`): the one its final model is evaluated and exported for."""
    return {
        "env": config.env,
        "env_key": config.final_env_key,
        **dataclasses.asdict(env.info),
        "action_meanings": env.action_meanings,
        "notes": list(env.notes),
    }


# --------------------------------------------------------------------------- reading


def require_run(run_dir) -> Path:
    """`run_dir` as a Path, or a `RunError` if it is not a run directory."""
    path = Path(run_dir)
    if not (path / CONFIG_FILE).is_file():
        reason = "no such directory" if not path.exists() else f"no {CONFIG_FILE}"
        raise RunError(f"{run_dir} is not a kqmix run directory ({reason}).")
    return path


def read_config(run_dir) -> Config:
    path = require_run(run_dir) / CONFIG_FILE
    try:
        return Config.load(path)
    except (ValueError, ConfigError) as exc:
        raise RunError(f"{path} is not a valid kqmix config: {exc}") from None


def read_env(run_dir) -> dict:
    return json.loads((Path(run_dir) / ENV_FILE).read_text())


def read_summary(run_dir) -> dict:
    return json.loads((Path(run_dir) / SUMMARY_FILE).read_text())


def read_metrics(run_dir) -> list[dict]:
    """The metric rows of a run; a half-written last line (a killed run) is dropped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
    return rows


def latest_checkpoint(run_dir):
    """The newest intact checkpoint as `(path, arrays, state)`, or None (see `kqmix.checkpoint`)."""
    return ckpt.load_latest(Path(run_dir) / CHECKPOINTS_DIR)


def checkpoints_dir(run_dir) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


def metrics_path(run_dir) -> Path:
    return Path(run_dir) / METRICS_FILE


def tensorboard_dir(run_dir) -> Path:
    return Path(run_dir) / TENSORBOARD_DIR


# --------------------------------------------------------------------------- resuming


#: Keys that may change on resume while what they change lies ahead of the checkpoint: the switch
#: of training environment (`Config.switch_env_key`), until it has happened.
SWITCH_KEYS = ("switch_env_key", "switch_env_at")


def check_resumable(saved: Config, requested: Config, loop: dict | None = None) -> None:
    """Refuses a resume whose config changes what the run has already done; `loop` is the loop
    state of the checkpoint resumed from (without it, the switch keys may not change either)."""
    ahead = loop is not None and not loop.get("switched", False)
    changed = [
        f"{k} (run: {getattr(saved, k)!r}, given: {getattr(requested, k)!r})"
        for k in saved.to_dict()
        if k not in RESUMABLE_KEYS and not (ahead and k in SWITCH_KEYS) and getattr(saved, k) != getattr(requested, k)
    ]
    if not changed and ahead and requested.switch_env_key and requested.switch_env_at < loop["t_env"]:
        changed = [f"switch_env_at (given: {requested.switch_env_at:,}, before the checkpoint's env step "
                   f"{loop['t_env']:,})"]
    if changed:
        raise RunError(
            "Cannot resume with an incompatible config; these keys differ: " + "; ".join(changed)
            + f". Only {', '.join(RESUMABLE_KEYS)} may change on resume, and {' and '.join(SWITCH_KEYS)} "
            "while the switch lies ahead of the checkpoint."
        )


def open_for_resume(run_dir, overrides: dict | None = None, requested: Config | None = None):
    """Checks that `run_dir` can be resumed; returns `(config, preset, latest checkpoint)`.

    The config is the run's own with `overrides` applied (only `RESUMABLE_KEYS`
    may change), or `requested` checked against it.
    """
    saved = read_config(run_dir)
    config = requested if requested is not None else saved.replace(**(overrides or {}))
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise RunError(f"{run_dir} has no intact checkpoint to resume from.")
    check_resumable(saved, config, latest[2]["loop"])
    preset = read_env(run_dir).get("preset", "custom")
    return config, preset, latest


def truncate_metrics(run_dir, t_env: int) -> None:
    """Keeps the metric rows up to `t_env` (a checkpoint's step), so a resumed run does not repeat rows."""
    path = metrics_path(run_dir)
    if path.exists():
        kept = [row for row in read_metrics(run_dir) if row["t_env"] <= t_env]
        write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in kept))


# --------------------------------------------------------------------------- finishing


def save_model(run_dir, model) -> None:
    """Writes `model.keras` atomically."""
    with atomic_path(Path(run_dir) / MODEL_FILE) as tmp:
        model.save(tmp)


def write_summary(run_dir, summary: dict) -> None:
    write_json_atomic(Path(run_dir) / SUMMARY_FILE, summary)


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
    """Loads a finished run (Keras safe mode: no code is executed); `RunError` if it is not one."""
    path = require_run(run_dir)
    missing = [name for name in FINISHED_FILES if not (path / name).is_file()]
    if missing:
        raise RunError(f"{run_dir} is not a finished kqmix run directory: missing {', '.join(missing)}.")
    import keras

    from . import layers, networks  # noqa: F401  (registers the serialisable classes)
    from .mixers import mixer_class

    config = read_config(path)
    mixer_class(config.mixer)  # imports, and so registers, the run's mixer (Weighted QMIX's is in kqmix.wqmix)
    model = keras.saving.load_model(path / MODEL_FILE, safe_mode=True)
    return LoadedRun(path, config, read_env(path), read_summary(path), model)
