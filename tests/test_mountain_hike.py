"""Mountain Hike (Igl et al., 2018): landscape, dynamics, observation noise, horizon, seeding and registration."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from reliability import names

import sb3_bayes.envs  # noqa: F401  (registers the ids)
from sb3_bayes.common.validation import HyperparameterTypeError, HyperparameterValueError
from sb3_bayes.envs.mountain_hike import (
    MOUNTAIN_HIKE_NOISE_LEVELS,
    MountainHikeEnv,
    mountain_hike_env_id,
    mountain_hike_height,
    register_mountain_hike_envs,
)


def reference_height(x: float, y: float) -> float:
    """The original's formula written out by hand (max of three scaled Gaussian densities / 3, shaped, tilted)."""
    hills = [((0.5, 0.5), 0.75, 0.1, 1.0), ((0.0, 0.2), 0.1, 0.75, 0.8), ((-0.375, -0.5), 0.75, 0.1, 0.55)]
    z = 0.0
    for (mx, my), sx, sy, factor in hills:
        density = np.exp(-((x - mx) ** 2) / (2 * sx**2) - (y - my) ** 2 / (2 * sy**2)) / (2 * np.pi * sx * sy)
        z = max(z, factor * density / 3)
    z = 1 - (1 - z) ** 4
    return 4 * z - 4.5 + (x + y) / 4


def test_landscape_matches_the_formula_and_the_papers_landmarks():
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, size=(200, 2))
    ours = mountain_hike_height(points[:, 0], points[:, 1])
    expected = [reference_height(x, y) for x, y in points]
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)

    # best reward in the box about -0.23 at (0.81, 0.51); the start is worth about -4.9
    grid = np.linspace(-1, 1, 401)
    xs, ys = np.meshgrid(grid, grid)
    heights = mountain_hike_height(xs, ys)
    best = np.unravel_index(np.argmax(heights), heights.shape)
    assert heights[best] == pytest.approx(-0.23, abs=0.01)
    assert xs[best] == pytest.approx(0.81, abs=0.02) and ys[best] == pytest.approx(0.51, abs=0.02)
    assert float(mountain_hike_height(0.81, 0.51)) == pytest.approx(-0.233, abs=0.002)
    assert float(mountain_hike_height(-0.85, -0.85)) == pytest.approx(-4.9, abs=0.05)


def _deterministic_env(**kwargs) -> MountainHikeEnv:
    return MountainHikeEnv(transition_std=0.0, start_std=0.0, **kwargs)


def test_action_cost_on_the_raw_action_and_the_move_rescaled_to_the_norm_ball():
    env = _deterministic_env()
    env.reset(seed=0)
    start = env.position
    np.testing.assert_allclose(start, [-0.85, -0.85])

    # inside the ball: moved exactly, cost 0.1 * ||a||
    action = np.array([0.03, -0.04])
    obs, reward, terminated, truncated, info = env.step(action)
    np.testing.assert_allclose(info["position"], start + action)
    assert info["action_cost"] == pytest.approx(0.1 * 0.05)
    assert reward == pytest.approx(float(mountain_hike_height(*info["position"])) - 0.005)
    assert info["height"] == pytest.approx(float(mountain_hike_height(*info["position"])))
    assert not terminated and not truncated
    np.testing.assert_allclose(obs, 10 * info["position"], rtol=1e-6)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)

    # a corner of the action box (norm 0.0707) and a far larger action: both moved by norm 0.05 in their direction,
    # each paying for its raw norm
    for raw in (np.array([0.05, 0.05]), np.array([3.0, 4.0])):
        before = env.position
        _, reward, _, _, info = env.step(raw)
        moved = info["position"] - before
        assert np.linalg.norm(moved) == pytest.approx(0.05)
        np.testing.assert_allclose(moved / np.linalg.norm(moved), raw / np.linalg.norm(raw), atol=1e-12)
        assert info["action_cost"] == pytest.approx(0.1 * np.linalg.norm(raw))
        assert reward == pytest.approx(info["height"] - info["action_cost"])


def test_a_wide_action_space_lets_the_cost_charge_the_whole_sample():
    """What an SB3 agent sends: its Gaussian sample clipped to the declared box. The default box hides the sample's
    excess from the cost; ``action_space_bound`` far beyond the move keeps the original's cost on the whole sample."""
    sample = np.array([3.0, 4.0], dtype=np.float32)
    costs = {}
    for bound in (None, 10.0):
        env = MountainHikeEnv(action_space_bound=bound)
        expected_bound = np.float32(0.05 if bound is None else bound)
        np.testing.assert_array_equal(env.action_space.high, [expected_bound, expected_bound])
        np.testing.assert_array_equal(env.action_space.low, [-expected_bound, -expected_bound])
        env.reset(seed=0)
        before = env.position
        _, _, _, _, info = env.step(np.clip(sample, env.action_space.low, env.action_space.high))
        costs[bound] = info["action_cost"]
        assert np.linalg.norm(info["position"] - before) > 0  # the move is rescaled onto the ball either way
    assert costs[None] == pytest.approx(0.1 * np.sqrt(2) * 0.05, rel=1e-6)  # the corner of the default box
    assert costs[10.0] == pytest.approx(0.1 * 5.0)  # the whole sample, as the original charged it


