"""Replay storage: a growable transition store for model-based agents, and lazy replay buffers for off-policy ones."""

import copy
import io
import pathlib
from typing import Any, ClassVar, NamedTuple

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl
from stable_baselines3.common.type_aliases import MaybeCallback, TrainFreq, TrainFrequencyUnit
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

from sb3_bayes.common.utils import check_finite_data
from sb3_bayes.common.validation import ParameterValidator


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
    transitions, and the oldest transitions are overwritten once ``max_size`` is reached. Observations and rewards are
    checked as they arrive: a NaN or inf from the environment raises before anything is stored, so it never reaches a
    loss (and never the weights).

    :param obs_shape: Shape of one observation.
    :param action_dim: Size of one action.
    :param max_size: Maximum number of transitions kept (the algorithm's ``buffer_size``).
    :param initial_size: Capacity allocated at the first insertion.
    :param algo: The algorithm that owns the store, for the error messages.
    """

    # Stores pickled by ``save_replay_buffer`` before ``algo`` existed load without it (PETS is their only user).
    algo = "PETS"

    def __init__(
        self, obs_shape: tuple[int, ...], action_dim: int, max_size: int, initial_size: int = 1024, algo: str = "PETS"
    ) -> None:
        ParameterValidator(algo).integer("buffer_size", max_size)
        self.algo = algo
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
        # Check the whole batch first: a bad value raises with nothing of the batch stored.
        check_finite_data(observations, "observation", self.algo)
        check_finite_data(next_observations, "observation", self.algo)
        check_finite_data(rewards, "reward", self.algo)
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


class PickledReplayMixin:
    """
    ``save_replay_buffer`` / ``load_replay_buffer`` (as SB3's off-policy algorithms have them, and as rl-zoo3's
    ``--save-replay-buffer`` / ``--trained-agent`` call them) for an algorithm whose replay is not an SB3 buffer: the
    replay, with whatever state derived from it a continued run needs, is one pickled object.

    The algorithm names the pickled type (``saved_replay_type``), says what to pickle (:meth:`_replay_to_save`) and
    how to take it back (:meth:`_restore_replay`).
    """

    #: Type of the object :meth:`_replay_to_save` returns; a file holding anything else is refused.
    saved_replay_type: ClassVar[type]
    verbose: int

    def _replay_to_save(self) -> Any:
        """
        :return: The object to pickle, or None when there is no replay yet.
        """
        raise NotImplementedError

    def _restore_replay(self, replay: Any, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """
        Take back an object written by :meth:`save_replay_buffer` (its type is checked).

        :param replay: The unpickled object.
        :param path: Where it came from, for error messages.
        """
        raise NotImplementedError

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """
        Save the replay to a pickle file.

        :param path: Path of the file.
        """
        replay = self._replay_to_save()
        if replay is None:
            raise ValueError(f"{type(self).__name__} has no replay buffer to save yet: call learn() first.")
        save_to_pkl(path, replay, self.verbose)

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """
        Load a replay saved by :meth:`save_replay_buffer`.

        :param path: Path of the file.
        :param truncate_last_traj: Unused (kept for rl-zoo3's call signature): the algorithm decides what happens to an
            episode in progress when training continues.
        """
        replay = load_from_pkl(path, self.verbose)
        if not isinstance(replay, self.saved_replay_type):
            raise ValueError(
                f"{path} does not hold a {type(self).__name__} replay buffer "
                f"(a {self.saved_replay_type.__name__}, got {type(replay).__name__})."
            )
        self._restore_replay(replay, path)


class PlaceholderReplayBufferMixin(OffPolicyAlgorithm):
    """
    The replay side of sb3-bayes' off-policy algorithms (BayesianDDPG, BayesianDQN): a replay buffer allocated only
    once there is an environment to learn from, data checked as they enter it, and the checks of SB3's off-policy
    arguments.

    ``rl_zoo3.enjoy`` loads algorithms it does not know without an env and with their saved (full) ``buffer_size``:
    SB3 would allocate the whole buffer just to act. Without an env the buffer is a one-row placeholder, replaced by the
    real one at the next ``learn`` (or by ``load_replay_buffer``). List it before the SB3 algorithm in the bases
    (``class BayesianDQN(PlaceholderReplayBufferMixin, DQN)``).

    A NaN or inf observation or reward from the environment raises a ``ValueError`` before it is stored (it would
    otherwise reach every later minibatch and loss): nothing is stored and the model is unchanged.
    """

    _placeholder_buffer = False

    def _check_off_policy_hyperparameters(self, check: ParameterValidator) -> None:
        """
        Check the constructor arguments of SB3's ``OffPolicyAlgorithm`` (called by the algorithm's
        ``_check_hyperparameters``, at construction and at ``load``), beyond what SB3 checks: a ``buffer_size`` of 0 or
        1.5, a ``batch_size`` of 0 (a NaN loss later), a discount of 0 or 1.5 are refused when the model is built.

        :param check: The algorithm's validator.
        """
        self.learning_rate = check.learning_rate("learning_rate", self.learning_rate)
        self.buffer_size = check.integer("buffer_size", self.buffer_size)
        self.learning_starts = check.integer("learning_starts", self.learning_starts, minimum=0)
        self.batch_size = check.integer("batch_size", self.batch_size)
        self.tau = check.fraction("tau", self.tau)
        self.gamma = check.fraction("gamma", self.gamma)
        self._check_train_freq(check)
        check.integer("gradient_steps", self.gradient_steps, minimum=None)
        check.relation(
            "gradient_steps",
            self.gradient_steps,
            self.gradient_steps == -1 or self.gradient_steps >= 1,
            "-1 (as many as environment steps) or an integer >= 1",
        )
        check.of_type(
            "action_noise",
            self.action_noise,
            self.action_noise is None or isinstance(self.action_noise, ActionNoise),
            "an ActionNoise or None",
        )
        if self.replay_buffer_class is not None:
            check.subclass("replay_buffer_class", self.replay_buffer_class, ReplayBuffer)
        check.keyword_arguments("replay_buffer_kwargs", self.replay_buffer_kwargs)
        self.optimize_memory_usage = check.boolean("optimize_memory_usage", self.optimize_memory_usage)
        dict_observations = isinstance(self.observation_space, spaces.Dict)
        check.relation(
            "optimize_memory_usage",
            self.optimize_memory_usage,
            not (
                self.optimize_memory_usage
                and (dict_observations or self.replay_buffer_kwargs.get("handle_timeout_termination", True))
            ),
            "False, or True with replay_buffer_kwargs=dict(handle_timeout_termination=False) and no Dict observations "
            "(SB3's replay buffers cannot do both)",
        )
        self.n_steps = check.integer("n_steps", self.n_steps)
        check.relation(
            "n_steps",
            self.n_steps,
            self.n_steps == 1 or not dict_observations,
            "1 with Dict observations (SB3 has no n-step returns for them)",
        )
        check.base_algorithm_arguments(self)

    def _check_train_freq(self, check: ParameterValidator) -> None:
        # An integer, or (frequency, "step" | "episode"); after the first setup SB3's TrainFreq (a tuple with an enum).
        value = tuple(self.train_freq) if isinstance(self.train_freq, list) else self.train_freq
        allowed = 'an integer >= 1 or a tuple (integer >= 1, "step" or "episode")'
        pair = value if isinstance(value, tuple) else (value, "step")
        check.of_type("train_freq", value, len(pair) == 2, allowed)
        frequency, unit = pair
        unit = unit.value if isinstance(unit, TrainFrequencyUnit) else unit
        is_integer = isinstance(frequency, (int, np.integer)) and not isinstance(frequency, bool)
        check.of_type("train_freq", value, is_integer, allowed)
        check.relation("train_freq", value, frequency >= 1 and unit in ("step", "episode"), allowed)
        if not isinstance(value, TrainFreq):  # as SB3 will convert it, with a Python int (SB3 refuses NumPy's)
            self.train_freq = (int(frequency), unit)

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        # Before anything is stored: the next observations (the terminal ones where an episode ended) and the rewards.
        algo = type(self).__name__
        terminal = [
            info["terminal_observation"] for done, info in zip(dones, infos) if done and "terminal_observation" in info
        ]
        for observation in [new_obs, *terminal]:
            self._check_finite_observation(observation, algo)
        check_finite_data(reward, "reward", algo)
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        if np.any(dones):
            self._episodes_ended(np.flatnonzero(dones))

    def _episodes_ended(self, indices: np.ndarray) -> None:
        """
        Called once the transitions of a step are stored, with the environments whose episode just ended: where a
        posterior-sampling agent draws the sample it acts with in the next episode.

        :param indices: Indices of those environments.
        """

    @staticmethod
    def _check_finite_observation(observation: Any, algo: str) -> None:
        if isinstance(observation, dict):
            for key, value in observation.items():
                check_finite_data(np.asarray(value), f"observation {key!r}", algo)
        else:
            check_finite_data(np.asarray(observation), "observation", algo)

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
        # SB3 resets the action noise at every learn(); an episode that goes on (reset_num_timesteps=False, no env reset)
        # keeps its noise process (Ornstein-Uhlenbeck's last value), so learn(n) + learn(n) acts as learn(2 n).
        noise = self.action_noise if not reset_num_timesteps and self._last_obs is not None else None
        noise_state = copy.deepcopy(vars(noise)) if noise is not None else {}
        result = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        if noise is not None and noise is self.action_noise:
            vars(noise).update(noise_state)
        if self._last_obs is not None:  # the reset's observation is stored with the first transition
            self._check_finite_observation(self._last_obs, type(self).__name__)
        return result

    def load_replay_buffer(self, path: Any, truncate_last_traj: bool = True) -> None:
        super().load_replay_buffer(path, truncate_last_traj)
        self._placeholder_buffer = False

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_placeholder_buffer"]
