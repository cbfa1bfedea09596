"""Configuration: presets, typed overrides, and clear errors for bad input."""

import json

import pytest

from kqmix.config import Config, ConfigError, make_config, parse_override
from kqmix.presets import PRESETS


def test_defaults_are_the_papers():
    c = Config()
    assert (c.mixing_embed_dim, c.hypernet_layers, c.hypernet_embed, c.rnn_hidden_dim) == (32, 2, 64, 64)
    assert (c.optimizer, c.lr, c.optim_alpha, c.optim_eps, c.grad_norm_clip) == ("rmsprop", 5e-4, 0.99, 1e-5, 10.0)
    assert (c.gamma, c.batch_size, c.buffer_size, c.target_update_interval, c.double_q) == (0.99, 32, 5000, 200, True)
    assert (c.epsilon_start, c.epsilon_finish, c.epsilon_anneal_time) == (1.0, 0.05, 50_000)


def test_overrides_are_typed():
    c = make_config("two_step", ["lr=0.01", "batch_size=16", "double_q=false", "t_max=1e4", "mixer=vdn"])
    assert (c.lr, c.batch_size, c.double_q, c.t_max, c.mixer) == (0.01, 16, False, 10_000, "vdn")


def test_every_preset_is_valid():
    for name in PRESETS:
        assert isinstance(make_config(name), Config)


def test_config_is_frozen():
    with pytest.raises(Exception):
        Config().lr = 1.0


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match="Unknown config key 'bach_size'.*Did you mean 'batch_size'"):
        make_config("two_step", ["bach_size=3"])
    with pytest.raises(ConfigError, match="Unknown config key 'gama'"):
        Config.from_dict({"gama": 0.9})


@pytest.mark.parametrize(
    "override, match",
    [
        ("lr=fast", "`lr`: 'fast'; expected a value of type float"),
        ("batch_size=2.5", "`batch_size`: '2.5'; expected a value of type int"),
        ("double_q=maybe", "`double_q`"),
        ("gamma=1.5", "`gamma`: 1.5; expected a float in \\[0, 1\\]"),
        ("mixer=qtran", "`mixer`: 'qtran'; expected one of 'qmix', 'vdn'"),
        ("lr_schedule=cosine", "`lr_schedule`: 'cosine'; expected 'constant' or 'linear'"),
        ("hypernet_layers=3", "`hypernet_layers`"),
        ("buffer_size=4", "`buffer_size`: 4; expected at least batch_size"),
        ("lr", "not of the form key=value"),
    ],
)
def test_invalid_values_name_the_field(override, match):
    with pytest.raises(ConfigError, match=match):
        make_config("two_step", [override])


def test_a_switch_of_environment_needs_its_step_and_another_key():
    with pytest.raises(ConfigError, match="`switch_env_at`: 0; expected an integer >= 1 .*switch_env_key='climbing'"):
        make_config("matrix_climbing", ["switch_env_key=climbing"])
    with pytest.raises(ConfigError, match="`switch_env_at`: 100; expected 0 without a switch_env_key"):
        make_config("two_step", ["switch_env_at=100"])
    with pytest.raises(ConfigError, match="`switch_env_key`: 'climbing'; expected a variant other than env_key"):
        make_config("matrix_climbing", ["env_key=climbing", "switch_env_key=climbing", "switch_env_at=100"])
    config = make_config("matrix_climbing", ["env_key=climbing", "switch_env_key=penalty", "switch_env_at=100"])
    assert (config.final_env_key, config.env_key_at(False), config.env_key_at(True)) == ("penalty", "climbing", "penalty")
    assert make_config("two_step").final_env_key == ""


def test_a_switched_run_is_named_for_the_environment_it_ends_on(tmp_path):
    from export.exporter import default_name
    from kqmix.rundir import new_run_path

    config = make_config("matrix_climbing", ["env_key=climbing", "switch_env_key=penalty", "switch_env_at=100",
                                             f"runs_dir={tmp_path}"])
    assert config.final_env_name == "matrix-penalty"
    assert new_run_path(config, "matrix_climbing").name.startswith("matrix-penalty__matrix_climbing__0__")
    assert default_name(config) == "matrix-penalty"
    assert default_name(make_config("two_step")) == "two_step"


def test_wrong_python_type_is_refused():
    with pytest.raises(ConfigError, match="`batch_size`"):
        Config(batch_size="32")


def test_unknown_preset():
    with pytest.raises(ConfigError, match="Unknown preset 'two_stpe'. Did you mean 'two_step'"):
        make_config("two_stpe")


def test_config_json_round_trip(tmp_path):
    c = make_config("two_step", ["seed=7"])
    c.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == c
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 7
    assert list(tmp_path.iterdir()) == [tmp_path / "config.json"]  # no temporary left behind


def test_parse_override_accepts_underscored_ints():
    assert parse_override("t_max=20_000") == ("t_max", 20_000)
