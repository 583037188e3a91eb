"""BayesianDDPG: the critic sees the action taken, KL per data set, posterior sampling, EWC/VCL, hyperparameter checks,
NaN-safe training, exact resume, learning."""

import inspect

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from reliability import NonFiniteAt, check_exact_resume, check_refused, check_weights_survive, model_tensors, names
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_bayes.bayes_ddpg import BayesianDDPG
from sb3_bayes.bayes_ddpg.policies import BayesianActor, BayesianContinuousCritic, BayesianDDPGPolicy
from sb3_bayes.common.base_class import AlgorithmSettings
from sb3_bayes.common.bayesian_layers import bayesian_layers, kl_divergence, weight_mode

TINY = dict(learning_starts=20, batch_size=16, policy_kwargs=dict(net_arch=[16, 16]))


def short_env(n_envs: int = 1, max_episode_steps: int = 20, **kwargs):
    return make_vec_env("Pendulum-v1", n_envs=n_envs, seed=0, env_kwargs=dict(max_episode_steps=max_episode_steps, **kwargs))


def test_networks_are_bayesian_and_ddpg_defaults():
    model = BayesianDDPG("MlpPolicy", short_env(), seed=0, **TINY)
    assert isinstance(model.actor, BayesianActor) and isinstance(model.critic, BayesianContinuousCritic)
    assert model.critic.n_critics == 1 and model.policy_delay == 1 and model.target_policy_noise == 0.0
    assert len(bayesian_layers(model.actor)) == 3 and len(bayesian_layers(model.critic)) == 3
    twin = BayesianDDPG("MlpPolicy", short_env(), policy_kwargs=dict(net_arch=[8], n_critics=2, bayesian_actor=False))
    assert twin.critic.n_critics == 2 and len(bayesian_layers(twin.critic)) == 4
    assert not bayesian_layers(twin.actor) and twin.policy.n_thompson_samples == 0


def test_critic_receives_the_action_taken():
    model = BayesianDDPG("MlpPolicy", short_env(), seed=0, **TINY)
    model.learn(40)
    assert model.replay_buffer is not None
    batch = model.replay_buffer.sample(16)
    model.replay_buffer.sample = lambda *args, **kwargs: batch  # type: ignore[method-assign]
    seen = []
    forward = model.critic.forward

    def recording_forward(obs, actions):
        seen.append(actions.detach().clone())
        return forward(obs, actions)

    model.critic.forward = recording_forward  # type: ignore[method-assign]
    model.train(gradient_steps=1, batch_size=16)
    # The critic is called once with grad (the TD regression), with exactly the stored (scaled) actions.
    assert len(seen) == 1
    assert th.equal(seen[0], batch.actions)
    # The actions are the actions taken: scaled back, they are what the environment received (within [-2, 2]).
    assert th.all(batch.actions.abs() <= 1.0) and batch.actions.std() > 0


@pytest.mark.parametrize("n_envs", [1, 2])
def test_kl_is_scaled_by_the_number_of_transitions(n_envs: int):
    model = BayesianDDPG("MlpPolicy", short_env(n_envs), seed=0, kl_weight=2.5, **TINY)
    model.learn(30 * n_envs)
    assert model.replay_buffer is not None
    n_transitions = model.replay_buffer.size() * n_envs
    assert n_transitions == 30 * n_envs
    with th.no_grad():  # the KL terms of the parameters the gradient step starts from
        expected_critic = float(kl_divergence(model.critic)) / n_transitions
        expected_actor = float(kl_divergence(model.actor)) / n_transitions
    model.train(gradient_steps=1, batch_size=16)
    logged = model.logger.name_to_value
    assert logged["train/kl_critic"] == pytest.approx(expected_critic, rel=1e-5)
    assert logged["train/kl_actor"] == pytest.approx(expected_actor, rel=1e-5)
    assert logged["train/critic_loss"] == pytest.approx(logged["train/td_loss"] + 2.5 * expected_critic, rel=1e-5)


