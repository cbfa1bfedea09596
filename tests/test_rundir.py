"""The run directory: loading is safe, resume checks name what differs."""

import pytest

from kqmix import rundir
from kqmix.config import Config


def test_loading_never_runs_code(tmp_path):
    import keras

    from kqmix.rundir import load_run

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model.save(run_dir / "model.keras")
    from kqmix.config import Config

    Config().save(run_dir / "config.json")
    for name in ("env.json", "run.json"):
        (run_dir / name).write_text("{}")
    with pytest.raises(ValueError, match="(?i)lambda|unsafe|safe_mode"):
        load_run(run_dir)



def test_resume_checks_name_the_problem(reference_runs, tmp_path):
    with pytest.raises(rundir.RunError, match="no such directory"):
        rundir.open_for_resume(tmp_path / "absent")
    with pytest.raises(rundir.RunError, match="no config.json"):
        rundir.open_for_resume(tmp_path)
    with pytest.raises(rundir.RunError, match="these keys differ: lr"):
        rundir.open_for_resume(reference_runs["a"], overrides={"lr": 0.1})
    config, preset, latest = rundir.open_for_resume(reference_runs["a"], overrides={"t_max": 800})
    assert config.t_max == 800 and preset == "two_step" and latest[0].name == "ckpt-000000000600"
    assert rundir.read_config(reference_runs["a"]).t_max == 600  # checking writes nothing
    half = tmp_path / "half"
    half.mkdir()
    Config().save(half / rundir.CONFIG_FILE)
    with pytest.raises(rundir.RunError, match="missing env.json, run.json, model.keras"):
        rundir.load_run(half)


def test_truncate_metrics_keeps_rows_up_to_the_checkpoint(tmp_path):
    (tmp_path / rundir.METRICS_FILE).write_text('{"t_env": 1}\n{"t_env": 2}\n{"t_env": 3}\n{"t_e')
    rundir.truncate_metrics(tmp_path, 2)
    assert rundir.read_metrics(tmp_path) == [{"t_env": 1}, {"t_env": 2}]
