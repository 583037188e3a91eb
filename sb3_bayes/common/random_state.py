"""
Exact resume: the random generators' states travel with a saved model.

SB3's ``load`` rebuilds the model with ``_setup_model()``, which re-seeds every generator (torch, NumPy, Python, the
action space) to the *constructor's* seed. A run that is saved, loaded and continued with
``learn(..., reset_num_timesteps=False)`` therefore draws other random numbers than one uninterrupted run: other replay
minibatches, other bootstrap samples, other posterior samples. :class:`ExactResumeMixin` stores the generators' states
in the save and puts them back after SB3's re-seeding, so that ``learn(2n)`` and ``learn(n)``, ``save``, ``load``,
``learn(n, reset_num_timesteps=False)`` end with the same weights, bit for bit on CPU (given the same environment
instance, loaded with ``force_reset=False``, and, for off-policy algorithms, the replay buffer saved beside the model).
"""

import io
import pathlib
import random
from typing import Any, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.type_aliases import GymEnv

#: Name of the attribute that carries the states through SB3's ``data`` dict.
RANDOM_STATE_KEY = "_random_generator_states"

SelfResumable = TypeVar("SelfResumable", bound="ExactResumeMixin")


def _space_generator_state(space: spaces.Space | None) -> dict[str, Any] | None:
    # ``np_random`` creates an unseeded generator on first access: read the private one to leave the space as it is.
    generator = getattr(space, "_np_random", None)
    return None if generator is None else generator.bit_generator.state


def get_random_generator_states(model: BaseAlgorithm) -> dict[str, Any]:
    """
    The states of every generator a training run draws from.

    :param model: The model (its action space's generator is included).
    :return: A picklable dict: torch (CPU and, where used, CUDA), NumPy's global generator, Python's ``random`` and the
        action space's generator.
    """
    states: dict[str, Any] = {
        "torch": th.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "action_space": _space_generator_state(model.action_space),
    }
    if th.cuda.is_available() and th.cuda.is_initialized():
        states["cuda"] = th.cuda.get_rng_state_all()
    return states


def set_random_generator_states(model: BaseAlgorithm, states: dict[str, Any]) -> None:
    """
    Put back states taken by :func:`get_random_generator_states`.

    :param model: The model (its action space's generator is restored).
    :param states: The states.
    """
    th.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if states.get("action_space") is not None and model.action_space is not None:
        model.action_space.np_random.bit_generator.state = states["action_space"]
    if "cuda" in states and th.cuda.is_available() and len(states["cuda"]) == th.cuda.device_count():
        th.cuda.set_rng_state_all(states["cuda"])


class ExactResumeMixin:
    """
    Mixin for a :class:`~stable_baselines3.common.base_class.BaseAlgorithm` subclass (placed before it in the bases):
    ``save`` stores the random generators' states and ``load`` restores them after SB3 has re-seeded the model.

    State of an algorithm's own generators (a pending noise sample, a drawn posterior sample) must be saved by the
    algorithm itself, as a torch save parameter or an attribute.
    """

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Any = None,
        include: Any = None,
    ) -> None:
        """
        Save all the attributes of the object and the model parameters in a zip-file, with the states of the random
        generators, so that a loaded model continues training exactly as the saved one would have.

        :param path: Path to the file where the rl agent should be saved.
        :param exclude: Name of parameters that should be excluded in addition to the default ones.
        :param include: Name of parameters that might be excluded but should be included anyway.
        """
        assert isinstance(self, BaseAlgorithm)
        setattr(self, RANDOM_STATE_KEY, get_random_generator_states(self))
        try:
            super().save(path, exclude=exclude, include=include)  # type: ignore[misc]
        finally:
            delattr(self, RANDOM_STATE_KEY)

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfResumable],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfResumable:
        """
        Load the model from a zip-file, then restore the random generators' states it was saved with (models saved
        before this existed load as before: re-seeded to the constructor's seed).

        :param path: Path to the file (or a file-like) where to load the agent from.
        :param env: The new environment to run the loaded model on (can be None if you only need prediction).
        :param device: Device on which the code should run.
        :param custom_objects: Dictionary of objects to replace upon loading.
        :param print_system_info: Whether to print system info from the saved model and the current system info.
        :param force_reset: Force call to ``reset()`` before training to avoid unexpected behavior. Pass False, with the
            environment instance the model was trained on, to continue a run exactly.
        :param kwargs: Extra arguments to change the model when loading.
        :return: The loaded model.
        """
        model = super().load(  # type: ignore[misc]
            path,
            env=env,
            device=device,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )
        states = model.__dict__.pop(RANDOM_STATE_KEY, None)
        if states is not None:
            set_random_generator_states(model, states)
        return model
