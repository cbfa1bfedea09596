"""Weighted QMIX: the layers, the weighted losses against a numpy reference, and the registry."""

import os

import keras
import numpy as np
import pytest

from kqmix.config import ConfigError, make_config
from kqmix.layers import QMixer, RNNAgent
from kqmix.mixers import MIXERS, mixer_class
from kqmix.networks import build_qmix_model
from kqmix.wqmix import CentralMixer, CWQMixer, OWQMixer

from test_learner import INFO, make_batch, make_learner

N, A, O, S = 3, 4, 5, 6


def test_central_mixer_shapes_weights_config(rng):
    mixer = CentralMixer(N, embed_dim=8)
    qs, state = rng.normal(size=(2, 7, N)).astype("float32"), rng.normal(size=(2, 7, S)).astype("float32")
    out = mixer([qs, state])
    assert tuple(out.shape) == (2, 7)
    dense = lambda i, o: i * o + o  # noqa: E731
    expected = dense(N + S, 8) + 2 * dense(8, 8) + dense(8, 1) + dense(S, 8) + dense(8, 1)
    assert sum(int(np.prod(w.shape)) for w in mixer.trainable_weights) == expected
    clone = CentralMixer.from_config(mixer.get_config())
    clone([qs, state])
    clone.set_weights(mixer.get_weights())
    np.testing.assert_allclose(clone([qs, state]), out, rtol=1e-6)
    with pytest.raises(ValueError, match="expected 3"):
        CentralMixer(3)([np.zeros((2, 4), "float32"), np.zeros((2, S), "float32")])


