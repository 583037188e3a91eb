"""
Noisy-position CartPole: a POMDP where a belief matters more than memory.

Gymnasium's ``CartPole-v1`` dynamics, but the agent sees only the two *positions* (cart position ``x`` and pole angle
``theta``), each in units of its failure threshold (2.4 m and 12 degrees) and with Gaussian noise of standard deviation
``observation_noise_std`` in those units. rl-zoo3's ``CartPoleNoVel-v1`` drops the velocities but keeps exact
positions, so two consecutive observations (a memory of one step) give the velocities exactly; here the velocities
must be *filtered* out of noisy positions, which is what a belief (a particle filter over a learned model, as in DVRL)
is for and what a short memory alone cannot do well (Igl et al., ICML 2018, Section 5.1 make the same point with the
observation noise of Mountain Hike).

* State, actions, transitions, reward (+1 per step) and termination: those of ``CartPoleEnv`` (the pole falls past 12
  degrees or the cart leaves ``[-2.4, 2.4]``); 500-step ``TimeLimit`` at registration, as ``CartPole-v1``.
* Observation: ``(x / 2.4, theta / theta_max) + eps``, ``eps ~ N(0, observation_noise_std^2 I)``, float32.
* ``info["state"]``: the true state ``(x, x_dot, theta, theta_dot)`` (for oracle references and tests).

Registered ids: ``NoisyPositionCartPole-v0`` (``observation_noise_std`` a ``gym.make`` keyword, default 0.1) and
``NoisyPositionCartPoleNoise<level>-v0`` for each level of :data:`NOISY_CARTPOLE_NOISE_LEVELS`.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from sb3_bayes.common.validation import ParameterValidator

__all__ = [
    "NOISY_CARTPOLE_ENTRY_POINT",
    "NOISY_CARTPOLE_NOISE_LEVELS",
    "NoisyPositionCartPoleEnv",
    "noisy_cartpole_env_id",
    "register_noisy_position_envs",
]

NOISY_CARTPOLE_ENTRY_POINT = "sb3_bayes.envs.noisy_position:NoisyPositionCartPoleEnv"
#: Noise levels (std in units of the failure thresholds) with a fixed-noise id; 0 is rl-zoo3's CartPoleNoVel-v1 up to
#: the scaling of the observation.
NOISY_CARTPOLE_NOISE_LEVELS = (0.0, 0.05, 0.1, 0.2)
_MAX_EPISODE_STEPS = 500  # CartPole-v1's


class NoisyPositionCartPoleEnv(gym.Env[np.ndarray, np.int64]):
    """
    CartPole that observes only noisy, scaled positions ``(x / 2.4, theta / theta_max)`` (see the module docstring).

    :param observation_noise_std: Standard deviation of the observation noise, in units of the failure thresholds
        (0 gives exact positions).
    :param render_mode: Passed to ``CartPoleEnv`` (``None``, ``"human"`` or ``"rgb_array"``).
    """

    metadata: dict[str, Any] = CartPoleEnv.metadata

    def __init__(self, observation_noise_std: float = 0.1, render_mode: str | None = None) -> None:
        super().__init__()
        check = ParameterValidator("NoisyPositionCartPole")
        self.observation_noise_std = check.non_negative("observation_noise_std", observation_noise_std)
        self.render_mode = check.choice("render_mode", render_mode, (None, *CartPoleEnv.metadata["render_modes"]))
        self._cartpole = CartPoleEnv(render_mode=render_mode)
        self._scale = np.array([self._cartpole.x_threshold, self._cartpole.theta_threshold_radians])
        self.action_space = spaces.Discrete(2)  # push left, push right (CartPoleEnv's)
        self.observation_space = spaces.Box(low=-np.inf, high=np.inf, shape=(2,), dtype=np.float32)

    @property
    def state(self) -> np.ndarray:
        """Copy of the true state ``(x, x_dot, theta, theta_dot)``."""
        return np.array(self._cartpole.state, dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """
        Reset the cart-pole (its start state drawn from a seed taken from ``self.np_random``, so that one seed fixes
        the start and the observation noise).

        :param seed: Seed of ``self.np_random``.
        :param options: Passed to ``CartPoleEnv.reset``.
        :return: The first noisy observation and ``{"state": ...}``.
        """
        super().reset(seed=seed)
        self._cartpole.reset(seed=int(self.np_random.integers(2**31 - 1)), options=options)
        return self._observe(), {"state": self.state}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """
        One ``CartPoleEnv`` step.

        :param action: 0 (push left) or 1 (push right).
        :return: noisy observation, reward, terminated, truncated (``False``; the registered ids add the 500-step
            ``TimeLimit``), ``{"state": ...}``.
        """
        _, reward, terminated, truncated, _ = self._cartpole.step(action)
        return self._observe(), reward, terminated, truncated, {"state": self.state}

    def render(self) -> Any:
        """Render the cart-pole (``CartPoleEnv.render``)."""
        return self._cartpole.render()

    def close(self) -> None:
        """Close the cart-pole's window, if any."""
        self._cartpole.close()

    def _observe(self) -> np.ndarray:
        """``(x, theta) / thresholds + eps`` with ``eps ~ N(0, observation_noise_std^2 I)``."""
        positions = self.state[[0, 2]] / self._scale
        if self.observation_noise_std > 0:
            positions = positions + self.observation_noise_std * self.np_random.standard_normal(2)
        return positions.astype(np.float32)


def noisy_cartpole_env_id(observation_noise_std: float) -> str:
    """
    Gymnasium id of the fixed-noise variant, e.g. ``NoisyPositionCartPoleNoise0p1-v0`` for 0.1.

    :param observation_noise_std: A noise level, e.g. one of :data:`NOISY_CARTPOLE_NOISE_LEVELS`.
    :return: The id.
    """
    text = f"{float(observation_noise_std):g}".replace(".", "p")
    return f"NoisyPositionCartPoleNoise{text}-v0"


def register_noisy_position_envs() -> None:
    """
    Register ``NoisyPositionCartPole-v0`` and ``NoisyPositionCartPoleNoise<level>-v0`` for every level of
    :data:`NOISY_CARTPOLE_NOISE_LEVELS`, with CartPole-v1's 500-step horizon (idempotent).
    """
    env_kwargs: dict[str, dict[str, Any]] = {"NoisyPositionCartPole-v0": {}}
    env_kwargs.update({noisy_cartpole_env_id(std): {"observation_noise_std": std} for std in NOISY_CARTPOLE_NOISE_LEVELS})
    for env_id, kwargs in env_kwargs.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id, entry_point=NOISY_CARTPOLE_ENTRY_POINT, kwargs=kwargs, max_episode_steps=_MAX_EPISODE_STEPS
            )