def test_outside_the_box_costs_six_and_the_position_is_not_clipped():
    env = MountainHikeEnv(transition_std=0.0, start_std=0.0, start_position=(-0.98, 0.0))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.array([-0.05, 0.0]))
    assert info["position"][0] == pytest.approx(-1.03)  # not clipped back into the box
    assert info["height"] == -6.0
    assert reward == pytest.approx(-6.0 - 0.005)
    _, reward, _, _, info = env.step(np.array([0.0, 0.0]))
    assert info["position"][0] == pytest.approx(-1.03) and reward == -6.0


def test_start_transition_and_observation_noise_statistics():
    env = MountainHikeEnv(observation_noise_std=0.2)
    starts = np.array([env.reset(seed=s)[1]["position"] for s in range(2000)])
    np.testing.assert_allclose(starts.mean(axis=0), [-0.85, -0.85], atol=0.01)
    np.testing.assert_allclose(starts.std(axis=0), [0.1, 0.1], rtol=0.07)

    env.reset(seed=1)
    steps, obs_errors = [], []
    previous = env.position
    for _ in range(3000):
        obs, _, _, _, info = env.step(np.zeros(2))
        steps.append(info["position"] - previous)
        obs_errors.append(obs / 10.0 - info["position"])
        previous = info["position"]
    np.testing.assert_allclose(np.mean(steps, axis=0), [0, 0], atol=0.002)
    np.testing.assert_allclose(np.std(steps, axis=0), [0.025, 0.025], rtol=0.05)
    np.testing.assert_allclose(np.mean(obs_errors, axis=0), [0, 0], atol=0.015)
    np.testing.assert_allclose(np.std(obs_errors, axis=0), [0.2, 0.2], rtol=0.05)


def test_registered_ids_horizon_truncation_and_seeding():
    assert "MountainHike-v0" in gym.registry
    assert [mountain_hike_env_id(s) for s in MOUNTAIN_HIKE_NOISE_LEVELS] == [
        "MountainHikeNoise0-v0",
        "MountainHikeNoise0p1-v0",
        "MountainHikeNoise0p2-v0",
        "MountainHikeNoise0p3-v0",
        "MountainHikeNoise0p5-v0",
        "MountainHikeNoise1-v0",
    ]
    for std in MOUNTAIN_HIKE_NOISE_LEVELS:
        env = gym.make(mountain_hike_env_id(std))
        assert env.unwrapped.observation_noise_std == std
        assert env.spec.max_episode_steps == 75
    assert gym.make("MountainHike-v0", observation_noise_std=0.3).unwrapped.observation_noise_std == 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_mountain_hike_envs()  # idempotent: no re-registration warning

    def episode(seed: int) -> tuple[np.ndarray, float, int, bool]:
        env = gym.make("MountainHikeNoise0p1-v0")
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        observations, total, length = [obs], 0.0, 0
        while True:
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            observations.append(obs)
            total += float(reward)
            length += 1
            assert not terminated
            if truncated:
                return np.array(observations), total, length, truncated

    first, second, other = episode(3), episode(3), episode(4)
    assert first[2] == 75 and first[3]
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1] == second[1]
    assert not np.array_equal(first[0], other[0])


def test_api_checks_render_and_bad_input():
    env = MountainHikeEnv(observation_noise_std=0.1, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unbounded observation Box is intended
        check_env(env, skip_render_check=True)
    env.reset(seed=0)
    image = env.render()
    assert image is not None and image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert (image == np.array([255, 0, 0], dtype=np.uint8)).all(axis=2).any()  # the agent is drawn

    with pytest.raises(RuntimeError, match="reset"):
        MountainHikeEnv().step(np.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0]))
    # Constructor arguments (env_kwargs of an rl-zoo3 YAML) are checked, with errors that name them.
    bad_arguments = [
        (dict(observation_noise_std=-0.1), HyperparameterValueError, "observation_noise_std"),
        (dict(observation_noise_std="0.1"), HyperparameterTypeError, "observation_noise_std"),
        (dict(transition_std=float("nan")), HyperparameterValueError, "transition_std"),
        (dict(start_position=(0.0, 0.0, 0.0)), HyperparameterValueError, "start_position"),
        (dict(start_position=(0.0, float("inf"))), HyperparameterValueError, "start_position"),
        (dict(start_std=-1.0), HyperparameterValueError, "start_std"),
        (dict(max_action_norm=0.0), HyperparameterValueError, "max_action_norm"),
        (dict(action_cost=-0.1), HyperparameterValueError, "action_cost"),
        (dict(observation_scale=0.0), HyperparameterValueError, "observation_scale"),
        (dict(action_space_bound=0.0), HyperparameterValueError, "action_space_bound"),
        (dict(action_space_bound=float("inf")), HyperparameterValueError, "action_space_bound"),
        (dict(render_mode="human"), HyperparameterValueError, "render_mode"),
    ]
    for kwargs, error, parameter in bad_arguments:
        with pytest.raises(error, match=names(parameter)):
            MountainHikeEnv(**kwargs)  # type: ignore[arg-type]
