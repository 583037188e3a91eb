"""DeepSea (bsuite) as a Gymnasium environment: API checks, dynamics, reward rule, action mapping and registration."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from sb3_bayes.envs import DeepSeaEnv, register_deep_sea_envs
from sb3_bayes.envs.deep_sea import DEEP_SEA_ENTRY_POINT, DEEP_SEA_SIZES

MOVE_COST = 0.01


def run_episode(env: DeepSeaEnv, go_right: list[bool], seed: int | None = 0) -> tuple[float, list[dict], list[bool]]:
    """Play an episode where step ``t`` moves right iff ``go_right[t]`` (translated through the env's action mapping)."""
    env.reset(seed=seed)
    total, infos, terminations = 0.0, [], []
    for right in go_right:
        row, column = env.position
        action = env.right_action(row, column) if right else 1 - env.right_action(row, column)
        _, reward, terminated, truncated, info = env.step(action)
        assert truncated is False
        total += float(reward)
        infos.append(info)
        terminations.append(terminated)
    return total, infos, terminations


@pytest.mark.parametrize("flat_observation", [True, False])
@pytest.mark.parametrize("deterministic", [True, False])
def test_gymnasium_env_checker(flat_observation: bool, deterministic: bool) -> None:
    # through gym.make so that the env has a spec (the checker then also tries the other render modes)
    env = gym.make("DeepSea-v0", size=6, deterministic=deterministic, flat_observation=flat_observation, render_mode="ansi")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env.unwrapped, skip_render_check=False)


