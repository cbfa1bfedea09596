"""Small cooperative games with known answers, used to check QMIX and VDN.

* `TwoStepGame`: the two-step game of the QMIX paper (Rashid et al., 2018, §6.1).
* `MatrixGame`: a one-shot (or repeated) cooperative matrix game; presets for
  the non-monotonic 3x3 game of the QMIX paper and the Climbing and Penalty
  games used by EPyMARL (Papoudakis et al., 2021).

Each agent observes the full (one-hot) game state; the global state is that
same one-hot. These games have no unavailable actions, so every action mask
is all ones.
"""

from __future__ import annotations

import numpy as np

from .base import MultiAgentEnv

NON_MONOTONIC = [[8.0, -12.0, -12.0], [-12.0, 0.0, 0.0], [-12.0, 0.0, 0.0]]
CLIMBING = [[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]]


def penalty_payoff(k: float = 100.0):
    """EPyMARL's Penalty game with penalty `k`."""
    return [[-k, 0.0, 10.0], [0.0, 2.0, 0.0], [10.0, 0.0, -k]]


class TwoStepGame(MultiAgentEnv):
    """The QMIX paper's two-step game: 2 agents, 2 actions, 2 steps.

    In state 1 no reward is paid and agent 0's action picks the next state:
    action 0 leads to 2A, action 1 to 2B. In 2A every joint action pays 7; in
    2B the payoff is `[[0, 1], [1, 8]]`. The episode then terminates.
    Observation and global state are the one-hot of (1, 2A, 2B).
    """

    STATE_NAMES = ("1", "2A", "2B")
    PAYOFF_2A = np.full((2, 2), 7.0)
    PAYOFF_2B = np.array([[0.0, 1.0], [1.0, 8.0]])

    n_agents = 2
    n_actions = 2
    obs_dim = 3
    state_dim = 3
    episode_limit = 2

    def __init__(self):
        self._state = 0

    def _observe(self):
        one_hot = np.zeros(3, dtype=np.float32)
        one_hot[self._state] = 1.0
        obs = np.tile(one_hot, (self.n_agents, 1))
        return obs, one_hot, np.ones((self.n_agents, self.n_actions), dtype=np.float32)

    def reset(self, seed=None):
        self._state = 0
        return self._observe()

    def step(self, actions):
        a0, a1 = int(actions[0]), int(actions[1])
        if self._state == 0:
            self._state = 1 if a0 == 0 else 2
            return (*self._observe(), 0.0, False, False, {})
        payoff = self.PAYOFF_2A if self._state == 1 else self.PAYOFF_2B
        return (*self._observe(), float(payoff[a0, a1]), True, False, {})


class MatrixGame(MultiAgentEnv):
    """A cooperative matrix game for 2 agents, played `episode_limit` times.

    Every step pays `payoff[a0][a1]` to the team. The observation and state
    are a one-hot of the step index (one feature for the one-shot game). When
    the episode reaches `episode_limit` steps it is *truncated* if
    `episode_limit > 1` (a repeated game has no natural end) and *terminated*
    for the one-shot game.
    """

    n_agents = 2

    def __init__(self, payoff, episode_limit: int = 1):
        payoff = np.asarray(payoff, dtype=np.float64)
        if payoff.ndim != 2 or payoff.shape[0] != payoff.shape[1] or payoff.shape[0] < 2:
            raise ValueError(
                f"`payoff` must be a square matrix of at least 2x2. Received shape {payoff.shape}."
            )
        if isinstance(episode_limit, bool) or not isinstance(episode_limit, int) or episode_limit < 1:
            raise ValueError(
                f"`episode_limit` must be a positive integer. Received: episode_limit={episode_limit!r}"
            )
        self.payoff = payoff
        self.n_actions = payoff.shape[0]
        self.episode_limit = episode_limit
        self.obs_dim = episode_limit
        self.state_dim = episode_limit
        self._t = 0

    def _observe(self):
        one_hot = np.zeros(self.episode_limit, dtype=np.float32)
        one_hot[min(self._t, self.episode_limit - 1)] = 1.0
        obs = np.tile(one_hot, (self.n_agents, 1))
        return obs, one_hot, np.ones((self.n_agents, self.n_actions), dtype=np.float32)

    def reset(self, seed=None):
        self._t = 0
        return self._observe()

    def step(self, actions):
        reward = float(self.payoff[int(actions[0]), int(actions[1])])
        self._t += 1
        done = self._t >= self.episode_limit
        terminated = done and self.episode_limit == 1
        truncated = done and self.episode_limit > 1
        return (*self._observe(), reward, terminated, truncated, {})
