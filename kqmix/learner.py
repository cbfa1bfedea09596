"""The QMIX learner: a `tf.function` TD step over batches of padded episodes.

The batch layout is described in `kqmix.batch`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .batch import BATCH_KEYS, episode_layout
from .masks import widen_masks_tf
from .networks import agent_from_config, build_qmix_model, mixer_from_config
from .recurrence import resolve_recurrence


def lambda_returns(reward, terminated, filled, next_value, gamma, td_lambda):
    """TD(lambda) targets over time, computed backwards.

    `G_t = r_t + gamma * (1 - term_t) * ((1 - lambda) * V_{t+1} + lambda * G_{t+1})`,
    where `G_{t+1}` is replaced by `V_{t+1}` when step t+1 is padded (the
    episode was truncated there, so it bootstraps) or past the end. lambda=0
    gives the 1-step target. All inputs `(B, T)`; returns `(B, T)`.
    """
    not_term = 1.0 - terminated
    if td_lambda == 0.0:
        return reward + gamma * not_term * next_value
    # Whether step t+1 is a real step whose return can be continued.
    next_filled = tf.concat([filled[:, 1:], tf.zeros_like(filled[:, :1])], axis=1)

    def backward(g_next, elems):
        r, nt, v_next, nf = elems  # each (B,)
        cont = nf * g_next + (1.0 - nf) * v_next
        return r + gamma * nt * ((1.0 - td_lambda) * v_next + td_lambda * cont)

    time_major = [tf.transpose(x) for x in (reward, not_term, next_value, next_filled)]
    returns = tf.scan(
        backward, time_major, initializer=tf.zeros_like(reward[:, 0]), reverse=True
    )  # (T, B)
    return tf.transpose(returns)


class RunningMeanStd(tf.Module):
    """Running mean/variance of rewards, updated inside the train step."""

    def __init__(self, name="reward_stats"):
        super().__init__(name=name)
        self.mean = tf.Variable(0.0, trainable=False, name="mean")
        self.var = tf.Variable(1.0, trainable=False, name="var")
        self.count = tf.Variable(1e-4, trainable=False, name="count")

    def update(self, values, weights):
        n = tf.reduce_sum(weights)
        batch_mean = tf.reduce_sum(values * weights) / tf.maximum(n, 1.0)
        batch_var = tf.reduce_sum(tf.square(values - batch_mean) * weights) / tf.maximum(n, 1.0)
        delta = batch_mean - self.mean
        total = self.count + n
        new_mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + tf.square(delta) * self.count * n / total
        self.mean.assign(new_mean)
        self.var.assign(m2 / total)
        self.count.assign(total)


def make_strategy(distribute: str):
    """The `tf.distribute` strategy for `Config.distribute`.

    `mirrored` replicates the variables on every visible GPU (or, without
    GPUs, on every logical CPU device), splits each batch across them and
    all-reduces the gradients; `none` is TensorFlow's default strategy.
    """
    if distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


class QLearner:
    """Owns the agent and mixer, their targets, the optimizer, and the train step.

    Args:
        info: the environment's static sizes (`EnvInfo`).
        config: a `kqmix.config.Config`.
    """

    def __init__(self, info, config):
        self.info = info
        self.config = config
        self.strategy = make_strategy(config.distribute)
        # Under a MirroredStrategy every variable (networks, optimizer slots, counters) is
        # mirrored on each device; the default strategy's scope changes nothing.
        with self.strategy.scope():
            self._build(info, config)
        signature = {
            key: tf.TensorSpec((None, *shape), dtype) for key, (shape, dtype) in episode_layout(info).items()
        }
        self.train_step = tf.function(
            self._train_step,
            input_signature=[signature, tf.TensorSpec((), tf.int64)],
            jit_compile=config.jit_compile,
        )
        self._model = None

    # ------------------------------------------------------------------ setup
    def _build(self, info, config):
        self.agent = agent_from_config(info, config, name="agent")
        self.mixer = mixer_from_config(info, config, name="mixer")
        self.target_agent = agent_from_config(info, config, name="target_agent")
        self.target_mixer = mixer_from_config(info, config, name="target_mixer")
        self._copy_weights(hard=True)
        self.optimizer = self._make_optimizer()
        self.reward_stats = RunningMeanStd()
        self.train_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_steps")
        self.last_target_update_episode = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="last_target_update_episode"
        )
        self.optimizer.build(self.trainable_variables)

    def _make_optimizer(self):
        c = self.config
        clip = c.grad_norm_clip if c.mixed_precision else None
        if c.optimizer == "rmsprop":
            opt = keras.optimizers.RMSprop(
                learning_rate=c.lr, rho=c.optim_alpha, epsilon=c.optim_eps, global_clipnorm=clip
            )
        else:
            opt = keras.optimizers.Adam(learning_rate=c.lr, epsilon=c.optim_eps, global_clipnorm=clip)
        if c.mixed_precision:
            # The loss-scale wrapper unscales before the inner optimizer clips.
            opt = keras.optimizers.LossScaleOptimizer(opt)
        return opt

    def learning_rate_at(self, t_env: int) -> float:
        """The learning rate of `Config.lr_schedule` once `t_env` env steps have been collected."""
        c = self.config
        if c.lr_schedule == "linear":
            return c.lr * max(0.0, 1.0 - t_env / c.t_max)
        return c.lr

    def update_learning_rate(self, t_env: int) -> None:
        """Sets the optimizer's learning rate to `learning_rate_at(t_env)` (nothing to do for a constant one).

        The rate is a variable: the compiled train step reads it, nothing retraces.
        """
        if self.config.lr_schedule != "constant":
            self.optimizer.learning_rate.assign(self.learning_rate_at(t_env))

    @property
    def packs_episodes(self) -> bool:
        """Whether the train step skips the agents' steps after each episode's end.

        The fused recurrence does (`kqmix.recurrence`), except under XLA, which needs every
        shape static; the Keras GRU computes every step.
        """
        return resolve_recurrence(self.agent.recurrence) == "fused" and not self.config.jit_compile

    @property
    def trainable_variables(self):
        return list(self.agent.trainable_variables) + list(self.mixer.trainable_variables)

    @property
    def target_variables(self):
        return list(self.target_agent.trainable_variables) + list(
            self.target_mixer.trainable_variables
        )

    def _copy_weights(self, hard=True, tau=1.0):
        for target, online in zip(self.target_variables, self.trainable_variables):
            if hard:
                target.assign(online)
            else:
                target.assign(target + tau * (online - target))

    @property
    def model(self):
        """The Functional `keras.Model` (agents + mixer) sharing the online weights."""
        if self._model is None:
            self._model = build_qmix_model(self.agent, self.mixer, self.info.state_dim)
        return self._model

    # ------------------------------------------------------------- the step
    def _td_terms(self, batch):
        """Q_tot of the taken actions and their TD targets, both `(B, T)`.

        Called inside the gradient tape; the targets carry no gradient.
        """
        c = self.config
        lengths = order = None
        if self.packs_episodes:
            # Longest episode first, so that the agents' recurrence skips the steps after each
            # episode's end (`kqmix.recurrence.agent_sequence`); the results are put back in order.
            lengths = tf.cast(tf.reduce_sum(batch["filled"], axis=1), tf.int32) + 1  # + the last observation
            order = tf.argsort(lengths, direction="DESCENDING", stable=True)
            lengths = tf.gather(lengths, order)
            # `EpisodeBuffer.sample` gives episodes in this order already: then nothing is copied.
            batch = tf.cond(tf.reduce_all(order == tf.range(tf.size(order))), lambda: dict(batch),
                            lambda: {key: tf.gather(value, order) for key, value in batch.items()})
        obs = batch["obs"]  # (B, T+1, N, O)
        state = batch["state"]  # (B, T+1, S)
        avail = batch["avail_actions"]  # (B, T+1, N, A)
        actions = batch["actions"]  # (B, T, N)
        reward = batch["reward"]  # (B, T)
        terminated = batch["terminated"]  # (B, T)
        filled = batch["filled"]  # (B, T)

        # The last action fed to the agent at t is the action taken at t-1.
        first = -tf.ones_like(actions[:, :1])
        last_action = tf.concat([first, actions], axis=1)  # (B, T+1, N)

        # Time-major from here on, as the agents' recurrence runs.
        actions = tf.transpose(actions, (1, 0, 2))  # (T, B, N)
        state = tf.transpose(state, (1, 0, 2))  # (T+1, B, S)
        # Padded steps carry empty masks (kqmix.masks).
        avail = tf.transpose(widen_masks_tf(avail), (1, 0, 2, 3)) > 0.5  # (T+1, B, N, A)

        if c.standardise_rewards:
            reward = (reward - self.reward_stats.mean) / tf.sqrt(self.reward_stats.var + 1e-8)
        if not c.bootstrap_truncated:
            # Every episode's last real step ends it (finite-horizon returns).
            next_filled = tf.concat([filled[:, 1:], tf.zeros_like(filled[:, :1])], axis=1)
            terminated = tf.maximum(terminated, filled * (1.0 - next_filled))

        # The online and target agents read the same input, built once.
        features = self.agent.sequence_features(obs, last_action)  # (T+1, B, N, F)
        q = tf.cast(self.agent.sequence_q(features, lengths), tf.float32)  # (T+1, B, N, A)
        # The taken actions' Qs as a masked sum over all T+1 steps (the last one has no action, -1):
        # its gradient is one product, where a gather's is a scatter and a slice's a padded copy.
        taken = tf.one_hot(tf.concat([actions, -tf.ones_like(actions[:1])], axis=0), q.shape[-1])  # (T+1, B, N, A)
        chosen = tf.reduce_sum(q * taken, axis=-1)[:-1]  # (T, B, N)
        q_tot = tf.cast(self.mixer([chosen, state[:-1]]), tf.float32)  # (T, B)

        target_q = tf.cast(self.target_agent.sequence_q(features, lengths), tf.float32)  # (T+1, B, N, A)
        neg_inf = tf.constant(-np.inf, tf.float32)
        if c.double_q:
            # The online agents pick the bootstrap action, the target agents value it.
            online_next = tf.where(avail[1:], tf.stop_gradient(q[1:]), neg_inf)
            best = tf.argmax(online_next, axis=-1, output_type=tf.int32)  # (T, B, N)
            next_q = tf.gather(target_q[1:], best, batch_dims=3)  # (T, B, N)
        else:
            next_q = tf.reduce_max(tf.where(avail[1:], target_q[1:], neg_inf), axis=-1)
        next_tot = tf.cast(self.target_mixer([next_q, state[1:]]), tf.float32)  # (T, B)
        q_tot, next_tot = tf.transpose(q_tot), tf.transpose(next_tot)  # (B, T)
        targets = lambda_returns(reward, terminated, filled, next_tot, c.gamma, c.td_lambda)
        if order is not None:
            inverse = tf.math.invert_permutation(order)
            q_tot, targets = tf.gather(q_tot, inverse), tf.gather(targets, inverse)
        return q_tot, tf.stop_gradient(targets)

    def td_terms(self, batch):
        """`(q_tot, targets)` as numpy `(B, T)` arrays for a numpy batch, without updating anything."""
        tensors = {k: tf.convert_to_tensor(batch[k]) for k in BATCH_KEYS}
        q_tot, targets = self._td_terms(tensors)
        return q_tot.numpy(), targets.numpy()

    def _local_gradients(self, batch, n_filled):
        """Gradients and metric sums of one batch, or of one replica's share of it.

        The loss is divided by the filled steps of the whole batch (`n_filled`),
        so the replicas' gradients and sums add up to the single-device ones.
        """
        c = self.config
        filled = batch["filled"]  # (B, T)
        with tf.GradientTape() as tape:
            q_tot, targets = self._td_terms(batch)
            td = (q_tot - targets) * filled  # (B, T)
            loss = tf.reduce_sum(tf.square(td)) / n_filled
            scaled = self.optimizer.scale_loss(loss) if c.mixed_precision else loss
        grads = tape.gradient(scaled, self.trainable_variables)
        sums = {"loss": loss, "td_error_abs": tf.reduce_sum(tf.abs(td)),
                "q_taken_mean": tf.reduce_sum(q_tot * filled), "target_mean": tf.reduce_sum(targets * filled)}
        return grads, sums

    def _gradients(self, batch, n_filled):
        """`_local_gradients` of the whole batch; under a MirroredStrategy split over the replicas and summed."""
        if not isinstance(self.strategy, tf.distribute.MirroredStrategy):
            return self._local_gradients(batch, n_filled)
        replicas = self.strategy.num_replicas_in_sync
        size = tf.shape(batch["filled"])[0]

        def shard(context):
            # Replica r takes rows [B*r/R, B*(r+1)/R): any batch size splits, unevenly if it must.
            r = context.replica_id_in_sync_group
            start, stop = size * r // replicas, size * (r + 1) // replicas
            return {key: value[start:stop] for key, value in batch.items()}

        shards = self.strategy.experimental_distribute_values_from_function(shard)
        per_replica = self.strategy.run(self._local_gradients, args=(shards, n_filled))
        # The all-reduce: one sum per gradient (and metric) over the devices.
        return tf.nest.map_structure(
            lambda x: self.strategy.reduce(tf.distribute.ReduceOp.SUM, x, axis=None), per_replica)

    def _train_step(self, batch, episode):
        c = self.config
        filled = batch["filled"]  # (B, T)
        if c.standardise_rewards:
            self.reward_stats.update(batch["reward"], filled)
        n_filled = tf.maximum(tf.reduce_sum(filled), 1.0)
        grads, sums = self._gradients(batch, n_filled)
        variables = self.trainable_variables
        if c.mixed_precision:
            grad_norm = tf.linalg.global_norm(grads) / tf.cast(self.optimizer.dynamic_scale, tf.float32)
        else:
            grads, grad_norm = tf.clip_by_global_norm(grads, c.grad_norm_clip)
        self.optimizer.apply(grads, variables)
        self.train_steps.assign_add(1)

        if c.target_update_tau > 0:
            self._copy_weights(hard=False, tau=c.target_update_tau)
            updated = tf.constant(1.0)
        else:
            due = episode - self.last_target_update_episode >= c.target_update_interval

            def copy():
                self._copy_weights(hard=True)
                self.last_target_update_episode.assign(episode)
                return tf.constant(1.0)

            updated = tf.cond(due, copy, lambda: tf.constant(0.0))

        return {
            "loss": sums["loss"],
            "td_error_abs": sums["td_error_abs"] / n_filled,
            "q_taken_mean": sums["q_taken_mean"] / n_filled,
            "target_mean": sums["target_mean"] / n_filled,
            "grad_norm": grad_norm,
            "target_updated": updated,
            # The running reward statistics (standardise_rewards) after this step.
            "reward_mean": tf.identity(self.reward_stats.mean),
            "reward_std": tf.sqrt(self.reward_stats.var),
        }

    @property
    def state_variables(self):
        """Every variable a checkpoint must hold, in a fixed order."""
        stats = self.reward_stats
        return (
            self.trainable_variables
            + self.target_variables
            + list(self.optimizer.variables)
            + [stats.mean, stats.var, stats.count, self.train_steps, self.last_target_update_episode]
        )

    def get_state(self) -> dict[str, np.ndarray]:
        return {f"v{i:04d}": np.asarray(v) for i, v in enumerate(self.state_variables)}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        variables = self.state_variables
        if len(arrays) != len(variables):
            raise ValueError(
                f"Checkpoint holds {len(arrays)} learner variables; this configuration has "
                f"{len(variables)}. Was it written with a different config?"
            )
        for i, var in enumerate(variables):
            value = arrays[f"v{i:04d}"]
            if tuple(value.shape) != tuple(var.shape):
                raise ValueError(
                    f"Checkpoint variable {i} ({getattr(var, 'path', var.name)}) has shape "
                    f"{value.shape}; expected {tuple(var.shape)}."
                )
            var.assign(value)

    def train(self, batch, episode: int) -> dict[str, float]:
        """Runs one update on a numpy batch; `episode` is the number of episodes collected so far."""
        tensors = {k: tf.convert_to_tensor(batch[k]) for k in BATCH_KEYS}
        out = self.train_step(tensors, tf.constant(int(episode), tf.int64))
        return {k: float(v) for k, v in out.items()}