@pytest.mark.parametrize("deterministic", [True, False])
def test_sb3_env_checker(deterministic: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SB3's checker reports problems as warnings
        sb3_check_env(DeepSeaEnv(size=8, deterministic=deterministic), warn=True)


@pytest.mark.parametrize("size", [1, 2, 5, 10])
def test_episode_length_and_termination(size: int) -> None:
    env = DeepSeaEnv(size=size)
    rng = np.random.default_rng(size)
    _, infos, terminations = run_episode(env, list(rng.random(size) < 0.5))
    assert terminations == [False] * (size - 1) + [True]
    assert infos[-1]["position"][0] == size
    assert "is_success" in infos[-1] and all("is_success" not in info for info in infos[:-1])
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


@pytest.mark.parametrize("size", [1, 2, 5, 10, 20])
def test_optimal_policy(size: int) -> None:
    env = DeepSeaEnv(size=size)
    total, infos, _ = run_episode(env, [True] * size)
    assert total == pytest.approx(1.0 - MOVE_COST, abs=1e-12)
    assert total == pytest.approx(env.optimal_return, abs=1e-12)
    assert [info["position"] for info in infos] == [(t + 1, min(t + 1, size - 1)) for t in range(size)]
    assert infos[-1]["is_success"] is True
    assert infos[-1]["bad_episode"] is False


@pytest.mark.parametrize("size", [1, 5, 10])
def test_always_left(size: int) -> None:
    env = DeepSeaEnv(size=size)
    total, infos, _ = run_episode(env, [False] * size)
    assert total == 0.0
    assert [info["position"] for info in infos] == [(t + 1, 0) for t in range(size)]
    assert infos[-1]["is_success"] is False
    assert infos[-1]["bad_episode"] is True


def test_reward_rule_is_bsuite() -> None:
    """+1 only for a right move taken in the last column (N consecutive rights), not for ending in the last column."""
    size = 5
    env = DeepSeaEnv(size=size)
    # one left on the last step: no treasure, N - 1 move costs
    total, infos, _ = run_episode(env, [True] * (size - 1) + [False])
    assert total == pytest.approx(-(size - 1) * MOVE_COST / size, abs=1e-12)
    assert infos[-1]["is_success"] is False and infos[-1]["bad_episode"] is True
    # left at the wall (clipped, stays in column 0) then all rights: ends in the last column after the move,
    # yet never acts from the last column, so bsuite gives no treasure
    env2 = DeepSeaEnv(size=2)
    total, infos, _ = run_episode(env2, [False, True])
    assert infos[-1]["position"] == (2, 1)
    assert total == pytest.approx(-MOVE_COST / 2, abs=1e-12)
    assert infos[-1]["is_success"] is False


def test_observation_one_hot() -> None:
    size = 7
    for flat in (True, False):
        env = DeepSeaEnv(size=size, flat_observation=flat)
        obs, info = env.reset(seed=1)
        rng = np.random.default_rng(0)
        terminated = False
        while True:
            assert obs.dtype == np.float32 and obs in env.observation_space
            assert obs.shape == ((size * size,) if flat else (size, size))
            grid = obs.reshape(size, size)
            if terminated:  # bsuite's null observation once the agent has left the grid
                assert not grid.any()
                break
            assert grid.sum() == 1.0 and grid[info["position"]] == 1.0
            obs, _, terminated, _, info = env.step(int(rng.integers(2)))


def test_action_mapping_seeding() -> None:
    size = 10
    by_mapping_seed = DeepSeaEnv(size=size, mapping_seed=3).action_mapping
    np.testing.assert_array_equal(by_mapping_seed, DeepSeaEnv(size=size, mapping_seed=3).action_mapping)
    # bsuite's draw, so mapping_seed=s gives bsuite's DeepSea(size, mapping_seed=s) mapping
    np.testing.assert_array_equal(by_mapping_seed, np.random.RandomState(3).binomial(1, 0.5, [size, size]))
    assert set(np.unique(by_mapping_seed)) <= {0, 1}
    # without mapping_seed: drawn from the first reset's seed, then fixed for the env's lifetime
    env = DeepSeaEnv(size=size)
    with pytest.raises(RuntimeError, match="reset"):
        _ = env.action_mapping
    env.reset(seed=3)
    np.testing.assert_array_equal(env.action_mapping, by_mapping_seed)
    env.reset(seed=4)
    np.testing.assert_array_equal(env.action_mapping, by_mapping_seed)
    # mapping_seed wins over the reset seed
    env = DeepSeaEnv(size=size, mapping_seed=3)
    env.reset(seed=5)
    np.testing.assert_array_equal(env.action_mapping, by_mapping_seed)
    # different seeds give different mappings (2^-N^2 chance of a clash for a random pair; these seeds are fixed)
    for small_size in (5, 10, 20):
        mappings = [DeepSeaEnv(size=small_size, mapping_seed=seed).action_mapping for seed in range(5)]
        assert all(not np.array_equal(a, b) for i, a in enumerate(mappings) for b in mappings[i + 1 :])
    # the mapping is actually random per cell (both actions mean "right" somewhere)
    assert 0 < by_mapping_seed.sum() < size * size


def test_debug_mode_mapping() -> None:
    with pytest.warns(UserWarning, match="debug mode"):
        env = DeepSeaEnv(size=4, randomize_actions=False)
    np.testing.assert_array_equal(env.action_mapping, np.ones((4, 4)))
    env.reset(seed=0)
    total = sum(float(env.step(1)[1]) for _ in range(4))
    assert total == pytest.approx(1.0 - MOVE_COST, abs=1e-12)


def test_stochastic_variant() -> None:
    size = 4
    env = DeepSeaEnv(size=size, deterministic=False, mapping_seed=0)
    assert env.optimal_return == pytest.approx((1 - 1 / size) ** (size - 1) - MOVE_COST)
    returns, successes, failed_moves, right_moves = [], [], 0, 0
    for episode in range(400):
        env.reset(seed=episode)
        total, terminated = 0.0, False
        while not terminated:
            row, column = env.position
            _, reward, terminated, _, info = env.step(env.right_action(row, column))
            total += float(reward)
            if column < size - 1:  # a right move can only fail visibly off the last column
                right_moves += 1
                failed_moves += info["position"][1] == column
        returns.append(total)
        successes.append(info["is_success"])
    assert 0.15 < failed_moves / right_moves < 0.35  # failure probability 1 / N = 0.25
    assert 0.0 < np.mean(successes) < 1.0
    assert len(set(np.round(returns, 6))) > 10  # N(0, 1) reward noise at the end states
    # seeded resets make the stochastic variant reproducible
    env_a, env_b = (DeepSeaEnv(size=size, deterministic=False, mapping_seed=0) for _ in range(2))
    traj_a = run_episode(env_a, [True] * size, seed=7)
    traj_b = run_episode(env_b, [True] * size, seed=7)
    assert traj_a == traj_b


@pytest.mark.parametrize("env_id, size", [("DeepSea-v0", 10)] + [(f"DeepSea{n}-v0", n) for n in DEEP_SEA_SIZES])
def test_registered_ids(env_id: str, size: int) -> None:
    assert gym.spec(env_id).entry_point == DEEP_SEA_ENTRY_POINT
    env = gym.make(env_id)
    assert isinstance(env.unwrapped, DeepSeaEnv) and env.unwrapped.size == size
    assert env.observation_space.shape == (size * size,) and env.action_space == gym.spaces.Discrete(2)
    env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == size and terminated and not truncated
    env.close()


def test_registration_is_idempotent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_deep_sea_envs()
        register_deep_sea_envs()


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_bad_size(size: object) -> None:
    with pytest.raises(ValueError, match="size") as excinfo:
        DeepSeaEnv(size=size)  # type: ignore[arg-type]
    assert "\n" not in str(excinfo.value)


def test_bad_action_and_step_before_reset() -> None:
    env = DeepSeaEnv(size=3, mapping_seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(2)


def test_render_ansi() -> None:
    env = DeepSeaEnv(size=3, render_mode="ansi")
    env.reset(seed=0)
    assert env.render() == "A . .\n. . .\n. . $\n"
    for _ in range(3):
        env.step(env.right_action(*env.position))
    picture = env.render()
    assert picture is not None and picture.endswith("done: column 2, success True\n")
