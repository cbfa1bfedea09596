"""The learner's TD step against a hand-written numpy reference on tiny batches."""

import numpy as np
import pytest

from kqmix.config import Config
from kqmix.envs import EnvInfo
from kqmix.learner import QLearner

INFO = EnvInfo(n_agents=2, n_actions=3, obs_dim=4, state_dim=5, episode_limit=5)
TINY = dict(rnn_hidden_dim=8, mixing_embed_dim=4, hypernet_embed=8, batch_size=4, buffer_size=8)


def make_learner(seed=0, **overrides):
    import keras

    keras.utils.set_random_seed(seed)
    learner = QLearner(INFO, Config(**{**TINY, **overrides}))
    # Targets that differ from the online nets, so double-Q and plain max differ.
    rng = np.random.default_rng(seed + 1)
    for var in learner.target_variables:
        var.assign(np.asarray(var) + rng.normal(scale=0.3, size=var.shape).astype("float32"))
    return learner


def make_batch(rng, lengths=(5, 3, 1, 4), terminal=(True, False, True, False)):
    """Random padded episodes; episode b has lengths[b] real steps."""
    B, T, N, A = len(lengths), INFO.episode_limit, INFO.n_agents, INFO.n_actions
    batch = {
        "obs": np.zeros((B, T + 1, N, INFO.obs_dim), "float32"),
        "state": np.zeros((B, T + 1, INFO.state_dim), "float32"),
        "avail_actions": np.zeros((B, T + 1, N, A), "float32"),
        "actions": np.zeros((B, T, N), "int32"),
        "reward": np.zeros((B, T), "float32"),
        "terminated": np.zeros((B, T), "float32"),
        "filled": np.zeros((B, T), "float32"),
    }
    for b, (length, term) in enumerate(zip(lengths, terminal)):
        batch["obs"][b, : length + 1] = rng.normal(size=(length + 1, N, INFO.obs_dim))
        batch["state"][b, : length + 1] = rng.normal(size=(length + 1, INFO.state_dim))
        avail = (rng.random((length + 1, N, A)) < 0.6).astype("float32")
        avail[..., 0] = np.maximum(avail[..., 0], avail.sum(-1) == 0)
        batch["avail_actions"][b, : length + 1] = avail
        for t in range(length):
            for a in range(N):
                batch["actions"][b, t, a] = rng.choice(np.flatnonzero(avail[t, a]))
        batch["reward"][b, :length] = rng.normal(size=length)
        batch["filled"][b, :length] = 1.0
        batch["terminated"][b, length - 1] = float(term)
    return batch


def reference_terms(learner, batch, gamma, td_lambda, double_q):
    """numpy: q_tot of the taken actions and forward-view TD(lambda) targets."""
    last = np.concatenate([-np.ones_like(batch["actions"][:, :1]), batch["actions"]], axis=1)
    q = np.asarray(learner.agent([batch["obs"], last]))  # (B, T+1, N, A)
    tq = np.asarray(learner.target_agent([batch["obs"], last]))
    chosen = np.take_along_axis(q[:, :-1], batch["actions"][..., None], -1)[..., 0]
    q_tot = np.asarray(learner.mixer([chosen, batch["state"][:, :-1]]))
    avail = batch["avail_actions"][:, 1:] > 0
    avail = avail | ~avail.any(-1, keepdims=True)
    if double_q:
        best = np.argmax(np.where(avail, q[:, 1:], -np.inf), -1)
        next_q = np.take_along_axis(tq[:, 1:], best[..., None], -1)[..., 0]
    else:
        next_q = np.where(avail, tq[:, 1:], -np.inf).max(-1)
    v = np.asarray(learner.target_mixer([next_q, batch["state"][:, 1:]]))  # V(s_{t+1}), (B, T)
    return q_tot, reference_targets(batch, v, gamma, td_lambda)


