"""The episode replay: windows of consecutive steps inside one episode, masks, terminations and eviction."""

import numpy as np
import pytest

from sb3_bayes.common.episode_buffer import EpisodeReplayBuffer


def fill(buffer: EpisodeReplayBuffer, lengths: list[int], terminated: bool = True) -> None:
    """Episodes whose observation at step t of episode e is 1000 e + t (so continuity is checkable)."""
    for episode, length in enumerate(lengths):
        for t in range(length):
            obs = np.full((1, 2), 1000 * episode + t, dtype=np.float32)
            next_obs = obs + 1
            done = np.array([t == length - 1])
            buffer.add(obs, np.array([t % 3]), np.array([float(t)]), next_obs, done, done & terminated)


def test_windows_are_consecutive_steps_of_one_episode() -> None:
    buffer = EpisodeReplayBuffer((2,), np.float32, capacity=1000)
    fill(buffer, [7, 30, 12])
    batch = buffer.sample(64, 10, np.random.default_rng(0))
    assert batch.observations.shape == (64, 11, 2) and batch.actions.shape == (64, 10)
    for row in range(64):
        steps = int(batch.mask[row].sum())
        values = batch.observations[row, : steps + 1, 0]
        np.testing.assert_array_equal(np.diff(values), np.ones(steps))  # consecutive, one episode
        t0 = int(values[0]) % 1000
        np.testing.assert_array_equal(batch.rewards[row, :steps], np.arange(t0, t0 + steps))
        np.testing.assert_array_equal(batch.actions[row, :steps], np.arange(t0, t0 + steps) % 3)
        # Only a window that ends at its episode's end carries the termination flag, on its last real step.
        episode_length = [7, 30, 12][int(values[0]) // 1000]
        ends_episode = t0 + steps == episode_length
        assert batch.terminations[row].sum() == float(ends_episode)
        if ends_episode:
            assert batch.terminations[row, steps - 1] == 1.0
        assert not batch.mask[row, steps:].any()


def test_truncated_episodes_are_not_terminal_and_running_episodes_are_replayed() -> None:
    buffer = EpisodeReplayBuffer((2,), np.float32, capacity=1000)
    fill(buffer, [5], terminated=False)
    buffer.add(np.zeros((1, 2)), np.array([0]), np.array([0.0]), np.ones((1, 2)), np.array([False]), np.array([False]))
    episodes = list(buffer.all_episodes())
    assert [len(e) for e in episodes] == [5, 1] and not any(e.terminated for e in episodes)
    assert buffer.n_transitions() == 6 and buffer.n_complete_episodes() == 1
    assert buffer.sample(16, 8, np.random.default_rng(0)).terminations.sum() == 0


def test_fifo_eviction_by_whole_episodes_and_uint8_frames() -> None:
    buffer = EpisodeReplayBuffer((2,), np.float32, capacity=20)
    fill(buffer, [8, 8, 8, 8])
    assert buffer.n_transitions() <= 20 and buffer.n_complete_episodes() == 2
    assert int(buffer.episodes[0].observations[0, 0]) == 2000  # the two oldest episodes are gone
    frames = EpisodeReplayBuffer((64, 64), np.uint8, capacity=10)
    frames.add(np.zeros((1, 64, 64)), np.array([1]), np.array([0.0]), np.ones((1, 64, 64)), np.array([True]), np.array([True]))
    assert frames.episodes[0].observations.dtype == np.uint8
    with pytest.raises(ValueError, match="one step per environment"):
        frames.add(np.zeros((2, 64, 64)), np.array([1, 1]), np.zeros(2), np.zeros((2, 64, 64)), np.zeros(2), np.zeros(2))


def test_frame_ids_identify_equal_frames() -> None:
    buffer = EpisodeReplayBuffer((2,), np.float32, capacity=1000)
    fill(buffer, [7, 30, 12])
    batch = buffer.sample(200, 10, np.random.default_rng(1))
    real = batch.frame_ids >= 0
    np.testing.assert_array_equal(real[:, 1:], batch.mask > 0)
    assert real[:, 0].all()
    ids, frames = batch.frame_ids[real], batch.observations[real]
    for frame_id in np.unique(ids):
        same = frames[ids == frame_id]
        assert (same == same[0]).all()  # one id, one frame
    # Different frames have different ids (frame values are unique per episode and step in `fill`).
    assert len(np.unique(ids)) == len(np.unique(frames[:, 0]))
    assert len(np.unique(ids)) < ids.size  # overlapping windows share frames


def test_observation_keys_and_distinct_observations() -> None:
    """Keys are equal exactly for equal contents; distinct observations are drawn uniformly over contents."""
    buffer = EpisodeReplayBuffer((2,), np.float32, capacity=1000)
    # 20 episodes revisit the same three observations (0, 1, 2); one episode sees 100, 101, ... once each.
    for _ in range(20):
        for t in range(2):
            buffer.add(np.full((1, 2), t, np.float32), np.array([0]), np.array([0.0]), np.full((1, 2), t + 1, np.float32),
                       np.array([t == 1]), np.array([t == 1]))  # fmt: skip
    fill(buffer, [5])  # episode 0 of `fill`: observations 0 ... 5, so 0, 1 and 2 again, and 3, 4, 5
    keys = np.concatenate([episode.observation_keys() for episode in buffer.all_episodes()])
    frames = np.concatenate([episode.observations for episode in buffer.all_episodes()])[:, 0]
    np.testing.assert_array_equal(keys[:, None] == keys[None, :], frames[:, None] == frames[None, :])
    # Fewer distinct observations than asked for: each of them once.
    every = buffer.sample_distinct_observations(50, np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(every[:, 0]), np.arange(6))
    # A draw of 2 of the 6: every content equally likely (1/3 each), although 0, 1 and 2 fill 63 of the 66 frames.
    rng = np.random.default_rng(0)
    drawn = np.concatenate([buffer.sample_distinct_observations(2, rng)[:, 0] for _ in range(3000)])
    assert len(drawn) == 6000
    np.testing.assert_allclose(np.bincount(drawn.astype(int), minlength=6) / 3000, np.full(6, 1 / 3), atol=0.04)
    with pytest.raises(ValueError, match="empty"):
        EpisodeReplayBuffer((2,), np.float32, capacity=10).sample_distinct_observations(1, rng)


def test_running_episode_keys_are_hashed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A running episode read at every round hashes only its new observations, and keeps its keys when it closes."""
    from sb3_bayes.common import episode_buffer

    hashed: list[int] = []
    original = episode_buffer.observation_keys

    def counting(observations: np.ndarray) -> np.ndarray:
        hashed.append(len(observations))
        return original(observations)

    monkeypatch.setattr(episode_buffer, "observation_keys", counting)
    buffer = EpisodeReplayBuffer((2,), np.float32, capacity=100)
    for t in range(6):
        obs = np.full((1, 2), t, dtype=np.float32)
        done = np.array([t == 5])
        buffer.add(obs, np.array([0]), np.array([0.0]), obs + 1, done, done)
        if t in (1, 2, 4):
            (running,) = buffer.all_episodes()
            np.testing.assert_array_equal(running.observation_keys(), original(running.observations))
    (complete,) = buffer.all_episodes()
    np.testing.assert_array_equal(complete.observation_keys(), original(complete.observations))
    # o_0 ... o_2 at t = 1, then o_3, then o_4 and o_5, then o_6 at the close: each of the 7 once.
    assert hashed == [3, 1, 2, 1]


def test_truncate_running_closes_episodes_as_truncated() -> None:
    """Environments that restart end their running episodes, truncated; empty ones are dropped; n_envs may change."""
    buffer = EpisodeReplayBuffer((2,), np.float32, capacity=100, n_envs=3)
    for t in range(3):
        obs = np.full((3, 2), t, dtype=np.float32)
        buffer.add(obs, np.zeros(3), np.ones(3), obs + 1, np.array([False, t == 2, False]), np.array([False, t == 2, False]))
    buffer.add(np.zeros((3, 2)), np.zeros(3), np.zeros(3), np.ones((3, 2)), np.array([False, False, True]), np.zeros(3))
    assert [len(e) for e in buffer.episodes] == [3, 4] and [len(r.actions) for r in buffer.running] == [4, 1, 0]
    buffer.truncate_running(n_envs=2)
    assert [len(e) for e in buffer.episodes] == [3, 4, 4, 1] and buffer.n_envs == 2
    assert [e.terminated for e in buffer.episodes] == [True, False, False, False]
    assert buffer.n_transitions() == 12 and not any(r.observations for r in buffer.running)
    with pytest.raises(ValueError, match=r"\bcapacity\b"):
        EpisodeReplayBuffer((2,), np.float32, capacity=0)
