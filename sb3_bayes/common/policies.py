"""Building blocks shared by the policies of several algorithms."""

from abc import abstractmethod

import numpy as np
from stable_baselines3.common.policies import BasePolicy


class EpisodeStartPolicy(BasePolicy):
    """
    A policy that keeps something per episode and environment: a held posterior sample (Thompson sampling once per
    episode) or a planner's warm start. SB3's ``BasePolicy.predict`` ignores ``episode_start`` outside recurrent
    policies; here it reaches :meth:`_prepare_predict` first, so ``evaluate_policy``, ``EvalCallback`` and rl-zoo3's
    ``enjoy``, which all pass it, act as in training.
    """

    @abstractmethod
    def _prepare_predict(
        self, observation: np.ndarray | dict[str, np.ndarray], episode_start: np.ndarray | None, deterministic: bool
    ) -> None:
        """
        Update the per-episode state before acting.

        :param observation: The observation (a batch, or a single one).
        :param episode_start: Which environments start an episode (None: unknown, none of them).
        :param deterministic: Whether the call acts deterministically.
        """

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        SB3's ``predict``, after :meth:`_prepare_predict`.

        :param observation: The input observation.
        :param state: The last hidden states (unused by these policies, returned as is).
        :param episode_start: Which environments start an episode.
        :param deterministic: Whether to return deterministic actions.
        :return: The actions and the state.
        """
        self._prepare_predict(observation, episode_start, deterministic)
        return super().predict(observation, state, episode_start, deterministic)
