"""Save/load round-trips exactly: networks, input statistics, log-variance bounds, optimiser and planner state."""

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch as th
from frame_envs import RandomFrames
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, SimpleMultiObsEnv

from sb3_bayes import DVRL, PETS, PSDRL
from sb3_bayes.common.policies import constructor_arguments
from sb3_bayes.pets.policies import PETSPolicy, PlannerSettings
from sb3_bayes.psdrl.policies import PSDRLPolicy


def make_env(n_envs: int = 1):
    return make_vec_env("Pendulum-v1", n_envs=n_envs, seed=0, env_kwargs=dict(max_episode_steps=20))


@pytest.fixture(scope="module")
def trained_pets() -> PETS:
    model = PETS(
        "MlpPolicy",
        make_env(n_envs=2),
        reward_fn="auto",
        plan_horizon=4,
        popsize=10,
        num_elites=3,
        cem_iters=2,
        n_particles=5,
        n_epochs=2,
        seed=1,
        policy_kwargs=dict(net_arch=[16, 16], weight_decay=[1e-4, 2e-4, 3e-4]),
    )
    model.learn(100)
    model.predict(model.env.reset())  # gives the policy's own planner a warm start to save
    return model


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert th.equal(a[key], b[key]), key


def test_save_load_exact(trained_pets: PETS, tmp_path) -> None:
    model = trained_pets
    path = tmp_path / "pets.zip"
    model.save(path)
    loaded = PETS.load(path, env=make_env(n_envs=2))
    # Every posterior / model statistic: ensemble weights, learned log-variance bounds, input standardisation.
    assert_same_tensors(model.policy.state_dict(), loaded.policy.state_dict())
    dynamics, loaded_dynamics = model.policy.dynamics, loaded.policy.dynamics
    assert th.equal(dynamics.network.max_logvar, loaded_dynamics.network.max_logvar)
    assert th.equal(dynamics.input_normalizer.mean, loaded_dynamics.input_normalizer.mean)
    assert th.equal(dynamics.input_normalizer.std, loaded_dynamics.input_normalizer.std)
    assert not th.equal(dynamics.input_normalizer.std, th.ones_like(dynamics.input_normalizer.std))
    # Optimiser moments, planner states and counters.
    for state, loaded_state in zip(model.policy.optimizer.state.values(), loaded.policy.optimizer.state.values()):
        assert_same_tensors(state, loaded_state)
    assert th.equal(model.policy.plan_warm_start, loaded.policy.plan_warm_start)
    assert th.equal(model._rollout_warm_start, loaded._rollout_warm_start)
    assert loaded.n_training_rounds == model.n_training_rounds
    assert loaded.policy.weight_decay == [1e-4, 2e-4, 3e-4]
    assert loaded.reward_fn == "Pendulum-v1" and loaded.num_timesteps == model.num_timesteps
    # Identical predictions for identical random streams.
    obs = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, -1.0]], dtype=np.float32)
    th.manual_seed(7)
    expected, _ = model.predict(obs)
    th.manual_seed(7)
    actual, _ = loaded.predict(obs)
    np.testing.assert_array_equal(expected, actual)
    # Training continues from the loaded state.
    loaded.learn(20, reset_num_timesteps=False)


def test_load_without_env_predicts(trained_pets: PETS, tmp_path) -> None:
    trained_pets.save(tmp_path / "pets")
    loaded = PETS.load(tmp_path / "pets")
    assert loaded.replay_buffer is None  # allocated lazily: `rl_zoo3.enjoy` loads models without data
    th.manual_seed(3)
    action, _ = loaded.predict(np.zeros(3, dtype=np.float32))
    assert action.shape == (1,)


def test_policy_save_load(trained_pets: PETS, tmp_path) -> None:
    trained_pets.policy.save(tmp_path / "policy.pth")
    policy = type(trained_pets.policy).load(tmp_path / "policy.pth")
    assert_same_tensors(trained_pets.policy.state_dict(), policy.state_dict())