def test_thompson_sample_fixed_within_episode_and_redrawn_at_episode_start():
    model = BayesianDDPG("MlpPolicy", short_env(2), seed=0, policy_kwargs=dict(net_arch=[16], posterior_init_log_var=-2.0))
    obs = model.env.reset()
    a0, _ = model.predict(obs, episode_start=np.array([True, True]))
    assert model.policy.n_thompson_samples == 2  # one held sample per environment
    a1, _ = model.predict(obs, episode_start=np.array([False, False]))
    np.testing.assert_array_equal(a0, a1)  # same sample within the episode
    a2, _ = model.predict(obs, episode_start=np.array([True, False]))
    assert not np.allclose(a2[0], a1[0]) and np.array_equal(a2[1], a1[1])  # only env 0 started a new episode
    # deterministic: posterior mean weights, independent of the held samples
    d1, _ = model.predict(obs, deterministic=True)
    model.predict(obs, episode_start=np.array([True, True]))
    d2, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(d1, d2)
    with th.no_grad(), weight_mode(model.actor, "mean"):
        mean_action = model.actor(th.as_tensor(obs)).numpy()
    np.testing.assert_allclose(d1, model.policy.unscale_action(mean_action), rtol=1e-6)


class _NoiseRecorder(BaseCallback):
    """Records, at every vectorised step, the training environments' held actor noise (first layer) and the dones."""

    def __init__(self) -> None:
        super().__init__()
        self.noise: list[th.Tensor] = []
        self.dones: list[np.ndarray] = []

    def _on_step(self) -> bool:
        assert isinstance(self.model.policy, BayesianDDPGPolicy)
        self.noise.append(self.model.policy.rollout_samples.get()["mu.0.weight_noise"].clone())
        self.dones.append(self.locals["dones"].copy())
        return True


class _StochasticEvaluationMidTraining(BaseCallback):
    """At one step inside ``learn``, mid-episode: ``evaluate_policy`` and ``predict`` with posterior samples."""

    def __init__(self, at_call: int) -> None:
        super().__init__()
        self.at_call = at_call
        self.before: dict[str, th.Tensor] = {}
        self.after: dict[str, th.Tensor] = {}
        self.n_outside_samples = 0

    def _on_step(self) -> bool:
        if self.n_calls == self.at_call:
            policy = self.model.policy
            assert isinstance(policy, BayesianDDPGPolicy)
            self.before = {name: value.clone() for name, value in policy.rollout_samples.get().items()}
            # Other numbers of environments than training's 2: the old shared samples were redrawn at their size.
            evaluate_policy(self.model, short_env(n_envs=1), n_eval_episodes=2, deterministic=False)
            self.model.predict(np.zeros((3, 3), dtype=np.float32), episode_start=np.ones(3, dtype=bool))
            self.n_outside_samples = policy.n_thompson_samples
            self.after = {name: value.clone() for name, value in policy.rollout_samples.get().items()}
        return True


def test_thompson_samples_in_training_change_exactly_at_episode_ends():
    # Episodes of different lengths per env (10 and 15 steps) so the redraws are per environment.
    env = DummyVecEnv([lambda n=n: Monitor(gym.make("Pendulum-v1", max_episode_steps=n)) for n in (10, 15)])
    model = BayesianDDPG("MlpPolicy", env, seed=0, **TINY)
    recorder = _NoiseRecorder()
    model.learn(2 * 60, callback=recorder)
    # The callback sees step t before its transition is stored; the redraw after step t shows at step t + 1.
    n_changed = 0
    for t in range(1, len(recorder.noise)):
        for env_idx in range(2):
            changed = not th.equal(recorder.noise[t][env_idx], recorder.noise[t - 1][env_idx])
            assert changed == bool(recorder.dones[t - 1][env_idx]), (t, env_idx)
            n_changed += changed
    assert n_changed == 5 + 3  # 60 steps: env 0 ends 5 episodes (+1 at the last step), env 1 ends 3 (+1 at the last)


