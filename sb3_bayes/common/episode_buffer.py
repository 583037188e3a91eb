"""Replay of whole episodes, sampled as windows of consecutive steps (for recurrent world models such as PSDRL's)."""

import hashlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from sb3_bayes.common.validation import ParameterValidator


def observation_keys(observations: np.ndarray) -> np.ndarray:
    """
    A 64-bit content hash of every observation: equal observations get equal keys, and distinct ones collide with
    probability about ``n^2 / 2^65`` (negligible for any replay size).

    :param observations: ``[n, *obs_shape]``.
    :return: ``[n]`` int64.
    """
    rows = np.ascontiguousarray(observations).reshape(len(observations), -1)
    digests = b"".join(hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in rows)
    return np.frombuffer(digests, dtype=np.int64).copy()


@dataclass
class Episode:
    """
    One episode: ``T + 1`` observations (the last is the final one) and ``T`` actions and rewards.

    :param observations: ``[T + 1, *obs_shape]`` in the observation space's dtype (uint8 frames stay uint8).
    :param actions: ``[T]`` int64.
    :param rewards: ``[T]`` float32.
    :param terminated: Whether the episode ended in a terminal state (not by truncation, and not still running).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    _keys: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.actions)

    def observation_keys(self) -> np.ndarray:
        """``[T + 1]`` content keys of the observations (:func:`observation_keys`), computed once per episode."""
        if self._keys is None:
            self._keys = observation_keys(self.observations)
        return self._keys


@dataclass
class _RunningEpisode:
    observations: list[np.ndarray] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    # Content keys of the first observations, extended on demand: a long running episode (a 27k-step Atari game) is
    # read at every training round, and only its new observations need hashing.
    _keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def observation_keys(self) -> np.ndarray:
        """``[T + 1]`` content keys of the observations so far (:func:`observation_keys`), each computed once."""
        if len(self._keys) < len(self.observations):
            new = observation_keys(np.stack(self.observations[len(self._keys) :]))
            self._keys = np.concatenate([self._keys, new])
        return self._keys


class SequenceBatch(NamedTuple):
    """
    ``B`` windows of up to ``L`` consecutive steps, each inside one episode; shorter ones are padded and masked.

    ``observations[:, t]`` and ``observations[:, t + 1]`` are the states before and after ``actions[:, t]``.
    """

    observations: np.ndarray  # [B, L + 1, *obs_shape]
    actions: np.ndarray  # [B, L]
    rewards: np.ndarray  # [B, L]
    terminations: np.ndarray  # [B, L], 1 where actions[:, t] ended the episode in a terminal state
    mask: np.ndarray  # [B, L], 1 for real steps
    # [B, L + 1], an id per stored frame (equal ids: the same frame of the same episode), -1 for padding. Windows drawn
    # from a small replay overlap heavily; the ids let a learner run a network once per distinct frame.
    frame_ids: np.ndarray


class EpisodeReplayBuffer:
    """
    First-in-first-out store of whole episodes, one running episode per environment.

    Frames are kept once (``T + 1`` per episode, not an ``(obs, next_obs)`` pair per step) and in their own dtype, so
    a 64x64 uint8 frame costs 4 KiB per transition. The oldest complete episodes are dropped once more than
    ``capacity`` transitions are stored.

    :param obs_shape: Shape of one observation.
    :param obs_dtype: Its dtype.
    :param capacity: Maximum number of transitions kept.
    :param n_envs: Number of parallel environments.
    """

    def __init__(self, obs_shape: tuple[int, ...], obs_dtype: np.dtype, capacity: int, n_envs: int = 1) -> None:
        self.obs_shape = obs_shape
        self.obs_dtype = np.dtype(obs_dtype)
        self.capacity = ParameterValidator("EpisodeReplayBuffer").integer("capacity", capacity)
        self.episodes: deque[Episode] = deque()
        self.running = [_RunningEpisode() for _ in range(n_envs)]
        self._n_complete_transitions = 0

    @property
    def n_envs(self) -> int:
        return len(self.running)

    def n_transitions(self) -> int:
        """Transitions stored, in complete and running episodes."""
        return self._n_complete_transitions + sum(len(r.actions) for r in self.running)

    def n_complete_episodes(self) -> int:
        return len(self.episodes)

    def add(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_observations: np.ndarray,
        dones: np.ndarray,
        terminations: np.ndarray,
    ) -> None:
        """
        Add one step of every environment.

        :param observations: ``[n_envs, *obs_shape]`` before the step.
        :param actions: ``[n_envs]``.
        :param rewards: ``[n_envs]`` (already transformed, if the algorithm transforms rewards).
        :param next_observations: ``[n_envs, *obs_shape]`` after the step (the true final observation at an episode end).
        :param dones: ``[n_envs]``, episode ended (terminated or truncated).
        :param terminations: ``[n_envs]``, episode ended in a terminal state.
        """
        if len(actions) != self.n_envs:
            raise ValueError(f"Expected one step per environment ({self.n_envs}), got {len(actions)}.")
        for i, running in enumerate(self.running):
            if not running.observations:
                running.observations.append(np.array(observations[i], dtype=self.obs_dtype))
            running.observations.append(np.array(next_observations[i], dtype=self.obs_dtype))
            running.actions.append(int(actions[i]))
            running.rewards.append(float(rewards[i]))
            if dones[i]:
                self._close(i, bool(terminations[i]))

    def truncate_running(self, n_envs: int | None = None) -> None:
        """
        Close every running episode as truncated (not terminated), because its environment restarts: the steps that
        follow a reset belong to a new episode, and joining them to the old one would invent a transition. Running
        episodes without a step yet are dropped.

        :param n_envs: The number of environments from now on (None: unchanged).
        """
        for index, running in enumerate(self.running):
            if running.actions:
                self._close(index, terminated=False)
        self.running = [_RunningEpisode() for _ in range(self.n_envs if n_envs is None else n_envs)]

    def _close(self, env_index: int, terminated: bool) -> None:
        running = self.running[env_index]
        episode = Episode(
            np.stack(running.observations),
            np.asarray(running.actions, dtype=np.int64),
            np.asarray(running.rewards, dtype=np.float32),
            terminated,
            running.observation_keys() if len(running._keys) else None,  # keys read while it ran are kept
        )
        self.running[env_index] = _RunningEpisode()
        self.episodes.append(episode)
        self._n_complete_transitions += len(episode)
        while self._n_complete_transitions > self.capacity and len(self.episodes) > 1:
            self._n_complete_transitions -= len(self.episodes.popleft())

    def all_episodes(self) -> Iterator[Episode]:
        """Complete episodes, then the running ones (not terminated, with at least one step)."""
        yield from self.episodes
        for running in self.running:
            if running.actions:
                yield Episode(
                    np.stack(running.observations),
                    np.asarray(running.actions, dtype=np.int64),
                    np.asarray(running.rewards, dtype=np.float32),
                    False,
                    running.observation_keys(),
                )

    def sample_distinct_observations(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """
        Draw ``n`` distinct observations (by content), each distinct one equally likely however often it was stored;
        all of them if fewer are stored.

        :param n: Number of observations.
        :param rng: NumPy random generator.
        :return: ``[min(n, distinct), *obs_shape]``.
        """
        episodes = list(self.all_episodes())
        if not episodes:
            raise ValueError("The replay buffer is empty: collect at least one step before sampling.")
        _, first = np.unique(np.concatenate([e.observation_keys() for e in episodes]), return_index=True)
        chosen = first if len(first) <= n else rng.choice(first, n, replace=False)
        starts = np.cumsum([0] + [len(e.observations) for e in episodes])
        episode_index = np.searchsorted(starts, chosen, side="right") - 1
        return np.stack([episodes[e].observations[i - starts[e]] for e, i in zip(episode_index, chosen)])

    def sample(self, batch_size: int, sequence_length: int, rng: np.random.Generator) -> SequenceBatch:
        """
        Draw ``batch_size`` windows; every transition is equally likely to be in a window (episodes are drawn in
        proportion to their length, the window start uniformly).

        :param batch_size: Number of windows.
        :param sequence_length: Steps per window (shorter episodes give padded, masked windows).
        :param rng: NumPy random generator.
        """
        episodes = list(self.all_episodes())
        if not episodes:
            raise ValueError("The replay buffer is empty: collect at least one step before sampling.")
        lengths = np.array([len(e) for e in episodes], dtype=np.float64)
        chosen = rng.choice(len(episodes), size=batch_size, p=lengths / lengths.sum())
        length = int(min(sequence_length, lengths[chosen].max()))
        observations = np.zeros((batch_size, length + 1, *self.obs_shape), dtype=self.obs_dtype)
        actions = np.zeros((batch_size, length), dtype=np.int64)
        rewards = np.zeros((batch_size, length), dtype=np.float32)
        terminations = np.zeros((batch_size, length), dtype=np.float32)
        mask = np.zeros((batch_size, length), dtype=np.float32)
        frame_ids = np.full((batch_size, length + 1), -1, dtype=np.int64)
        first_frame = np.concatenate([[0], np.cumsum(lengths + 1)]).astype(np.int64)
        for row, index in enumerate(chosen):
            episode = episodes[index]
            steps = min(length, len(episode))
            start = int(rng.integers(0, len(episode) - steps + 1))
            observations[row, : steps + 1] = episode.observations[start : start + steps + 1]
            actions[row, :steps] = episode.actions[start : start + steps]
            rewards[row, :steps] = episode.rewards[start : start + steps]
            mask[row, :steps] = 1.0
            frame_ids[row, : steps + 1] = first_frame[index] + start + np.arange(steps + 1)
            if episode.terminated and start + steps == len(episode):
                terminations[row, steps - 1] = 1.0
        return SequenceBatch(observations, actions, rewards, terminations, mask, frame_ids)
