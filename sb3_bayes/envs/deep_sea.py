"""
DeepSea: the deep-exploration benchmark of the Behaviour Suite for RL, as a native Gymnasium environment.

A faithful port of ``bsuite/environments/deep_sea.py`` (Osband et al., "Behaviour Suite for Reinforcement Learning",
ICLR 2020; the chain first appears in Osband et al., "Deep Exploration via Randomized Value Functions", JMLR 2019,
arXiv:1703.07608, and "Randomized Prior Functions for Deep RL", NeurIPS 2018, arXiv:1806.03335).

The agent starts in the top-left cell of an ``N x N`` grid. Every step it descends one row and moves one column left
or right (clipped at the edges), so an episode always lasts exactly ``N`` steps and ends by *termination*. Which of the
two discrete actions means "right" is drawn independently per cell (the "action mapping"). Moving right costs
``unscaled_move_cost / N``; a reward of ``+1`` waits at the bottom-right corner, reached only by ``N`` consecutive
right moves, so the optimal return is ``1 - unscaled_move_cost`` (0.99 by default) while any other policy gets at most
0. Dithering exploration (epsilon-greedy, Boltzmann) needs of the order of ``2^N`` episodes to find the treasure.

Differences from bsuite (interface only, the dynamics and rewards are the same):

* the observation is a flat ``float32`` one-hot vector of length ``N * N`` by default (``flat_observation=False``
  gives bsuite's ``(N, N)`` image);
* randomness comes from Gymnasium's ``self.np_random`` (seeded by ``reset(seed=...)``) instead of
  ``np.random.RandomState(seed)``;
* with ``mapping_seed=None`` the action mapping is drawn at the first ``reset`` from that reset's seed (bsuite draws
  it at construction from an unseeded generator); it then stays fixed for the environment's lifetime, as in bsuite.
  The mapping is drawn with ``np.random.RandomState(seed).binomial(1, 0.5, [N, N])`` exactly as bsuite does, so
  ``mapping_seed=s`` (or a first ``reset(seed=s)``) gives the same mapping as bsuite's ``DeepSea(N, mapping_seed=s)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = [
    "BSUITE_SOLVED_THRESHOLD",
    "BSUITE_STOCHASTIC_MIN_EPISODES",
    "BSUITE_STOCHASTIC_SOLVED_THRESHOLD",
    "DEEP_SEA_ENTRY_POINT",
    "DEEP_SEA_SIZES",
    "DeepSeaEnv",
    "bsuite_solved_at",
    "bsuite_solved_episode",
    "bsuite_criterion",
    "fit_scaling_exponent",
    "register_deep_sea_envs",
]

DEEP_SEA_ENTRY_POINT = "sb3_bayes.envs.deep_sea:DeepSeaEnv"
# sizes that get a convenience id ``DeepSea{N}-v0`` (so that rl-zoo3 hyperparameter files can be keyed per size)
DEEP_SEA_SIZES = (5, 10, 15, 20, 25, 30)
# bsuite's deep_sea analysis: a size counts as solved once fewer than 90 % of the episodes so far were "bad"
BSUITE_SOLVED_THRESHOLD = 0.9
# bsuite's deep_sea_stochastic analysis: fewer than 80 %, and not before episode 100. A failed right move (probability
# 1/N per step) leaves the diagonal without a "left" move, so some episodes are not bad by the environment's luck alone.
# (bsuite's `find_solution` also defaults to 80 % for the deterministic variant; its plots, and this package, use 90 %.)
BSUITE_STOCHASTIC_SOLVED_THRESHOLD = 0.8
BSUITE_STOCHASTIC_MIN_EPISODES = 100


class DeepSeaEnv(gym.Env[np.ndarray, np.int64]):
    """
    Deep Sea environment to test for deep exploration (bsuite).

    Reward rule (bsuite ``DeepSea._step``), for an action taken in cell ``(row, column)``:

    * ``+1`` if ``column == N - 1`` *before* the move and the action is "right". Since ``column <= row``, this can only
      happen on the last step (``row == N - 1``) after ``N - 1`` right moves, i.e. for ``N`` consecutive right actions;
    * ``-unscaled_move_cost / N`` for every "right" action (also when a stochastic right move fails);
    * stochastic variant only: ``+ N(0, 1)`` noise on the last step when ``column`` is ``0`` or ``N - 1``.

    The action ``a`` moves right in cell ``(row, column)`` iff ``a == action_mapping[row, column]``.

    Observation: one-hot encoding of ``(row, column)``. After the final step the agent has left the grid
    (``row == N``) and, like bsuite, the observation is all zeros.

    ``info`` always holds ``"position": (row, column)``; at the end of an episode it also holds ``"is_success"`` (the
    treasure was reached) and ``"bad_episode"`` (bsuite's regret proxy: the agent was on the optimal diagonal and moved
    left at some point).

    :param size: The grid size ``N`` (number of rows and columns, and episode length).
    :param deterministic: Whether transitions and rewards are deterministic (default). If ``False`` this is bsuite's
        ``deep_sea_stochastic``: a "right" move fails (the agent moves straight down) with probability ``1 / N``, and
        the reward of the two end states of the last row gets standard normal noise.
    :param unscaled_move_cost: The cost of a "right" move, multiplied by ``N``. The default (0.01) gives an optimal
        return of 0.99.
    :param randomize_actions: Whether the action mapping is random per cell (the actual DeepSea problem). ``False`` is
        bsuite's debug mode where action 1 is "right" everywhere (a warning is emitted, as in bsuite).
    :param mapping_seed: Seed of the action mapping. If ``None``, the mapping is drawn from the seed of the first
        ``reset`` (or from ``self.np_random`` if that seed is also ``None``). Once drawn it never changes.
    :param flat_observation: Whether observations are flat ``(N * N,)`` vectors (default, for MLP policies) or
        ``(N, N)`` arrays as in bsuite.
    :param render_mode: ``None``, ``"ansi"`` (a text picture of the grid) or ``"rgb_array"`` (an image, 8 pixels per
        cell, as SB3 and rl-zoo3 request by default).
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        size: int = 10,
        deterministic: bool = True,
        unscaled_move_cost: float = 0.01,
        randomize_actions: bool = True,
        mapping_seed: int | None = None,
        flat_observation: bool = True,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"DeepSea size must be an integer >= 1, got {size!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            modes = self.metadata["render_modes"]
            raise ValueError(f"DeepSea render_mode must be None or one of {modes}, got {render_mode!r}")
        self.size = int(size)
        self.deterministic = bool(deterministic)
        self.unscaled_move_cost = float(unscaled_move_cost)
        self.randomize_actions = bool(randomize_actions)
        self.mapping_seed = mapping_seed
        self.flat_observation = bool(flat_observation)
        self.render_mode = render_mode

        obs_shape = (self.size * self.size,) if self.flat_observation else (self.size, self.size)
        self.observation_space = spaces.Box(low=0.0, high=1.0, shape=obs_shape, dtype=np.float32)
        self.action_space = spaces.Discrete(2)

        self._action_mapping: np.ndarray | None = None
        if not self.randomize_actions:
            # bsuite debug mode: action 1 is "right" in every cell
            warnings.warn(
                "DeepSea is in debug mode (randomize_actions=False): action 1 is 'right' everywhere. "
                "Only randomize_actions=True is the DeepSea environment."
            )
            self._action_mapping = np.ones((self.size, self.size), dtype=np.int64)
        elif mapping_seed is not None:
            self._action_mapping = self._draw_mapping(mapping_seed)
        self._start_episode()
        self._needs_reset = True

    # ------------------------------------------------------------------------------------------------------------------
    # Properties
    # ------------------------------------------------------------------------------------------------------------------

    @property
    def action_mapping(self) -> np.ndarray:
        """
        Copy of the ``(N, N)`` integer action mapping: action ``a`` moves right in cell ``(row, column)`` iff
        ``a == action_mapping[row, column]``. Raises ``RuntimeError`` if the mapping has not been drawn yet
        (``mapping_seed=None`` and no ``reset`` so far).
        """
        if self._action_mapping is None:
            raise RuntimeError("DeepSea action mapping is drawn at the first reset() when mapping_seed is None")
        return self._action_mapping.copy()

    @property
    def position(self) -> tuple[int, int]:
        """Current ``(row, column)``; ``row == N`` once the episode is over."""
        return self._row, self._column

    @property
    def optimal_return(self) -> float:
        """Optimal expected return, with bsuite's formula (exact when deterministic, approximate when stochastic)."""
        # bsuite: the N - 1 right moves to the last column must all succeed, each with probability 1 - 1/N
        optimal_no_cost = 1.0 if self.deterministic else (1.0 - 1.0 / self.size) ** (self.size - 1)
        return optimal_no_cost - self.unscaled_move_cost

    def right_action(self, row: int, column: int) -> int:
        """
        The action that moves right in a given cell.

        :param row: Row of the cell.
        :param column: Column of the cell.
        :return: 0 or 1.
        """
        return int(self.action_mapping[row, column])

    # ------------------------------------------------------------------------------------------------------------------
    # Gymnasium API
    # ------------------------------------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """
        Put the agent back in the top-left cell. The first call also draws the action mapping if needed.

        :param seed: Seed of ``self.np_random`` (stochastic variant); at the first reset with ``mapping_seed=None`` it
            also seeds the action mapping.
        :param options: Unused.
        :return: The first observation and the info dict.
        """
        super().reset(seed=seed)
        if self._action_mapping is None:
            # mapping_seed is None: take the mapping from this reset's seed (or from np_random, itself seeded by
            # Gymnasium from OS entropy when seed is None)
            mapping_seed = seed if seed is not None else int(self.np_random.integers(2**32))
            self._action_mapping = self._draw_mapping(mapping_seed)
        self._start_episode()
        self._needs_reset = False
        return self._get_obs(), {"position": self.position}

    def _start_episode(self) -> None:
        """Put the diver at the top-left cell with a clean record of the episode."""
        self._row = 0
        self._column = 0
        self._bad_episode = False
        self._reached_treasure = False

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """
        Descend one row and move left or right (bsuite ``DeepSea._step``).

        :param action: 0 or 1 (its meaning depends on the cell, see :attr:`action_mapping`).
        :return: observation, reward, terminated (``True`` after ``N`` steps), truncated (always ``False``), info.
        """
        if self._needs_reset:
            raise RuntimeError("DeepSea: call reset() before step() (at the start and after each episode)")
        if not self.action_space.contains(action):
            raise ValueError(f"DeepSea action must be 0 or 1, got {action!r}")
        assert self._action_mapping is not None
        size = self.size
        action_right = int(action) == self._action_mapping[self._row, self._column]

        # Reward (bsuite): +1 for a right action in the last column, which is only possible on the last row
        reward = 0.0
        if self._column == size - 1 and action_right:
            reward += 1.0
            self._reached_treasure = True
        if not self.deterministic and self._row == size - 1 and self._column in (0, size - 1):
            # bsuite: noisy rewards at the two 'end' states of the chain
            reward += float(self.np_random.standard_normal())

        # Transition (bsuite): a right move fails with probability 1/N in the stochastic variant, but is paid anyway
        if action_right:
            if self.deterministic or self.np_random.random() > 1.0 / size:
                self._column = min(self._column + 1, size - 1)
            reward -= self.unscaled_move_cost / size
        else:
            if self._row == self._column:  # bsuite: the agent was on the optimal path and went wrong
                self._bad_episode = True
            self._column = max(self._column - 1, 0)
        self._row += 1

        terminated = self._row == size
        info: dict[str, Any] = {"position": self.position}
        if terminated:
            self._needs_reset = True
            info["is_success"] = self._reached_treasure
            info["bad_episode"] = self._bad_episode
        return self._get_obs(), reward, terminated, False, info

    def render(self) -> str | np.ndarray | None:  # type: ignore[override]
        """
        Text picture of the grid (``A`` the agent, ``$`` the treasure at the bottom-right, ``.`` an empty cell), or an
        RGB image (agent white, treasure gold, grid dark blue) for ``render_mode="rgb_array"``.

        :return: The picture, ``None`` without a render mode.
        """
        if self.render_mode is None:
            gym.logger.warn("DeepSea.render() called without a render_mode (use render_mode='ansi' or 'rgb_array')")
            return None
        if self.render_mode == "rgb_array":
            image = np.zeros((self.size, self.size, 3), dtype=np.uint8)
            image[...] = (20, 30, 90)
            image[-1, -1] = (230, 180, 30)
            if self._row < self.size:
                image[self._row, self._column] = (255, 255, 255)
            return np.kron(image, np.ones((8, 8, 1), dtype=np.uint8))
        grid = [["." for _ in range(self.size)] for _ in range(self.size)]
        grid[-1][-1] = "$"
        if self._row < self.size:
            grid[self._row][self._column] = "A"
        lines = [" ".join(row) for row in grid]
        if self._row >= self.size:
            lines.append(f"done: column {self._column}, success {self._reached_treasure}")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------------------------------------------------------

    def _draw_mapping(self, seed: int) -> np.ndarray:
        """bsuite's action mapping: ``RandomState(mapping_seed).binomial(1, 0.5, [N, N])``."""
        return np.random.RandomState(seed).binomial(1, 0.5, [self.size, self.size]).astype(np.int64)

    def _get_obs(self) -> np.ndarray:
        """One-hot of the position; all zeros once the agent has left the grid (bsuite's null terminal observation)."""
        obs = np.zeros((self.size, self.size), dtype=np.float32)
        if self._row < self.size:
            obs[self._row, self._column] = 1.0
        return obs.reshape(-1) if self.flat_observation else obs


