"""One batch of episodes in one compiled call: JaxMARL environments and the acting policy together.

`Runner.run` on a `JaxMARLVecEnv` with a `NumpyAgentPolicy` steps the
environments once per timestep from Python. `JaxRollout.run` plays the same
M episodes in one jit-compiled `lax.while_loop`: per timestep the policy
step for all M*N agents (`kqmix.policy_jax`), the masked greedy or
epsilon-greedy choice, and the vmapped environment step
(`kqmix.envs.jax_vec`); the loop ends when every episode has ended. It
returns the runner's episode arrays (`kqmix.batch`, padded as the runner
pads them) and per-episode won flags; the environments continue from where
the loop left them, as after the per-step loop.

The weights, epsilon and the exploration key are arguments: one compilation
per environment and M (shared by every `JaxMARLVecEnv` of one key).
"""

from __future__ import annotations

import numpy as np

from kqmix_runtime.spec import NO_LAST_ACTION

from ..batch import episode_layout
from .jax_vec import JaxMARLVecEnv

_COMPILED: dict = {}  # (core, M) -> jit-compiled rollout


def _compile(core, m: int):
    """The jit-compiled rollout of M environments of `core` (a `jax_vec._Core`)."""
    import jax
    import jax.numpy as jnp

    from .. import policy_jax

    t_max, n, a = core.episode_limit, core.n_agents, core.n_actions
    step_batch = jax.vmap(core.step_one)
    agent_id = jnp.tile(jnp.arange(n, dtype=jnp.int32), m)  # (M*N,)

    def rollout(w, env_carry, start, key, epsilon, greedy):
        obs0, state0, avail0 = start  # (M, N, O), (M, S), (M, N, A)
        # Time-major buffers of the episode arrays: (T+1, M, ...) and (T, M, ...).
        buf = {
            "obs": jnp.zeros((t_max + 1, *obs0.shape), jnp.float32).at[0].set(obs0),
            "state": jnp.zeros((t_max + 1, *state0.shape), jnp.float32).at[0].set(state0),
            "avail_actions": jnp.zeros((t_max + 1, *avail0.shape), jnp.float32).at[0].set(avail0),
            "actions": jnp.zeros((t_max, m, n), jnp.int32),
            "reward": jnp.zeros((t_max, m), jnp.float32),
            "terminated": jnp.zeros((t_max, m), jnp.float32),
            "filled": jnp.zeros((t_max, m), jnp.float32),
        }
        loop = dict(t=jnp.int32(0), env=env_carry, current=start, buf=buf,
                    active=jnp.ones(m, bool), won=jnp.zeros(m, jnp.float32),  # (M,)
                    hidden=jnp.zeros((m * n, w["rec"].shape[0]), jnp.float32),  # (M*N, H)
                    last_action=jnp.full(m * n, NO_LAST_ACTION, jnp.int32))  # (M*N,)

        def body(s):
            t, buf, active = s["t"], s["buf"], s["active"]
            # The runner's inputs: the recorded step t (zeros once an episode has ended).
            obs = buf["obs"][t].reshape(m * n, -1)  # (M*N, O)
            rows = jnp.repeat(active, n)[:, None]  # (M*N, 1)
            avail = jnp.where(rows, buf["avail_actions"][t].reshape(m * n, a), 1.0)  # (M*N, A) widened when done
            q, hidden = policy_jax.agent_step(w, obs, agent_id, s["last_action"], s["hidden"])
            actions = jax.lax.cond(
                greedy, lambda: policy_jax.masked_greedy(q, avail),
                lambda: policy_jax.epsilon_greedy(jax.random.fold_in(key, t), q, avail, epsilon))  # (M*N,)
            env, final, current = step_batch(s["env"], actions.reshape(m, n))
            o, st, av, reward, terminated, truncated, won = final
            # Steps of environments whose episode has ended stay zero (padding).
            record = [("actions", t, actions.reshape(m, n)), ("reward", t, reward), ("terminated", t, terminated),
                      ("filled", t, jnp.ones(m)), ("obs", t + 1, o), ("state", t + 1, st),
                      ("avail_actions", t + 1, av)]
            buf = dict(buf)
            for name, i, value in record:
                keep = active.reshape(m, *[1] * (value.ndim - 1))  # (M, 1, ...)
                buf[name] = buf[name].at[i].set(jnp.where(keep, value, 0).astype(buf[name].dtype))
            # Reaching the episode limit is a truncation: it bootstraps.
            ended = terminated | truncated | (t + 1 == t_max)
            return dict(t=t + 1, env=env, current=current, buf=buf, active=active & ~ended,
                        won=jnp.where(active & ended, won, s["won"]), hidden=hidden, last_action=actions)

        s = jax.lax.while_loop(lambda s: (s["t"] < t_max) & s["active"].any(), body, loop)
        episodes = {k: jnp.swapaxes(v, 0, 1) for k, v in s["buf"].items()}  # (M, T(+1), ...)
        return s["env"], s["current"], episodes, s["won"]

    return jax.jit(rollout)


def _rollout_fn(core, m: int):
    if (core, m) not in _COMPILED:
        _COMPILED[core, m] = _compile(core, m)
    return _COMPILED[core, m]


def play(vec: JaxMARLVecEnv, params: dict, epsilon: float = 0.0, greedy: bool = False, key=None):
    """Plays one episode in each of `vec`'s M environments from where they are (after `reset`).

    Args:
        vec: the environments, reset.
        params: `NumpyAgentPolicy.params()`.
        epsilon: the exploration rate (ignored when `greedy`).
        greedy: masked greedy choice throughout.
        key: `uint32 (2,)`, the exploration key (a raw JAX PRNG key); needed unless `greedy`.

    Returns:
        `(episodes, won)`: the runner's episode arrays (numpy, layout in `kqmix.batch`) and
        `won (M,)` float32 (1.0 = won; zeros where the environment reports no wins).
    """
    import jax

    from .. import policy_jax

    if key is None:
        if not greedy:
            raise ValueError("An exploring rollout needs a `key` (uint32 (2,)).")
        key = np.zeros(2, np.uint32)
    carry, start = vec.device_state()
    fn = _rollout_fn(vec.core, vec.n_envs)
    carry, current, episodes, won = fn(policy_jax.weights(params), carry, start, np.asarray(key, np.uint32),
                                       np.float32(epsilon), bool(greedy))
    vec.set_device_state(carry, current)
    episodes, won = jax.device_get((episodes, won))
    layout = episode_layout(vec.info)
    return {k: np.array(episodes[k], dtype) for k, (_, dtype) in layout.items()}, np.asarray(won, np.float32)
