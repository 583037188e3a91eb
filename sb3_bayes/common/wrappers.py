"""
Observation wrappers for partially observable benchmarks.

* :class:`ObservationFlicker` blanks each observation with a fixed probability: the "flickering" POMDPs of Hausknecht
  and Stone ("Deep Recurrent Q-Learning for Partially Observable MDPs", 2015), used with ``p = 0.5`` on Atari by Igl
  et al. ("Deep Variational Reinforcement Learning for POMDPs", ICML 2018, Section 5.2).
* :class:`FlickeringAtariWrapper` is the whole Atari pipeline of the DVRL paper in one wrapper, so that an rl-zoo3
  YAML can name it as ``env_wrapper``: the DeepMind wrappers of OpenAI baselines' ``make_atari`` + ``wrap_deepmind``
  (no-op reset, max-and-skip 4, episodic life, fire reset, 84x84 grayscale, reward clipping; no frame stack), sticky
  actions with probability 0.25 (the ALE's ``repeat_action_probability``, as the original's ``*NoFrameskip-v0`` ids
  had), then the flicker.
* :class:`PSDRLAtariWrapper` is the Atari preprocessing of PSDRL (Sasso et al., ICML 2023): the original code's call of
  gym's ``AtariPreprocessing`` (no-op reset 30, frame skip 4 with max-pooling of the last two frames, 64x64 grayscale;
  no fire reset, no life-loss terminal, no frame stack, no reward clipping), with frames kept as uint8.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import AtariPreprocessing
from stable_baselines3.common.atari_wrappers import AtariWrapper

from sb3_bayes.common.validation import ParameterValidator

__all__ = ["FlickeringAtariWrapper", "ObservationFlicker", "PSDRLAtariWrapper", "set_sticky_actions"]


class ObservationFlicker(gym.Wrapper[np.ndarray, Any, np.ndarray, Any]):
    """
    Replace each observation by zeros with probability ``p`` (independently per observation, including the first one
    of an episode).

    The coin is drawn from the environment's own generator (``self.np_random``, i.e. the unwrapped environment's, which
    ``reset(seed=...)`` re-seeds), so an episode is reproducible under a seed, and each environment of a vectorised
    set (seeded ``seed + rank`` by SB3) flickers independently. The original code drew one mask for all its
    environments from the global numpy generator after every step (``main.py``, ``run_model``).

    ``info["flickered"]`` says whether the returned observation was blanked.

    :param env: An environment with a ``Box`` observation space that contains the all-zero observation.
    :param p: Probability of blanking an observation, in ``[0, 1]``.
    """

    def __init__(self, env: gym.Env, p: float = 0.5) -> None:
        super().__init__(env)
        self.p = ParameterValidator("ObservationFlicker").fraction("p", p, zero=True)
        space = env.observation_space
        if not isinstance(space, spaces.Box):
            raise ValueError(f"ObservationFlicker needs a Box observation space, got {space}")
        if not space.contains(np.zeros(space.shape, dtype=space.dtype)):
            raise ValueError(f"ObservationFlicker: the all-zero observation is outside the observation space {space}")

    def _flicker(self, observation: np.ndarray, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        blank = bool(self.np_random.random() < self.p)
        info = dict(info)
        info["flickered"] = blank
        return (np.zeros_like(observation) if blank else observation), info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """
        Reset the environment and blank its first observation with probability ``p``.

        :param seed: Passed on (it also seeds the flicker, which draws from the environment's generator).
        :param options: Passed on.
        :return: The (possibly blanked) observation and the info dict.
        """
        observation, info = self.env.reset(seed=seed, options=options)
        return self._flicker(observation, info)

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """
        Step the environment and blank the observation with probability ``p``.

        :param action: Passed on.
        :return: observation (possibly blanked), reward, terminated, truncated, info.
        """
        observation, reward, terminated, truncated, info = self.env.step(action)
        observation, info = self._flicker(observation, info)
        return observation, reward, terminated, truncated, info


def _check_atari_arguments(
    check: ParameterValidator, noop_max: int, frame_skip: int, screen_size: int, terminal_on_life_loss: bool
) -> None:
    """
    The preprocessing arguments that both Atari pipelines take (an rl-zoo3 ``env_wrapper`` entry may set them): errors
    name the argument instead of failing inside the wrapped preprocessing.

    :param check: The validator of the wrapper.
    :param noop_max: Maximum number of no-ops at reset (>= 0).
    :param frame_skip: Frames per agent step (>= 1).
    :param screen_size: Side of the square frame (>= 1).
    :param terminal_on_life_loss: Whether a lost life ends the episode.
    """
    check.integer("noop_max", noop_max, minimum=0)
    check.integer("frame_skip", frame_skip)
    check.integer("screen_size", screen_size)
    check.boolean("terminal_on_life_loss", terminal_on_life_loss)


def set_sticky_actions(env: gym.Env, repeat_action_probability: float) -> None:
    """
    Set the ALE's sticky-action probability of an (already built) Atari environment: at every emulator frame the
    previous action is repeated with this probability (Machado et al., 2018). The ROM is reloaded so that the setting
    takes effect, as ``ale_py.AtariEnv`` does when it is constructed.

    :param env: An environment whose unwrapped environment is an ``ale_py`` Atari environment.
    :param repeat_action_probability: Probability in ``[0, 1)``.
    """
    repeat_action_probability = ParameterValidator("set_sticky_actions").fraction(
        "repeat_action_probability", repeat_action_probability, zero=True, one=False
    )
    unwrapped = env.unwrapped
    if not hasattr(unwrapped, "ale") or not hasattr(unwrapped, "load_game"):
        raise ValueError(f"Sticky actions need an ale_py Atari environment, got {type(unwrapped).__name__}")
    unwrapped.ale.setFloat("repeat_action_probability", float(repeat_action_probability))
    unwrapped.load_game()


class FlickeringAtariWrapper(gym.Wrapper[np.ndarray, int, np.ndarray, int]):
    """
    Flickering Atari of the DVRL paper (Igl et al., 2018, Section 5.2): DeepMind preprocessing without frame stacking,
    sticky actions and observations blanked with probability 0.5.

    The pipeline, innermost first: sticky actions set in the ALE (``repeat_action_probability``), no-op reset (up to
    ``noop_max`` no-ops), max-and-skip (``frame_skip`` frames, max over the last two), episodic life, fire reset (games
    with a FIRE action), ``screen_size x screen_size`` grayscale frames (``uint8``, shape ``(84, 84, 1)``), reward
    clipping to ``{-1, 0, 1}`` (SB3's :class:`~stable_baselines3.common.atari_wrappers.AtariWrapper`), then
    :class:`ObservationFlicker`. Use it on a ``*NoFrameskip-v4`` id (frame skipping is done here). rl-zoo3's
    ``Monitor`` sits below ``env_wrapper``, so logged episode returns are the true, unclipped scores.

    In an rl-zoo3 YAML::

        env_wrapper:
          - sb3_bayes.common.wrappers.FlickeringAtariWrapper:
              flicker_probability: 0.5

    :param env: An ``ale_py`` Atari environment without frame skipping.
    :param flicker_probability: Probability of blanking an observation.
    :param repeat_action_probability: Sticky-action probability set in the ALE.
    :param noop_max: Maximum number of no-ops at reset.
    :param frame_skip: Frames per agent step.
    :param screen_size: Side of the square grayscale frame.
    :param terminal_on_life_loss: Whether a lost life ends the (training) episode.
    :param clip_reward: Whether rewards are clipped to their sign.
    """

    def __init__(
        self,
        env: gym.Env,
        flicker_probability: float = 0.5,
        repeat_action_probability: float = 0.25,
        noop_max: int = 30,
        frame_skip: int = 4,
        screen_size: int = 84,
        terminal_on_life_loss: bool = True,
        clip_reward: bool = True,
    ) -> None:
        check = ParameterValidator("FlickeringAtariWrapper")
        flicker_probability = check.fraction("flicker_probability", flicker_probability, zero=True)
        repeat_action_probability = check.fraction(
            "repeat_action_probability", repeat_action_probability, zero=True, one=False
        )
        _check_atari_arguments(check, noop_max, frame_skip, screen_size, terminal_on_life_loss)
        check.boolean("clip_reward", clip_reward)
        frameskip = getattr(env.unwrapped, "_frameskip", None)
        if frameskip is None:
            raise ValueError(f"FlickeringAtariWrapper needs an ale_py Atari environment, got {type(env.unwrapped).__name__}")
        if frameskip != 1:
            raise ValueError(
                f"FlickeringAtariWrapper skips frames itself: use a NoFrameskip id (frameskip=1), got frameskip={frameskip}"
            )
        set_sticky_actions(env, repeat_action_probability)
        env = AtariWrapper(
            env,
            noop_max=noop_max,
            frame_skip=frame_skip,
            screen_size=screen_size,
            terminal_on_life_loss=terminal_on_life_loss,
            clip_reward=clip_reward,
        )
        env = ObservationFlicker(env, p=flicker_probability)
        super().__init__(env)
        self.flicker_probability = flicker_probability
        self.repeat_action_probability = repeat_action_probability


class PSDRLAtariWrapper(AtariPreprocessing):
    """
    PSDRL's Atari preprocessing, as its original code wraps ``<Game>NoFrameskip-v4``: gym's ``AtariPreprocessing`` with
    no-op reset (up to ``noop_max`` no-ops), ``frame_skip`` with a max over the last two frames, ``screen_size`` square
    grayscale frames, and no life-loss terminal. Unlike SB3's ``AtariWrapper`` it presses no FIRE at reset; there is no
    frame stack (PSDRL's GRU carries the memory) and no reward clipping (PSDRL squashes rewards with ``tanh`` when it
    stores them). The original scaled frames to [0, 1] here; they stay uint8 (``(screen_size, screen_size, 1)``, the
    layout SB3 transposes for its CNNs) and are scaled inside the network, so the replay holds one byte per pixel.

    :param env: An Atari environment without frame skipping of its own (``*NoFrameskip-v4``).
    :param noop_max: Maximum number of no-op actions at reset (30).
    :param frame_skip: Emulator frames per agent step (4).
    :param screen_size: Side of the square frames (64).
    :param terminal_on_life_loss: End the episode when a life is lost (False, as the original).
    """

    def __init__(
        self,
        env: gym.Env,
        noop_max: int = 30,
        frame_skip: int = 4,
        screen_size: int = 64,
        terminal_on_life_loss: bool = False,
    ) -> None:
        _check_atari_arguments(
            ParameterValidator("PSDRLAtariWrapper"), noop_max, frame_skip, screen_size, terminal_on_life_loss
        )
        super().__init__(
            env,
            noop_max=noop_max,
            frame_skip=frame_skip,
            screen_size=screen_size,
            terminal_on_life_loss=terminal_on_life_loss,
            grayscale_obs=True,
            grayscale_newaxis=True,
            scale_obs=False,
        )