def register_deep_sea_envs() -> None:
    """
    Register ``DeepSea-v0`` (size 10) and ``DeepSea{N}-v0`` for ``N`` in :data:`DEEP_SEA_SIZES` with Gymnasium.
    Ids already in the registry are left alone, so calling this again neither warns nor raises.
    No ``max_episode_steps``: episodes end by termination after exactly ``N`` steps.
    """
    env_kwargs: dict[str, dict[str, Any]] = {"DeepSea-v0": {}}
    env_kwargs.update({f"DeepSea{size}-v0": {"size": size} for size in DEEP_SEA_SIZES})
    for env_id, kwargs in env_kwargs.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=DEEP_SEA_ENTRY_POINT, kwargs=kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# bsuite's DeepSea protocol (bsuite/experiments/deep_sea/analysis.py): episodes to solve, and how they scale with N


def bsuite_criterion(deterministic: bool = True) -> tuple[float, int]:
    """
    bsuite's solved criterion for a DeepSea variant, as ``(threshold, min_episodes)`` for :func:`bsuite_solved_episode`:
    ``(0.9, 1)`` for ``deep_sea``, ``(0.8, 100)`` for ``deep_sea_stochastic`` (bsuite/experiments/deep_sea_stochastic/
    analysis.py: "a more stringent threshold and only once the agent has done at least 100 episodes").

    :param deterministic: The variant: True for ``deep_sea``, False for ``deep_sea_stochastic``.
    :return: The threshold on the running fraction of bad episodes, and the first episode that may count as solved.
    """
    if deterministic:
        return BSUITE_SOLVED_THRESHOLD, 1
    return BSUITE_STOCHASTIC_SOLVED_THRESHOLD, BSUITE_STOCHASTIC_MIN_EPISODES


