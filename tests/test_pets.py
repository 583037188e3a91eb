"""PETS-specific behaviour: input validation, NaN handling, exact resume, known rewards, bfloat16 planning, learning."""

import dataclasses
import inspect
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from reliability import NonFiniteAt, check_exact_resume, check_refused, check_weights_survive, model_tensors, names
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger
from torch import nn

from sb3_bayes import PETS
from sb3_bayes.common.utils import bfloat16_matmul_is_fast
from sb3_bayes.common.validation import HyperparameterError, HyperparameterTypeError, HyperparameterValueError
from sb3_bayes.pets.policies import PETSPolicy, PlannerSettings

TINY = dict(plan_horizon=3, popsize=8, num_elites=2, cem_iters=2, n_particles=5, n_epochs=1, policy_kwargs=dict(net_arch=[16]))


def short_env(env: Any = "Pendulum-v1"):
    """Pendulum cut to 20-step episodes: the first training round comes at step 20, planning right after."""
    return make_vec_env(env, n_envs=1, seed=0, env_kwargs=dict(max_episode_steps=20) if isinstance(env, str) else None)


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


V, T = HyperparameterValueError, HyperparameterTypeError
# (PETS arguments, exception, parameter the message must name). Every constructor argument and policy_kwargs entry,
# with the relations between them; the planner settings fail here, at construction, not at the first plan.
BAD_VALUES = [
    (dict(learning_rate=-1e-3), V, "learning_rate"),  # 0 is allowed (rl_zoo3.enjoy loads with it)
    (dict(learning_rate=float("nan")), V, "learning_rate"),
    (dict(learning_rate="1e-3"), T, "learning_rate"),
    (dict(buffer_size=0), V, "buffer_size"),
    (dict(buffer_size=1e6), T, "buffer_size"),
    (dict(learning_starts=-1), V, "learning_starts"),
    (dict(learning_starts=True), T, "learning_starts"),
    (dict(batch_size=0), V, "batch_size"),
    (dict(batch_size=32.0), T, "batch_size"),
    (dict(n_epochs=0), V, "n_epochs"),
    (dict(n_epochs="5"), T, "n_epochs"),
    (dict(train_freq=0), V, "train_freq"),
    (dict(train_freq=(1, "epoch")), V, "train_freq"),
    (dict(train_freq=(0, "episode")), V, "train_freq"),
    (dict(train_freq=(1, "episode", 2)), V, "train_freq"),
    (dict(train_freq="1"), T, "train_freq"),
    (dict(train_freq=[1.5, "step"]), T, "train_freq"),
    (dict(planner="grid"), V, "planner"),
    (dict(plan_horizon=0), V, "plan_horizon"),
    (dict(plan_horizon=2.5), T, "plan_horizon"),
    (dict(popsize=-3), V, "popsize"),
    (dict(popsize="ten"), T, "popsize"),
    (dict(num_elites=0), V, "num_elites"),
    (dict(num_elites=2.0), T, "num_elites"),
    (dict(num_elites=500), V, "num_elites"),  # more elites than candidates (popsize=400)
    (dict(popsize=8, num_elites=10), V, "num_elites"),
    (dict(cem_iters=0), V, "cem_iters"),
    (dict(cem_iters=None), T, "cem_iters"),
    (dict(cem_alpha=1.5), V, "cem_alpha"),
    (dict(cem_alpha=1.0), V, "cem_alpha"),
    (dict(cem_alpha=-0.1), V, "cem_alpha"),
    (dict(cem_alpha="0.1"), T, "cem_alpha"),
    (dict(cem_epsilon=-1e-3), V, "cem_epsilon"),
    (dict(cem_epsilon=float("inf")), V, "cem_epsilon"),
    (dict(n_particles=0), V, "n_particles"),
    (dict(n_particles=True), T, "n_particles"),
    (dict(n_particles=7), V, "n_particles"),  # TSinf splits the particles over 5 members
    (dict(n_particles=6, propagation="TS1", policy_kwargs=dict(ensemble_size=4)), V, "n_particles"),
    (dict(propagation="TS2"), V, "propagation"),
    (dict(reward_fn="CartPole-v1"), V, "reward_fn"),
    (dict(reward_fn=1), V, "reward_fn"),
    (dict(planning_dtype="float16"), V, "planning_dtype"),
    (dict(planner="icem", popsize=8, num_elites=10), V, "num_elites"),
    (dict(icem_noise_beta=-1.0), V, "icem_noise_beta"),
    (dict(icem_noise_beta=float("inf")), V, "icem_noise_beta"),
    (dict(icem_noise_beta="2"), T, "icem_noise_beta"),
    (dict(icem_population_decay=0.8), V, "icem_population_decay"),  # a population that grows
    (dict(icem_population_decay=None), T, "icem_population_decay"),
    (dict(icem_keep_elites_frac=1.5), V, "icem_keep_elites_frac"),
    (dict(icem_keep_elites_frac=-0.1), V, "icem_keep_elites_frac"),
    (dict(icem_keep_elites_frac="0.3"), T, "icem_keep_elites_frac"),
    (dict(icem_execute="first"), V, "icem_execute"),
    (dict(icem_execute=None), V, "icem_execute"),
    (dict(planning_threads=0), V, "planning_threads"),
    (dict(planning_threads=1.0), T, "planning_threads"),
    (dict(policy_kwargs=dict(planning_threads=1)), V, "planning_threads"),
    (dict(stats_window_size=0), V, "stats_window_size"),
    (dict(stats_window_size=1.0), T, "stats_window_size"),
    (dict(tensorboard_log=1), T, "tensorboard_log"),
    (dict(verbose=-1), V, "verbose"),
    (dict(verbose="1"), T, "verbose"),
    (dict(seed=-1), V, "seed"),
    (dict(seed=0.5), T, "seed"),
    (dict(policy_kwargs="dict(net_arch=[64])"), T, "policy_kwargs"),
    # One home for the planner settings: the PETS argument, never also a policy_kwargs entry (even an equal one).
    (dict(policy_kwargs=dict(popsize=100)), V, "popsize"),
    (dict(n_particles=10, policy_kwargs=dict(n_particles=10)), V, "n_particles"),
    (dict(policy_kwargs=dict(reward_fn="Pendulum-v1")), V, "reward_fn"),
    (dict(policy_kwargs=dict(planning_dtype="bfloat16")), V, "planning_dtype"),
    (dict(policy_kwargs=dict(icem_noise_beta=1.0)), V, "icem_noise_beta"),
    # PETSPolicy's own policy_kwargs.
    (dict(policy_kwargs=dict(model_type="X")), V, "model_type"),
    (dict(policy_kwargs=dict(ensemble_size=0)), V, "ensemble_size"),
    (dict(policy_kwargs=dict(ensemble_size=5.0)), T, "ensemble_size"),
    (dict(policy_kwargs=dict(net_arch=[])), V, "net_arch"),
    (dict(policy_kwargs=dict(net_arch=[64, 0])), V, "net_arch"),
    (dict(policy_kwargs=dict(net_arch="64")), T, "net_arch"),
    (dict(policy_kwargs=dict(net_arch=[64.0])), T, "net_arch"),
    (dict(policy_kwargs=dict(activation_fn="relu")), T, "activation_fn"),
    (dict(policy_kwargs=dict(activation_fn=nn.ReLU())), T, "activation_fn"),  # an instance, not the class
    (dict(policy_kwargs=dict(weight_decay=-1e-4)), V, "weight_decay"),
    (dict(policy_kwargs=dict(weight_decay=float("inf"))), V, "weight_decay"),
    (dict(policy_kwargs=dict(weight_decay="5e-5")), T, "weight_decay"),
    (dict(policy_kwargs=dict(net_arch=[8, 8], weight_decay=[1e-4, 1e-4])), V, "weight_decay"),  # 3 layers
    (dict(policy_kwargs=dict(angle_dims=[3])), V, "angle_dims"),  # Pendulum has 3 observation dimensions
    (dict(policy_kwargs=dict(angle_dims=[0.5])), T, "angle_dims"),
    (dict(policy_kwargs=dict(angle_dims=0)), T, "angle_dims"),
    (dict(policy_kwargs=dict(drop_input_dims=[-1])), V, "drop_input_dims"),
    (dict(policy_kwargs=dict(drop_input_dims=[1], angle_dims=[1])), V, "drop_input_dims"),
    (dict(policy_kwargs=dict(absolute_target_dims=[7])), V, "absolute_target_dims"),
    (dict(policy_kwargs=dict(absolute_target_dims="0")), T, "absolute_target_dims"),
    (dict(policy_kwargs=dict(optimizer_class="Adam")), T, "optimizer_class"),
    (dict(policy_kwargs=dict(optimizer_class=nn.Linear)), T, "optimizer_class"),
    (dict(policy_kwargs=dict(optimizer_kwargs=[("eps", 1e-8)])), T, "optimizer_kwargs"),
    (dict(policy_kwargs=dict(optimizer_kwargs=dict(lr=0.1))), V, "optimizer_kwargs"),
]


