"""The QMIX learner: a `tf.function` TD step over batches of padded episodes.

The batch layout is described in `kqmix.batch`. The learner computes the
agents' side of the loss (`kqmix.td.TDInputs`); the mixer turns it into its
loss terms (`kqmix.layers.Mixer.loss_terms`), whatever the mixer is.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kqmix_runtime.spec import NO_LAST_ACTION

from .batch import BATCH_KEYS, episode_layout
from .masks import widen_masks_tf
from .networks import agent_from_config, build_qmix_model, mixer_from_config
from .recurrence import resolve_recurrence
from .td import TDInputs


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
        self.train_step = self._compile_train_step(info)
        self._model = None

    def _compile_train_step(self, info):
        signature = {
            key: tf.TensorSpec((None, *shape), dtype) for key, (shape, dtype) in episode_layout(info).items()
        }
        return tf.function(
            self._train_step,
            input_signature=[signature, tf.TensorSpec((), tf.int64)],
            jit_compile=self.config.jit_compile,
        )

    def use_env(self, info) -> None:
        """Trains on episodes of `info` from now on: a variant of the environment with the same sizes
        and another episode limit (`Config.switch_env_key`); the train step is traced again for it."""
        if info.episode_limit != self.info.episode_limit:
            self.info, self.train_step = info, self._compile_train_step(info)

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
        elif c.optimizer == "radam":
            from .optimizers import RAdam

            opt = RAdam(learning_rate=c.lr, epsilon=c.optim_eps, global_clipnorm=clip)
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
    def _td_inputs(self, batch, n_filled):
        """The agents' side of the loss (`TDInputs`), and the packing order of its rows (or None).

        Called inside the gradient tape.
        """
        c = self.config
        lengths = order = None
        if self.packs_episodes:
            # Longest episode first, so that the agents' recurrence skips the steps after each
            # episode's end (`kqmix.recurrence.agent_sequence`). The losses are sums over steps,
            # so the rows stay in this order; `td_terms` puts them back.
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
        first = tf.fill(tf.shape(actions[:, :1]), tf.constant(NO_LAST_ACTION, actions.dtype))
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
        # The taken actions' Qs as a masked sum over all T+1 steps (the last one has no action):
        # its gradient is one product, where a gather's is a scatter and a slice's a padded copy.
        # The last step's index is -1, whose one-hot is all zeros.
        taken = tf.one_hot(tf.concat([actions, -tf.ones_like(actions[:1])], axis=0), q.shape[-1])  # (T+1, B, N, A)
        chosen = tf.reduce_sum(q * taken, axis=-1)[:-1]  # (T, B, N)

        target_q = tf.cast(self.target_agent.sequence_q(features, lengths), tf.float32)  # (T+1, B, N, A)
        neg_inf = tf.constant(-np.inf, tf.float32)
        # The greedy joint action of a monotonic mixer is the agents' greedy actions.
        greedy = tf.argmax(tf.where(avail, tf.stop_gradient(q), neg_inf), axis=-1, output_type=tf.int32)
        if c.double_q:
            # The online agents pick the bootstrap action, the target agents value it.
            bootstrap = greedy[1:]  # (T, B, N)
        else:
            bootstrap = tf.argmax(tf.where(avail[1:], target_q[1:], neg_inf), axis=-1, output_type=tf.int32)
        next_q = tf.gather(target_q[1:], bootstrap, batch_dims=3)  # (T, B, N)
        inputs = TDInputs(
            features=features, lengths=lengths, q=q, chosen=chosen, actions=actions, greedy=greedy,
            bootstrap=bootstrap, next_q=next_q, state=state, reward=reward, terminated=terminated,
            filled=filled, n_filled=n_filled, gamma=c.gamma, td_lambda=c.td_lambda,
        )
        return inputs, order

    def td_terms(self, batch):
        """`(q_tot, targets)` as numpy `(B, T)` arrays for a numpy batch, without updating anything."""
        tensors = {k: tf.convert_to_tensor(batch[k]) for k in BATCH_KEYS}
        inputs, order = self._td_inputs(tensors, tf.maximum(tf.reduce_sum(tensors["filled"]), 1.0))
        terms = self.mixer.loss_terms(inputs, self.target_mixer)
        q_tot, targets = terms.q_tot, terms.targets
        if order is not None:
            inverse = tf.math.invert_permutation(order)
            q_tot, targets = tf.gather(q_tot, inverse), tf.gather(targets, inverse)
        return q_tot.numpy(), targets.numpy()

    def _local_gradients(self, batch, n_filled):
        """Gradients and metrics of one batch, or of one replica's share of it.

        Every loss and metric is a sum divided by the filled steps of the whole
        batch (`n_filled`), so the replicas' gradients and metrics add up to the
        single-device ones.
        """
        c = self.config
        with tf.GradientTape() as tape:
            inputs, _ = self._td_inputs(batch, n_filled)
            terms = self.mixer.loss_terms(inputs, self.target_mixer)
            loss = tf.add_n(list(terms.losses.values()))
            scaled = self.optimizer.scale_loss(loss) if c.mixed_precision else loss
        grads = tape.gradient(scaled, self.trainable_variables)
        td = terms.q_tot - terms.targets  # (B, T)
        metrics = {"loss": loss, "td_error_abs": inputs.mean(tf.abs(td)), "q_taken_mean": inputs.mean(terms.q_tot),
                   "target_mean": inputs.mean(terms.targets)}
        if len(terms.losses) > 1:
            metrics.update({f"loss_{name}": value for name, value in terms.losses.items()})
        return grads, {**metrics, **terms.metrics}

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
            **sums,
            "grad_norm": grad_norm,
            "target_updated": updated,
            # The running reward statistics (standardise_rewards) after this step.
            "reward_mean": tf.identity(self.reward_stats.mean),
            "reward_std": tf.sqrt(self.reward_stats.var),
        }

    @property
    def state_variables(self) -> dict:
        """Every variable a checkpoint must hold, by name: `<network>/<layer path>` for the four networks'
        weights (`agent/fc1/kernel`, `target_mixer/hyper_v/out/bias`, ...), `optimizer/...` for its
        slots and counters, `learner/...` for the reward statistics and the update counters."""
        stats = self.reward_stats
        named = [(v.path, v) for v in self.trainable_variables + self.target_variables]
        # An optimizer's variable paths start with its own name, which Keras makes unique per process
        # (`adam`, `adam_1`, ...): a checkpoint names the optimizer by its role instead.
        roles = {self.optimizer.name: "optimizer"}
        inner = getattr(self.optimizer, "inner_optimizer", None)  # under mixed precision's loss scaling
        if inner is not None:
            roles[inner.name] = "optimizer/inner"
        for v in self.optimizer.variables:
            owner, _, rest = v.path.partition("/")
            named.append((f"{roles.get(owner, 'optimizer/' + owner)}/{rest}", v))
        named += [("learner/reward_mean", stats.mean), ("learner/reward_var", stats.var),
                  ("learner/reward_count", stats.count), ("learner/train_steps", self.train_steps),
                  ("learner/last_target_update_episode", self.last_target_update_episode)]
        variables = dict(named)
        if len(variables) != len(named):
            raise ValueError(f"Two learner variables share a name: {sorted(k for k, _ in named)}")
        return variables

    def get_state(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(v) for name, v in self.state_variables.items()}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        variables = self.state_variables
        if all(key[:1] == "v" and key[1:].isdigit() for key in arrays):
            # Checkpoints of kqmix 0.1.0 before named variables: the same variables, keyed by position.
            arrays = {name: arrays[f"v{i:04d}"] for i, name in enumerate(variables) if f"v{i:04d}" in arrays}
            if len(arrays) != len(variables):
                raise ValueError(
                    f"Checkpoint holds {len(arrays)} learner variables; this configuration has "
                    f"{len(variables)}. Was it written with a different config?"
                )
        missing, unexpected = sorted(set(variables) - set(arrays)), sorted(set(arrays) - set(variables))
        if missing or unexpected:
            raise ValueError(
                f"Checkpoint does not match this configuration's learner: missing {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                f"{' ...' if len(unexpected) > 5 else ''}. Was it written with a different config (mixer, sizes)?"
            )
        for name, var in variables.items():
            value = arrays[name]
            if tuple(value.shape) != tuple(var.shape):
                raise ValueError(f"Checkpoint variable {name} has shape {value.shape}; expected {tuple(var.shape)}.")
            var.assign(value)

    def train(self, batch, episode: int) -> dict[str, float]:
        """Runs one update on a numpy batch; `episode` is the number of episodes collected so far."""
        tensors = {k: tf.convert_to_tensor(batch[k]) for k in BATCH_KEYS}
        out = self.train_step(tensors, tf.constant(int(episode), tf.int64))
        return {k: float(v) for k, v in out.items()}
