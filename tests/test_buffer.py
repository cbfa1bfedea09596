"""The episode replay buffer."""

import pytest

from kqmix.batch import episode_arrays
from kqmix.buffer import EpisodeBuffer
from kqmix.envs import EnvInfo

INFO = EnvInfo(2, 3, 4, 5, 6)


def test_buffer_wraps_and_samples_without_replacement(rng):
    buffer = EpisodeBuffer(INFO, capacity=5)
    for i in range(7):
        ep = episode_arrays(INFO, 1)
        ep["reward"][:] = i
        ep["filled"][0, : (3, 1, 6, 2, 5, 4, 2)[i]] = 1.0
        buffer.insert(ep)
    assert len(buffer) == 5 and buffer.episodes_in == 7
    assert sorted(buffer.data["reward"][:, 0].tolist()) == [2, 3, 4, 5, 6]
    sample = buffer.sample(5, rng)
    assert sorted(sample["reward"][:, 0].tolist()) == [2, 3, 4, 5, 6]
    # Longest episode first, the order the learner's packed recurrence uses.
    assert sample["filled"].sum(axis=1).tolist() == [6, 5, 4, 2, 2]
    with pytest.raises(ValueError, match="Cannot sample 6 episodes from a buffer holding 5"):
        buffer.sample(6, rng)
    bad = episode_arrays(EnvInfo(2, 3, 4, 5, 7), 1)
    with pytest.raises(ValueError, match="`obs` has shape"):
        buffer.insert(bad)