def reference_targets(batch, v, gamma, td_lambda):
    """numpy: forward-view TD(lambda) targets `(B, T)` bootstrapping from `v (B, T)` = V(s_{t+1})."""
    B, T = batch["reward"].shape
    targets = np.zeros((B, T))
    for b in range(B):
        length = int(batch["filled"][b].sum())
        term = batch["terminated"][b, length - 1] > 0
        r = batch["reward"][b]
        for t in range(length):
            # n-step returns G^(n)_t, bootstrapping from V(s_{t+n}) unless terminal.
            def n_step(n):
                g = sum(gamma**k * r[t + k] for k in range(n))
                end = t + n  # index of the bootstrap state
                if not (term and end == length):
                    g += gamma**n * v[b, end - 1]
                return g

            horizon = length - t
            lam = td_lambda
            g = sum((1 - lam) * lam ** (n - 1) * n_step(n) for n in range(1, horizon))
            g += lam ** (horizon - 1) * n_step(horizon)
            targets[b, t] = g
    return targets


@pytest.mark.parametrize("double_q", [True, False])
@pytest.mark.parametrize("td_lambda", [0.0, 0.6])
def test_targets_match_numpy_reference(double_q, td_lambda, rng):
    learner = make_learner(double_q=double_q, td_lambda=td_lambda, gamma=0.9)
    batch = make_batch(rng)
    q_tot, targets = learner.td_terms(batch)
    ref_q, ref_targets = reference_terms(learner, batch, 0.9, td_lambda, double_q)
    mask = batch["filled"] > 0
    np.testing.assert_allclose(q_tot[mask], ref_q[mask], atol=1e-5)
    np.testing.assert_allclose(targets[mask], ref_targets[mask], atol=1e-4)
    # The step's loss is the masked mean squared TD error before the update.
    metrics = learner.train(batch, episode=1)
    expected = np.sum(((ref_q - ref_targets) * mask) ** 2) / mask.sum()
    assert metrics["loss"] == pytest.approx(expected, rel=1e-4)


def test_double_q_differs_from_max(rng):
    batch = make_batch(rng)
    _, with_double = make_learner(double_q=True).td_terms(batch)
    _, with_max = make_learner(double_q=False).td_terms(batch)
    assert not np.allclose(with_double, with_max)


def test_padded_steps_change_nothing(rng):
    batch = make_batch(rng)
    other = {k: v.copy() for k, v in batch.items()}
    noise = np.random.default_rng(7)
    for b in range(len(batch["filled"])):
        length = int(batch["filled"][b].sum())
        # Steps after the episode's last transition (the next-state at index
        # `length` is real: truncated episodes bootstrap from it).
        other["obs"][b, length + 1 :] = noise.normal(size=other["obs"][b, length + 1 :].shape)
        other["state"][b, length + 1 :] = noise.normal(size=other["state"][b, length + 1 :].shape)
        other["avail_actions"][b, length + 1 :] = 1.0
        other["actions"][b, length:] = noise.integers(0, INFO.n_actions, size=other["actions"][b, length:].shape)
        other["reward"][b, length:] = noise.normal(size=other["reward"][b, length:].shape) * 100
        other["terminated"][b, length:] = 1.0
    assert any(not np.array_equal(batch[k], other[k]) for k in batch)
    learner_a, learner_b = make_learner(seed=3), make_learner(seed=3)
    mask = batch["filled"] > 0
    for x, y in zip(learner_a.td_terms(batch), learner_b.td_terms(other)):
        np.testing.assert_allclose(x[mask], y[mask], atol=1e-6)
    metrics_a = learner_a.train(batch, 1)
    metrics_b = learner_b.train(other, 1)
    for key in ("loss", "grad_norm", "q_taken_mean", "target_mean"):
        assert metrics_a[key] == pytest.approx(metrics_b[key], rel=1e-5, abs=1e-6)
    for va, vb in zip(learner_a.trainable_variables, learner_b.trainable_variables):
        np.testing.assert_allclose(np.asarray(va), np.asarray(vb), atol=1e-6)