@pytest.mark.parametrize(
    "kwargs, error, parameter", BAD_VALUES, ids=[f"{parameter}-{i}" for i, (_, _, parameter) in enumerate(BAD_VALUES)]
)
def test_bad_hyperparameters_fail_at_construction(kwargs: dict, error: type[HyperparameterError], parameter: str) -> None:
    check_refused(lambda: PETS("MlpPolicy", "Pendulum-v1", **kwargs), error, parameter)


def test_random_shooting_ignores_num_elites_above_popsize() -> None:
    model = PETS("MlpPolicy", "Pendulum-v1", planner="random", popsize=8, num_elites=40, policy_kwargs=dict(net_arch=[8]))
    assert model.policy.make_trajectory_optimizer().popsize == 8


def test_policy_checks_its_arguments_when_built_alone() -> None:
    box = spaces.Box(-1.0, 1.0, (3,))
    with pytest.raises(HyperparameterValueError, match=names("n_particles")) as excinfo:
        PETSPolicy(
            box, spaces.Box(-1.0, 1.0, (1,)), lambda _: 1e-3, net_arch=[8], planner_settings=PlannerSettings(n_particles=7)
        )
    assert str(excinfo.value).startswith("PETSPolicy: ")
    with pytest.raises(HyperparameterValueError, match=names("reward_fn")):
        PETSPolicy(box, spaces.Box(-1.0, 1.0, (1,)), lambda _: 1e-3, net_arch=[8], reward_fn="auto")  # PETS resolves it
    with pytest.raises(ValueError, match="needs finite action bounds"):
        PETSPolicy(box, spaces.Box(-np.inf, np.inf, (1,)), lambda _: 1e-3, net_arch=[8])


