"""Known reward / termination functions must reproduce the Gymnasium environments on real transitions."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_bayes.envs.known_rewards import KNOWN_MODEL_SPECS, KnownModelSpec, get_known_spec

ENV_IDS = ["Pendulum-v1", "InvertedPendulum-v5", "Reacher-v5", "Pusher-v5", "HalfCheetah-v5", "Hopper-v5"]
TERMINATING_ENV_IDS = {"InvertedPendulum-v5", "Hopper-v5"}
N_STEPS = 200
MIN_TERMINATIONS = 5
# actions are sampled in 1.5x the action bounds to also check the clipping semantics (Pendulum clips before the cost,
# the MuJoCo envs charge the raw action)
ACTION_SCALE = 1.5

Transitions = dict[str, np.ndarray]


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """``contextlib.chdir`` for Python 3.10: MuJoCo writes MUJOCO_LOG.TXT (HalfCheetah xml warning) into the cwd."""
    old_cwd = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old_cwd)


def collect_transitions(env_id: str, seed: int = 0) -> Transitions:
    """Random-action rollout with the spec's env_kwargs; terminating envs run until MIN_TERMINATIONS terminations."""
    env = gym.make(env_id, **get_known_spec(env_id).env_kwargs)
    rng = np.random.default_rng(seed)
    assert isinstance(env.action_space, gym.spaces.Box)
    low, high = env.action_space.low, env.action_space.high
    obs, _ = env.reset(seed=seed)
    buffers: dict[str, list] = {"obs": [], "action": [], "next_obs": [], "reward": [], "terminated": []}
    n_terminated = 0
    min_terminations = MIN_TERMINATIONS if env_id in TERMINATING_ENV_IDS else 0
    while len(buffers["obs"]) < N_STEPS or n_terminated < min_terminations:
        assert len(buffers["obs"]) < 20 * N_STEPS, "not enough terminations"
        action = (ACTION_SCALE * rng.uniform(low, high)).astype(env.action_space.dtype)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(buffers, (obs, action, next_obs, reward, terminated)):
            buffers[key].append(value)
        n_terminated += int(terminated)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return {key: np.asarray(value) for key, value in buffers.items()}


@pytest.fixture(scope="module")
def transitions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Transitions]:
    # keep MUJOCO_LOG.TXT out of the repository
    with working_directory(tmp_path_factory.mktemp("mujoco_log")):
        return {env_id: collect_transitions(env_id) for env_id in ENV_IDS}


def as_tensors(data: Transitions, dtype: th.dtype = th.float64) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    obs, action, next_obs = (th.as_tensor(data[key], dtype=dtype) for key in ("obs", "action", "next_obs"))
    return obs, action, next_obs


def test_registry() -> None:
    assert sorted(KNOWN_MODEL_SPECS) == sorted(ENV_IDS)
    for env_id in ENV_IDS:
        spec = get_known_spec(env_id)
        assert isinstance(spec, KnownModelSpec)
        assert spec is KNOWN_MODEL_SPECS[env_id]
        hash(spec)  # frozen spec stays hashable despite the env_kwargs dict
    for env_id in ("HalfCheetah-v5", "Hopper-v5"):
        assert get_known_spec(env_id).env_kwargs == {"exclude_current_positions_from_observation": False}
        assert get_known_spec(env_id).drop_input_dims == (0,)


