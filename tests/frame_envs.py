"""A tiny image environment for the tests of the image policies (imported by the test modules, as ``pg_server``)."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class RandomFrames(gym.Env):
    """
    Random 64x64 grayscale uint8 frames, ``n_actions`` actions, reward 1 for action 1, episodes of ``episode_length``.

    :param channels_first: ``(1, 64, 64)`` frames (PSDRL's CnnPolicy input) or ``(64, 64, 1)`` (as Atari wrappers return
        them, transposed by SB3).
    :param episode_length: Steps per episode.
    :param n_actions: Number of discrete actions.
    """

    def __init__(self, channels_first: bool = True, episode_length: int = 6, n_actions: int = 3) -> None:
        self.shape = (1, 64, 64) if channels_first else (64, 64, 1)
        self.observation_space = spaces.Box(0, 255, self.shape, dtype=np.uint8)
        self.action_space = spaces.Discrete(n_actions)
        self.episode_length = episode_length

    def _frame(self) -> np.ndarray:
        return self.np_random.integers(0, 256, size=self.shape, dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return self._frame(), float(action == 1), self.t >= self.episode_length, False, {}
