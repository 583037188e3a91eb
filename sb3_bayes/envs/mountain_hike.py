"""
Mountain Hike: the continuous 2-D POMDP of Igl et al., "Deep Variational Reinforcement Learning for POMDPs", ICML 2018
(arXiv:1806.02426), Section 5.1.

A faithful port of ``DeathValleyEnv`` in the original code (``code/environments/death_valley.py`` with the settings of
``code/conf/mountainHike.yaml``). The agent walks on a hilly landscape in ``[-1, 1]^2`` and should climb to and stay on
the ridge near the top-right corner, but it only sees a noisy, scaled copy of its position, so it must infer where it
is from the history of observations and actions.

* State: a position ``x`` in the plane (not clipped: the agent may leave the box, where it is penalised).
* Action: a 2-D displacement in ``Box(-0.05, 0.05)``. Its cost is ``0.1 * ||a||`` on the action *as given*; the
  displacement itself is rescaled to norm ``<= 0.05`` (as in the original, the action is not clipped to the box).
  SB3 agents clip their actions to the declared box, which hides part of the cost; ``action_space_bound`` declares a
  wider one, so that the cost sees the agent's whole sample as in the original.
* Transition: ``x' ~ N(x + a, 0.025^2 I)``.
* Start: ``x_0 ~ N((-0.85, -0.85), 0.1^2 I)``.
* Observation: ``10 * (x + eps)``, ``eps ~ N(0, observation_noise_std^2 I)`` (the paper varies the noise level).
* Reward (of the position after the move): ``-6`` outside ``[-1, 1]^2``; inside, with ``Z`` the largest of three
  axis-aligned Gaussian densities (each times a factor, divided by 3), ``Z <- 1 - (1 - Z)^4`` and
  ``R = 4 Z - 4.5 + (x + y) / 4``; then minus the action cost. The best position is about ``(0.81, 0.51)`` with a
  reward of about ``-0.23``; the start is worth about ``-4.9`` per step.
* Horizon: 75 steps, ended by *truncation* (a ``TimeLimit`` added at registration; the environment never terminates).

Differences from the original (interface only): Gymnasium API, randomness from ``self.np_random`` (seeded by
``reset(seed=...)``) with ``normal`` draws instead of ``multivariate_normal`` (the same distributions, other streams),
``float32`` observations in an unbounded ``Box`` (the original declared ``Box(-1, 1)`` but returned values up to about
``+-10``), the original's unused goal bonus is not ported (it was switched off), and ``rgb_array`` rendering is a small
numpy picture instead of a matplotlib figure.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_bayes.common.validation import ParameterValidator

__all__ = [
    "MOUNTAIN_HIKE_ENTRY_POINT",
    "MOUNTAIN_HIKE_MAX_EPISODE_STEPS",
    "MOUNTAIN_HIKE_NOISE_LEVELS",
    "MountainHikeEnv",
    "mountain_hike_env_id",
    "mountain_hike_height",
    "register_mountain_hike_envs",
]

MOUNTAIN_HIKE_ENTRY_POINT = "sb3_bayes.envs.mountain_hike:MountainHikeEnv"
#: Episode length of the paper (``max_episode_steps`` of ``mountainHike.yaml``).
MOUNTAIN_HIKE_MAX_EPISODE_STEPS = 75
#: Observation noise levels (std in position units) that get a fixed-noise id ``MountainHikeNoise<level>-v0``.
#: 0.3, 0.5 and 1.0 are where a filter can matter (the gap between the best memoryless policy and the oracle grows
#: with the noise: ``benchmarks/dvrl/references.py``, ``docs/dvrl.md``); 0.1 and 0.2 are kept for the earlier results.
MOUNTAIN_HIKE_NOISE_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)

# The landscape (``DeathValleyEnv.get_reward``): (mean, (std_x, std_y), factor) of the three hills. The original passes
# the diagonal of its "covariance" arrays to matplotlib's ``bivariate_normal`` as *standard deviations*.
_HILLS: tuple[tuple[tuple[float, float], tuple[float, float], float], ...] = (
    ((0.5, 0.5), (0.75, 0.1), 1.0),
    ((0.0, 0.2), (0.1, 0.75), 0.8),
    ((-0.375, -0.5), (0.75, 0.1), 0.55),
)
_SHAPING_POWER = 4  # ``shaping_power`` of mountainHike.yaml
_HILL_HEIGHT = 4.0  # ``hill_height``
_OUTSIDE_BOX_REWARD = -1.5 * _HILL_HEIGHT  # ``outside_box_cost * hill_height`` = -6


def mountain_hike_height(x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    """
    Reward of being at ``(x, y)`` inside the box, without the action cost (vectorised over arrays of positions).

    ``Z = max_i factor_i * N((x, y); mean_i, diag(std_i^2)) / 3``, ``Z <- 1 - (1 - Z)^4`` and
    ``R = 4 Z - 4.5 + (x + y) / 4`` (``DeathValleyEnv.get_reward``). The box test (``-6`` outside) is not applied here.

    :param x: First coordinate(s).
    :param y: Second coordinate(s), broadcastable with ``x``.
    :return: The reward(s), as a float64 array of the broadcast shape.
    """
    x_arr, y_arr = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    z = np.zeros(x_arr.shape)
    for (mean_x, mean_y), (std_x, std_y), factor in _HILLS:
        density = np.exp(-0.5 * (((x_arr - mean_x) / std_x) ** 2 + ((y_arr - mean_y) / std_y) ** 2)) / (
            2.0 * np.pi * std_x * std_y
        )
        z = np.maximum(z, factor * density / len(_HILLS))
    z = 1.0 - np.power(1.0 - z, _SHAPING_POWER)
    return _HILL_HEIGHT * z - (0.5 + _HILL_HEIGHT) + (x_arr + y_arr) / 4.0


class MountainHikeEnv(gym.Env[np.ndarray, np.ndarray]):
    """
    Mountain Hike (Igl et al., 2018, Section 5.1): walk to the ridge of a hilly landscape from noisy position readings.

    ``info`` holds ``"position"`` (the true position after the step, unscaled), ``"height"`` (the reward without the
    action cost) and ``"action_cost"``.

    :param observation_noise_std: Standard deviation of the observation noise, in position units (before the scaling
        by ``observation_scale``). 0 gives exact (scaled) positions: the paper's noise-free setting.
    :param transition_std: Standard deviation of the transition noise.
    :param start_position: Mean of the start distribution.
    :param start_std: Standard deviation of the start distribution.
    :param max_action_norm: Bound of each action component and of the norm of the executed displacement.
    :param action_space_bound: Bound of the declared action space ``Box(-b, b)``; None declares ``max_action_norm``
        (the original's declaration). The original's agent sent its Gaussian sample to the env unclipped, so the cost
        ``action_cost * ||a||`` charged the whole sample and a wider policy paid for its width. An agent that clips its
        actions to the declared box, as every SB3 algorithm does, hides that part of the cost, and the entropy bonus
        then widens the policy without limit. A bound far beyond the move's (SB3 needs a finite one) restores the
        original's task: the move is rescaled onto the norm ball either way.
    :param action_cost: Cost per unit of action norm (charged on the action as given, before rescaling).
    :param observation_scale: Factor applied to the noisy position (``box_scale`` of the original).
    :param render_mode: ``None`` or ``"rgb_array"`` (a 64x64 picture of the landscape with the agent in red).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        observation_noise_std: float = 0.0,
        transition_std: float = 0.025,
        start_position: tuple[float, float] = (-0.85, -0.85),
        start_std: float = 0.1,
        max_action_norm: float = 0.05,
        action_space_bound: float | None = None,
        action_cost: float = 0.1,
        observation_scale: float = 10.0,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        # Checked when the environment is made (rl-zoo3 passes env_kwargs from the YAML): errors name the argument.
        check = ParameterValidator("MountainHike")
        self.observation_noise_std = check.non_negative("observation_noise_std", observation_noise_std)
        self.transition_std = check.non_negative("transition_std", transition_std)
        self.start_std = check.non_negative("start_std", start_std)
        self.max_action_norm = check.positive("max_action_norm", max_action_norm)
        self.action_cost = check.non_negative("action_cost", action_cost)
        self.observation_scale = check.positive("observation_scale", observation_scale)
        start = np.asarray(start_position, dtype=np.float64)
        check.relation(
            "start_position", start_position, start.shape == (2,) and bool(np.isfinite(start).all()), "two finite numbers"
        )
        self.start_position = start
        self.render_mode = check.choice("render_mode", render_mode, (None, *self.metadata["render_modes"]))

        bound = check.optional(check.positive, "action_space_bound", action_space_bound)
        self.action_space_bound = self.max_action_norm if bound is None else bound
        self.action_space = spaces.Box(
            low=-self.action_space_bound, high=self.action_space_bound, shape=(2,), dtype=np.float32
        )
        self.observation_space = spaces.Box(low=-np.inf, high=np.inf, shape=(2,), dtype=np.float32)

        self._position = start.copy()
        self._needs_reset = True

    @property
    def position(self) -> np.ndarray:
        """Copy of the true (unscaled) position."""
        return self._position.copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """
        Draw the start position ``x_0 ~ N(start_position, start_std^2 I)``.

        :param seed: Seed of ``self.np_random`` (start, transitions and observation noise).
        :param options: Unused.
        :return: The first (noisy, scaled) observation and the info dict.
        """
        super().reset(seed=seed)
        self._position = self.start_position + self.start_std * self.np_random.standard_normal(2)
        self._needs_reset = False
        return self._observe(), {"position": self.position}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """
        Move by the (norm-limited) action plus Gaussian noise and collect the reward of the new position.

        :param action: A 2-D displacement (components nominally in ``[-0.05, 0.05]``).
        :return: observation, reward, terminated (always ``False``), truncated (``False``; the registered ids add a
            75-step ``TimeLimit``), info.
        """
        if self._needs_reset:
            raise RuntimeError("MountainHike: call reset() before step()")
        raw = np.asarray(action, dtype=np.float64)
        if raw.shape != (2,):
            raise ValueError(f"MountainHike action must have shape (2,), got {raw.shape}")
        if not np.all(np.isfinite(raw)):
            raise ValueError(f"MountainHike action must be finite, got {raw}")

        # The cost is paid on the action as given; the move is rescaled onto the norm ball (DeathValleyEnv._step).
        norm = float(np.linalg.norm(raw))
        cost = self.action_cost * norm
        move = raw * (self.max_action_norm / norm) if norm > self.max_action_norm else raw
        self._position = self._position + move + self.transition_std * self.np_random.standard_normal(2)

        x, y = self._position
        if x < -1.0 or x > 1.0 or y < -1.0 or y > 1.0:
            height = _OUTSIDE_BOX_REWARD
        else:
            height = float(mountain_hike_height(x, y))
        info = {"position": self.position, "height": height, "action_cost": cost}
        return self._observe(), height - cost, False, False, info

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """
        A 64x64 RGB picture of ``[-1, 1]^2``: the landscape in gray levels (brighter is higher), the agent in red when it
        is inside the box.

        :return: The picture, ``None`` without a render mode.
        """
        if self.render_mode is None:
            gym.logger.warn("MountainHike.render() called without a render_mode (use render_mode='rgb_array')")
            return None
        size = 64
        grid = np.linspace(-1.0, 1.0, size)
        xs, ys = np.meshgrid(grid, grid[::-1])  # row 0 is the top (y = 1)
        height = mountain_hike_height(xs, ys)
        gray = np.clip((height + 5.0) / 5.0, 0.0, 1.0)
        image = np.repeat((gray * 255).astype(np.uint8)[:, :, None], 3, axis=2)
        x, y = self._position
        if -1.0 <= x <= 1.0 and -1.0 <= y <= 1.0:
            col = int(round((x + 1.0) / 2.0 * (size - 1)))
            row = int(round((1.0 - y) / 2.0 * (size - 1)))
            image[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2] = (255, 0, 0)
        return image

    def _observe(self) -> np.ndarray:
        """``observation_scale * (x + eps)`` with ``eps ~ N(0, observation_noise_std^2 I)`` (DeathValleyEnv.observation)."""
        noisy = self._position
        if self.observation_noise_std > 0:
            noisy = noisy + self.observation_noise_std * self.np_random.standard_normal(2)
        return (self.observation_scale * noisy).astype(np.float32)


def mountain_hike_env_id(observation_noise_std: float) -> str:
    """
    Gymnasium id of the fixed-noise variant, e.g. ``MountainHikeNoise0p2-v0`` for 0.2 (no dot in the name, so that
    file names derived from the id keep their extension).

    :param observation_noise_std: A noise level, e.g. one of :data:`MOUNTAIN_HIKE_NOISE_LEVELS` (1.0 gives
        ``MountainHikeNoise1-v0``).
    :return: The id.
    """
    text = f"{float(observation_noise_std):g}".replace(".", "p")
    return f"MountainHikeNoise{text}-v0"


def register_mountain_hike_envs() -> None:
    """
    Register ``MountainHike-v0`` (``observation_noise_std`` is a ``gym.make`` keyword, default 0) and
    ``MountainHikeNoise<level>-v0`` for every level of :data:`MOUNTAIN_HIKE_NOISE_LEVELS` (``MountainHikeNoise0-v0``,
    ``MountainHikeNoise0p1-v0``, ``...0p2-v0``, ``...0p3-v0``, ``...0p5-v0``, ``MountainHikeNoise1-v0``), all with the paper's
    75-step horizon. Ids already in the registry are left alone, so calling this again neither warns nor raises.
    """
    env_kwargs: dict[str, dict[str, Any]] = {"MountainHike-v0": {}}
    env_kwargs.update({mountain_hike_env_id(std): {"observation_noise_std": std} for std in MOUNTAIN_HIKE_NOISE_LEVELS})
    for env_id, kwargs in env_kwargs.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=MOUNTAIN_HIKE_ENTRY_POINT,
                kwargs=kwargs,
                max_episode_steps=MOUNTAIN_HIKE_MAX_EPISODE_STEPS,
            )
