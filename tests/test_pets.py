"""PETS-specific behaviour: input validation, NaN handling, known rewards, bfloat16 planning, and learning."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env

from sb3_bayes import PETS
from sb3_bayes.common.utils import PLANNING_DTYPES, bfloat16_matmul_is_fast, planning_precision

TINY = dict(plan_horizon=3, popsize=8, num_elites=2, cem_iters=2, n_particles=5, n_epochs=1, policy_kwargs=dict(net_arch=[16]))


class ImageEnv(gym.Env):
    observation_space = spaces.Box(0, 255, (8, 8, 3), dtype=np.uint8)
    action_space = spaces.Box(-1.0, 1.0, (2,))

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


class UnboundedActionEnv(ImageEnv):
    observation_space = spaces.Box(-1.0, 1.0, (3,))
    action_space = spaces.Box(-np.inf, np.inf, (1,))


@pytest.mark.parametrize(
    "env, message",
    [
        ("CartPole-v1", "supports only flat Box action spaces, got Discrete"),
        (ImageEnv(), "supports only flat Box observation spaces, got Box"),
        (UnboundedActionEnv(), "needs finite action bounds"),
    ],
)
def test_unsupported_spaces_raise_value_error(env, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PETS("MlpPolicy", env)


def test_invalid_configuration_raises_value_error() -> None:
    with pytest.raises(ValueError, match="Unknown propagation 'TS2'"):
        PETS("MlpPolicy", "Pendulum-v1", propagation="TS2")
    with pytest.raises(ValueError, match="multiple of ensemble_size=5"):
        PETS("MlpPolicy", "Pendulum-v1", n_particles=7)
    with pytest.raises(ValueError, match="Unknown model_type"):
        PETS("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(model_type="X"))
    with pytest.raises(ValueError, match="unit of train_freq"):
        PETS("MlpPolicy", "Pendulum-v1", train_freq=(1, "epoch"))
    with pytest.raises(ValueError, match="one value per affine layer"):
        PETS("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8, 8], weight_decay=[1e-4, 1e-4]))
    with pytest.raises(ValueError, match="Unknown planning_dtype"):
        PETS("MlpPolicy", "Pendulum-v1", planning_dtype="float16")


def test_known_reward_resolution(tmp_path, monkeypatch) -> None:
    assert PETS("MlpPolicy", "Pendulum-v1", reward_fn="auto", **TINY).reward_fn == "Pendulum-v1"
    with pytest.raises(ValueError, match="CartPole"):
        PETS("MlpPolicy", "MountainCarContinuous-v0", reward_fn="CartPole-v1")
    monkeypatch.chdir(tmp_path)  # MuJoCo writes a log file into the working directory
    with pytest.raises(ValueError, match="exclude_current_positions_from_observation"):
        PETS("MlpPolicy", "HalfCheetah-v5", reward_fn="auto")
    env = make_vec_env("HalfCheetah-v5", env_kwargs=dict(exclude_current_positions_from_observation=False))
    model = PETS("MlpPolicy", env, reward_fn="auto", **TINY)
    # The known model's input hints: x is dropped, the root pitch goes in as (sin, cos).
    assert model.policy.drop_input_dims == [0] and model.policy.angle_dims == [2]
    assert model.policy.dynamics.input_dim == 18 - 1 + 1 + 6


def test_nan_loss_raises_value_error() -> None:
    model = PETS("MlpPolicy", make_vec_env("Pendulum-v1", env_kwargs=dict(max_episode_steps=20)), reward_fn="auto", **TINY)
    model.learn(20)
    assert model.replay_buffer is not None
    model.replay_buffer._observations[3, 0] = np.nan
    with pytest.raises(ValueError, match="The PETS model loss is NaN or inf"):
        model.train()


def test_training_lowers_the_model_error() -> None:
    kwargs = {**TINY, "n_epochs": 20, "policy_kwargs": dict(net_arch=[64, 64])}
    model = PETS("MlpPolicy", make_vec_env("Pendulum-v1", seed=0), reward_fn="auto", seed=0, **kwargs)
    model.learn(200)  # one random episode, then one training round
    data = model.replay_buffer.all()  # type: ignore[union-attr]
    obs, actions = th.as_tensor(data.observations), th.as_tensor(data.actions)
    with th.no_grad():
        predicted = model.policy.dynamics.predict(obs.unsqueeze(0), actions.unsqueeze(0)).mean
    model_error = (predicted - th.as_tensor(data.next_observations)).pow(2).mean()
    no_change_error = (obs - th.as_tensor(data.next_observations)).pow(2).mean()
    assert float(model_error) < 0.1 * float(no_change_error), (model_error, no_change_error)
    # Bootstrapped members trained on different resamples disagree.
    assert float(predicted.std(dim=0).mean()) > 0.0


def test_bfloat16_planning_keeps_the_ranking_of_candidates() -> None:
    model = PETS("MlpPolicy", make_vec_env("Pendulum-v1", seed=0), reward_fn="auto", seed=0, **{**TINY, "n_epochs": 5})
    model.learn(200)
    policy = model.policy
    obs = th.as_tensor(model.env.reset(), dtype=th.float32)
    candidates = th.rand(1, 64, 3, 1) * 4 - 2
    values = {}
    for dtype in ("float32", "bfloat16"):
        policy.planning_dtype = dtype
        th.manual_seed(0)
        with th.no_grad(), planning_precision(policy.device, PLANNING_DTYPES[dtype]):
            values[dtype] = policy.evaluate_action_sequences(obs, candidates)[0]
    ranks32 = values["float32"].argsort().argsort().float()
    ranks16 = values["bfloat16"].argsort().argsort().float()
    rank_correlation = th.corrcoef(th.stack([ranks32, ranks16]))[0, 1]
    assert float(rank_correlation) > 0.95
    assert values["float32"].dtype == values["bfloat16"].dtype == th.float32


def test_pets_learns_pendulum_within_four_episodes() -> None:
    """Seeded learning test: one random episode, then MPC; clearly better than random by the 3rd/4th episode."""
    th.set_num_threads(1)
    model = PETS(
        "MlpPolicy",
        "Pendulum-v1",
        reward_fn="auto",
        plan_horizon=15,
        popsize=100,
        num_elites=10,
        n_particles=10,
        n_epochs=25,
        seed=0,
        policy_kwargs=dict(net_arch=[64, 64]),
    )
    model.learn(800)
    returns = [info["r"] for info in model.ep_info_buffer]
    assert len(returns) == 4
    assert returns[0] < -600  # the random first episode
    assert max(returns[2:]) > -400, returns


def test_bfloat16_planning_warns_where_it_is_slow() -> None:
    model = PETS("MlpPolicy", "Pendulum-v1", reward_fn="auto", planning_dtype="bfloat16", **TINY)
    obs = np.zeros((1, 3), dtype=np.float32)
    if bfloat16_matmul_is_fast(model.device):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.predict(obs)
    else:
        with pytest.warns(UserWarning, match="no native bfloat16 matrix units"):
            model.predict(obs)


def test_predict_forgets_the_warm_start_where_an_episode_starts() -> None:
    model = PETS("MlpPolicy", "Pendulum-v1", reward_fn="auto", seed=0, **TINY)
    obs = np.zeros((2, 3), dtype=np.float32)
    model.policy.plan_warm_start = th.full((2, 3, 1), 1.5)
    th.manual_seed(0)
    actions, _ = model.predict(obs, episode_start=np.array([True, False]))
    # The same plan from an explicit warm start: the bound midpoint (0) for the new episode, the old one otherwise.
    model.policy.plan_warm_start = th.tensor([[[0.0]] * 3, [[1.5]] * 3])
    th.manual_seed(0)
    expected, _ = model.predict(obs)
    np.testing.assert_array_equal(actions, expected)