def test_truncation_bootstraps_termination_does_not(rng):
    learner = make_learner(gamma=0.9)
    batch = make_batch(rng, lengths=(3,), terminal=(True,))
    truncated = {k: v.copy() for k, v in batch.items()}
    truncated["terminated"][:] = 0.0
    _, t_term = learner.td_terms(batch)
    _, t_trunc = learner.td_terms(truncated)
    _, ref = reference_terms(learner, truncated, 0.9, 0.0, True)
    assert t_term[0, 2] == pytest.approx(batch["reward"][0, 2], abs=1e-6)
    assert t_trunc[0, 2] == pytest.approx(ref[0, 2], abs=1e-5)
    assert abs(t_trunc[0, 2] - t_term[0, 2]) > 1e-3
    np.testing.assert_allclose(t_term[0, :2], t_trunc[0, :2], atol=1e-6)


def test_without_truncation_bootstrap_the_last_step_is_terminal(rng):
    # TD(1) targets of a 3-step truncated episode are then plain discounted
    # sums of the rewards, whatever the networks output.
    learner = make_learner(gamma=0.5, td_lambda=1.0, bootstrap_truncated=False)
    batch = make_batch(rng, lengths=(3, 2), terminal=(False, False))
    batch["reward"][0, :3] = [1.0, 2.0, 4.0]
    batch["reward"][1, :2] = [-2.0, 6.0]
    _, targets = learner.td_terms(batch)
    np.testing.assert_allclose(targets[0, :3], [3.0, 4.0, 4.0], atol=1e-6)
    np.testing.assert_allclose(targets[1, :2], [1.0, 6.0], atol=1e-6)
    # Same targets as the default learner given terminated episodes, for any lambda.
    for td_lambda in (0.0, 0.6):
        no_boot = make_learner(gamma=0.9, td_lambda=td_lambda, bootstrap_truncated=False)
        default = make_learner(gamma=0.9, td_lambda=td_lambda)
        trunc = make_batch(np.random.default_rng(5), terminal=(False, False, False, False))
        term = make_batch(np.random.default_rng(5), terminal=(True, True, True, True))
        mask = trunc["filled"] > 0
        _, t_no_boot = no_boot.td_terms(trunc)
        _, t_term = default.td_terms(term)
        _, t_boot = default.td_terms(trunc)
        np.testing.assert_allclose(t_no_boot[mask], t_term[mask], atol=1e-5)
        assert not np.allclose(t_no_boot[mask], t_boot[mask])


def _weights(variables):
    return [np.asarray(v).copy() for v in variables]


def test_hard_target_copy_exactly_every_k_episodes(rng):
    k = 5
    learner = make_learner(target_update_interval=k)
    batch = make_batch(rng)
    updated = []
    for episode in range(1, 13):
        metrics = learner.train(batch, episode)
        updated.append(metrics["target_updated"])
        same = all(
            np.array_equal(t, o) for t, o in zip(_weights(learner.target_variables), _weights(learner.trainable_variables))
        )
        assert same == (episode % k == 0), f"episode {episode}"
    assert updated == [float(e % k == 0) for e in range(1, 13)]


def test_soft_target_update(rng):
    tau = 0.1
    learner = make_learner(target_update_tau=tau)
    before = _weights(learner.target_variables)
    learner.train(make_batch(rng), 1)
    online = _weights(learner.trainable_variables)
    for old, new, o in zip(before, _weights(learner.target_variables), online):
        np.testing.assert_allclose(new, old + tau * (o - old), atol=1e-6)


def test_jit_compile_matches_graph(rng):
    batch = make_batch(rng)
    plain = make_learner(seed=5).train(batch, 1)
    jitted = make_learner(seed=5, jit_compile=True).train(batch, 1)
    for key in plain:
        assert jitted[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-5)


# RAdam's rectification warms the step up over its first thousands of updates (r_t = 0.16 at
# update 60, 0.37 at 300), so it is given more updates to halve the loss.
@pytest.mark.parametrize("optimizer, updates", [("rmsprop", 60), ("adam", 60), ("radam", 300)])
def test_training_reduces_loss_on_a_fixed_batch(optimizer, updates, rng):
    learner = make_learner(optimizer=optimizer, lr=3e-3, target_update_interval=10**6)
    batch = make_batch(rng)
    losses = [learner.train(batch, 1)["loss"] for _ in range(updates)]
    assert losses[-1] < 0.5 * losses[0]
    assert int(learner.train_steps.numpy()) == updates