def test_policy_saved_with_flat_planner_arguments_loads(trained_pets: PETS, tmp_path) -> None:
    """A ``PETSPolicy`` saved when every planner setting was its own argument loads with the same settings and weights."""
    policy = trained_pets.policy
    policy.save(tmp_path / "policy.pth")
    saved = th.load(tmp_path / "policy.pth", weights_only=False)
    settings = saved["data"].pop("planner_settings")
    saved["data"].update(dataclasses.asdict(settings))  # the arguments as the policy took them before PlannerSettings
    th.save(saved, tmp_path / "flat.pth")
    loaded = PETSPolicy.load(tmp_path / "flat.pth")
    assert loaded.planner_settings == policy.planner_settings and loaded.planner_settings.popsize == 10
    assert_same_tensors(policy.state_dict(), loaded.state_dict())
    obs = th.as_tensor(np.array([[1.0, 0.0, 0.5]], dtype=np.float32))
    th.manual_seed(5)
    expected = policy._predict(obs, deterministic=True)
    th.manual_seed(5)
    np.testing.assert_array_equal(expected.numpy(), loaded._predict(obs, deterministic=True).numpy())
    # Present-day data passes unchanged; data holding both forms is refused.
    current = th.load(tmp_path / "policy.pth", weights_only=False)["data"]
    assert PlannerSettings.fold_flat_arguments(current) is current
    with pytest.raises(ValueError, match="both planner_settings and"):
        PlannerSettings.fold_flat_arguments({**current, "popsize": 10})


@pytest.mark.parametrize(
    "algo_class, env_id, policy_kwargs, algo_kwargs",
    [
        (PETS, "Pendulum-v1", dict(net_arch=[8], ensemble_size=4, optimizer_kwargs=dict(eps=1e-6)), {}),
        (PSDRL, "CartPole-v1", dict(latent_dim=4, gru_dim=4, prior_features=8, optimizer_kwargs=dict(eps=1e-6)), {}),
        # DVRL builds its RMSprop settings from its own arguments.
        (DVRL, "CartPole-v1", dict(h_dim=8, z_dim=2, encoder_sizes=(8,)), dict(rms_prop_eps=1e-6)),
    ],
)
def test_standalone_policy_saves_every_argument(
    algo_class: type, env_id: str, policy_kwargs: dict, algo_kwargs: dict, tmp_path
) -> None:
    """``policy.save`` / ``Policy.load`` rebuild the policy from its whole signature, optimiser settings included."""
    model = algo_class("MlpPolicy", env_id, policy_kwargs=policy_kwargs, seed=0, **algo_kwargs)
    model.policy.save(tmp_path / "policy.pth")
    policy = type(model.policy).load(tmp_path / "policy.pth")
    saved = model.policy._get_constructor_parameters()
    for name, value in policy_kwargs.items():
        assert saved[name] == value and getattr(policy, name) == value, name
    assert policy.optimizer_kwargs == model.policy.optimizer_kwargs and policy.optimizer.defaults["eps"] == 1e-6
    assert_same_tensors(model.policy.state_dict(), policy.state_dict())