@pytest.mark.parametrize("cls", [OWQMixer, CWQMixer])
def test_weighted_mixer_is_qmix_and_saves_with_its_critic(cls, tmp_path, rng):
    mixer = cls(N, A, O, embed_dim=4, hypernet_embed=8, central_embed_dim=8, central_hidden_dim=6, name="mixer")
    mixer.build([(None, None, N), (None, None, S)])
    assert isinstance(mixer.qmix, QMixer) and isinstance(mixer.central_agent, RNNAgent)
    qs, state = rng.normal(size=(2, 4, N)).astype("float32"), rng.normal(size=(2, 4, S)).astype("float32")
    np.testing.assert_array_equal(mixer([qs, state]), mixer.qmix([qs, state]))  # acting and `mix` are QMIX's
    agent = RNNAgent(N, A, hidden_dim=6, name="agent")
    agent.build([(None, None, N, O), (None, None, N)])
    model = build_qmix_model(agent, mixer, S)
    path = tmp_path / "wqmix.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True).get_layer("mixer")
    assert type(restored) is cls and restored.alpha == mixer.alpha
    np.testing.assert_allclose(restored.central_q(qs, state), mixer.central_q(qs, state), rtol=1e-6)
    np.testing.assert_allclose(restored([qs, state]), mixer([qs, state]), rtol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        cls(N, A, O, alpha=0.0)


def test_the_registry_names_every_mixer_and_refuses_others():
    assert list(MIXERS) == ["qmix", "vdn", "ow_qmix", "cw_qmix"]
    assert mixer_class("ow_qmix") is OWQMixer and mixer_class("cw_qmix") is CWQMixer
    with pytest.raises(ValueError, match="Unknown mixer 'qplex'; expected one of 'qmix', 'vdn', 'ow_qmix', 'cw_qmix'"):
        mixer_class("qplex")
    with pytest.raises(ConfigError, match="`mixer`: 'qplex'; expected one of 'qmix', 'vdn', 'ow_qmix', 'cw_qmix'"):
        make_config(None, {"mixer": "qplex"})


TINY_WQMIX = dict(central_mixing_embed_dim=8, central_rnn_hidden_dim=6, wqmix_alpha=0.25)


def reference_losses(learner, batch, gamma, td_lambda, double_q):
    """numpy: Weighted QMIX's two losses and mean weight from the layers themselves, 1-step or TD(lambda)."""
    from test_learner import reference_targets

    mixer, target = learner.mixer, learner.target_mixer
    last = np.concatenate([-np.ones_like(batch["actions"][:, :1]), batch["actions"]], axis=1)
    q = np.asarray(learner.agent([batch["obs"], last]))  # (B, T+1, N, A)
    tq = np.asarray(learner.target_agent([batch["obs"], last]))
    cq = np.asarray(mixer.central_agent([batch["obs"], last]))
    tcq = np.asarray(target.central_agent([batch["obs"], last]))
    avail = batch["avail_actions"] > 0
    avail = avail | ~avail.any(-1, keepdims=True)
    greedy = np.argmax(np.where(avail, q, -np.inf), -1)  # (B, T+1, N)
    boot = greedy[:, 1:] if double_q else np.argmax(np.where(avail[:, 1:], tq[:, 1:], -np.inf), -1)
    pick = lambda qs, at: np.take_along_axis(qs, at[..., None], -1)[..., 0]  # noqa: E731
    states, next_states = batch["state"][:, :-1], batch["state"][:, 1:]
    v = np.asarray(target.central_q(pick(tcq[:, 1:], boot), next_states))  # Q̂*(s', bootstrap), (B, T)
    targets = reference_targets(batch, v, gamma, td_lambda)
    q_tot = np.asarray(mixer([pick(q[:, :-1], batch["actions"]), states]))
    central = np.asarray(mixer.central_q(pick(cq[:, :-1], batch["actions"]), states))
    td = q_tot - targets
    if isinstance(mixer, OWQMixer):
        favoured = td < 0
    else:
        greedy_tot = np.asarray(target.central_q(pick(tcq[:, :-1], greedy[:, :-1]), states))
        favoured = (batch["actions"] == greedy[:, :-1]).all(-1) | (targets > greedy_tot)
    w = np.where(favoured, 1.0, mixer.alpha)
    filled = batch["filled"]
    n = filled.sum()
    return {"loss_qmix": (w * filled * td**2).sum() / n, "loss_central": (filled * (central - targets) ** 2).sum() / n,
            "wqmix_weight_mean": (w * filled).sum() / n}


@pytest.mark.parametrize("mixer", ["ow_qmix", "cw_qmix"])
@pytest.mark.parametrize("double_q, td_lambda", [(True, 0.0), (False, 0.6)])
def test_weighted_losses_match_numpy_reference(mixer, double_q, td_lambda, rng):
    learner = make_learner(mixer=mixer, double_q=double_q, td_lambda=td_lambda, **TINY_WQMIX)
    batch = make_batch(rng)
    expected = reference_losses(learner, batch, 0.99, td_lambda, double_q)
    metrics = learner.train(batch, 1)  # the metrics are of the weights before this update
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert metrics["loss"] == pytest.approx(metrics["loss_qmix"] + metrics["loss_central"], rel=1e-6)
    assert 0.25 <= metrics["wqmix_weight_mean"] <= 1.0


@pytest.mark.parametrize("mixer", ["ow_qmix", "cw_qmix"])
def test_both_recurrences_give_the_same_update(mixer, rng):
    batch = make_batch(rng)
    runs = [make_learner(seed=2, mixer=mixer, recurrence=r, **TINY_WQMIX).train(batch, 1) for r in ("keras", "fused")]
    for key in runs[0]:
        assert runs[1][key] == pytest.approx(runs[0][key], rel=1e-4, abs=1e-5), key


def test_the_critic_learns_and_its_target_is_copied(rng):
    learner = make_learner(mixer="ow_qmix", optimizer="adam", lr=3e-3, target_update_interval=10**6, **TINY_WQMIX)
    batch = make_batch(rng)
    losses = [learner.train(batch, 1)["loss_central"] for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0]
    names = {v.path for v in learner.trainable_variables}
    assert {"mixer/central_agent/fc1/kernel", "mixer/central_mixer/out/kernel"} <= names
    assert len(learner.target_variables) == len(learner.trainable_variables)
    state = learner.get_state()
    assert "target_mixer/central_mixer/v_out/bias" in state
    assert INFO.n_agents == learner.mixer.n_agents


@pytest.fixture(scope="module")
def wqmix_export(tmp_path_factory):
    """A short OW-QMIX run on the non-monotonic game, exported and validated (critic included)."""
    from kqmix.export import export_run
    from kqmix.training import train

    base = tmp_path_factory.mktemp("wqmix")
    config = make_config("matrix_non_monotonic_ow", {"t_max": 400, "runs_dir": str(base / "runs"),
                                                      "central_mixing_embed_dim": 16, "rnn_hidden_dim": 8,
                                                      "central_rnn_hidden_dim": 8, "test_interval": 400})
    result = train(config, preset="matrix_non_monotonic_ow", quiet=True)
    version = export_run(result.run_dir, name="wq", out=base / "models", check=True, litert=False)
    return result, version


def test_an_export_of_weighted_qmix_names_its_mixer_and_validates_its_critic(wqmix_export):
    import json

    from kqmix.export import validate_export
    from kqmix_runtime import spec

    result, version = wqmix_export
    meta = json.loads((version / spec.METADATA_FILE).read_text())
    assert meta["mixer"] == {"type": "OWQMixer", "kind": "ow_qmix", "signatures": ["critic"]}
    assert meta["sizes"]["central_hidden_dim"] == 8 and spec.CRITIC_ONNX in meta["files"]
    report = validate_export(version, result.run_dir)
    for artifact in ("saved_model", spec.CRITIC_ONNX, f"onnx.reference/{spec.CRITIC_ONNX}"):
        assert report.max_ratio[f"{artifact}:{spec.CRITIC}:q_star"] <= 1.0


def test_a_fresh_process_loads_and_exports_a_weighted_qmix_run(wqmix_export, tmp_path):
    """`kqmix export` on a run of its own: nothing has imported `kqmix.wqmix` before the run loads."""
    import subprocess
    import sys

    result, _ = wqmix_export
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "kqmix.cli", "export", str(result.run_dir), "--name", "fresh",
                           "--out", str(tmp_path), "--no-litert"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    from kqmix_runtime import spec

    (version,) = (tmp_path / "fresh").iterdir()
    assert (version / spec.CRITIC_ONNX).is_file()


def test_the_runtime_critic_follows_the_keras_critic_over_an_episode(wqmix_export, rng):
    from kqmix_runtime import Critic, DecentralisedAgents

    result, version = wqmix_export
    mixer = result.learner.mixer
    critic, agents = Critic(version), DecentralisedAgents(version)
    n, c = mixer.n_agents, mixer.central_hidden_dim
    for episode in range(2):
        critic.reset()
        hidden, last = np.zeros((1, n, c), np.float32), np.full((1, n), -1, np.int32)
        for _ in range(3):
            obs = rng.normal(size=(n, mixer.obs_dim)).astype(np.float32)
            state = rng.normal(size=(result.learner.info.state_dim,)).astype(np.float32)
            actions = rng.integers(0, mixer.n_actions, n).astype(np.int32)
            expected = mixer.critic_step(obs[None], last, actions[None], state[None], hidden)
            got = critic.q_star(obs, actions, state)
            assert got == pytest.approx(float(expected["q_star"][0]), rel=1e-5, abs=1e-5)
            hidden, last = np.asarray(expected["next_hidden"]), actions[None]
    assert agents.act(np.ones((n, 1), np.float32), np.ones((n, mixer.n_actions), np.float32)).shape == (n,)


def test_the_runtime_refuses_a_mixer_it_does_not_know_and_a_critic_that_is_not_there(wqmix_export, tmp_path):
    import json
    import shutil

    from kqmix_runtime import Critic, DecentralisedAgents, spec
    from kqmix_runtime.errors import MissingArtifactError, UnknownMixerError

    _, version = wqmix_export
    newer = tmp_path / "newer"
    shutil.copytree(version, newer)
    meta = json.loads((newer / spec.METADATA_FILE).read_text())
    meta["mixer"]["signatures"].append("qplex_attention")
    (newer / spec.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(UnknownMixerError, match="'qplex_attention'.*update kqmix-runtime"):
        DecentralisedAgents(newer)
    shipped = os.path.join(os.path.dirname(__file__), "..", "saved_models", "two_step", "1")  # QMIX
    with pytest.raises(MissingArtifactError, match="only Weighted QMIX"):
        Critic(shipped)