def test_planner_settings_have_one_home(tmp_path) -> None:
    model = PETS("MlpPolicy", short_env(), reward_fn="auto", seed=0, **TINY)
    # The policy plans with exactly the PETS arguments, which it gets by name as one PlannerSettings; the defaults of
    # a policy built alone are PETS's.
    assert model.policy.reward_fn == model.reward_fn
    assert dataclasses.asdict(model.policy.planner_settings) == {
        name: getattr(model, name) for name in PlannerSettings.names()
    }
    pets = inspect.signature(PETS).parameters
    assert dataclasses.asdict(PlannerSettings()) == {name: pets[name].default for name in PlannerSettings.names()}
    assert "planner_settings" not in pets and not set(PlannerSettings.names()) & set(inspect.signature(PETSPolicy).parameters)
    # A planner setting in policy_kwargs is refused, named, whichever way it is spelled.
    for policy_kwargs in (dict(plan_horizon=5), dict(planner_settings=PlannerSettings(plan_horizon=5))):
        with pytest.raises(HyperparameterValueError, match=names(next(iter(policy_kwargs)))):
            PETS("MlpPolicy", short_env(), policy_kwargs=policy_kwargs)
    with pytest.raises(HyperparameterTypeError, match=names("planner_settings")):
        PETSPolicy(spaces.Box(-1.0, 1.0, (3,)), spaces.Box(-1.0, 1.0, (1,)), lambda _: 1e-3, planner_settings=dict(popsize=3))
    # `load(path, **kwargs)` (rl-zoo3's --trained-agent) is checked, and what it changes reaches the planner.
    model.learn(25)  # a training round and some planning: the saved warm starts have a horizon of 3
    model.save(tmp_path / "pets.zip")
    with pytest.raises(HyperparameterValueError, match=names("popsize")):
        PETS.load(tmp_path / "pets.zip", popsize=-3)
    with pytest.raises(HyperparameterValueError, match=names("num_elites")):
        PETS.load(tmp_path / "pets.zip", popsize=1)  # below num_elites=2
    loaded = PETS.load(tmp_path / "pets.zip", env=short_env(), plan_horizon=5, popsize=12)
    assert (loaded.policy.planner_settings.plan_horizon, loaded.policy.planner_settings.popsize) == (5, 12)
    loaded.learn(5, reset_num_timesteps=False)  # the warm start of the old horizon is replaced, not used
    assert loaded._rollout_warm_start.shape == (1, 5, 1)


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