def test_constructor_arguments_names_an_argument_not_kept() -> None:
    """A policy that does not keep an argument under its own name fails at its first save, naming the argument."""

    class ForgetfulPolicy(PSDRLPolicy):
        def __init__(self, *args: Any, forgotten_setting: int = 3, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

        def _get_constructor_parameters(self) -> dict[str, Any]:
            return constructor_arguments(self, ForgetfulPolicy, super()._get_constructor_parameters())

    model = PSDRL(ForgetfulPolicy, "CartPole-v1", policy_kwargs=dict(latent_dim=4, gru_dim=4), seed=0)
    with pytest.raises(AttributeError, match="forgotten_setting"):
        model.policy._get_constructor_parameters()


def test_replay_buffer_round_trip(trained_pets: PETS, tmp_path) -> None:
    trained_pets.save_replay_buffer(tmp_path / "buffer.pkl")
    trained_pets.save(tmp_path / "for_buffer.zip")
    loaded = PETS.load(tmp_path / "for_buffer.zip")
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    assert loaded.replay_buffer is not None and trained_pets.replay_buffer is not None
    for ours, theirs in zip(trained_pets.replay_buffer.all(), loaded.replay_buffer.all()):
        np.testing.assert_array_equal(ours, theirs)


def psdrl_cartpole() -> tuple[str, Any, dict[str, Any]]:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    kwargs = dict(batch_size=8, sequence_length=10, warmup_freq=20, value_batch_size=64)
    policy_kwargs = dict(latent_dim=8, gru_dim=8, encoder_hidden_dim=16, ridge=10.0, reward_prior_scale=0.5)
    return "MlpPolicy", env, {**kwargs, "policy_kwargs": policy_kwargs}


def psdrl_frames() -> tuple[str, Any, dict[str, Any]]:
    env = make_vec_env(RandomFrames, n_envs=2, seed=0)
    kwargs = dict(batch_size=2, sequence_length=4, warmup_freq=8, value_batch_size=16)
    policy_kwargs = dict(cnn_depth=4, gru_dim=8, transition_hidden_dim=16, terminal_hidden_dim=16, value_hidden_dim=16)
    return "CnnPolicy", env, {**kwargs, "policy_kwargs": {**policy_kwargs, "ridge": 10.0}}


def psdrl_random_feature_prior() -> tuple[str, Any, dict[str, Any]]:
    """The DeepSea settings' options: the random-feature prior, the state-action terminal model, distinct weighting."""
    policy, env, kwargs = psdrl_cartpole()
    prior = dict(prior_features=16, prior_lengthscale=0.5, prior_feature_scale=3.0, terminal_input="state_action")
    return policy, env, {**kwargs, "state_weighting": "distinct", "policy_kwargs": {**kwargs["policy_kwargs"], **prior}}


@pytest.mark.parametrize(
    "setup", [psdrl_cartpole, psdrl_frames, psdrl_random_feature_prior], ids=["MlpPolicy", "CnnPolicy", "MlpPolicy-prior"]
)
def test_psdrl_save_load_exact(tmp_path, setup) -> None:
    from sb3_bayes import PSDRL

    th.set_num_threads(1)
    policy, env, kwargs = setup()
    model = PSDRL(policy, env, seed=0, **kwargs)
    model.learn(100 if policy == "MlpPolicy" else 32)
    model.save(tmp_path / "psdrl")
    loaded = PSDRL.load(tmp_path / "psdrl", env=setup()[1])
    # Every network (the convolutional autoencoder for CnnPolicy), the target network, the posterior (mean, Cholesky
    # factor of the precision, prior scales) and the model sample.
    assert_same_tensors(model.policy.state_dict(), loaded.policy.state_dict())
    if policy == "CnnPolicy":
        assert any(key.startswith("autoencoder.encoder.0.") for key in model.policy.state_dict())  # the convolutions
    if model.policy.prior_kernel is not None:  # the random-feature prior's draw
        assert loaded.policy.prior_kernel is not None and loaded.policy.prior_feature_scale == 3.0
        assert th.equal(model.policy.prior_kernel.projection, loaded.policy.prior_kernel.projection)
        assert th.equal(model.policy.prior_kernel.phase, loaded.policy.prior_kernel.phase)
        assert loaded.policy.terminal_input == "state_action" and loaded.state_weighting == "distinct"
    posterior, loaded_posterior = model.policy.posterior, loaded.policy.posterior
    assert th.equal(posterior.mean, loaded_posterior.mean) and posterior.mean.abs().sum() > 0
    assert th.equal(posterior.precision_cholesky, loaded_posterior.precision_cholesky)
    assert th.equal(model.policy.sampled_weight, loaded.policy.sampled_weight)
    for name in ("autoencoder_optimizer", "model_optimizer", "value_optimizer"):
        ours, theirs = getattr(model.policy, name).state.values(), getattr(loaded.policy, name).state.values()
        assert len(ours) == len(theirs) > 0
        for state, loaded_state in zip(ours, theirs):
            assert_same_tensors(state, loaded_state)
    assert th.equal(model._last_hidden, loaded._last_hidden)
    assert loaded._rng.bit_generator.state == model._rng.bit_generator.state  # the replay-sampling stream resumes
    assert loaded.n_training_rounds == model.n_training_rounds >= 2 and loaded.policy.ridge == 10.0
    obs = model.env.reset()
    assert isinstance(obs, np.ndarray)
    state = (np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32),)
    th.manual_seed(5)
    expected, expected_state = model.predict(obs, state=state)
    th.manual_seed(5)
    actual, actual_state = loaded.predict(obs, state=state)
    assert expected_state is not None and actual_state is not None
    np.testing.assert_array_equal(expected, actual)
    np.testing.assert_array_equal(expected_state[0], actual_state[0])
    loaded.learn(16, reset_num_timesteps=False)