def test_reward_standardisation_tracks_filled_rewards(rng):
    learner = make_learner(standardise_rewards=True)
    batch = make_batch(rng)
    metrics = learner.train(batch, 1)
    rewards = batch["reward"][batch["filled"] > 0]
    assert float(learner.reward_stats.mean.numpy()) == pytest.approx(rewards.mean(), rel=1e-3)
    assert float(learner.reward_stats.var.numpy()) == pytest.approx(rewards.var(), rel=1e-2)
    assert metrics["reward_mean"] == pytest.approx(rewards.mean(), rel=1e-3)
    assert metrics["reward_std"] == pytest.approx(rewards.std(), rel=1e-2)


def test_mixed_precision_trains_with_dynamic_loss_scaling(rng):
    learner = make_learner(mixed_precision=True)
    batch = make_batch(rng)
    start = _weights(learner.trainable_variables)
    # Early steps may overflow in float16; the loss-scale optimizer then skips
    # the update and lowers the scale instead of corrupting the weights.
    history = [learner.train(batch, 1) for _ in range(8)]
    assert all(np.isfinite(v) for v in history[-1].values())
    assert all(np.isfinite(w).all() for w in _weights(learner.trainable_variables))
    assert any(not np.array_equal(a, b) for a, b in zip(start, _weights(learner.trainable_variables)))
    assert learner.agent.compute_dtype == "float16"
    assert learner.agent.fc1.kernel.dtype == "float32"


@pytest.mark.parametrize("mixed_precision", [False, True])
def test_linear_lr_schedule_reaches_zero_at_t_max(mixed_precision, rng):
    learner = make_learner(optimizer="adam", lr=1e-3, lr_schedule="linear", t_max=1000,
                           mixed_precision=mixed_precision)
    assert [learner.learning_rate_at(t) for t in (0, 250, 1000, 1200)] == pytest.approx([1e-3, 7.5e-4, 0.0, 0.0])
    assert make_learner(lr=1e-3).learning_rate_at(900) == 1e-3  # constant
    batch = make_batch(rng)
    learner.update_learning_rate(1000)
    before = [np.array(v) for v in learner.trainable_variables]
    learner.train(batch, episode=1)
    for old, var in zip(before, learner.trainable_variables):
        np.testing.assert_array_equal(old, np.asarray(var))  # lr 0: the compiled step reads the new value
    learner.update_learning_rate(0)
    learner.train(batch, episode=2)
    assert any(not np.array_equal(old, np.asarray(var)) for old, var in zip(before, learner.trainable_variables))
    assert learner.train_step.experimental_get_tracing_count() == 1


def test_checkpoint_state_names_every_network_and_round_trips(rng, tmp_path):
    from kqmix import checkpoint as ckpt

    learner = make_learner(optimizer="adam", standardise_rewards=True)
    learner.train(make_batch(rng), 1)
    state = learner.get_state()
    groups = {name.split("/")[0] for name in state}
    assert groups == {"agent", "mixer", "target_agent", "target_mixer", "optimizer", "learner"}
    assert "agent/fc1/kernel" in state and "target_mixer/hyper_v/out/bias" in state
    # Through a real checkpoint file (names with slashes inside the .npz).
    path = ckpt.write_checkpoint(tmp_path, 1, {"variables": state}, {})
    arrays, _ = ckpt.load_checkpoint(path)
    other = make_learner(seed=3, optimizer="adam", standardise_rewards=True)
    other.set_state(arrays["variables"])
    for name, value in other.get_state().items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)
    # Checkpoints written before the names keyed the same variables by position.
    positional = {f"v{i:04d}": state[name] for i, name in enumerate(learner.state_variables)}
    make_learner(seed=4, optimizer="adam", standardise_rewards=True).set_state(positional)


def test_a_checkpoint_of_another_mixer_is_refused_by_name(rng):
    vdn = make_learner(mixer="vdn").get_state()
    with pytest.raises(ValueError, match=r"missing \['mixer/hyper_b1/out/bias'"):
        make_learner(mixer="qmix").set_state(vdn)