def test_nan_in_stored_data_raises_before_the_step() -> None:
    model = PETS("MlpPolicy", short_env(), reward_fn="auto", **TINY)
    model.learn(20)
    assert model.replay_buffer is not None
    model.replay_buffer._observations[3, 0] = np.nan  # behind the buffer's back: only the loss check can see it
    before = model_tensors(model)
    with pytest.raises(ValueError, match="The PETS dynamics model loss is NaN or inf"):
        model.train()
    weights = {key: value for key, value in before.items() if "input_normalizer" not in key}  # refit on the NaN data
    assert all(th.equal(value, model_tensors(model)[key]) for key, value in weights.items())


class SnapshotAt(BaseCallback):
    """
    Takes ``model_tensors`` at one step: after the action was planned and the environment stepped, before the step's
    data enter the buffer.

    :param step: The step (``num_timesteps``).
    :param tensors: Filled with the tensors.
    """

    def __init__(self, step: int, tensors: dict) -> None:
        super().__init__()
        self.step, self.tensors = step, tensors

    def _on_step(self) -> bool:
        if self.num_timesteps == self.step:
            self.tensors.update(model_tensors(self.model))
        return True


@pytest.mark.parametrize("what", ["observation", "reward"])
def test_non_finite_environment_data_never_reaches_the_model(what: str, tmp_path) -> None:
    # Step 30 is planned with a trained model (the first training round is at step 20).
    env = short_env(lambda: NonFiniteAt(gym.make("Pendulum-v1", max_episode_steps=20), step=30, what=what))
    model = PETS("MlpPolicy", env, seed=0, **TINY)
    before: dict = {}
    match = rf"PETS: the {what} from the environment is NaN or inf"
    check_weights_survive(model, lambda: model.learn(60, callback=SnapshotAt(30, before)), match, before, tmp_path)
    assert model.n_training_rounds == 1 and model.replay_buffer is not None and model.replay_buffer.size() == 29


def test_non_finite_observation_is_never_planned_with() -> None:
    model = PETS("MlpPolicy", "Pendulum-v1", reward_fn="auto", **TINY)
    with pytest.raises(ValueError, match="PETS: the observation from the environment is NaN or inf"):
        model.predict(np.array([1.0, np.nan, 0.0], dtype=np.float32))