def assert_bayes_ddpg_round_trip(model, loaded, n_envs: int = 2) -> None:
    """Every posterior statistic, optimiser state and counter of two BayesianDDPG models is the same, and so are
    their predictions (posterior mean, and held samples with the same redraws)."""
    # Every variational parameter (means, log variances), prior, held sample and its noise, of actor, critics and
    # their targets, and the training environments' held samples (kept apart from predict's).
    state = model.policy.state_dict()
    assert_same_tensors(state, loaded.policy.state_dict())
    assert any(key.startswith("rollout_samples.") for key in state)
    assert loaded.policy.rollout_samples.get()["mu.0.weight_noise"].shape[0] == n_envs  # one per training env
    if model.ewc is not None:
        assert_same_tensors(model.ewc.state_dict(), loaded.ewc.state_dict())
    for name in ("actor", "critic"):
        ours, theirs = getattr(model, name).optimizer.state.values(), getattr(loaded, name).optimizer.state.values()
        assert len(ours) == len(theirs) > 0
        for optimizer_state, loaded_state in zip(ours, theirs):
            assert_same_tensors(optimizer_state, loaded_state)
    assert loaded.kl_weight == model.kl_weight and loaded.consolidation == model.consolidation
    assert loaded._n_updates == model._n_updates and loaded._prior_timesteps == model._prior_timesteps
    assert loaded.num_timesteps == model.num_timesteps
    # Predictions: mean weights, then held Thompson samples (the second environment's redrawn on both sides).
    obs = model.env.reset()
    for deterministic in (True, False):
        th.manual_seed(3)
        expected, _ = model.predict(obs, episode_start=np.array([False, True]), deterministic=deterministic)
        th.manual_seed(3)
        actual, _ = loaded.predict(obs, episode_start=np.array([False, True]), deterministic=deterministic)
        np.testing.assert_array_equal(expected, actual)
    assert_same_tensors(model.policy.state_dict(), loaded.policy.state_dict())  # the same redraw on both sides


@pytest.mark.parametrize("consolidation", ["ewc", "vcl"])
def test_bayes_ddpg_save_load_exact(consolidation: str, tmp_path) -> None:
    from sb3_bayes.bayes_ddpg import BayesianDDPG
    from sb3_bayes.common.bayesian_layers import bayesian_layers

    model = BayesianDDPG(
        "MlpPolicy",
        make_env(n_envs=2),
        learning_starts=20,
        batch_size=16,
        buffer_size=1000,
        consolidation=consolidation,
        ewc_modules=("actor", "critic"),
        seed=0,
        policy_kwargs=dict(net_arch=[16], n_critics=2, prior_std=0.2, posterior_init_log_var=-4.0),
    )
    model.learn(60)
    model.consolidate(n_samples=50)  # EWC Fisher + anchors, or the posterior as the new prior
    model.learn(40, reset_num_timesteps=False)  # moves away from the anchors / prior; held samples per env
    model.predict(model.env.reset(), episode_start=np.array([True, False]))  # predict's own held samples (2)
    model.save(tmp_path / "bayes_ddpg")
    loaded = BayesianDDPG.load(tmp_path / "bayes_ddpg", env=make_env(n_envs=2))
    assert_bayes_ddpg_round_trip(model, loaded)
    assert loaded.policy.n_thompson_samples == 2
    layer, loaded_layer = bayesian_layers(model.actor)[0], bayesian_layers(loaded.actor)[0]
    assert th.equal(layer.weight_noise, loaded_layer.weight_noise) and layer.weight_noise.shape[0] == 2
    if consolidation == "vcl":
        assert th.equal(layer.prior_weight_log_var, loaded_layer.prior_weight_log_var)
        assert not th.allclose(layer.prior_weight_log_var, th.full_like(layer.prior_weight_log_var, 2 * np.log(0.2)))
    else:
        assert model.ewc is not None and loaded.ewc is not None
        assert int(loaded.ewc["critic"].n_consolidations) == 1
        assert float(loaded.ewc["actor"].penalty(loaded.actor).detach()) == pytest.approx(
            float(model.ewc["actor"].penalty(model.actor).detach())
        )
        assert float(model.ewc["actor"].penalty(model.actor).detach()) > 0
    loaded.learn(20, reset_num_timesteps=False)