def test_stochastic_evaluation_during_training_leaves_the_training_samples_alone():
    model = BayesianDDPG("MlpPolicy", short_env(2), seed=0, **TINY)
    evaluation, recorder = _StochasticEvaluationMidTraining(at_call=15), _NoiseRecorder()
    model.learn(2 * 30, callback=CallbackList([evaluation, recorder]))  # episodes end at calls 20 and 30
    assert evaluation.before and evaluation.before.keys() == evaluation.after.keys()
    assert evaluation.before["mu.0.weight_noise"].shape[0] == 2  # one training sample per environment
    for name, value in evaluation.before.items():
        assert th.equal(value, evaluation.after[name]), name
    assert evaluation.n_outside_samples == 3  # the evaluation drew its own samples, sized for its own batch
    # Across the evaluation too, the training samples change exactly after the steps where an episode ended.
    for t in range(1, len(recorder.noise)):
        for env_idx in range(2):
            changed = not th.equal(recorder.noise[t][env_idx], recorder.noise[t - 1][env_idx])
            assert changed == bool(recorder.dones[t - 1][env_idx]), (t, env_idx)
    # predict() outside learn() keeps acting with its own set.
    assert model.policy.n_thompson_samples == 3


def test_resample_every_k_steps():
    model = BayesianDDPG("MlpPolicy", short_env(max_episode_steps=200), seed=0, resample_every=7, **TINY)
    recorder = _NoiseRecorder()
    model.learn(30, callback=recorder)
    changes = [t for t in range(1, 30) if not th.equal(recorder.noise[t], recorder.noise[t - 1])]
    assert changes == [7, 14, 21, 28]


def test_target_options_twin_critics_and_action_noise_run():
    from stable_baselines3.common.noise import NormalActionNoise

    model = BayesianDDPG(
        "MlpPolicy",
        short_env(),
        seed=0,
        n_target_samples=3,
        policy_delay=2,
        target_policy_noise=0.2,
        target_noise_clip=0.5,
        action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)),
        learning_starts=20,
        batch_size=16,
        policy_kwargs=dict(net_arch=[16], n_critics=2),
    )
    model.learn(50)
    assert model._n_updates == 30
    q = model._target_q_values(th.zeros(4, 3), th.zeros(4, 1))
    assert q.shape == (4, 2)


def test_unsupported_spaces_and_arguments():
    with pytest.raises(ValueError, match="flat Box action"):
        BayesianDDPG("MlpPolicy", "CartPole-v1")
    tuple_env = gym.make("Pendulum-v1")
    tuple_env.observation_space = gym.spaces.Tuple([tuple_env.observation_space])
    with pytest.raises(ValueError, match="observation space Tuple"):
        BayesianDDPG("MlpPolicy", tuple_env)
    with pytest.raises(ValueError, match="consolidation"):
        BayesianDDPG("MlpPolicy", "Pendulum-v1", consolidation="si")
    # SB3's NatureCNN would fail a multi-line assertion on vector observations.
    with pytest.raises(ValueError, match=r"CnnPolicy needs image observations.*observation space Box.*use MlpPolicy") as error:
        BayesianDDPG("CnnPolicy", "Pendulum-v1", buffer_size=10)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="ewc_modules"):
        BayesianDDPG("MlpPolicy", "Pendulum-v1", ewc_modules=("q_net",))
    with pytest.raises(ValueError, match="vcl"):
        BayesianDDPG(
            "MlpPolicy", "Pendulum-v1", consolidation="vcl", policy_kwargs=dict(bayesian_actor=False, bayesian_critic=False)
        )


