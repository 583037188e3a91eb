"""Building blocks shared by the policies of several algorithms."""

import inspect
from abc import abstractmethod
from typing import Any

import numpy as np
from stable_baselines3.common.policies import BasePolicy


def constructor_arguments(policy: BasePolicy, policy_class: type[BasePolicy], base_data: dict[str, Any]) -> dict[str, Any]:
    """
    What a policy saves to be rebuilt (``_get_constructor_parameters``): every argument of ``policy_class.__init__``,
    read back from the policy's attribute of the same name, with SB3's entries (``base_data``) where the signature has
    them. One list, the signature: an argument added later is saved with nothing else to keep in step, and an argument
    the policy does not keep under its own name fails at the first save instead of loading silently as its default.

    :param policy: The policy being saved.
    :param policy_class: The class whose constructor rebuilds it (``type(policy)`` or the class that defines the
        signature its subclasses share).
    :param base_data: SB3's ``_get_constructor_parameters`` of the parent class (spaces, ``normalize_images``, ...).
    :return: ``{argument: value}``; ``lr_schedule`` is SB3's placeholder, as in SB3's own policies (the algorithm
        passes its schedule when it loads).
    """
    data: dict[str, Any] = {}
    for name, parameter in inspect.signature(policy_class.__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name == "lr_schedule":
            data[name] = policy._dummy_schedule
        elif name in base_data:
            data[name] = base_data[name]
        elif hasattr(policy, name):
            data[name] = getattr(policy, name)
        else:
            raise AttributeError(
                f"{type(policy).__name__} keeps no attribute {name!r}: every argument of {policy_class.__name__} must be "
                "kept under its own name to be saved."
            )
    return data


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
