"""Pictures of the PETS model: predictions along real trajectories, the figure, the callback and the command."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Figure, KVWriter, Logger

from sb3_bayes import PETS
from sb3_bayes.pets.model_pictures import (
    ModelPictureCallback,
    collect_episode,
    main,
    plot_predictions,
    rollout_predictions,
)

TINY = dict(plan_horizon=3, popsize=8, num_elites=2, cem_iters=2, n_particles=5, n_epochs=1, policy_kwargs=dict(net_arch=[16]))


def trained(reward_fn: str | None) -> PETS:
    env = make_vec_env("Pendulum-v1", n_envs=1, seed=0, env_kwargs=dict(max_episode_steps=20))
    model = PETS("MlpPolicy", env, reward_fn=reward_fn, seed=0, **TINY)
    model.learn(20)  # one random episode and one training round
    return model


@pytest.fixture(scope="module")
def episode() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    env = gym.make("Pendulum-v1", max_episode_steps=12)
    return collect_episode(PETS("MlpPolicy", "Pendulum-v1", **TINY), env, random_actions=True, seed=0)


@pytest.mark.parametrize("reward_fn", [None, "Pendulum-v1"])
def test_rollouts_equal_hand_written_loops(reward_fn: str | None, episode) -> None:
    model = trained(reward_fn)
    observations, actions, rewards = episode
    assert observations.shape == (13, 3) and actions.shape == (12, 1)
    predictions = rollout_predictions(model, observations, actions, rewards)
    dynamics = model.policy.dynamics
    obs, acts = th.as_tensor(observations), th.as_tensor(actions)
    n_dims = 3 + (reward_fn is None)
    assert predictions.real.shape == (12, n_dims) and predictions.open_loop_mean.shape == (5, 12, n_dims)
    assert predictions.labels[-1] == ("reward" if reward_fn is None else "state[2]")
    with th.no_grad():
        # Open loop: every member on its own, moved by its own mean.
        for member in range(dynamics.ensemble_size):
            state = obs[:1]
            for t in range(12):
                prediction = dynamics.predict(state.expand(5, 1, 3), acts[t].expand(5, 1, 1))
                mean, std = prediction.mean[member, 0], prediction.variance[member, 0].sqrt()  # type: ignore[union-attr]
                np.testing.assert_allclose(predictions.open_loop_mean[member, t], mean.numpy(), rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(predictions.open_loop_std[member, t], std.numpy(), rtol=1e-5, atol=1e-6)
                state = mean[None, :3]
        # One step: dynamics.predict on the real states.
        one_step = dynamics.predict(obs[:-1].unsqueeze(0), acts.unsqueeze(0))
    np.testing.assert_allclose(predictions.one_step_mean, one_step.mean.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(predictions.one_step_std, one_step.variance.sqrt().numpy(), rtol=1e-6)  # type: ignore[union-attr]
    np.testing.assert_array_equal(predictions.real[:, :3], observations[1:])
    if reward_fn is None:
        np.testing.assert_array_equal(predictions.real[:, 3], rewards.astype(np.float32))
        with pytest.raises(ValueError, match="rewards"):
            rollout_predictions(model, observations, actions)  # a learned reward needs the real ones


def test_figure_has_one_axis_per_dimension_and_kind(episode) -> None:
    predictions = rollout_predictions(trained(None), *episode)
    figure = plot_predictions(predictions)
    assert len(figure.axes) == 4 * 2  # 3 state dimensions and the reward, open loop and one step
    assert [axis.get_ylabel() for axis in figure.axes[::2]] == ["state[0]", "state[1]", "state[2]", "reward"]
    assert len(plot_predictions(predictions, kinds=["one_step"]).axes) == 4
    with pytest.raises(ValueError, match="kinds"):
        plot_predictions(predictions, kinds=["closed_loop"])


class Collect(KVWriter):
    def __init__(self) -> None:
        self.values: list[dict[str, Any]] = []
        self.excluded: list[dict[str, Any]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        self.values.append(dict(key_values))
        self.excluded.append(dict(key_excluded))


def test_callback_records_a_figure_every_n_episodes() -> None:
    env = make_vec_env("Pendulum-v1", n_envs=1, seed=0, env_kwargs=dict(max_episode_steps=10))
    model = PETS("MlpPolicy", env, seed=0, **TINY)
    writer = Collect()
    model.set_logger(Logger(None, [writer]))
    callback = ModelPictureCallback(every_n_episodes=2)
    model.learn(40, callback=callback)  # 4 episodes: pictures after the 2nd and the 4th
    assert callback.n_pictures == 2
    figures = [values["model/predictions"] for values in writer.values if "model/predictions" in values]
    assert len(figures) == 2 and all(isinstance(figure, Figure) for figure in figures)
    assert len(figures[0].figure.axes) == 8
    excluded = [e["model/predictions"] for e in writer.excluded if "model/predictions" in e]
    assert all(set(e) == {"stdout", "log", "json", "csv"} for e in excluded)
    with pytest.raises(ValueError, match="every_n_episodes"):
        ModelPictureCallback(every_n_episodes=0)


def test_command_writes_a_picture(tmp_path) -> None:
    model = trained("Pendulum-v1")
    model.save(tmp_path / "pets.zip")
    out = tmp_path / "picture.png"
    main(["--model", str(tmp_path / "pets.zip"), "--env", "Pendulum-v1", "--out", str(out), "--steps", "6"])
    assert out.stat().st_size > 10_000
    main(["--model", str(tmp_path / "pets.zip"), "--env", "Pendulum-v1", "--out", str(out), "--random-actions"])