@pytest.mark.parametrize("policy, consolidation", [("CnnPolicy", "ewc"), ("MultiInputPolicy", "vcl")])
def test_bayes_ddpg_cnn_and_multi_input_save_load_exact(policy: str, consolidation: str, tmp_path) -> None:
    from sb3_bayes.bayes_ddpg import BayesianDDPG

    th.set_num_threads(1)

    def env():
        if policy == "CnnPolicy":
            image_kwargs = dict(screen_height=40, screen_width=40, n_channels=1, discrete=False)
            return make_vec_env(FakeImageEnv, n_envs=2, seed=0, env_kwargs=image_kwargs)
        return make_vec_env(SimpleMultiObsEnv, n_envs=2, seed=0, env_kwargs=dict(random_start=False, discrete_actions=False))

    extractor_kwargs = dict(features_dim=16) if policy == "CnnPolicy" else dict(cnn_output_dim=16)
    policy_kwargs = dict(net_arch=[8], features_extractor_kwargs=extractor_kwargs, posterior_init_log_var=-4.0)
    model = BayesianDDPG(policy, env(), learning_starts=20, batch_size=16, buffer_size=200, consolidation=consolidation,
                         seed=0, policy_kwargs=policy_kwargs)  # fmt: skip
    model.learn(40)
    model.consolidate(n_samples=16)
    model.learn(20, reset_num_timesteps=False)
    model.save(tmp_path / "bayes_ddpg")
    loaded = BayesianDDPG.load(tmp_path / "bayes_ddpg", env=env())
    assert_bayes_ddpg_round_trip(model, loaded)
    # The features extractor (convolutions; for Dict observations a CNN per image key) is part of the state.
    assert any(key.startswith("actor.features_extractor.") for key in model.policy.state_dict())
    loaded.learn(20, reset_num_timesteps=False)


def test_bayes_ddpg_load_without_env(tmp_path) -> None:
    from sb3_bayes.bayes_ddpg import BayesianDDPG

    model = BayesianDDPG("MlpPolicy", make_env(n_envs=2), learning_starts=20, batch_size=16, buffer_size=1000, seed=0,
                         policy_kwargs=dict(net_arch=[16], posterior_init_log_var=-4.0))  # fmt: skip
    model.learn(60)
    model.save(tmp_path / "bayes_ddpg")
    # Loading without an environment (rl_zoo3.enjoy) allocates no full-size replay buffer and predicts the same.
    without_env = BayesianDDPG.load(tmp_path / "bayes_ddpg")
    assert without_env.get_env() is None
    assert without_env.replay_buffer is not None and without_env.replay_buffer.buffer_size == 1
    assert_bayes_ddpg_round_trip(model, without_env)  # predicts from the trained model's observations
    without_env.set_env(make_env(n_envs=2))
    without_env.learn(40, reset_num_timesteps=False)  # the real replay buffer is allocated for learning
    assert without_env.replay_buffer.buffer_size == 500 and without_env.replay_buffer.pos == 20


@pytest.mark.parametrize("policy, bounded_action_mean", [("MlpPolicy", False), ("MlpPolicy", True), ("CnnPolicy", False)])
def test_dvrl_save_load_exact(policy: str, bounded_action_mean: bool, tmp_path) -> None:
    from stable_baselines3.common.envs import FakeImageEnv

    from sb3_bayes.dvrl import DVRL

    th.set_num_threads(1)  # small networks: one thread is fastest (as the PETS and PSDRL tests do)

    def env():
        if policy == "CnnPolicy":
            return make_vec_env(FakeImageEnv, n_envs=2, seed=0, env_kwargs=dict(screen_height=36, screen_width=36))
        return make_vec_env("Pendulum-v1", n_envs=2, seed=0)

    extra_kwargs = {"cnn_channels": [4, 8, 4]} if policy == "CnnPolicy" else {"bounded_action_mean": bounded_action_mean}
    policy_kwargs = dict(h_dim=16, z_dim=8, action_encoding=8, **extra_kwargs)
    model = DVRL(policy, env(), n_steps=4, n_particles=3, elbo_coef=0.5, seed=0, policy_kwargs=policy_kwargs)
    model.learn(32)
    model.save(tmp_path / "dvrl")
    loaded = DVRL.load(tmp_path / "dvrl", env=env())
    # Every network (BatchNorm running statistics included) and the RMSprop state.
    assert_same_tensors(model.policy.state_dict(), loaded.policy.state_dict())
    ours, theirs = model.policy.optimizer.state_dict(), loaded.policy.optimizer.state_dict()
    assert len(ours["state"]) == len(theirs["state"]) > 0
    for key in ours["state"]:
        assert_same_tensors(ours["state"][key], theirs["state"][key])
    assert loaded.elbo_coef == 0.5 and loaded.policy.n_particles == 3 and loaded._n_updates == model._n_updates
    assert loaded.policy.bounded_action_mean == bounded_action_mean
    # The same belief (recurrent state) and seed give the same action and next belief.
    obs = model.env.reset()
    _, state = model.predict(obs)
    _, state = model.predict(obs, state=state, episode_start=np.zeros(2, dtype=bool))
    for deterministic in (False, True):
        th.manual_seed(7)
        expected, expected_state = model.predict(obs, state=state, deterministic=deterministic)
        th.manual_seed(7)
        actual, actual_state = loaded.predict(obs, state=state, deterministic=deterministic)
        np.testing.assert_array_equal(expected, actual)
        for a, b in zip(expected_state, actual_state, strict=True):
            np.testing.assert_array_equal(a, b)
    loaded.learn(16, reset_num_timesteps=False)
    # Loading without an environment still predicts.
    without_env = DVRL.load(tmp_path / "dvrl")
    th.manual_seed(7)
    action, _ = without_env.predict(obs, state=state)
    th.manual_seed(7)
    np.testing.assert_array_equal(action, model.predict(obs, state=state)[0])