@pytest.mark.parametrize("bad", ["loss", "gradient"])
def test_non_finite_loss_keeps_the_last_finite_weights(bad: str, monkeypatch, tmp_path) -> None:
    model = PETS("MlpPolicy", short_env(), reward_fn="auto", seed=0, **TINY)
    dynamics = model.policy.dynamics
    loss_fn = dynamics.loss
    calls, before = [0], {}

    def loss_going_bad_at_third_call(inputs: th.Tensor, targets: th.Tensor, terminations: th.Tensor) -> th.Tensor:
        # Calls 1 and 2: the round at step 20 (20 transitions, one minibatch) and the first minibatch of the round at
        # step 40; the third, bad one comes after a finite update of the same round.
        loss = loss_fn(inputs, targets, terminations)
        calls[0] += 1
        if calls[0] != 3:
            return loss
        before.update(model_tensors(model))
        if bad == "loss":
            return loss * float("nan")
        # A finite value with a NaN gradient: d sqrt(x) / dx is infinite at 0, times the 0 that x is multiplied by.
        return loss + th.sqrt(0.0 * dynamics.network.output_layer.weight.sum())

    monkeypatch.setattr(dynamics, "loss", loss_going_bad_at_third_call)
    match = "The PETS dynamics model loss is NaN or inf" if bad == "loss" else "gradient of the PETS dynamics model loss"
    check_weights_survive(model, lambda: model.learn(60), match, before, tmp_path)
    assert calls[0] == 3


@pytest.mark.parametrize("train_freq, planner", [((1, "episode"), "cem"), (7, "cem"), ((1, "episode"), "icem")])
def test_exact_resume(train_freq: Any, planner: str, tmp_path) -> None:
    """
    Both halves plan and train; the split at step 30 falls mid-episode and, with train_freq=7, between two rounds. With
    iCEM the shifted elites carried from step to step are saved with the warm start.
    """

    def make_model() -> PETS:
        return PETS("MlpPolicy", short_env(), train_freq=train_freq, planner=planner, seed=0, **TINY)

    check_exact_resume(make_model, 30, tmp_path)


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
        policy.planner_settings = dataclasses.replace(policy.planner_settings, planning_dtype=dtype)
        th.manual_seed(0)
        with th.no_grad(), policy.dynamics.network.inference_weights(policy.planning_weights()):
            values[dtype] = policy.evaluate_action_sequences(obs, candidates)[0]
    ranks32 = values["float32"].argsort().argsort().float()
    ranks16 = values["bfloat16"].argsort().argsort().float()
    rank_correlation = th.corrcoef(th.stack([ranks32, ranks16]))[0, 1]
    assert float(rank_correlation) > 0.95
    assert values["float32"].dtype == values["bfloat16"].dtype == th.float32


@pytest.mark.slow
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


def test_icem_plans_and_saves_its_shifted_elites(tmp_path) -> None:
    model = PETS("MlpPolicy", short_env(), reward_fn="auto", planner="icem", icem_keep_elites_frac=1.0, seed=0, **TINY)
    model.learn(25)  # 5 planned steps after the first round
    # ceil(1.0 * 2) elites of horizon 3, shifted for the next step.
    assert model._rollout_warm_elites.shape == (1, 2, 3, 1)
    model.predict(np.zeros((1, 3), dtype=np.float32))
    assert model.policy.plan_warm_elites.shape == (1, 2, 3, 1)
    model.save(tmp_path / "icem.zip")
    loaded = PETS.load(tmp_path / "icem.zip")
    assert th.equal(loaded._rollout_warm_elites, model._rollout_warm_elites)
    assert th.equal(loaded.policy.plan_warm_elites, model.policy.plan_warm_elites)
    assert (loaded.policy.planner_settings.planner, loaded.policy.planner_settings.icem_keep_elites_frac) == ("icem", 1.0)
    # A new episode replaces that environment's carried elites by the bound midpoint, as its warm start.
    reset = model.policy.reset_warm_elites(model.policy.plan_warm_elites, np.array([True]))
    assert bool((reset == 0.0).all())
    # Elites that do not fit the settings (e.g. after load(path, icem_keep_elites_frac=...)) are not used.
    changed = PETS.load(tmp_path / "icem.zip", env=short_env(), icem_keep_elites_frac=0.5)
    changed.learn(3, reset_num_timesteps=False)
    assert changed._rollout_warm_elites.shape == (1, 1, 3, 1)


