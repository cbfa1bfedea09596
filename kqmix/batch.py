"""The layout of a batch of padded episodes, shared by the runner, buffer and learner.

T = episode limit. Step t's inputs are stored at index t, and the final next
step at index T, so `obs`, `state` and `avail_actions` have T+1 entries:

* `obs (B, T+1, N, O)`, `state (B, T+1, S)`, `avail_actions (B, T+1, N, A)`;
* `actions (B, T, N)` int32, `reward (B, T)`, `terminated (B, T)`,
  `filled (B, T)`: 1 where step t is a real transition, 0 where padded.
"""

from __future__ import annotations

import numpy as np

BATCH_KEYS = ("obs", "state", "avail_actions", "actions", "reward", "terminated", "filled")


def episode_layout(info) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per-episode shape (without the batch axis) and dtype of every batch field."""
    t, n, a = info.episode_limit, info.n_agents, info.n_actions
    return {
        "obs": ((t + 1, n, info.obs_dim), "float32"),
        "state": ((t + 1, info.state_dim), "float32"),
        "avail_actions": ((t + 1, n, a), "float32"),
        "actions": ((t, n), "int32"),
        "reward": ((t,), "float32"),
        "terminated": ((t,), "float32"),
        "filled": ((t,), "float32"),
    }


def episode_arrays(info, n_episodes: int) -> dict[str, np.ndarray]:
    """Zeroed arrays for `n_episodes` padded episodes."""
    return {key: np.zeros((n_episodes, *shape), dtype) for key, (shape, dtype) in episode_layout(info).items()}
