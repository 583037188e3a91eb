"""Every algorithm and policy configuration runs through SB3's machinery (mirrors sb3-contrib's test_run.py)."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from frame_envs import RandomFrames
from gymnasium import spaces
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, SimpleMultiObsEnv

import sb3_bayes
from sb3_bayes import PETS

# A planner small enough for a unit test; episodes cut to 20 steps so that planning starts quickly.
TINY_PETS = dict(
    plan_horizon=3,
    popsize=8,
    num_elites=2,
    cem_iters=2,
    n_particles=5,
    n_epochs=1,
    policy_kwargs=dict(net_arch=[16, 16]),
)
SHORT = dict(max_episode_steps=20)


def short_env(env_id: str = "Pendulum-v1", n_envs: int = 1, **kwargs):
    return make_vec_env(env_id, n_envs=n_envs, seed=0, env_kwargs={**SHORT, **kwargs})


def test_every_algorithm_is_exported_at_the_top_level() -> None:
    """``from sb3_bayes import X`` works for every algorithm, as ``from stable_baselines3 import PPO`` does."""
    from stable_baselines3.common.base_class import BaseAlgorithm

    from sb3_bayes.bayes_ddpg import BayesianDDPG
    from sb3_bayes.bayes_dqn import BayesianDQN
    from sb3_bayes.dvrl import DVRL
    from sb3_bayes.psdrl import PSDRL

    exported = {name: getattr(sb3_bayes, name) for name in sb3_bayes.__all__ if name != "__version__"}
    assert exported == {"PETS": PETS, "PSDRL": PSDRL, "DVRL": DVRL, "BayesianDDPG": BayesianDDPG, "BayesianDQN": BayesianDQN}
    assert all(issubclass(algo, BaseAlgorithm) for algo in exported.values())


@pytest.mark.parametrize("model_type", ["D", "P", "DE", "PE"])
def test_pets_model_types(model_type: str) -> None:
    kwargs = {**TINY_PETS, "policy_kwargs": dict(net_arch=[16], model_type=model_type)}
    model = PETS("MlpPolicy", short_env(), reward_fn="auto", seed=0, **kwargs)
    model.learn(60)
    assert model.n_training_rounds >= 2
    assert model.policy.dynamics.ensemble_size == (5 if model_type.endswith("E") else 1)


@pytest.mark.parametrize("propagation", ["E", "DS", "TS1", "TSinf", "MM"])
@pytest.mark.parametrize("planner", ["cem", "random"])
def test_pets_propagation_and_planners(propagation: str, planner: str) -> None:
    model = PETS("MlpPolicy", short_env(), reward_fn="auto", propagation=propagation, planner=planner, seed=0, **TINY_PETS)
    model.learn(50)
    action, _ = model.predict(model.env.reset())
    assert action.shape == (1, 1) and bool(np.all(np.abs(action) <= 2.0))


def test_pets_learned_reward_and_termination() -> None:
    # InvertedPendulum terminates: the learned termination head is trained and used by the planner.
    model = PETS("MlpPolicy", short_env("InvertedPendulum-v5"), seed=0, **TINY_PETS)
    assert model.policy.dynamics.learn_reward and model.policy.dynamics.learn_termination
    model.learn(60)
    assert model.replay_buffer is not None and model.replay_buffer.all().terminations.sum() > 0
    action, _ = model.predict(model.env.reset())
    assert action.shape == (1, 1)


def test_pets_n_envs_progress_bar_and_step_train_freq() -> None:
    model = PETS("MlpPolicy", short_env(n_envs=2), reward_fn="auto", train_freq=10, seed=0, **TINY_PETS)
    model.learn(80, progress_bar=True)
    assert model.num_timesteps == 80
    assert model.n_training_rounds == 4  # every 10 vectorised steps
    assert model.replay_buffer is not None and model.replay_buffer.size() == 80
    assert model._rollout_warm_start.shape == (2, 3, 1)


def test_pets_eval_callback_and_set_env(tmp_path) -> None:
    model = PETS("MlpPolicy", short_env(), reward_fn="auto", seed=0, **TINY_PETS)
    eval_callback = EvalCallback(short_env(), n_eval_episodes=1, eval_freq=30, log_path=str(tmp_path), warn=False)
    model.learn(60, callback=eval_callback)
    assert eval_callback.evaluations_results is not None and len(eval_callback.evaluations_results) == 2
    model.set_env(short_env())
    model.learn(40, reset_num_timesteps=False)
    assert model.num_timesteps == 100


def test_pets_gymnasium_env_instance() -> None:
    model = PETS("MlpPolicy", gym.make("Pendulum-v1", max_episode_steps=20), reward_fn="Pendulum-v1", **TINY_PETS)
    model.learn(30)
    action, _ = model.predict(np.zeros(3, dtype=np.float32))
    assert action.shape == (1,)


PSDRL_TINY = dict(
    batch_size=8,
    sequence_length=10,
    warmup_freq=20,
    value_batch_size=64,
    policy_kwargs=dict(latent_dim=8, gru_dim=8, encoder_hidden_dim=16),
)


@pytest.mark.parametrize("n_envs", [1, 2])
def test_psdrl_mlp_policy_n_envs_and_progress_bar(n_envs: int, tmp_path) -> None:
    from sb3_bayes import PSDRL

    model = PSDRL("MlpPolicy", make_vec_env("CartPole-v1", n_envs=n_envs, seed=0), seed=0, **PSDRL_TINY)
    model.learn(100, progress_bar=True)
    assert model.num_timesteps == 100 and model.n_training_rounds >= 1
    eval_callback = EvalCallback(
        make_vec_env("CartPole-v1", seed=1), n_eval_episodes=2, eval_freq=20, log_path=str(tmp_path), warn=False
    )
    model.learn(40, callback=eval_callback, reset_num_timesteps=False)
    assert eval_callback.evaluations_results is not None and len(eval_callback.evaluations_results) >= 1


PSDRL_CNN_TINY: dict[str, Any] = dict(
    batch_size=2,
    sequence_length=4,
    warmup_freq=8,
    value_batch_size=16,
    policy_kwargs=dict(cnn_depth=4, gru_dim=8, transition_hidden_dim=16, terminal_hidden_dim=16, value_hidden_dim=16),
)


def test_psdrl_cnn_policy_n_envs_and_progress_bar() -> None:
    import torch as th

    from sb3_bayes import PSDRL

    th.set_num_threads(1)
    env = make_vec_env(RandomFrames, n_envs=2, seed=0)
    model = PSDRL("CnnPolicy", env, seed=0, **PSDRL_CNN_TINY)
    assert model.policy.transition.latent_dim == 8 * 4 * 2 * 2  # 4 convolutions of depth 4..32, 2x2 at the end
    model.learn(32, progress_bar=True)
    assert model.num_timesteps == 32 and model.n_training_rounds >= 2  # a round every 8 steps
    assert model.replay_buffer is not None
    assert next(model.replay_buffer.all_episodes()).observations.dtype == np.uint8  # frames stay uint8
    obs = env.reset()
    assert isinstance(obs, np.ndarray)
    action, state = model.predict(obs)
    assert action.shape == (2,) and state is not None and state[0].shape == (2, 8)


DVRL_TINY = dict(
    n_particles=3, n_steps=4, multiplier_backprop_length=2, policy_kwargs=dict(h_dim=16, z_dim=8, action_encoding=8)
)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("n_envs", [1, 3])
def test_dvrl_mlp_policy_n_envs_and_progress_bar(env_id: str, n_envs: int, tmp_path) -> None:
    import torch as th

    from sb3_bayes.dvrl import DVRL

    th.set_num_threads(1)  # small networks: one thread is fastest (as the PETS and PSDRL tests do)
    model = DVRL("MlpPolicy", make_vec_env(env_id, n_envs=n_envs, seed=0), seed=0, **DVRL_TINY)
    model.learn(48, progress_bar=True)
    assert model.num_timesteps == 48 and model._n_updates == 48 // (4 * n_envs)
    # EvalCallback passes the belief and episode starts through predict, as enjoy and evaluate_policy do.
    eval_env = make_vec_env(env_id, seed=1)
    eval_callback = EvalCallback(eval_env, n_eval_episodes=1, eval_freq=8, log_path=str(tmp_path), warn=False)
    model.learn(16 * n_envs, callback=eval_callback, reset_num_timesteps=False)
    assert eval_callback.evaluations_results is not None and len(eval_callback.evaluations_results) >= 1


@pytest.mark.parametrize("discrete", [True, False])
def test_dvrl_cnn_policy_n_envs_and_progress_bar(discrete: bool) -> None:
    import torch as th

    from sb3_bayes.dvrl import DVRL

    th.set_num_threads(1)
    env = make_vec_env(FakeImageEnv, n_envs=2, seed=0, env_kwargs=dict(screen_height=36, screen_width=36, discrete=discrete))
    model = DVRL("CnnPolicy", env, seed=0, **{**DVRL_TINY, "policy_kwargs": dict(h_dim=16, z_dim=8, cnn_channels=[4, 8, 4])})
    model.learn(16, progress_bar=True)
    assert model._n_updates == 2
    # uint8 frames stay uint8 in the buffer (scaled inside the network).
    assert model.rollout_buffer.observations.dtype == th.uint8
    action, state = model.predict(env.reset())
    assert action.shape == (2, *env.action_space.shape) and state[0].shape == (2, 3, 16)


def test_dvrl_rnn_baseline_adam_and_env_instance() -> None:
    from sb3_bayes.dvrl import DVRL

    model = DVRL(
        "MlpPolicy",
        gym.make("CartPole-v1"),
        use_particle_filter=False,
        optimizer="adam",
        normalize_advantage=True,
        seed=0,
        **DVRL_TINY,
    )
    model.learn(16)
    action, state = model.predict(np.zeros(4, dtype=np.float32))
    assert action.shape == () and state[0].shape == (1, 1, 16)


BAYES_DDPG_TINY = dict(learning_starts=20, batch_size=16, buffer_size=1000)


@pytest.mark.parametrize("n_envs", [1, 2])
@pytest.mark.parametrize("policy_kwargs", [dict(net_arch=[16]), dict(net_arch=[16], n_critics=2, bayesian_actor=False)])
def test_bayes_ddpg_mlp_policy_n_envs_and_progress_bar(n_envs: int, policy_kwargs: dict, tmp_path) -> None:
    from sb3_bayes.bayes_ddpg import BayesianDDPG

    model = BayesianDDPG("MlpPolicy", short_env(n_envs=n_envs), seed=0, policy_kwargs=policy_kwargs, **BAYES_DDPG_TINY)
    model.learn(60, progress_bar=True)
    assert model.num_timesteps == 60
    bayesian_actor = policy_kwargs.get("bayesian_actor", True)
    n_training_samples = n_envs if bayesian_actor else 0  # one Thompson sample per env; none for a deterministic actor
    assert len(model.policy.rollout_samples.get().get("mu.0.weight_noise", [])) == n_training_samples
    eval_callback = EvalCallback(
        short_env(n_envs=3), n_eval_episodes=3, eval_freq=20, log_path=str(tmp_path), warn=False, deterministic=False
    )  # Thompson-sampled evaluation with its own held samples
    model.learn(40, callback=eval_callback, reset_num_timesteps=False)
    assert eval_callback.evaluations_results is not None and len(eval_callback.evaluations_results) >= 1
    assert len(model.policy.rollout_samples.get().get("mu.0.weight_noise", [])) == n_training_samples  # untouched
    assert model.policy.n_thompson_samples == (3 if bayesian_actor else 0)  # the evaluation's own set


@pytest.mark.parametrize("policy", ["CnnPolicy", "MultiInputPolicy"])
def test_bayes_ddpg_cnn_and_multi_input_policies_n_envs_and_progress_bar(policy: str) -> None:
    from sb3_bayes.bayes_ddpg import BayesianDDPG

    if policy == "CnnPolicy":
        env_kwargs: dict = dict(screen_height=40, screen_width=40, n_channels=1, discrete=False)
        env = make_vec_env(FakeImageEnv, n_envs=2, seed=0, env_kwargs=env_kwargs)
        extractor_kwargs: dict = dict(features_dim=16)
    else:
        env = make_vec_env(SimpleMultiObsEnv, n_envs=2, seed=0, env_kwargs=dict(random_start=False, discrete_actions=False))
        extractor_kwargs = dict(cnn_output_dim=16)
    policy_kwargs = dict(net_arch=[8], features_extractor_kwargs=extractor_kwargs)
    model = BayesianDDPG(policy, env, seed=0, consolidation="ewc", policy_kwargs=policy_kwargs, **BAYES_DDPG_TINY)
    model.learn(40, progress_bar=True)
    assert model.num_timesteps == 40 and model._n_updates > 0
    assert model.policy.rollout_samples.get()["mu.0.weight_noise"].shape[0] == 2  # one Thompson sample per env
    obs = env.reset()
    assert isinstance(obs, (np.ndarray, dict))
    action, _ = model.predict(obs)
    action_space = env.action_space
    assert isinstance(action_space, spaces.Box)
    assert action.shape == (2, *action_space.shape)
    assert np.all(action >= action_space.low) and np.all(action <= action_space.high)
    model.consolidate(n_samples=16)  # EWC on image and dict observations
    assert model.ewc is not None and int(model.ewc["actor"].n_consolidations) == 1


def test_bayes_ddpg_gymnasium_env_instance_and_set_env() -> None:
    from sb3_bayes.bayes_ddpg import BayesianDDPG

    env = gym.make("Pendulum-v1", max_episode_steps=20)
    model = BayesianDDPG("MlpPolicy", env, seed=0, policy_kwargs=dict(net_arch=[16]), **BAYES_DDPG_TINY)
    model.learn(30)
    action, _ = model.predict(np.zeros(3, dtype=np.float32))
    assert action.shape == (1,)
    model.set_env(short_env(g=4.0))
    model.learn(20, reset_num_timesteps=False)
    assert model.num_timesteps == 50


# ----------------------------------------------------------------------------------------------------- BayesianDQN
BAYES_DQN_TINY = dict(learning_starts=30, batch_size=16, buffer_size=500, train_freq=4, target_update_interval=20)


@pytest.mark.parametrize("head", ["bbb", "blr", "ensemble"])
@pytest.mark.parametrize("n_envs", [1, 2])
def test_bayes_dqn_mlp_policy_heads_n_envs_progress_bar(head: str, n_envs: int, tmp_path) -> None:
    from sb3_bayes.bayes_dqn import BayesianDQN

    model = BayesianDQN("MlpPolicy", make_vec_env("CartPole-v1", n_envs=n_envs, seed=0), head=head, seed=0,
                        posterior_update_freq=20, policy_kwargs=dict(net_arch=[16]), **BAYES_DQN_TINY)  # fmt: skip
    model.learn(100, progress_bar=True)
    assert model.num_timesteps >= 100 and model._n_updates > 0
    held = "head.head_sample" if head == "ensemble" else "head.weight_sample"  # the ensemble holds a member per env
    assert model.policy.rollout_samples.get()[held].shape[0] == n_envs  # one Thompson sample per env
    if head == "blr":
        assert model.n_posterior_updates >= 2
    eval_callback = EvalCallback(
        make_vec_env("CartPole-v1", n_envs=3, seed=1), n_eval_episodes=3, eval_freq=20, log_path=str(tmp_path), warn=False
    )
    eval_callback.deterministic = False  # Thompson-sampled evaluation with its own held samples
    model.learn(60, callback=eval_callback, reset_num_timesteps=False)
    assert eval_callback.evaluations_results is not None and len(eval_callback.evaluations_results) >= 1
    assert model.policy.rollout_samples.get()[held].shape[0] == n_envs  # untouched by evaluation
    action, _ = model.predict(np.zeros(4, dtype=np.float32))
    assert action.shape == ()


@pytest.mark.parametrize("head", ["bbb", "blr", "ensemble"])
def test_bayes_dqn_cnn_policy_n_envs_and_progress_bar(head: str) -> None:
    from sb3_bayes.bayes_dqn import BayesianDQN
    from sb3_bayes.bayes_dqn.policies import NatureCNNTrunk

    env_kwargs = dict(screen_height=40, screen_width=40, n_channels=1, discrete=True)
    env = make_vec_env(FakeImageEnv, n_envs=2, seed=0, env_kwargs=env_kwargs)
    policy_kwargs = dict(n_heads=3) if head == "ensemble" else {}
    model = BayesianDQN("CnnPolicy", env, head=head, seed=0, posterior_window=50, policy_kwargs=policy_kwargs,
                        **BAYES_DQN_TINY)  # fmt: skip
    model.learn(60, progress_bar=True)
    assert model.num_timesteps >= 60 and model._n_updates > 0  # rollouts of train_freq=4 steps x 2 envs
    held = "head.head_sample" if head == "ensemble" else "head.weight_sample"
    assert model.policy.rollout_samples.get()[held].shape[0] == 2  # one Thompson sample per env
    q_net = model.policy.q_net
    if head == "bbb":  # Nature CNN convolutions, then two Bayes-by-backprop layers (512, then the Q-values)
        assert isinstance(q_net.features_extractor, NatureCNNTrunk) and q_net.net_arch == [512]
    elif head == "ensemble":  # shared convolutions, a [512] layer per member; the prior's convolutions frozen
        assert isinstance(q_net.features_extractor, NatureCNNTrunk) and q_net.net_arch == [512]
        assert isinstance(q_net.prior_features_extractor, NatureCNNTrunk)
        assert not list(q_net.prior_features_extractor.parameters())
    else:  # the Nature CNN's 512 features feed BDQN's regression
        assert q_net.feature_dim == 512 and model.policy.blr_posterior.mean.shape == (6, 512)
    action, _ = model.predict(env.observation_space.sample(), deterministic=True)
    assert action.shape == ()


def test_bayes_dqn_continual_set_env_and_consolidate() -> None:
    from sb3_bayes.bayes_dqn import BayesianDQN

    model = BayesianDQN("MlpPolicy", make_vec_env("CartPole-v1", seed=0), consolidation="ewc", seed=0,
                        policy_kwargs=dict(net_arch=[16]), **BAYES_DQN_TINY)  # fmt: skip
    model.learn(80)
    model.consolidate(n_samples=50)
    model.set_env(make_vec_env("CartPole-v1", seed=1, env_kwargs=dict(max_episode_steps=30)))
    model.learn(60, reset_num_timesteps=False)
    assert model.num_timesteps == 140 and model.logger.name_to_value["train/ewc_penalty"] > 0
