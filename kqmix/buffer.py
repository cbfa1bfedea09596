"""A preallocated episode replay buffer with uniform sampling."""

from __future__ import annotations

import numpy as np

from .batch import BATCH_KEYS, episode_arrays


class EpisodeBuffer:
    """Holds the last `capacity` episodes in preallocated numpy arrays.

    Episodes are inserted as a dict of arrays with a leading episode axis (as
    returned by the runner) and sampled uniformly without replacement.
    """

    def __init__(self, info, capacity: int):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"`capacity` must be a positive integer. Received: capacity={capacity!r}")
        self.info = info
        self.capacity = capacity
        self.data = episode_arrays(info, capacity)
        self.index = 0  # next slot to write
        self.size = 0
        self.episodes_in = 0  # total episodes ever inserted

    def __len__(self):
        return self.size

    def insert(self, episodes: dict[str, np.ndarray]) -> None:
        count = len(episodes["filled"])
        for key in BATCH_KEYS:
            expected = self.data[key].shape[1:]
            if episodes[key].shape[1:] != expected:
                raise ValueError(
                    f"Episode field `{key}` has shape {episodes[key].shape[1:]} per episode; "
                    f"expected {expected}."
                )
        slots = (self.index + np.arange(count)) % self.capacity
        for key in BATCH_KEYS:
            self.data[key][slots] = episodes[key]
        self.index = int((self.index + count) % self.capacity)
        self.size = min(self.size + count, self.capacity)
        self.episodes_in += count

    def can_sample(self, batch_size: int) -> bool:
        return self.size >= batch_size

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        if not self.can_sample(batch_size):
            raise ValueError(
                f"Cannot sample {batch_size} episodes from a buffer holding {self.size}."
            )
        idx = rng.choice(self.size, size=batch_size, replace=False)
        # Longest episode first (then by slot): the order in which the learner's recurrence
        # skips finished episodes (`QLearner.packs_episodes`), so it need not reorder the batch.
        lengths = self.data["filled"][idx].sum(axis=1)
        idx = idx[np.lexsort((idx, -lengths))]
        return {key: self.data[key][idx] for key in BATCH_KEYS}

    def get_state(self) -> dict[str, np.ndarray]:
        counters = np.array([self.index, self.size, self.episodes_in], np.int64)
        return {**{k: self.data[k][: self.size] for k in BATCH_KEYS}, "counters": counters}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.index, self.size, self.episodes_in = (int(x) for x in arrays["counters"])
        if self.size > self.capacity:
            raise ValueError(
                f"Saved buffer holds {self.size} episodes; this buffer's capacity is {self.capacity}."
            )
        for key in BATCH_KEYS:
            self.data[key][: self.size] = arrays[key]