def test_unknown_env_id() -> None:
    with pytest.raises(ValueError, match="CartPole-v1") as excinfo:
        get_known_spec("CartPole-v1")
    message = str(excinfo.value)
    assert "\n" not in message
    assert all(env_id in message for env_id in ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_hint_dims_in_range(env_id: str, transitions: dict[str, Transitions]) -> None:
    spec = get_known_spec(env_id)
    obs_dim = transitions[env_id]["obs"].shape[-1]
    for dims in (spec.drop_input_dims, spec.angle_dims, spec.absolute_target_dims):
        assert isinstance(dims, tuple)
        assert len(set(dims)) == len(dims)
        assert all(0 <= dim < obs_dim for dim in dims)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reward_matches_env(env_id: str, transitions: dict[str, Transitions]) -> None:
    data = transitions[env_id]
    obs, action, next_obs = as_tensors(data)
    reward = get_known_spec(env_id).reward_fn(obs, action, next_obs)
    assert reward.shape == (len(data["reward"]),)
    assert reward.dtype == th.float64
    np.testing.assert_allclose(reward.numpy(), data["reward"], rtol=1e-5, atol=1e-5)
    if env_id == "Pendulum-v1":
        assert np.any(np.abs(data["action"]) > 2.0), "clipping not exercised"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_termination_matches_env(env_id: str, transitions: dict[str, Transitions]) -> None:
    data = transitions[env_id]
    terminated = get_known_spec(env_id).termination_fn(*as_tensors(data))
    assert terminated.dtype == th.bool
    assert terminated.shape == (len(data["terminated"]),)
    np.testing.assert_array_equal(terminated.numpy(), data["terminated"])
    if env_id in TERMINATING_ENV_IDS:
        assert data["terminated"].sum() >= MIN_TERMINATIONS
        assert (~data["terminated"]).sum() >= N_STEPS // 2
    else:
        assert not data["terminated"].any()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_float32_inputs(env_id: str, transitions: dict[str, Transitions]) -> None:
    data = transitions[env_id]
    spec = get_known_spec(env_id)
    inputs = as_tensors(data, th.float32)
    reward = spec.reward_fn(*inputs)
    assert reward.dtype == th.float32
    # position differences over a small dt (HalfCheetah, Hopper) lose precision in float32
    np.testing.assert_allclose(reward.numpy(), data["reward"], rtol=1e-4, atol=1e-3)
    # termination thresholds may flip for values within float32 rounding of a boundary (not the case here)
    np.testing.assert_array_equal(spec.termination_fn(*inputs).numpy(), data["terminated"])


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("dtype", [th.bfloat16, th.float16])
def test_low_precision_inputs(env_id: str, dtype: th.dtype, transitions: dict[str, Transitions]) -> None:
    spec = get_known_spec(env_id)
    inputs = as_tensors(transitions[env_id], dtype)
    reward = spec.reward_fn(*inputs)
    terminated = spec.termination_fn(*inputs)
    assert reward.dtype == th.float32  # upcast
    assert terminated.dtype == th.bool
    assert reward.shape == terminated.shape == inputs[0].shape[:-1]
    assert th.isfinite(reward).all()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_batch_shape(env_id: str, transitions: dict[str, Transitions]) -> None:
    spec = get_known_spec(env_id)
    obs, action, next_obs = (tensor[:28] for tensor in as_tensors(transitions[env_id]))
    flat_reward = spec.reward_fn(obs, action, next_obs)
    flat_terminated = spec.termination_fn(obs, action, next_obs)
    batched = [tensor.reshape(4, 7, tensor.shape[-1]) for tensor in (obs, action, next_obs)]
    reward = spec.reward_fn(*batched)
    terminated = spec.termination_fn(*batched)
    assert reward.shape == terminated.shape == (4, 7)
    th.testing.assert_close(reward, flat_reward.reshape(4, 7), rtol=0, atol=0)
    assert th.equal(terminated, flat_terminated.reshape(4, 7))
    # unbatched single transition
    assert spec.reward_fn(obs[0], action[0], next_obs[0]).shape == ()
    assert spec.termination_fn(obs[0], action[0], next_obs[0]).shape == ()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_meta_device(env_id: str, transitions: dict[str, Transitions]) -> None:
    """Meta tensors have no data: any host sync / data-dependent branch would raise."""
    spec = get_known_spec(env_id)
    obs_dim, act_dim = transitions[env_id]["obs"].shape[-1], transitions[env_id]["action"].shape[-1]
    obs, next_obs = th.empty(3, 5, obs_dim, device="meta"), th.empty(3, 5, obs_dim, device="meta")
    action = th.empty(3, 5, act_dim, device="meta")
    reward = spec.reward_fn(obs, action, next_obs)
    terminated = spec.termination_fn(obs, action, next_obs)
    assert reward.device.type == terminated.device.type == "meta"
    assert reward.shape == terminated.shape == (3, 5)
    assert terminated.dtype == th.bool


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5"])
def test_default_observation_layout_rejected(env_id: str, tmp_path: Path) -> None:
    spec = get_known_spec(env_id)
    with working_directory(tmp_path), gym.make(env_id) as env:  # default layout: x excluded
        obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
    assert obs_shape is not None and act_shape is not None
    obs_dim, act_dim = obs_shape[0], act_shape[0]
    obs, action = th.zeros(2, obs_dim), th.zeros(2, act_dim)
    with pytest.raises(ValueError, match="exclude_current_positions_from_observation=False"):
        spec.reward_fn(obs, action, obs)
