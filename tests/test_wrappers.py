"""Observation flicker and the flickering-Atari pipeline of DVRL (Igl et al., 2018, Section 5.2)."""

from __future__ import annotations

import ale_py
import gymnasium as gym
import numpy as np
import pytest
from reliability import names
from rl_zoo3.utils import get_wrapper_class
from stable_baselines3.common import atari_wrappers

import sb3_bayes.envs  # noqa: F401  (registers Mountain Hike)
from sb3_bayes.common.validation import HyperparameterTypeError, HyperparameterValueError
from sb3_bayes.common.wrappers import FlickeringAtariWrapper, ObservationFlicker, PSDRLAtariWrapper, set_sticky_actions

gym.register_envs(ale_py)


def flicker_pattern(p: float, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Flags and observations of one seeded run of flickering Mountain Hike under a fixed action sequence."""
    env = ObservationFlicker(gym.make("MountainHikeNoise0p1-v0"), p=p)
    obs, info = env.reset(seed=seed)
    flags, observations = [info["flickered"]], [obs]
    actions = np.random.default_rng(123).uniform(-0.05, 0.05, size=(steps, 2))
    for action in actions:
        obs, _, terminated, truncated, info = env.step(action)
        flags.append(info["flickered"])
        observations.append(obs)
        if terminated or truncated:
            obs, info = env.reset()
            flags.append(info["flickered"])
            observations.append(obs)
    return np.array(flags), np.array(observations)


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
def test_flicker_rate_matches_p_and_blanked_observations_are_exactly_zero(p):
    flags, observations = flicker_pattern(p, seed=0, steps=3000)
    n = len(flags)
    tolerance = 4 * np.sqrt(p * (1 - p) / n)  # 4 binomial standard deviations
    assert abs(flags.mean() - p) <= tolerance, (flags.mean(), p)
    assert np.all(observations[flags] == 0.0)
    # Mountain Hike observations are never exactly zero on their own
    assert np.all(np.any(observations[~flags] != 0.0, axis=1))


def test_flicker_is_reproducible_under_the_seed():
    flags_a, obs_a = flicker_pattern(0.5, seed=7, steps=400)
    flags_b, obs_b = flicker_pattern(0.5, seed=7, steps=400)
    flags_c, _ = flicker_pattern(0.5, seed=8, steps=400)
    np.testing.assert_array_equal(flags_a, flags_b)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert not np.array_equal(flags_a, flags_c)


def test_flicker_rejects_bad_arguments():
    with pytest.raises(HyperparameterValueError, match=names("p")):
        ObservationFlicker(gym.make("MountainHike-v0"), p=1.5)
    with pytest.raises(HyperparameterTypeError, match=names("p")):
        ObservationFlicker(gym.make("MountainHike-v0"), p="0.5")
    with pytest.raises(ValueError, match="Box"):
        ObservationFlicker(gym.make("FrozenLake-v1"), p=0.5)
    with pytest.raises(ValueError, match="all-zero"):
        ObservationFlicker(
            gym.wrappers.TransformObservation(gym.make("MountainHike-v0"), lambda o: o, gym.spaces.Box(1, 2, (2,)))
        )


def wrapper_types(env: gym.Env) -> list[type]:
    types = []
    while isinstance(env, gym.Wrapper):
        types.append(type(env))
        env = env.env
    return types


def test_flickering_atari_pipeline():
    env = FlickeringAtariWrapper(gym.make("PongNoFrameskip-v4"))
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert env.observation_space == gym.spaces.Box(0, 255, (84, 84, 1), np.uint8)  # one gray frame, no stack
    chain = wrapper_types(env)
    for expected in (
        ObservationFlicker,
        atari_wrappers.ClipRewardEnv,
        atari_wrappers.WarpFrame,
        atari_wrappers.FireResetEnv,
        atari_wrappers.EpisodicLifeEnv,
        atari_wrappers.MaxAndSkipEnv,
        atari_wrappers.NoopResetEnv,
    ):
        assert expected in chain, expected
    assert chain.index(ObservationFlicker) < chain.index(atari_wrappers.WarpFrame)  # flicker on the final frame
    skip = next(w for w in _iter_wrappers(env) if isinstance(w, atari_wrappers.MaxAndSkipEnv))
    assert skip._skip == 4

    obs, info = env.reset(seed=3)
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)  # survives the ROM reload
    flags, rewards = [info["flickered"]], []
    frames = [obs]
    for _ in range(300):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        flags.append(info["flickered"])
        frames.append(obs)
        rewards.append(reward)
        assert not (terminated or truncated)  # Pong lasts longer than 300 agent steps
    flags_arr, frames_arr = np.array(flags), np.array(frames)
    assert frames_arr.dtype == np.uint8
    assert np.all(frames_arr[flags_arr] == 0)  # blanked frames are exactly zero
    assert np.all(frames_arr[~flags_arr].reshape(int((~flags_arr).sum()), -1).max(axis=1) > 0)
    assert abs(flags_arr.mean() - 0.5) < 4 * np.sqrt(0.25 / len(flags))
    assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0}


def _iter_wrappers(env: gym.Env):
    while isinstance(env, gym.Wrapper):
        yield env
        env = env.env


def _ram_trajectory(repeat_action_probability: float, seed: int) -> np.ndarray:
    env = gym.make("PongNoFrameskip-v4")
    set_sticky_actions(env, repeat_action_probability)
    env.reset(seed=seed)
    rams = []
    for action in np.random.default_rng(0).integers(env.action_space.n, size=400):
        env.step(int(action))
        rams.append(env.unwrapped.ale.getRAM().copy())
    return np.array(rams)


def test_sticky_actions_change_the_dynamics_and_stay_seeded():
    sticky_a, sticky_b = _ram_trajectory(0.25, seed=1), _ram_trajectory(0.25, seed=1)
    plain = _ram_trajectory(0.0, seed=1)
    np.testing.assert_array_equal(sticky_a, sticky_b)
    assert not np.array_equal(sticky_a, plain)
    with pytest.raises(HyperparameterValueError, match=names("repeat_action_probability")):
        set_sticky_actions(gym.make("PongNoFrameskip-v4"), 1.0)
    with pytest.raises(ValueError, match="ale_py"):
        set_sticky_actions(gym.make("MountainHike-v0"), 0.25)


def test_flickering_atari_from_an_rl_zoo3_env_wrapper_entry_and_bad_envs():
    # the form used in hyperparams/dvrl.yml, resolved by rl-zoo3's own helper
    wrapper_class = get_wrapper_class(
        {"env_wrapper": [{"sb3_bayes.common.wrappers.FlickeringAtariWrapper": {"flicker_probability": 0.25}}]}
    )
    env = wrapper_class(gym.make("BreakoutNoFrameskip-v4"))
    assert isinstance(env, FlickeringAtariWrapper) and env.flicker_probability == 0.25
    obs, _ = env.reset(seed=0)
    assert obs.shape == (84, 84, 1)
    with pytest.raises(ValueError, match="NoFrameskip"):
        FlickeringAtariWrapper(gym.make("ALE/Pong-v5"))  # frameskip 4 already
    # The arguments an env_wrapper entry may set are checked first, with errors that name them.
    bad_arguments = [
        (dict(flicker_probability=1.5), HyperparameterValueError, "flicker_probability"),
        (dict(repeat_action_probability=1.0), HyperparameterValueError, "repeat_action_probability"),
        (dict(noop_max=-1), HyperparameterValueError, "noop_max"),
        (dict(frame_skip=0), HyperparameterValueError, "frame_skip"),
        (dict(screen_size=84.0), HyperparameterTypeError, "screen_size"),
        (dict(terminal_on_life_loss="yes"), HyperparameterTypeError, "terminal_on_life_loss"),
        (dict(clip_reward=None), HyperparameterTypeError, "clip_reward"),
    ]
    for kwargs, error, parameter in bad_arguments:
        with pytest.raises(error, match=names(parameter)):
            FlickeringAtariWrapper(gym.make("PongNoFrameskip-v4"), **kwargs)
    with pytest.raises(HyperparameterValueError, match=names("frame_skip")):
        PSDRLAtariWrapper(gym.make("PongNoFrameskip-v4"), frame_skip=0)
    with pytest.raises(ValueError, match="ale_py"):
        FlickeringAtariWrapper(gym.make("MountainHike-v0"))


def test_psdrl_atari_wrapper_is_the_original_preprocessing():
    """Frames equal the original code's gym AtariPreprocessing (scaled to [0, 1]) times 255; rewards are not clipped."""
    from gymnasium import spaces
    from gymnasium.wrappers import AtariPreprocessing

    from sb3_bayes.common.wrappers import PSDRLAtariWrapper

    gym.register_envs(ale_py)
    ours = PSDRLAtariWrapper(gym.make("PongNoFrameskip-v4"))
    original = AtariPreprocessing(
        gym.make("PongNoFrameskip-v4"), 30, 4, 64, terminal_on_life_loss=False, grayscale_obs=True, scale_obs=True
    )
    assert ours.observation_space == spaces.Box(0, 255, (64, 64, 1), np.uint8)
    obs, _ = ours.reset(seed=3)
    reference, _ = original.reset(seed=3)
    rewards = []
    for action in np.random.default_rng(0).integers(6, size=300):
        assert np.array_equal(obs[..., 0].astype(np.float32) / 255.0, reference)
        obs, reward, *_ = ours.step(int(action))
        reference, reference_reward, *_ = original.step(int(action))
        assert reward == reference_reward
        rewards.append(reward)
    assert -1.0 in rewards  # the opponent scored within 300 agent steps: the game runs (no FIRE needed to serve)