def test_bfloat16_weight_copy_is_cast_once_per_training_round(tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the CPU may lack bfloat16 units
        model = PETS("MlpPolicy", short_env(), reward_fn="auto", planning_dtype="bfloat16", seed=0, **TINY)
        policy = model.policy
        network = policy.dynamics.network
        model.learn(25)  # one training round at step 20, then 5 planned steps: one cast
        assert policy.n_planning_weight_casts == 1
        for _ in range(3):
            model.predict(np.zeros((1, 3), dtype=np.float32))
        assert policy.n_planning_weight_casts == 1  # no cast per call

        def copy_matches_weights() -> bool:
            expected = network.cast_weights(th.bfloat16)
            copy = policy.planning_weights()
            assert copy is not None and all(w.dtype == th.bfloat16 for w, _ in copy)
            return all(th.equal(a, b) for pair, other in zip(copy, expected) for a, b in zip(pair, other))

        assert copy_matches_weights()
        model.train()  # new weights: the next plan refreshes the copy, once
        model.predict(np.zeros((1, 3), dtype=np.float32))
        model.predict(np.zeros((1, 3), dtype=np.float32))
        assert policy.n_planning_weight_casts == 2 and copy_matches_weights()
        model.save(tmp_path / "bf16.zip")
        loaded = PETS.load(tmp_path / "bf16.zip")
        loaded.predict(np.zeros((1, 3), dtype=np.float32))
        assert loaded.policy.n_planning_weight_casts == 1
        assert all(th.equal(a, b) for a, b in zip(loaded.policy.planning_weights()[0], policy.planning_weights()[0]))
        # Changing the weights in place (what load_state_dict does) refreshes the copy too.
        with th.no_grad():
            network.output_layer.bias.add_(1.0)
        assert copy_matches_weights() and policy.n_planning_weight_casts == 3


def test_bfloat16_decisions_match_float32() -> None:
    model = PETS("MlpPolicy", make_vec_env("Pendulum-v1", seed=0), reward_fn="auto", seed=0, **{**TINY, "n_epochs": 5})
    model.learn(200)
    policy = model.policy
    obs = th.as_tensor(np.stack([model.observation_space.sample() for _ in range(16)]))
    actions = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dtype in ("float32", "bfloat16"):
            policy.planner_settings = dataclasses.replace(policy.planner_settings, planning_dtype=dtype)
            th.manual_seed(0)
            actions[dtype] = policy.plan(obs).actions
    # Same noise, nearly the same values: the same elites almost everywhere, so nearly the same actions (range 4).
    difference = (actions["float32"] - actions["bfloat16"]).abs()
    assert float(difference.median()) < 0.05 and float(difference.mean()) < 0.2, difference.flatten()


class Collect(KVWriter):
    """Keeps every dump of the logger."""

    def __init__(self) -> None:
        self.dumps: list[dict[str, Any]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        self.dumps.append(dict(key_values))


@pytest.mark.parametrize("planner", ["cem", "icem", "random"])
def test_planner_statistics_are_logged(planner: str, monkeypatch) -> None:
    model = PETS("MlpPolicy", short_env(), planner=planner, seed=0, **TINY)  # learned reward: 5 members
    writer = Collect()
    model.set_logger(Logger(None, [writer]))
    forward_passes = [0]
    predict = model.policy.dynamics.predict

    def counting(*args: Any, **kwargs: Any) -> Any:
        forward_passes[0] += 1
        return predict(*args, **kwargs)

    monkeypatch.setattr(model.policy.dynamics, "predict", counting)
    model.learn(41)  # rounds at steps 20 and 40; the dump at 40 averages the 20 planned steps in between
    stats = writer.dumps[-1]
    assert 0.0 < stats["planner/seconds_per_action"] < 60.0
    assert ("planner/final_std" in stats) == (planner != "random")
    if planner != "random":
        assert 0.0 < stats["planner/final_std"] < 1.0  # Pendulum's range is 4: the initial std is 1
    assert np.isfinite(stats["planner/elite_return"]) and stats["planner/ensemble_disagreement"] > 0.0
    # 21 planned steps: the planner's passes (one per step of the horizon and iteration) and the disagreement's (one
    # per step of the horizon, for one state); plus one pass per training round (its prediction error).
    optimizer = model.policy.make_trajectory_optimizer()
    iterations = 1 if planner == "random" else optimizer.max_iters  # type: ignore[attr-defined]
    assert forward_passes[0] == 21 * (iterations * 3 + 3) + 2


def test_planning_flops_estimate_matches_a_hand_count() -> None:
    from zoo_plugins import samplers

    # [64, 64] members on 17 + 6 inputs and 2 * (17 + 1) + 1 = 37 outputs: 2 * (23*64 + 64*64 + 64*37) = 15872 FLOPs
    # per member evaluation. DS: 10 particles x 5 members each; the CEM: 5 iterations x 200 candidates; horizon 15.
    assert samplers.candidates_per_action("cem", 200, 20, 5, 1.25, 0.3) == 1000
    flops = samplers.planning_flops_per_action([64, 64], 17, 6, 5, 10, "DS", 1000, 15)
    assert flops == 15872 * 50 * 1000 * 15
    assert samplers.planning_flops_per_action([64, 64], 17, 6, 5, 10, "TSinf", 1000, 15) == 15872 * 10 * 1000 * 15
    assert samplers.planning_flops_per_action([64, 64], 17, 6, 5, 10, "E", 1000, 15) == 15872 * 5 * 1000 * 15
    # iCEM, popsize 100, 10 elites, 3 iterations, decay 1.25, 3 kept: 100 + 80 + 64 fresh, 3 x 3 kept, the mean.
    assert samplers.candidates_per_action("icem", 100, 10, 3, 1.25, 0.3) == 100 + 80 + 64 + 9 + 1
    assert samplers.candidates_per_action("random", 300, 30, 5, 1.25, 0.3) == 300


def test_sampled_pets_configurations_fit_the_planning_budget(monkeypatch) -> None:
    optuna = pytest.importorskip("optuna")
    from zoo_plugins import samplers

    monkeypatch.setattr(samplers, "planning_budget", lambda: samplers.PETS_FLOPS_BUDGET)  # as on a CPU
    budget = samplers.PETS_FLOPS_BUDGET
    assert budget is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    n_shrunk = 0
    for _ in range(200):
        trial = study.ask()
        kwargs = samplers.sample_pets_params(trial, n_actions=1, n_envs=1, additional_args={})
        flops = samplers._flops_of(kwargs, kwargs["policy_kwargs"]["net_arch"])
        assert flops <= budget and trial.user_attrs["planning_flops_per_action"] == flops
        assert samplers.convert_pets_params(trial.params) == kwargs  # --trial-id rebuilds what ran
        assert 2 <= kwargs["num_elites"] <= kwargs["popsize"] and kwargs["n_particles"] % samplers.ENSEMBLE_SIZE == 0
        shrunk = trial.user_attrs.get("planning_budget_shrunk", {})
        for name, (sampled, used) in shrunk.items():
            assert trial.params[name] == sampled and kwargs[name] == used < sampled
        n_shrunk += bool(shrunk)
        study.tell(trial, 0.0)
    assert 0 < n_shrunk < 200  # the bound bites on part of the space only
    # No bound where there is no budget (CUDA, or a user's None).
    big = {"net_arch": "large", "popsize": 500, "n_particles": 40, "plan_horizon": 30, "propagation": "DS"}
    monkeypatch.setattr(samplers, "planning_budget", lambda: None)
    assert samplers.convert_pets_params(big)["popsize"] == 500


def test_planning_threads_apply_while_planning_only(monkeypatch) -> None:
    model = PETS("MlpPolicy", "Pendulum-v1", reward_fn="auto", planning_threads=1, **TINY)
    threads_before = th.get_num_threads()
    seen = []
    evaluate = model.policy.evaluate_action_sequences

    def recording(obs: th.Tensor, candidates: th.Tensor) -> th.Tensor:
        seen.append(th.get_num_threads())
        return evaluate(obs, candidates)

    monkeypatch.setattr(model.policy, "evaluate_action_sequences", recording)
    model.predict(np.zeros((1, 3), dtype=np.float32))
    assert seen and set(seen) == {1} and th.get_num_threads() == threads_before
