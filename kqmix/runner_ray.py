"""Training episodes stepped in Ray actors (`--set rollout_backend=ray --set ray_actors=K`).

`RayRunner` has the `Runner` interface (`run(epsilon, greedy, seeds)`,
`n_envs`, `rng`) and gives the same episodes for the same seeds:

* actor k holds a contiguous share of the M environments and a local
  `Runner` over them, acting with a `NumpyAgentPolicy` rebuilt from plain
  numpy weights (no TensorFlow in the actors);
* the weights go to the object store once per update (one `ray.put`), and
  every actor reads that one object;
* exploration randomness is drawn in the driver, from the driver's
  generator, in exactly the order a local `Runner` draws it over all M x N
  agent rows; each actor plays back its rows. Afterwards the driver's
  generator is left where a local `Runner` would have left it, so
  checkpoints, resume and determinism hold whichever backend collected.

The learner stays in the driver. Greedy test episodes run locally.
"""

from __future__ import annotations

import numpy as np

from .runner import RolloutStats, Runner


def draw_exploration(rng: np.random.Generator, epsilon: float, rows: int, n_actions: int, steps: int) -> list:
    """The draws `NumpyAgentPolicy.epsilon_greedy` makes on `rows` agents over `steps` steps, in its order.

    Per step: `u = rng.random(rows)`, then the action scores
    `rng.random((rows, n_actions))` if any row explores (`u < epsilon`), else None.
    """
    draws = []
    for _ in range(steps):
        u = rng.random(rows)
        draws.append((u, rng.random((rows, n_actions)) if (u < epsilon).any() else None))
    return draws


class PlaybackDraws:
    """Stands in for the `np.random.Generator` of a `Runner`: returns pre-drawn numbers in order.

    `random(int)` starts the next step and returns its uniform draws;
    `random((rows, A))` returns that step's action scores.
    """

    def __init__(self, draws: list):
        self.draws, self.t = draws, -1

    def random(self, size):
        if isinstance(size, (int, np.integer)):
            self.t += 1
            return self.draws[self.t][0]
        return self.draws[self.t][1]


#: Seconds to wait for the rollout actors to be placed before giving up.
ACTOR_START_TIMEOUT_S = 120.0


class RolloutActor:
    """One Ray actor: `n_envs` environments and a local `Runner` over them."""

    def __init__(self, env: str, env_key: str, n_envs: int, seed: int):
        from .envs import make_env

        self.envs = [make_env(env, env_key) for _ in range(n_envs)]
        self.seed = seed
        self.runner = None

    def ready(self) -> bool:
        return True

    def run(self, params: dict, epsilon: float, greedy: bool, seeds, draws):
        from .policy import NumpyAgentPolicy

        if self.runner is None:
            self.runner = Runner(self.envs, NumpyAgentPolicy.from_params(params), seed=self.seed)
        elif self.runner.policy.version != params["version"]:
            self.runner.policy.load_params(params)
        self.runner.rng = PlaybackDraws(draws) if draws is not None else None
        return self.runner.run(epsilon=epsilon, greedy=greedy, seeds=seeds)


class RayRunner:
    """M environments in K Ray actors, with the `Runner` interface (see the module docstring).

    Args:
        config: the run's `Config` (`env`, `env_key`, `batch_size_run`, `ray_actors`).
        policy: the driver's `NumpyAgentPolicy`; its `version` says when to put new weights.
        info: the environments' `EnvInfo`.
        seed: as for `Runner`: environment i is seeded with `seed + i` at its
            first reset, and the exploration generator with `seed`.
        address: a Ray cluster to join (default `RAY_ADDRESS`, else an embedded local Ray).
        env_key: the environments' key, if not `config.env_key` (after a switch, `switch_env_key`).
    """

    def __init__(self, config, policy, info, seed: int = 0, address: str | None = None, env_key: str | None = None):
        from .cluster import connect

        self._ray = ray = connect(address)
        m, k = config.batch_size_run, config.ray_actors
        self.info, self.policy, self.n_envs = info, policy, m
        self.rng = np.random.default_rng(seed)
        self.shares = [share for share in np.array_split(np.arange(m), k) if len(share)]
        actor_class = ray.remote(num_cpus=1)(RolloutActor)
        env_key = config.env_key if env_key is None else env_key
        self.actors = [actor_class.remote(config.env, env_key, len(share), seed + int(share[0]))
                       for share in self.shares]
        self._weights, self._weights_version = None, None
        # Each actor holds a CPU: a cluster too small would otherwise leave them pending forever.
        ready, pending = ray.wait([a.ready.remote() for a in self.actors], num_returns=len(self.actors),
                                  timeout=ACTOR_START_TIMEOUT_S)
        if pending:
            self.close()
            raise RuntimeError(
                f"Only {len(ready)} of {len(self.actors)} rollout actors started within "
                f"{ACTOR_START_TIMEOUT_S:.0f} s; each needs one CPU and the cluster has "
                f"{ray.available_resources().get('CPU', 0):g} free. Lower ray_actors or add nodes.")

    def run(self, epsilon: float = 0.0, greedy: bool = False, seeds=None):
        """One episode per environment, as `Runner.run`; returns `(episodes, stats)`."""
        ray, info, n = self._ray, self.info, self.info.n_agents
        if seeds is not None and len(seeds) != self.n_envs:
            raise ValueError(f"run() got {len(seeds)} seeds for {self.n_envs} environments.")
        if self._weights_version != self.policy.version:
            self._weights = ray.put(self.policy.params())  # one put per update, read by every actor
            self._weights_version = self.policy.version
        explore = not greedy and epsilon > 0
        if explore:
            before = self.rng.bit_generator.state
            draws = draw_exploration(self.rng, epsilon, self.n_envs * n, info.n_actions, info.episode_limit)
        futures = []
        for actor, share in zip(self.actors, self.shares):
            rows = slice(int(share[0]) * n, (int(share[-1]) + 1) * n)
            mine = [(u[rows], None if s is None else s[rows]) for u, s in draws] if explore else None
            part = None if seeds is None else [seeds[i] for i in share]
            futures.append(actor.run.remote(self._weights, epsilon, greedy, part, mine))
        results = ray.get(futures)
        episodes = {key: np.concatenate([ep[key] for ep, _ in results]) for key in results[0][0]}
        stats = RolloutStats(returns=np.concatenate([s.returns for _, s in results]),
                             lengths=np.concatenate([s.lengths for _, s in results]))
        if explore:
            # A local Runner draws for as many steps as its longest episode; so does this generator.
            self.rng.bit_generator.state = before
            draw_exploration(self.rng, epsilon, self.n_envs * n, info.n_actions, int(stats.lengths.max()))
        return episodes, stats

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