def bsuite_solved_episode(
    bad_flags: Sequence[bool], threshold: float = BSUITE_SOLVED_THRESHOLD, min_episodes: int = 1
) -> int | None:
    """
    The episode (1-based) at which a DeepSea run counts as solved under bsuite's criterion: the first episode ``e``
    where the running fraction of bad episodes, ``(bad episodes among the first e) / e``, is below ``threshold``.

    Every episode that misses the treasure of the deterministic DeepSea leaves the diagonal by a "left" move, so it is
    bad (``info["bad_episode"]``); the criterion is met once the agent has found the treasure often enough to bring
    the running fraction of failures under 90 %. A dithering agent needs of the order of ``2^N`` episodes for that.

    :param bad_flags: ``info["bad_episode"]`` of every episode, in order.
    :param threshold: The fraction of bad episodes below which the run counts as solved (bsuite: 0.9; 0.8 for the
        stochastic variant, :func:`bsuite_criterion`).
    :param min_episodes: Episodes before which the run cannot count as solved (1: from the first episode on; bsuite
        uses 100 for the stochastic variant, where a failed right move ends an episode without a bad move, against
        solves by luck).
    :return: The episode, or None if the criterion is never met.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}")
    if isinstance(min_episodes, bool) or not isinstance(min_episodes, (int, np.integer)) or min_episodes < 1:
        raise ValueError(f"min_episodes must be an integer >= 1, got {min_episodes!r}")
    n_bad = 0
    for episode, bad in enumerate(bad_flags, start=1):
        n_bad += bool(bad)
        if bsuite_solved_at(n_bad, episode, threshold, min_episodes):
            return episode
    return None


def bsuite_solved_at(n_bad: int, episodes: int, threshold: float = BSUITE_SOLVED_THRESHOLD, min_episodes: int = 1) -> bool:
    """
    Whether bsuite's criterion holds after ``episodes`` episodes of which ``n_bad`` were bad (the test of
    :func:`bsuite_solved_episode` at one episode, for a run that checks it as it goes).

    :param n_bad: Bad episodes so far.
    :param episodes: Episodes so far.
    :param threshold: See :func:`bsuite_solved_episode`.
    :param min_episodes: See :func:`bsuite_solved_episode`.
    """
    # bsuite: total_bad_episodes / episode < thresh (a strict inequality).
    return episodes >= min_episodes and n_bad < threshold * episodes


def fit_scaling_exponent(sizes: Sequence[float], episodes: Sequence[float]) -> tuple[float, float]:
    """
    Fit ``episodes = prefactor * N^exponent`` by least squares on log-log axes (bsuite's scaling plot: posterior
    sampling and randomized value functions scale polynomially in ``N``, dithering exploration as ``2^N``).

    :param sizes: The sizes ``N`` of the solved runs (at least two distinct values, all positive).
    :param episodes: Their episodes to solve (positive), one per size entry.
    :return: ``(exponent, prefactor)``.
    """
    x = np.asarray(sizes, dtype=np.float64)
    y = np.asarray(episodes, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"sizes and episodes must be two sequences of one length, got shapes {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(x > 0) and np.all(y > 0)):
        raise ValueError("sizes and episodes must be finite and positive (a log-log fit)")
    if len(np.unique(x)) < 2:
        raise ValueError(f"an exponent needs runs at two sizes at least, got sizes {sorted(set(x.tolist()))}")
    exponent, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(exponent), float(math.exp(intercept))
