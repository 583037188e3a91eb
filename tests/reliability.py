"""
Shared checks of the reliability contract (imported by the test modules, as ``frame_envs``):

- :func:`check_exact_resume`: ``learn(2n)`` equals ``learn(n)``, ``save`` (+ replay), ``load``, ``learn(n)`` exactly;
- :func:`check_weights_survive`: a NaN raises a ``ValueError`` naming it, the weights are those before the bad update,
  and the model still saves and loads;
- :class:`NonFiniteAt`: an environment wrapper that returns a NaN observation or reward at a chosen step;
- :func:`check_refused`: a bad hyperparameter is refused by name when the model is built.
"""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_bayes.common.validation import HyperparameterError


def model_tensors(model: BaseAlgorithm) -> dict[str, th.Tensor]:
    """
    Every tensor a save holds: the state dicts of every saved module and optimiser, and the plain tensors.

    :param model: The model.
    :return: Flat ``{"<save name>/<key>": tensor}``.
    """
    tensors: dict[str, th.Tensor] = {}

    def collect(prefix: str, value: Any) -> None:
        if isinstance(value, th.Tensor):
            tensors[prefix] = value.detach().clone()
        elif isinstance(value, dict):
            for key, item in value.items():
                collect(f"{prefix}/{key}", item)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                collect(f"{prefix}/{index}", item)

    for name, state in model.get_parameters().items():
        collect(name, state)
    _, variables = model._get_torch_save_params()
    for name in variables:
        value = model
        for part in name.split("."):
            value = getattr(value, part)
        collect(name, value)
    return tensors


def assert_same_tensors(expected: dict[str, th.Tensor], actual: dict[str, th.Tensor]) -> None:
    """
    Equal keys and bit-for-bit equal tensors.

    :param expected: Tensors of one model.
    :param actual: Tensors of the other.
    """
    assert expected.keys() == actual.keys()
    different = [key for key in expected if not th.equal(expected[key], actual[key])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:5]}"


def check_exact_resume(make_model: Callable[[], BaseAlgorithm], n_steps: int, tmp_path: Path) -> None:
    """
    One uninterrupted ``learn(2 n_steps)`` ends with the same tensors as ``learn(n_steps)``, ``save`` (and
    ``save_replay_buffer`` where the algorithm has one), ``load(env=<the same env>, force_reset=False)`` (and
    ``load_replay_buffer``), ``learn(n_steps, reset_num_timesteps=False)``.

    :param make_model: Builds a fresh, identically seeded model on a fresh, identically seeded environment.
    :param n_steps: Steps of each half.
    :param tmp_path: Folder for the files.
    """
    uninterrupted = make_model()
    uninterrupted.learn(2 * n_steps)

    first_half = make_model()
    first_half.learn(n_steps)
    env = first_half.get_env()
    first_half.save(tmp_path / "model.zip")
    has_replay = hasattr(first_half, "save_replay_buffer")
    if has_replay:
        first_half.save_replay_buffer(tmp_path / "replay.pkl")  # type: ignore[attr-defined]
    del first_half
    resumed = type(uninterrupted).load(tmp_path / "model.zip", env=env, force_reset=False)
    if has_replay:
        resumed.load_replay_buffer(tmp_path / "replay.pkl")  # type: ignore[attr-defined]
    resumed.learn(n_steps, reset_num_timesteps=False)

    assert resumed.num_timesteps == uninterrupted.num_timesteps
    assert_same_tensors(model_tensors(uninterrupted), model_tensors(resumed))


def check_weights_survive(
    model: BaseAlgorithm,
    run: Callable[[], Any],
    match: str,
    before: dict[str, th.Tensor],
    tmp_path: Path,
) -> None:
    """
    ``run`` raises a ``ValueError`` whose message matches ``match``; the model's tensors then equal ``before`` (taken
    just before the bad data or update), and the model saves and loads with those tensors.

    :param model: The model.
    :param run: What triggers the NaN (usually ``lambda: model.learn(...)``).
    :param match: Regular expression the message must match (what is non-finite).
    :param before: :func:`model_tensors` taken before the bad update.
    :param tmp_path: Folder for the save.
    """
    with pytest.raises(ValueError, match=match):
        run()
    assert_same_tensors(before, model_tensors(model))
    model.save(tmp_path / "after_nan.zip")
    loaded = type(model).load(tmp_path / "after_nan.zip")
    assert_same_tensors(before, model_tensors(loaded))


class NonFiniteAt(gym.Wrapper):
    """
    Returns NaN in the observation or the reward at one step of the run (counted across episodes).

    :param env: The environment.
    :param step: The 1-based step at which the value is NaN.
    :param what: ``"observation"`` or ``"reward"``.
    """

    def __init__(self, env: gym.Env, step: int, what: str) -> None:
        super().__init__(env)
        assert what in ("observation", "reward")
        self.bad_step, self.what, self.steps = step, what, 0

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps == self.bad_step:
            if self.what == "observation":
                obs = np.full_like(obs, np.nan, dtype=np.float32) if np.asarray(obs).dtype.kind == "f" else obs
            else:
                reward = float("nan")
        return obs, reward, terminated, truncated, info


def names(parameter: str) -> str:
    """
    A regular expression that matches a validation message naming ``parameter``.

    :param parameter: The parameter's name.
    :return: The pattern.
    """
    return rf"\b{re.escape(parameter)}\b"


def check_refused(build: Callable[[], Any], error: type[Exception], parameter: str) -> HyperparameterError:
    """
    ``build`` raises ``error``, a :class:`~sb3_bayes.common.validation.HyperparameterError` whose one-line message and
    ``.parameter`` name ``parameter``.

    :param build: Builds the model (or policy) with the bad value.
    :param error: The expected exception type.
    :param parameter: The parameter the error must name.
    :return: The error, for further checks.
    """
    with pytest.raises(error, match=names(parameter)) as info:
        build()
    assert isinstance(info.value, HyperparameterError) and info.value.parameter == parameter
    assert "\n" not in str(info.value)
    return info.value