def test_consolidate_ewc_vcl_and_none():
    env = short_env()
    ewc_model = BayesianDDPG("MlpPolicy", env, seed=0, consolidation="ewc", ewc_modules=("actor", "critic"), **TINY)
    with pytest.raises(ValueError, match="learn"):
        ewc_model.consolidate()
    ewc_model.learn(40)
    ewc_model.consolidate(n_samples=32)
    assert ewc_model.ewc is not None
    for name in ("actor", "critic"):
        ewc = ewc_model.ewc[name]
        assert int(ewc.n_consolidations) == 1
        module = getattr(ewc_model, name)
        assert all(not n.endswith("log_var") for n in ewc.parameter_names)
        for param_name in ewc.parameter_names:
            assert th.equal(ewc.anchor_of(param_name), dict(module.named_parameters())[param_name].detach())
        assert float(sum(ewc.fisher_of(n).sum() for n in ewc.parameter_names)) > 0
        assert float(ewc.penalty(module).detach()) == 0.0
    ewc_model.learn(20, reset_num_timesteps=False)
    assert float(ewc_model.ewc["actor"].penalty(ewc_model.actor).detach()) > 0

    vcl_model = BayesianDDPG("MlpPolicy", env, seed=0, consolidation="vcl", **TINY)
    vcl_model.learn(40)
    vcl_model.consolidate()
    for layer in bayesian_layers(vcl_model.actor) + bayesian_layers(vcl_model.critic):
        assert th.equal(layer.prior_weight_mean, layer.weight_mean.detach())
        assert th.equal(layer.prior_weight_log_var, layer.weight_log_var.detach())

    none_model = BayesianDDPG("MlpPolicy", env, seed=0, **TINY)
    none_model.learn(30)
    before = {k: v.clone() for k, v in none_model.policy.state_dict().items()}
    none_model.consolidate()
    assert all(th.equal(v, before[k]) for k, v in none_model.policy.state_dict().items())


@pytest.mark.slow
def test_learns_pendulum():
    # Seeded learning test: a random policy scores about -1200 on Pendulum-v1, a policy that swings up better than
    # -400. No action noise: exploration comes from the posterior samples alone. With the benchmark's settings
    # (benchmarks/bayes_ddpg) and 4000 steps, seeds 0 / 1 / 2 reached -689 / -158 / -184 on the CI machine.
    threads = th.get_num_threads()
    th.set_num_threads(1)  # single-threaded: the result is reproducible on a given machine
    try:
        model = BayesianDDPG(
            "MlpPolicy",
            "Pendulum-v1",
            seed=1,
            learning_starts=1000,
            gamma=0.98,
            policy_kwargs=dict(net_arch=[64, 64]),
        )
        model.learn(4000)
        mean_return, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=5, deterministic=True)
    finally:
        th.set_num_threads(threads)
    assert mean_return > -400


def test_actor_fisher_is_taken_before_the_tanh():
    # A saturated actor (bang-bang actions) must still protect the weights that produce its actions.
    model = BayesianDDPG("MlpPolicy", short_env(), seed=0, consolidation="ewc", **TINY)
    model.learn(30)
    last = bayesian_layers(model.actor)[-1]
    with th.no_grad():
        last.bias_mean.fill_(20.0)  # tanh(20 + ...) == 1: saturated
    model.consolidate(n_samples=20)
    assert model.ewc is not None
    ewc = model.ewc["actor"]
    name = "mu.4.weight_mean"
    assert name in ewc.parameter_names
    # pre-squash output y = W h + b: the Fisher of W is the mean of h^2 over states, unaffected by the saturation
    obs = th.as_tensor(model.replay_buffer.observations[:30, 0])  # type: ignore[union-attr]
    with th.no_grad(), weight_mode(model.actor, "mean"):
        hidden = model.actor.mu[:-2](model.actor.extract_features(obs, model.actor.features_extractor))
    assert float(ewc.fisher_of(name).sum()) > 0.5 * float(hidden.pow(2).mean(0).sum())


def test_kl_data_count_survives_a_buffer_reset_and_restarts_with_vcl():
    for consolidation in ("none", "vcl"):
        model = BayesianDDPG("MlpPolicy", short_env(), seed=0, consolidation=consolidation, **TINY)
        model.learn(40)
        assert model._n_data() == 40  # = transitions in the buffer
        model.consolidate()
        assert model.replay_buffer is not None
        model.replay_buffer.reset()  # task switch
        model.learn(10, reset_num_timesteps=False)
        # without VCL the N(0, s^2) prior still stands for all 50 transitions; with VCL the first 40 are in the prior
        assert model._n_data() == (50 if consolidation == "none" else 10)


