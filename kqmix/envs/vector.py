"""Environments in worker processes, for environments whose step is slow.

`SubprocessVecEnv` runs M environments in W worker processes (each worker
holds a contiguous slice of them) connected by `multiprocessing` pipes. It
exposes:

* `envs`: M `SubprocessEnv` proxies, each implementing the kqmix contract
  (`info`, `n_agents`, ..., `action_meanings`, `notes`, `reset(seed=)`,
  `step(actions)`), so `kqmix.runner.Runner` uses them unchanged;
* `step_many` / `reset_many`: one message per worker for many environments,
  so the workers step their environments at the same time. `Runner` uses
  them (through `step_envs` / `reset_envs`) whenever its environments are
  proxies of one pool.

Every environment is built inside its worker by `make_env(name, key)` (a
`CheckedEnv`), so contract violations are detected where they happen and
re-raised in the parent as `EnvContractError` with the worker's message.

Workers are started with the `spawn` method by default: forking a process
that has already started TensorFlow's thread pools is unsafe. With `spawn`
(and `forkserver`) the calling script must guard its entry point with
`if __name__ == "__main__":`.

Use this only when one environment step costs much more than a pipe round
trip (~50-100 us): for fast environments (LBF, MPE) stepping M environments
in-process with `Runner` is faster.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import traceback

import numpy as np

from .base import EnvContractError, EnvInfo, MultiAgentEnv


def _build(name, key):
    from . import make_env

    return make_env(name, key)


def _worker(conn, make_fns):
    envs = []
    try:
        envs = [fn() for fn in make_fns]
        conn.send(("ok", [(env.info, env.action_meanings, tuple(env.notes)) for env in envs]))
    except Exception as exc:  # report, then exit
        conn.send(("error", type(exc).__name__, str(exc), traceback.format_exc()))
        conn.close()
        return
    while True:
        try:
            cmd, payload = conn.recv()
        except (EOFError, KeyboardInterrupt):
            break
        try:
            if cmd == "step":
                out = [envs[j].step(actions) for j, actions in payload]
            elif cmd == "reset":
                out = [envs[j].reset(seed=seed) for j, seed in payload]
            elif cmd == "close":
                for env in envs:
                    env.close()
                conn.send(("ok", None))
                break
            else:
                raise ValueError(f"unknown command {cmd!r}")
            conn.send(("ok", out))
        except Exception as exc:
            conn.send(("error", type(exc).__name__, str(exc), traceback.format_exc()))
    conn.close()


class SubprocessVecEnv:
    """M environments stepped in W worker processes.

    Args:
        name, key: the registry name and key passed to `make_env` in each
            worker (ignored when `make_fn` is given).
        n_envs: M, the number of environments.
        n_workers: W, worker processes (default `min(M, cpu_count)`).
        make_fn: optional picklable `make_fn(i) -> MultiAgentEnv` building
            environment i, for environments outside the registry.
        start_method: `spawn` (default), `forkserver` or `fork`.
    """

    def __init__(self, name: str = "", key: str = "", n_envs: int = 1, n_workers: int | None = None,
                 make_fn=None, start_method: str = "spawn"):
        if n_envs < 1:
            raise ValueError(f"`n_envs` must be >= 1. Received: n_envs={n_envs}")
        n_workers = min(n_envs, n_workers or mp.cpu_count() or 1)
        if n_workers < 1:
            raise ValueError(f"`n_workers` must be >= 1. Received: n_workers={n_workers}")
        self.n_envs, self.n_workers = n_envs, n_workers
        ctx = mp.get_context(start_method)
        # Contiguous slices: worker w holds environments bounds[w]..bounds[w+1]-1.
        bounds = np.linspace(0, n_envs, n_workers + 1).round().astype(int)
        self._where = []  # env i -> (worker, local index)
        self._conns, self._procs = [], []
        self._closed = False
        for w in range(n_workers):
            ids = range(bounds[w], bounds[w + 1])
            fns = [functools.partial(make_fn, i) if make_fn else functools.partial(_build, name, key)
                   for i in ids]
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, fns), daemon=True,
                               name=f"kqmix-env-worker-{w}")
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
            self._where.extend((w, j) for j in range(len(ids)))
        described = []
        for w in range(n_workers):
            described.extend(self._receive(w, "start"))
        self.envs = [SubprocessEnv(self, i, *d) for i, d in enumerate(described)]

    def _receive(self, w, what):
        try:
            msg = self._conns[w].recv()
        except EOFError:
            raise EnvContractError(
                f"Environment worker {w} died during {what} (exit code {self._procs[w].exitcode})."
            ) from None
        if msg[0] == "ok":
            return msg[1]
        _, kind, text, tb = msg
        if kind == "EnvContractError":
            raise EnvContractError(text)
        raise EnvContractError(f"Environment worker {w} raised {kind} during {what}: {text}\n{tb}")

    def _call(self, cmd, items):
        """Sends `(env index, argument)` items grouped by worker; returns results in item order."""
        if self._closed:
            raise RuntimeError("SubprocessVecEnv is closed.")
        per_worker: dict[int, list] = {}
        order: dict[int, list] = {}
        for k, (i, arg) in enumerate(items):
            w, j = self._where[i]
            per_worker.setdefault(w, []).append((j, arg))
            order.setdefault(w, []).append(k)
        # All workers get their batch before any answer is awaited, so they
        # run at the same time.
        for w, payload in per_worker.items():
            self._conns[w].send((cmd, payload))
        results = [None] * len(items)
        error = None
        for w in per_worker:
            try:
                for k, out in zip(order[w], self._receive(w, cmd)):
                    results[k] = out
            except EnvContractError as exc:  # drain the other workers first
                error = error or exc
        if error is not None:
            raise error
        return results

    def step_many(self, indices, actions):
        """Steps environments `indices` with `actions[k]` (N,) each; returns their step tuples."""
        return self._call("step", [(int(i), np.asarray(a)) for i, a in zip(indices, actions)])

    def reset_many(self, indices, seeds):
        """Resets environments `indices` with `seeds`; returns their `(obs, state, avail)`."""
        return self._call("reset", [(int(i), s) for i, s in zip(indices, seeds)])

    def close(self):
        if self._closed:
            return
        self._closed = True
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for conn, proc in zip(self._conns, self._procs):
            try:
                if conn.poll(5):
                    conn.recv()
            except (EOFError, OSError):
                pass
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class SubprocessEnv(MultiAgentEnv):
    """One environment of a `SubprocessVecEnv`, behind the kqmix contract."""

    def __init__(self, pool: SubprocessVecEnv, index: int, info: EnvInfo, action_meanings, notes):
        self.pool, self.index = pool, index
        self.n_agents, self.n_actions = info.n_agents, info.n_actions
        self.obs_dim, self.state_dim, self.episode_limit = info.obs_dim, info.state_dim, info.episode_limit
        self.action_meanings = action_meanings
        self.notes = notes

    def reset(self, seed=None):
        return self.pool.reset_many([self.index], [seed])[0]

    def step(self, actions):
        return self.pool.step_many([self.index], [actions])[0]

    def close(self):
        pass  # the pool owns the processes; close it with `SubprocessVecEnv.close()`


def _pool_of(envs):
    pools = {id(getattr(env, "pool", None)) for env in envs}
    if len(pools) == 1 and isinstance(getattr(envs[0], "pool", None), SubprocessVecEnv):
        return envs[0].pool
    return None


def step_envs(envs, indices, actions):
    """Steps `envs[i]` for i in `indices`: in one batched call when they share a worker pool."""
    pool = _pool_of([envs[i] for i in indices]) if len(indices) else None
    if pool is not None:
        return pool.step_many([envs[i].index for i in indices], actions)
    return [envs[i].step(a) for i, a in zip(indices, actions)]


def reset_envs(envs, seeds):
    """Resets all `envs` with `seeds`: in one batched call when they share a worker pool."""
    pool = _pool_of(envs)
    if pool is not None:
        return pool.reset_many([env.index for env in envs], seeds)
    return [env.reset(seed=s) for env, s in zip(envs, seeds)]