@pytest.mark.parametrize("head, consolidation", [("bbb", "ewc"), ("bbb", "vcl"), ("blr", "ewc"), ("ensemble", "ewc")])
def test_bayes_dqn_save_load_exact(head: str, consolidation: str, tmp_path) -> None:
    from sb3_bayes.bayes_dqn import BayesianDQN

    def env():
        return make_vec_env("CartPole-v1", n_envs=2, seed=0)

    model = BayesianDQN("MlpPolicy", env(), head=head, consolidation=consolidation, learning_starts=30, batch_size=16,
                        buffer_size=500, posterior_update_freq=40, seed=0, policy_kwargs=dict(net_arch=[16]))  # fmt: skip
    model.learn(100)
    model.consolidate(n_samples=64)
    model.learn(60, reset_num_timesteps=False)
    obs = model.env.reset()
    model.predict(obs, episode_start=np.array([True, False]))  # predict's own held samples differ from the rollouts'
    model.save(tmp_path / "bayes_dqn")
    loaded = BayesianDQN.load(tmp_path / "bayes_dqn", env=env())
    # Both Q-networks (variational means, log-variances, priors, held samples and their noise), the training
    # environments' held samples and, for "blr", the posterior (mean and Cholesky factor of each action's precision).
    state = model.policy.state_dict()
    assert_same_tensors(state, loaded.policy.state_dict())
    assert any(key.startswith("rollout_samples.") for key in state)
    if head == "blr":
        assert th.equal(model.policy.blr_posterior.mean, loaded.policy.blr_posterior.mean)
        assert th.equal(model.policy.blr_posterior.precision_cholesky, loaded.policy.blr_posterior.precision_cholesky)
        assert model.policy.blr_posterior.mean.abs().sum() > 0
        assert loaded.n_posterior_updates == model.n_posterior_updates >= 2
        assert loaded._last_posterior_update == model._last_posterior_update
    elif head == "ensemble":  # the members' fixed random priors, the held members and the bootstrap masks' seed
        assert any(key.startswith("q_net.head.prior.") for key in state) and "q_net.head.head_sample" in state
        assert loaded.bootstrap_seed == model.bootstrap_seed
    else:
        assert any(key.endswith("prior_weight_mean") for key in state) and any(key.endswith("weight_noise") for key in state)
    if consolidation == "ewc":
        assert_same_tensors(model.ewc.state_dict(), loaded.ewc.state_dict())
        assert int(loaded.ewc.n_consolidations) == 1
    assert loaded.n_consolidations == model.n_consolidations == 1
    for ours, theirs in zip(model.policy.optimizer.state.values(), loaded.policy.optimizer.state.values()):
        assert_same_tensors(ours, theirs)
    for deterministic in (False, True):
        th.manual_seed(3)
        expected, _ = model.predict(obs, episode_start=np.array([False, True]), deterministic=deterministic)
        th.manual_seed(3)
        actual, _ = loaded.predict(obs, episode_start=np.array([False, True]), deterministic=deterministic)
        np.testing.assert_array_equal(expected, actual)
    assert_same_tensors(model.policy.state_dict(), loaded.policy.state_dict())  # same resample on both sides
    loaded.learn(40, reset_num_timesteps=False)
    # Loading without an environment (rl_zoo3.enjoy) predicts and allocates no full-size replay buffer.
    without_env = BayesianDQN.load(tmp_path / "bayes_dqn")
    assert without_env.replay_buffer is not None and without_env.replay_buffer.buffer_size == 1
    action, _ = without_env.predict(obs, deterministic=True)
    np.testing.assert_array_equal(action, model.predict(obs, deterministic=True)[0])
    without_env.set_env(env())
    without_env.learn(40, reset_num_timesteps=False)  # the real replay buffer is allocated for learning
    assert without_env.replay_buffer.buffer_size == 250 and without_env.replay_buffer.pos == 20