# ------------------------------------------------------------------------------------------------ hyperparameter checks
# Bad value -> (exception type, parameter the message names). Constructor arguments, then policy_kwargs entries.
BAD_ARGUMENTS = [
    ({"learning_rate": -1e-3}, ValueError, "learning_rate"),  # 0 is allowed: rl_zoo3.enjoy loads with it
    ({"learning_rate": "fast"}, TypeError, "learning_rate"),
    ({"buffer_size": 0}, ValueError, "buffer_size"),
    ({"buffer_size": 1.5}, TypeError, "buffer_size"),
    ({"learning_starts": -1}, ValueError, "learning_starts"),
    ({"learning_starts": 2.5}, TypeError, "learning_starts"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 16.0}, TypeError, "batch_size"),
    ({"tau": 0.0}, ValueError, "tau"),
    ({"tau": 1.5}, ValueError, "tau"),
    ({"gamma": 0.0}, ValueError, "gamma"),
    ({"gamma": 1.01}, ValueError, "gamma"),
    ({"gamma": "0.99"}, TypeError, "gamma"),
    ({"train_freq": 0}, ValueError, "train_freq"),
    ({"train_freq": 1.5}, TypeError, "train_freq"),
    ({"train_freq": (1, "minute")}, ValueError, "train_freq"),
    ({"train_freq": (1, "step", 2)}, TypeError, "train_freq"),
    ({"gradient_steps": 0}, ValueError, "gradient_steps"),
    ({"gradient_steps": -2}, ValueError, "gradient_steps"),
    ({"gradient_steps": 1.0}, TypeError, "gradient_steps"),
    ({"action_noise": "normal"}, TypeError, "action_noise"),
    ({"replay_buffer_class": dict}, TypeError, "replay_buffer_class"),
    ({"replay_buffer_kwargs": ["n_steps"]}, TypeError, "replay_buffer_kwargs"),
    ({"optimize_memory_usage": "yes"}, TypeError, "optimize_memory_usage"),
    ({"optimize_memory_usage": True}, ValueError, "optimize_memory_usage"),  # SB3's buffer needs timeouts off for it
    ({"n_steps": 0}, ValueError, "n_steps"),
    ({"policy_delay": 0}, ValueError, "policy_delay"),
    ({"target_policy_noise": -0.1}, ValueError, "target_policy_noise"),
    ({"target_noise_clip": -0.1}, ValueError, "target_noise_clip"),
    ({"target_policy_noise": 0.2, "target_noise_clip": 0.0}, ValueError, "target_noise_clip"),
    ({"kl_weight": -1.0}, ValueError, "kl_weight"),
    ({"kl_weight": float("nan")}, ValueError, "kl_weight"),
    ({"resample_every": 0}, ValueError, "resample_every"),
    ({"resample_every": 1.5}, TypeError, "resample_every"),
    ({"n_target_samples": -1}, ValueError, "n_target_samples"),
    ({"consolidation": "si"}, ValueError, "consolidation"),
    (
        {"consolidation": "vcl", "policy_kwargs": dict(net_arch=[8], bayesian_actor=False, bayesian_critic=False)},
        ValueError,
        "consolidation",
    ),
    ({"ewc_lambda": -1.0}, ValueError, "ewc_lambda"),
    ({"ewc_online": "yes"}, TypeError, "ewc_online"),
    ({"ewc_decay": 1.5}, ValueError, "ewc_decay"),
    ({"ewc_modules": ("q_net",)}, ValueError, "ewc_modules"),
    ({"ewc_modules": ()}, ValueError, "ewc_modules"),
    ({"ewc_modules": 3}, TypeError, "ewc_modules"),
    ({"consolidation": "ewc", "ewc_modules": ("actor.nothing",)}, ValueError, "ewc_modules"),
    ({"stats_window_size": 0}, ValueError, "stats_window_size"),
    ({"tensorboard_log": 3}, TypeError, "tensorboard_log"),
    ({"policy_kwargs": "dict(net_arch=[8])"}, TypeError, "policy_kwargs"),
    ({"verbose": -1}, ValueError, "verbose"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": 1.5}, TypeError, "seed"),
]
BAD_POLICY_KWARGS = [
    ({"net_arch": [0]}, ValueError, "net_arch"),  # was a ZeroDivisionError
    ({"net_arch": [8.0]}, TypeError, "net_arch"),
    ({"net_arch": "big"}, TypeError, "net_arch"),
    ({"net_arch": dict(pi=[8])}, ValueError, "net_arch"),
    ({"net_arch": dict(pi=[8], qf=[-1])}, ValueError, "net_arch"),
    ({"activation_fn": "relu"}, TypeError, "activation_fn"),
    ({"features_extractor_class": th.nn.ReLU}, TypeError, "features_extractor_class"),
    ({"features_extractor_kwargs": 3}, TypeError, "features_extractor_kwargs"),
    ({"normalize_images": "no"}, TypeError, "normalize_images"),
    ({"optimizer_class": "adam"}, TypeError, "optimizer_class"),
    ({"optimizer_kwargs": 3}, TypeError, "optimizer_kwargs"),
    ({"n_critics": 0}, ValueError, "n_critics"),
    ({"share_features_extractor": "no"}, TypeError, "share_features_extractor"),
    ({"bayesian_actor": 1}, TypeError, "bayesian_actor"),
    ({"bayesian_critic": None}, TypeError, "bayesian_critic"),
    ({"prior_std": 0.0}, ValueError, "prior_std"),
    ({"posterior_init_log_var": float("inf")}, ValueError, "posterior_init_log_var"),
    ({"posterior_init_mean_std": -1.0}, ValueError, "posterior_init_mean_std"),
]


