"""Replay storage: a growable transition store for model-based agents, and lazy replay buffers for off-policy ones."""

from typing import Any, NamedTuple

import numpy as np
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer


class TransitionBatch(NamedTuple):
    """Transitions as NumPy arrays, the leading dimension indexes transitions."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminations: np.ndarray


class TransitionStore:
    """
    A growable first-in-first-out store of single transitions.

    Memory grows by doubling, so a model loaded only to act (``rl_zoo3.enjoy``) never allocates ``max_size``
    transitions, and the oldest transitions are overwritten once ``max_size`` is reached.

    :param obs_shape: Shape of one observation.
    :param action_dim: Size of one action.
    :param max_size: Maximum number of transitions kept.
    :param initial_size: Capacity allocated at the first insertion.
    """

    def __init__(self, obs_shape: tuple[int, ...], action_dim: int, max_size: int, initial_size: int = 1024) -> None:
        if max_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {max_size}.")
        self.obs_shape = obs_shape
        self.action_dim = action_dim
        self.max_size = max_size
        self.initial_size = min(initial_size, max_size)
        self.pos = 0
        self.full = False
        self._observations = np.zeros((0, *obs_shape), dtype=np.float32)
        self._actions = np.zeros((0, action_dim), dtype=np.float32)
        self._rewards = np.zeros((0,), dtype=np.float32)
        self._next_observations = np.zeros((0, *obs_shape), dtype=np.float32)
        self._terminations = np.zeros((0,), dtype=np.float32)

    @property
    def capacity(self) -> int:
        return len(self._rewards)

    def size(self) -> int:
        """Number of transitions stored."""
        return self.max_size if self.full else self.pos

    def _grow(self, needed: int) -> None:
        new_capacity = max(self.capacity, self.initial_size)
        while new_capacity < needed:
            new_capacity *= 2
        new_capacity = min(new_capacity, self.max_size)
        if new_capacity == self.capacity:
            return
        for name in ("_observations", "_actions", "_rewards", "_next_observations", "_terminations"):
            old = getattr(self, name)
            new = np.zeros((new_capacity, *old.shape[1:]), dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def add(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_observations: np.ndarray,
        terminations: np.ndarray,
    ) -> None:
        """
        Add a batch of transitions (e.g. one per environment of a ``VecEnv``).

        :param observations: ``[n, *obs_shape]``
        :param actions: ``[n, action_dim]``
        :param rewards: ``[n]``
        :param next_observations: ``[n, *obs_shape]`` (the true final observation where an episode ended)
        :param terminations: ``[n]``, 1 where the episode terminated (not where it was truncated)
        """
        for i in range(len(rewards)):
            if not self.full and self.pos >= self.capacity:
                self._grow(self.pos + 1)
            self._observations[self.pos] = observations[i]
            self._actions[self.pos] = actions[i]
            self._rewards[self.pos] = rewards[i]
            self._next_observations[self.pos] = next_observations[i]
            self._terminations[self.pos] = terminations[i]
            self.pos += 1
            if self.pos == self.max_size:
                self.full = True
                self.pos = 0

    def all(self) -> TransitionBatch:
        """All stored transitions (copies), oldest first."""
        n = self.size()
        order = np.arange(n) if not self.full else (np.arange(n) + self.pos) % n
        return TransitionBatch(
            self._observations[order],
            self._actions[order],
            self._rewards[order],
            self._next_observations[order],
            self._terminations[order],
        )


class PlaceholderReplayBufferMixin(OffPolicyAlgorithm):
    """
    An off-policy algorithm that allocates its replay buffer only once it has an environment to learn from.

    ``rl_zoo3.enjoy`` loads algorithms it does not know without an env and with their saved (full) ``buffer_size``:
    SB3 would allocate the whole buffer just to act. Without an env the buffer is a one-row placeholder, replaced by the
    real one at the next ``learn`` (or by ``load_replay_buffer``). List it before the SB3 algorithm in the bases
    (``class BayesianDQN(PlaceholderReplayBufferMixin, DQN)``).
    """

    _placeholder_buffer = False

    def _setup_model(self) -> None:
        self._placeholder_buffer = self.env is None and self.replay_buffer is None
        buffer_size = self.buffer_size
        if self._placeholder_buffer:
            self.buffer_size = 1
        try:
            super()._setup_model()
        finally:
            self.buffer_size = buffer_size  # saved and used for the real buffer

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, Any]:
        if self._placeholder_buffer:
            assert self.replay_buffer_class is not None
            replay_buffer_kwargs = self.replay_buffer_kwargs.copy()  # as SB3's _setup_model: the env is not pickled
            if issubclass(self.replay_buffer_class, HerReplayBuffer):
                replay_buffer_kwargs["env"] = self.env
            self.replay_buffer = self.replay_buffer_class(
                self.buffer_size,
                self.observation_space,
                self.action_space,
                device=self.device,
                n_envs=self.n_envs,
                optimize_memory_usage=self.optimize_memory_usage,
                **replay_buffer_kwargs,
            )
            self._placeholder_buffer = False
        return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)

    def load_replay_buffer(self, path: Any, truncate_last_traj: bool = True) -> None:
        super().load_replay_buffer(path, truncate_last_traj)
        self._placeholder_buffer = False

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_placeholder_buffer"]
