"""Noisy-position CartPole: spaces, the observation (scaled positions plus noise of the given level), the dynamics of
CartPole-v1, seeding determinism, argument checks and registration."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.utils.env_checker import check_env
from reliability import names

import sb3_bayes.envs  # noqa: F401  (registers the ids)
from sb3_bayes.common.validation import HyperparameterTypeError, HyperparameterValueError
from sb3_bayes.envs.noisy_position import (
    NOISY_CARTPOLE_NOISE_LEVELS,
    NoisyPositionCartPoleEnv,
    noisy_cartpole_env_id,
    register_noisy_position_envs,
)

SCALE = np.array([2.4, 12 * 2 * np.pi / 360])  # CartPole's failure thresholds: x and theta


def test_spaces_and_env_checker() -> None:
    env = NoisyPositionCartPoleEnv(observation_noise_std=0.1)
    assert env.action_space == gym.spaces.Discrete(2)
    assert env.observation_space.shape == (2,) and env.observation_space.dtype == np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unbounded Box's precision warning
        check_env(env, skip_render_check=True)


def test_noiseless_observation_is_the_scaled_positions_and_dynamics_are_cartpoles() -> None:
    env = NoisyPositionCartPoleEnv(observation_noise_std=0.0)
    reference = CartPoleEnv()
    obs, info = env.reset(seed=3)
    reference.reset()
    reference.state = info["state"].copy()
    np.testing.assert_allclose(obs, info["state"][[0, 2]] / SCALE, rtol=1e-6)
    for t in range(30):
        action = t % 2
        obs, reward, terminated, truncated, info = env.step(action)
        expected_state, expected_reward, expected_terminated, _, _ = reference.step(action)
        np.testing.assert_allclose(info["state"], expected_state, rtol=1e-6)
        np.testing.assert_allclose(obs, info["state"][[0, 2]] / SCALE, rtol=1e-5)
        assert reward == expected_reward and terminated == expected_terminated and not truncated
        if terminated:
            break


def test_noise_level() -> None:
    env = NoisyPositionCartPoleEnv(observation_noise_std=0.2)
    errors = []
    for seed in range(40):
        obs, info = env.reset(seed=seed)
        errors.append(obs - info["state"][[0, 2]] / SCALE)
        for _ in range(20):
            obs, _, terminated, _, info = env.step(seed % 2)
            errors.append(obs - info["state"][[0, 2]] / SCALE)
            if terminated:
                break
    np.testing.assert_allclose(np.mean(errors, axis=0), [0, 0], atol=0.03)
    np.testing.assert_allclose(np.std(errors, axis=0), [0.2, 0.2], rtol=0.1)


def test_seeding_is_deterministic() -> None:
    def episode(seed: int) -> np.ndarray:
        env = gym.make("NoisyPositionCartPoleNoise0p1-v0")
        obs, _ = env.reset(seed=seed)
        observations = [obs]
        for t in range(15):
            obs, _, terminated, _, _ = env.step(t % 2)
            observations.append(obs)
            if terminated:
                break
        return np.array(observations)

    np.testing.assert_array_equal(episode(5), episode(5))
    assert not np.array_equal(episode(5), episode(6))


def test_registration() -> None:
    assert [noisy_cartpole_env_id(s) for s in NOISY_CARTPOLE_NOISE_LEVELS] == [
        "NoisyPositionCartPoleNoise0-v0",
        "NoisyPositionCartPoleNoise0p05-v0",
        "NoisyPositionCartPoleNoise0p1-v0",
        "NoisyPositionCartPoleNoise0p2-v0",
    ]
    for std in NOISY_CARTPOLE_NOISE_LEVELS:
        env = gym.make(noisy_cartpole_env_id(std))
        assert env.unwrapped.observation_noise_std == std  # type: ignore[attr-defined]
        assert env.spec is not None and env.spec.max_episode_steps == 500
    assert gym.make("NoisyPositionCartPole-v0").unwrapped.observation_noise_std == 0.1  # type: ignore[attr-defined]
    assert gym.make("NoisyPositionCartPole-v0", observation_noise_std=0.3).unwrapped.observation_noise_std == 0.3  # type: ignore
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_noisy_position_envs()  # idempotent


@pytest.mark.parametrize(
    "kwargs, error, parameter",
    [
        (dict(observation_noise_std=-0.1), HyperparameterValueError, "observation_noise_std"),
        (dict(observation_noise_std="0.1"), HyperparameterTypeError, "observation_noise_std"),
        (dict(render_mode="video"), HyperparameterValueError, "render_mode"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, parameter: str) -> None:
    with pytest.raises(error, match=names(parameter)):
        NoisyPositionCartPoleEnv(**kwargs)