def _build(**kwargs) -> BayesianDDPG:
    arguments = {**dict(buffer_size=100, learning_starts=20, batch_size=16, policy_kwargs=dict(net_arch=[8])), **kwargs}
    return BayesianDDPG("MlpPolicy", "Pendulum-v1", **arguments)


@pytest.mark.parametrize("kwargs, error, parameter", BAD_ARGUMENTS)
def test_bad_constructor_argument_is_refused_by_name(kwargs: dict, error: type, parameter: str) -> None:
    check_refused(lambda: _build(**kwargs), error, parameter)


@pytest.mark.parametrize("policy_kwargs, error, parameter", BAD_POLICY_KWARGS)
def test_bad_policy_kwarg_is_refused_by_name(policy_kwargs: dict, error: type, parameter: str) -> None:
    check_refused(lambda: _build(policy_kwargs=dict(dict(net_arch=[8]), **policy_kwargs)), error, parameter)


def test_the_tables_cover_every_argument_and_policy_kwarg() -> None:
    # SB3's own arguments arrive as ``**settings`` (typed by AlgorithmSettings): check them by their names.
    not_hyperparameters = {"self", "policy", "env", "device", "_init_setup_model", "settings"}
    arguments = set(inspect.signature(BayesianDDPG.__init__).parameters) | set(AlgorithmSettings.__annotations__)
    arguments -= not_hyperparameters
    assert arguments <= {name for _, _, name in BAD_ARGUMENTS}
    policy_kwargs = set(inspect.signature(BayesianDDPGPolicy.__init__).parameters)
    assert policy_kwargs - {"self", "observation_space", "action_space", "lr_schedule"} <= {n for _, _, n in BAD_POLICY_KWARGS}


def test_good_values_are_normalised_and_load_checks_its_kwargs(tmp_path) -> None:
    model = _build(
        buffer_size=np.int64(100), gamma=np.float32(0.5), train_freq=[np.int64(2), "episode"], ewc_modules="critic.qf0"
    )
    assert type(model.buffer_size) is int and type(model.gamma) is float and model.ewc_modules == ("critic.qf0",)
    assert model.train_freq.frequency == 2 and model.train_freq.unit.value == "episode"
    model.save(tmp_path / "model.zip")
    with pytest.raises(ValueError, match=names("learning_starts")):
        BayesianDDPG.load(tmp_path / "model.zip", learning_starts=-5)
    assert BayesianDDPG.load(tmp_path / "model.zip", learning_starts=5).learning_starts == 5


# ---------------------------------------------------------------------------------------------------- NaN-safe training
def _trained_on(env: gym.Env) -> BayesianDDPG:
    model = BayesianDDPG("MlpPolicy", env, seed=0, buffer_size=200, **TINY)
    model.learn(30)  # trains from step 21 on
    return model


@pytest.mark.parametrize("what", ["observation", "reward"])
def test_non_finite_data_is_refused_before_it_is_stored(what: str, tmp_path) -> None:
    model = _trained_on(NonFiniteAt(gym.make("Pendulum-v1", max_episode_steps=20), step=31, what=what))
    assert model.replay_buffer is not None
    before, stored = model_tensors(model), model.replay_buffer.pos  # just before the bad step
    check_weights_survive(model, lambda: model.learn(10, reset_num_timesteps=False), rf"the {what} .*NaN", before, tmp_path)
    assert model.replay_buffer.pos == stored  # nothing stored


@pytest.mark.parametrize("network", ["critic", "actor"])
def test_non_finite_loss_leaves_the_weights_of_the_last_finite_update(network: str, monkeypatch, tmp_path) -> None:
    import sb3_bayes.common.consolidation as module  # where the update step is taken

    model = _trained_on(gym.make("Pendulum-v1", max_episode_steps=20))
    before: dict[str, th.Tensor] = {}
    original = module.checked_step

    def nan_loss(optimizer, loss, what, *args, **kwargs):
        if f"{network} loss" in what:  # the critic's update of this gradient step went through (it comes first)
            before.update(model_tensors(model))
            loss = loss * float("nan")
        return original(optimizer, loss, what, *args, **kwargs)

    monkeypatch.setattr(module, "checked_step", nan_loss)
    check_weights_survive(model, lambda: model.learn(5, reset_num_timesteps=False), f"{network} loss is NaN", before, tmp_path)
    assert before  # filled at the bad update


# ---------------------------------------------------------------------------------------------------------- exact resume
def _resume_model(variant: str, n_envs: int = 1):
    kwargs: dict = dict(learning_starts=10, batch_size=8, buffer_size=300, seed=0, policy_kwargs=dict(net_arch=[8]))
    if variant == "td3":
        kwargs.update(policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5, n_target_samples=2, resample_every=7)
        kwargs["policy_kwargs"] = dict(net_arch=[8], n_critics=2)
    if variant in ("ewc", "vcl"):
        kwargs.update(consolidation=variant, ewc_modules=("actor", "critic"), ewc_online=True, ewc_decay=0.5)

    def make() -> BayesianDDPG:
        # A noise process with its own state (one per model: it is not shared between the runs compared).
        noise = OrnsteinUhlenbeckActionNoise(np.zeros(1), 0.2 * np.ones(1)) if variant == "ou_noise" else None
        model = BayesianDDPG("MlpPolicy", short_env(n_envs), action_noise=noise, **kwargs)
        if variant in ("ewc", "vcl"):  # a task already consolidated: the penalty / new prior acts in both halves
            model.learn(15)
            model.consolidate(n_samples=15)
        return model

    return make


@pytest.mark.parametrize("variant, n_envs", [("ou_noise", 1), ("td3", 2), ("ewc", 1), ("vcl", 1)])
def test_exact_resume(variant: str, n_envs: int, tmp_path) -> None:
    # Episodes of 20 steps: the split at 25 (x n_envs) steps is mid-episode, with held Thompson samples in use.
    check_exact_resume(_resume_model(variant, n_envs), 25 * n_envs, tmp_path)
