"""DVRL: the filter step against a module-by-module reference, the windowed replay, the belief as recurrent state,
hyperparameter and input checks, NaN safety, exact resume, and a seeded learning test on a memory task."""

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from reliability import NonFiniteAt, check_exact_resume, check_refused, check_weights_survive, model_tensors, names
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.evaluation import evaluate_policy
from torch.distributions import Normal

import sb3_bayes.envs  # noqa: F401  (registers MountainHike-v0)
from sb3_bayes.common.utils import checked_gradient_norm, checked_step
from sb3_bayes.common.validation import HyperparameterError, HyperparameterTypeError, HyperparameterValueError
from sb3_bayes.dvrl import DVRL, CnnPolicy, DVRLPolicy
from sb3_bayes.dvrl.buffers import DVRLRolloutBuffer
from sb3_bayes.dvrl.dvrl import checked_split_step, effective_sample_size
from sb3_bayes.dvrl.policies import MIN_VARIANCE, Belief, FilterNoise, bernoulli_log_density

SMALL = dict(h_dim=16, z_dim=4, encoder_sizes=[8], action_encoding=4)


@pytest.fixture(autouse=True)
def one_thread():
    """Small networks run fastest on one thread (and the CI machine's cores are shared)."""
    n_threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(n_threads)


class CueMemory(gym.Env):
    """
    A memory task: the first observation shows a cue (-1 or +1), the next ``delay`` ones are blank; the action at the
    last step earns 1 if it names the cue. A memoryless policy earns 0.5 on average.
    """

    def __init__(self, delay: int = 2) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.delay = delay
        self.cue = 0
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.cue = int(self.np_random.integers(2))
        self.t = 0
        return np.array([2 * self.cue - 1, 1], dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        done = self.t > self.delay
        reward = float(int(action) == self.cue) if done else 0.0
        return np.zeros(2, dtype=np.float32), reward, done, False, {}


class SpaceEnv(gym.Env):
    """An environment with given spaces (for the space checks)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        return self.observation_space.sample(), 0.0, False, False, {}


def brute_force_ancestors(log_weights: th.Tensor, u: float) -> list[int]:
    """Systematic resampling written out: point (u + j) / K goes to the first particle whose CDF exceeds it."""
    weights = (log_weights.double() - log_weights.double().max()).exp()
    cdf = np.cumsum((weights / weights.sum()).numpy())
    k = len(cdf)
    return [min(int(np.searchsorted(cdf, (u + j) / k, side="right")), k - 1) for j in range(k)]


def reference_step(policy: DVRLPolicy, belief: Belief, obs: th.Tensor, starts: th.Tensor, noise: FilterNoise) -> dict:
    """
    One filter step written particle by particle with the policy's own modules, as the paper and the original code
    write it (concatenated inputs, nn.GRUCell, torch.distributions), without any of the fused products.
    """
    n_envs, k, _ = belief.h.shape
    out: dict[str, list] = {"h": [], "z": [], "log_w": [], "phi_z": [], "elbo": []}
    for b in range(n_envs):
        keep = 1.0 - float(starts[b])
        h, log_w, prev_a = belief.h[b] * keep, belief.log_weights[b] * keep, belief.prev_action[b] * keep
        ancestors = brute_force_ancestors(log_w, float(noise.uniforms[b])) if policy.resample else list(range(k))
        x = policy.obs_encoder(obs[b : b + 1].float())[0]
        a = policy.action_encoder(prev_a[None])[0]
        increments = []
        for j in range(k):
            h_prev = h[ancestors[j]]
            prior_mean, prior_var = policy.prior(th.cat([h_prev, a]))
            q_mean, q_var = policy.proposal(th.cat([h_prev, x, a]))
            z = q_mean + q_var.sqrt() * noise.normals[b, j]
            phi_z = policy.phi_z(z)
            hidden = F.relu(policy.emission_hidden(th.cat([h_prev, phi_z, a])))
            decoded = policy.emission_head.net(hidden)
            em_mean = policy.emission_head.mean(decoded)
            em_var = F.softplus(policy.emission_head.variance(decoded)) + MIN_VARIANCE
            increment = (
                Normal(prior_mean, prior_var.sqrt()).log_prob(z).sum()
                + Normal(em_mean, em_var.sqrt()).log_prob(obs[b].float()).sum()
                - Normal(q_mean, q_var.sqrt()).log_prob(z).sum()
            )
            increments.append(increment)
            out["h"].append(policy.transition(th.cat([x, phi_z, a])[None], h_prev[None])[0])
            out["z"].append(z)
            out["phi_z"].append(phi_z)
        inc = th.stack(increments)
        # The new log-weights are the increments (with or without resampling); the ELBO term is log mean_k w_k,
        # brute force in float64.
        out["log_w"].append(inc)
        out["elbo"].append(math.log(sum(math.exp(v) for v in inc.double().tolist()) / k))
    return {
        "h": th.stack(out["h"]).view(n_envs, k, -1),
        "z": th.stack(out["z"]).view(n_envs, k, -1),
        "phi_z": th.stack(out["phi_z"]).view(n_envs, k, -1),
        "log_w": th.stack(out["log_w"]),
        "elbo": th.tensor(out["elbo"]),
    }


@pytest.mark.parametrize("resample", [True, False])
def test_filter_step_matches_reference_and_elbo_is_log_mean_exp(resample: bool) -> None:
    th.manual_seed(0)
    obs_space = spaces.Box(-5.0, 5.0, (3,), np.float32)
    policy = DVRLPolicy(obs_space, spaces.Box(-1.0, 1.0, (2,)), lambda _: 1e-3, n_particles=5, resample=resample, **SMALL)
    n_envs = 3
    belief = Belief(
        h=th.randn(n_envs, 5, 16),
        z=th.randn(n_envs, 5, 4),
        log_weights=th.randn(n_envs, 5) * 2,
        prev_action=th.randn(n_envs, 2),
    )
    obs = th.randn(n_envs, 3)
    starts = th.tensor([0.0, 1.0, 0.0])
    noise = policy.sample_noise(n_envs)
    with th.no_grad():
        out = policy.filter_step(belief, obs, starts, noise)
        ref = reference_step(policy, belief, obs, starts, noise)
    assert th.allclose(out.belief.h, ref["h"], atol=1e-5)
    assert th.allclose(out.belief.z, ref["z"], atol=1e-5)
    assert th.allclose(out.phi_z, ref["phi_z"], atol=1e-5)
    assert th.allclose(out.belief.log_weights, ref["log_w"], atol=1e-3, rtol=1e-5)
    assert th.allclose(out.elbo.double(), ref["elbo"].double(), atol=1e-3, rtol=1e-5)
    # The episode start reset the previous action that the step consumed.
    assert th.equal(out.belief.prev_action[1], th.zeros(2))


def test_bernoulli_emission_log_likelihood() -> None:
    value = th.tensor([[[0.0, 1.0, 0.25]]])
    probability = th.tensor([[[0.2, 0.7, 0.5], [0.9, 0.9, 0.1]]])  # [B=1, K=2, 3]
    expected = [
        sum(v * math.log(p) + (1 - v) * math.log(1 - p) for v, p in zip([0.0, 1.0, 0.25], row, strict=True))
        for row in probability[0].tolist()
    ]
    assert th.allclose(bernoulli_log_density(value, probability), th.tensor([expected]), atol=1e-6)


class StepRecorder(BaseCallback):
    """Keeps the filter step of every vectorised step of the rollouts (a local of ``collect_rollouts``)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list = []

    def _on_step(self) -> bool:
        self.steps.append(self.locals["out"])
        return True


@pytest.mark.parametrize(
    ("action_env", "sliding_window"), [("CartPole-v1", False), ("Pendulum-v1", False), ("CartPole-v1", True)]
)
def test_window_replay_reproduces_rollout_beliefs_exactly(action_env: str, sliding_window: bool) -> None:
    # Episodes of 4 steps so that the window (up to 3 rollouts x 3 steps) contains episode starts.
    env = make_vec_env(action_env, n_envs=2, seed=0, env_kwargs=dict(max_episode_steps=4))
    model = DVRL(
        "MlpPolicy",
        env,
        n_steps=3,
        multiplier_backprop_length=3,
        sliding_window=sliding_window,
        n_particles=4,
        seed=0,
        policy_kwargs=SMALL,
    )
    recorder = StepRecorder()
    _, callback = model._setup_learn(1000, recorder)
    callback.on_training_start(locals(), globals())
    buffer = model.rollout_buffer
    n_stored = []
    for _ in range(6):  # more rollouts than the window holds
        assert model.collect_rollouts(model.env, callback, buffer, model.n_steps)
        n_stored.append(buffer.n_stored)
    # The original's schedule restarts the window every M = 3 rollouts; a sliding window keeps the last 3.
    assert n_stored == ([1, 2, 3, 3, 3, 3] if sliding_window else [1, 2, 3, 1, 2, 3])
    assert sum(float(inputs.episode_starts.sum()) for _, inputs in buffer.window()) > 0
    beliefs, phi_zs, elbos = model.replay_window()
    recorded = recorder.steps[-3:]
    assert len(beliefs) == len(recorded) == 3
    for belief, phi_z, elbo, step in zip(beliefs, phi_zs, elbos, recorded, strict=True):
        assert th.equal(belief.h, step.belief.h)
        assert th.equal(belief.z, step.belief.z)
        assert th.equal(belief.log_weights, step.belief.log_weights)
        assert th.equal(phi_z, step.phi_z)
        assert th.equal(elbo, step.elbo)
    # The replay carries the graph back to the window start (gradients reach the oldest step's inputs)...
    assert beliefs[-1].h.requires_grad
    # ... and one update keeps no graph: the stored belief and the buffer are detached.
    model.train()
    assert model._belief is not None and not model._belief.h.requires_grad
    assert not buffer.start_h.requires_grad and not buffer.normals.requires_grad


def test_gradient_flows_through_the_whole_window() -> None:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = DVRL("MlpPolicy", env, n_steps=2, multiplier_backprop_length=3, n_particles=3, seed=0, policy_kwargs=SMALL)
    _, callback = model._setup_learn(1000, None)
    for _ in range(3):
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    # Make the oldest stored observations leaves: a loss on the newest rollout must reach them.
    model.rollout_buffer.observations.requires_grad_(True)
    beliefs, _, _ = model.replay_window()
    beliefs[-1].h.sum().backward()
    grad = model.rollout_buffer.observations.grad
    assert grad is not None
    oldest = (model.rollout_buffer.newest + 1) % 3
    assert float(grad[oldest, 0].abs().sum()) > 0


def test_episode_start_resets_the_belief() -> None:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = DVRL("MlpPolicy", env, n_particles=3, seed=0, policy_kwargs=SMALL)
    obs = env.reset()
    _, state = model.predict(obs)
    for _ in range(3):
        _, state = model.predict(obs, state=state, episode_start=np.zeros(2, dtype=bool))
    th.manual_seed(5)
    action_reset, state_reset = model.predict(obs, state=state, episode_start=np.array([True, True]), deterministic=True)
    th.manual_seed(5)
    action_fresh, state_fresh = model.predict(obs, state=None, deterministic=True)
    assert np.array_equal(action_reset, action_fresh)
    for a, b in zip(state_reset, state_fresh, strict=True):
        assert np.array_equal(a, b)
    # Only the flagged env is reset.
    th.manual_seed(5)
    _, state_half = model.predict(obs, state=state, episode_start=np.array([True, False]), deterministic=True)
    assert np.array_equal(state_half[0][0], state_fresh[0][0]) and not np.array_equal(state_half[0][1], state_fresh[0][1])
    h, z, log_w, prev_action = state_fresh
    assert h.shape == (2, 3, 16) and z.shape == (2, 3, 4) and log_w.shape == (2, 3) and prev_action.shape == (2, 2)
    # Wrong state shapes are rejected.
    with pytest.raises(ValueError, match="expected"):
        model.predict(obs, state=(h[:, :2], z, log_w, prev_action))


def test_predict_acts_as_the_rollout_step(monkeypatch) -> None:
    # Carried through predict's numpy state, the belief and the actions are those of the training rollouts' step for the
    # same observations, episode starts and filter noise (Box actions: the clipped action reaches the env, the sample
    # the belief), over episode ends.
    env = make_vec_env("MountainHikeNoise1-v0", n_envs=3, seed=0, wrapper_class=lambda e: gym.wrappers.TimeLimit(e, 8))
    model = DVRL("MlpPolicy", env, n_particles=4, seed=0, policy_kwargs=SMALL)
    policy = model.policy
    obs, belief, starts = env.reset(), policy.initial_belief(3), np.ones(3, dtype=bool)
    state, episode_ends = None, 0
    for _ in range(20):
        noise = policy.sample_noise(3)
        monkeypatch.setattr(policy, "sample_noise", lambda n_envs, noise=noise: noise)
        th.manual_seed(1)  # the same action sample on both sides
        predicted, state = policy.predict(obs, state=state, episode_start=starts)
        monkeypatch.undo()
        th.manual_seed(1)
        with th.no_grad():
            actions, _, _, out = policy.step(belief, th.as_tensor(obs), th.as_tensor(starts, dtype=th.float32), noise)
        clipped = np.clip(actions.numpy(), env.action_space.low, env.action_space.high)
        np.testing.assert_array_equal(predicted, clipped)
        belief = out.belief._replace(prev_action=policy.action_input(actions))
        for carried, expected in zip(state, belief, strict=True):
            np.testing.assert_array_equal(carried, expected.numpy())
        obs, _, starts, _ = env.step(clipped)
        episode_ends += int(starts.sum())
    assert episode_ends > 0


@pytest.mark.parametrize(
    ("observation_space", "action_space", "name"),
    [
        (spaces.Box(-1, 1, (2,)), spaces.MultiDiscrete([2, 3]), "MultiDiscrete"),
        (spaces.Box(-1, 1, (2,)), spaces.MultiBinary(2), "MultiBinary"),
        (spaces.Dict({"a": spaces.Box(-1, 1, (2,))}), spaces.Discrete(2), "Dict"),
    ],
)
def test_unsupported_spaces(observation_space: spaces.Space, action_space: spaces.Space, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        DVRL("MlpPolicy", SpaceEnv(observation_space, action_space))


V, T = HyperparameterValueError, HyperparameterTypeError

# (DVRL arguments, exception, parameter the message must name): every constructor argument (the spaces are checked by
# test_unsupported_spaces; device and tensorboard_log are SB3's) and every policy_kwargs entry, with the relations.
BAD_VALUES = [
    (dict(policy=th.nn.Linear), T, "policy"),
    (dict(learning_rate=-3e-4), V, "learning_rate"),  # 0 is allowed: rl_zoo3.enjoy loads with learning_rate=0.0
    (dict(learning_rate=float("nan")), V, "learning_rate"),
    (dict(learning_rate="3e-4"), T, "learning_rate"),
    (dict(n_steps=0), V, "n_steps"),
    (dict(n_steps=5.0), T, "n_steps"),
    (dict(gamma=1.5), V, "gamma"),
    (dict(gamma=0.0), V, "gamma"),
    (dict(gamma="0.99"), T, "gamma"),
    (dict(ent_coef=-0.01), V, "ent_coef"),
    (dict(vf_coef=-0.5), V, "vf_coef"),
    (dict(vf_coef=None), T, "vf_coef"),
    (dict(policy_coef=-1.0), V, "policy_coef"),
    (dict(pre_activation_coef=-0.1), V, "pre_activation_coef"),
    (dict(pre_activation_coef="0.1"), T, "pre_activation_coef"),
    (dict(elbo_coef=-0.1), V, "elbo_coef"),
    (dict(elbo_coef=float("inf")), V, "elbo_coef"),
    (dict(max_grad_norm=-1.0), V, "max_grad_norm"),
    (dict(max_grad_norm=0.0), V, "max_grad_norm"),
    (dict(model_max_grad_norm=0.0), V, "model_max_grad_norm"),
    (dict(model_max_grad_norm=float("nan")), V, "model_max_grad_norm"),
    (dict(model_max_grad_norm="0.5"), T, "model_max_grad_norm"),
    (dict(multiplier_backprop_length=0), V, "multiplier_backprop_length"),
    (dict(multiplier_backprop_length=True), T, "multiplier_backprop_length"),
    (dict(sliding_window="yes"), T, "sliding_window"),
    (dict(optimizer="sgd"), V, "optimizer"),
    (dict(rms_prop_alpha=1.0), V, "rms_prop_alpha"),
    (dict(rms_prop_alpha=-0.1), V, "rms_prop_alpha"),
    (dict(rms_prop_eps=0.0), V, "rms_prop_eps"),
    (dict(n_particles=0), V, "n_particles"),
    (dict(n_particles=10.0), T, "n_particles"),
    (dict(use_particle_filter=1), T, "use_particle_filter"),
    (dict(normalize_advantage="no"), T, "normalize_advantage"),
    (dict(normalize_advantage=True, n_steps=1), V, "normalize_advantage"),  # one env: one advantage per update
    (dict(stats_window_size=0), V, "stats_window_size"),
    (dict(verbose=-1), V, "verbose"),
    (dict(seed=-1), V, "seed"),
    (dict(seed=0.5), T, "seed"),
    (dict(policy_kwargs=[("h_dim", 16)]), T, "policy_kwargs"),
    (dict(policy_kwargs=dict(h_dim=0)), V, "h_dim"),
    (dict(policy_kwargs=dict(h_dim=16.0)), T, "h_dim"),
    (dict(policy_kwargs=dict(z_dim=0)), V, "z_dim"),
    (dict(policy_kwargs=dict(encoder="rnn")), V, "encoder"),
    (dict(policy_kwargs=dict(encoder_sizes=[])), V, "encoder_sizes"),
    (dict(policy_kwargs=dict(encoder_sizes=[8, 0])), V, "encoder_sizes"),
    (dict(policy_kwargs=dict(encoder_sizes=8)), T, "encoder_sizes"),
    (dict(policy_kwargs=dict(cnn_channels=[4, 8])), V, "cnn_channels"),
    (dict(policy_kwargs=dict(cnn_channels=[4, 8, 4.0])), T, "cnn_channels"),
    (dict(policy_kwargs=dict(action_encoding=0)), V, "action_encoding"),
    (dict(policy_kwargs=dict(emission="poisson")), V, "emission"),
    (dict(policy_kwargs=dict(batch_norm="true")), T, "batch_norm"),
    (dict(policy_kwargs=dict(normalize_images=None)), T, "normalize_images"),
    # One home per hyperparameter: what DVRL passes to the policy by name cannot be given another value there.
    (dict(n_particles=15, policy_kwargs=dict(n_particles=10)), V, "n_particles"),
    (dict(policy_kwargs=dict(n_particles=5)), V, "n_particles"),  # against the default, 10
    (dict(use_particle_filter=False, policy_kwargs=dict(use_particle_filter=True)), V, "use_particle_filter"),
    (dict(elbo_coef=0.0, policy_kwargs=dict(resample=True)), V, "resample"),
    (dict(optimizer="adam", policy_kwargs=dict(optimizer_class=th.optim.RMSprop)), V, "optimizer_class"),
    (dict(rms_prop_eps=1e-5, policy_kwargs=dict(optimizer_kwargs=dict(alpha=0.99, eps=1e-8))), V, "optimizer_kwargs"),
]


@pytest.mark.parametrize(
    "kwargs, error, parameter", BAD_VALUES, ids=[f"{parameter}-{i}" for i, (_, _, parameter) in enumerate(BAD_VALUES)]
)
def test_bad_hyperparameters_fail_at_construction(kwargs: dict, error: type[HyperparameterError], parameter: str) -> None:
    arguments = {"policy": "MlpPolicy", "policy_kwargs": SMALL, **kwargs}
    check_refused(lambda: DVRL(env="CartPole-v1", **arguments), error, parameter)


@pytest.mark.parametrize(
    "kwargs, error, parameter",
    [
        (dict(n_particles=0), V, "n_particles"),
        (dict(use_particle_filter="no"), T, "use_particle_filter"),
        (dict(resample=None), T, "resample"),
        (dict(optimizer_class=dict), T, "optimizer_class"),
        (dict(optimizer_kwargs=[("eps", 1e-8)]), T, "optimizer_kwargs"),
        (dict(cnn_channels=[4, 8, 4, 4]), V, "cnn_channels"),
        (dict(emission="gaussian"), V, "emission"),  # the CNN encoder's decoder gives pixel probabilities
        (dict(bounded_action_mean=True), V, "bounded_action_mean"),  # Discrete actions have no box
        (dict(bounded_action_mean="yes"), T, "bounded_action_mean"),
    ],
)
def test_policy_checks_its_arguments_when_built_alone(kwargs: dict, error: type[HyperparameterError], parameter: str) -> None:
    # The arguments DVRL passes by name, and CnnPolicy's own relations, checked by the policy built without DVRL.
    images = spaces.Box(0, 255, (1, 36, 36), np.uint8)
    refused = check_refused(
        lambda: CnnPolicy(images, spaces.Discrete(2), lambda _: 1e-3, **{**SMALL, "cnn_channels": [4, 8, 4], **kwargs}),
        error,
        parameter,
    )
    assert str(refused).startswith("CnnPolicy: ")


def test_other_argument_errors() -> None:
    with pytest.raises(ValueError, match="image observations"):
        DVRL("CnnPolicy", "CartPole-v1")
    images = make_vec_env(FakeImageEnv, n_envs=2, env_kwargs=dict(screen_height=36, screen_width=36))
    with pytest.raises(HyperparameterValueError, match=names("emission")):
        DVRL("CnnPolicy", images, policy_kwargs=dict(emission="gaussian", cnn_channels=[4, 8, 4], **SMALL))


def test_bounded_action_mean_keeps_the_mean_in_the_box() -> None:
    box = spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
    vector = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    policy = DVRLPolicy(vector, box, lambda _: 1e-3, bounded_action_mean=True, **SMALL)
    with th.no_grad():
        policy.action_net.weight.normal_(0.0, 10.0)  # raw outputs far beyond the box
        policy.log_std.fill_(-0.5)
    features = th.randn(256, SMALL["h_dim"])
    distribution = policy.distribution(features)
    mean = distribution.distribution.mean
    raw = policy.action_net(features)
    # The mean is centre + half_range * tanh(u): inside [low, high] however large u is.
    expected = th.tensor([0.0, 0.5]) + th.tensor([2.0, 0.5]) * th.tanh(raw)
    th.testing.assert_close(mean, expected)
    assert bool((mean >= th.tensor([-2.0, 0.0])).all() and (mean <= th.tensor([2.0, 1.0])).all())
    assert (raw.abs() > 3.0).float().mean() > 0.5  # the unbounded mean would have left the box
    # The sample is not squashed: log-probability and entropy are the Gaussian's around the bounded mean.
    actions = th.randn(256, 2) * 3.0
    reference = Normal(expected, th.exp(th.tensor(-0.5)))
    th.testing.assert_close(distribution.log_prob(actions), reference.log_prob(actions).sum(-1))
    th.testing.assert_close(distribution.entropy(), reference.entropy().sum(-1))
    # Infinite bounds have no centre: refused by name.
    unbounded = lambda: DVRLPolicy(vector, vector, lambda _: 1e-3, bounded_action_mean=True, **SMALL)  # noqa: E731
    check_refused(unbounded, V, "bounded_action_mean")
    # Through the algorithm: deterministic actions stay in Pendulum's box; the option is off by default.
    model = DVRL("MlpPolicy", "Pendulum-v1", n_steps=4, policy_kwargs=dict(bounded_action_mean=True, **SMALL), seed=0)
    with th.no_grad():
        model.policy.action_net.weight.normal_(0.0, 100.0)
    obs = model.env.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert np.all(np.abs(action) <= 2.0)
    assert not DVRL("MlpPolicy", "Pendulum-v1", policy_kwargs=SMALL).policy.bounded_action_mean


@pytest.mark.parametrize("bounded", [True, False])
def test_pre_activation_penalty_gradient_is_its_closed_form(bounded: bool) -> None:
    # Only the penalty in the loss: the action head's bias gets d/db [c * mean_t ||u_t||^2] = 2 c mean_t u_t.
    coef = 0.3
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    zero = dict(policy_coef=0.0, vf_coef=0.0, ent_coef=0.0, elbo_coef=0.0, max_grad_norm=1e6)
    policy_kwargs = dict(SMALL, bounded_action_mean=bounded)
    model = tiny_dvrl(env, pre_activation_coef=coef, policy_kwargs=policy_kwargs, **zero)
    with th.no_grad():
        model.policy.action_net.bias.fill_(1.5)  # far from zero, so that the gradient is not small by accident
    outputs: list[th.Tensor] = []
    gradients: list[th.Tensor] = []
    model.policy.action_net.register_forward_hook(lambda _m, _i, out: outputs.append(out) if out.requires_grad else None)
    model.policy.action_net.bias.register_hook(lambda grad: gradients.append(grad.clone()))
    model.learn(8)  # one update
    assert len(outputs) == 1 and len(gradients) == 1
    expected = 2.0 * coef * outputs[0].detach().mean(dim=0)
    th.testing.assert_close(gradients[0], expected)
    assert model.logger.name_to_value["train/pre_activation_loss"] == pytest.approx(
        outputs[0].detach().pow(2).sum(-1).mean().item(), rel=1e-5
    )
    # Off by default, and then nothing of it reaches the head.
    default = tiny_dvrl(make_vec_env("Pendulum-v1", n_envs=2, seed=0), policy_kwargs=policy_kwargs, **zero)
    assert default.pre_activation_coef == 0.0
    default.policy.action_net.bias.register_hook(lambda grad: gradients.append(grad.clone()))
    default.learn(8)
    assert float(gradients[-1].abs().max()) == 0.0


def test_n_particles_has_one_home() -> None:
    # The DVRL argument is passed to the policy by name: the two always agree (the RNN baseline's belief has one state).
    model = DVRL("MlpPolicy", "CartPole-v1", n_particles=15, policy_kwargs=SMALL)
    assert model.n_particles == model.policy.n_particles == model.policy.belief_particles == 15
    model = DVRL("MlpPolicy", "CartPole-v1", n_particles=15, use_particle_filter=False, policy_kwargs=SMALL)
    assert model.n_particles == model.policy.n_particles == 15 and model.policy.belief_particles == 1
    # The same value in policy_kwargs is no conflict: it is passed once.
    model = DVRL("MlpPolicy", "CartPole-v1", n_particles=4, policy_kwargs=dict(n_particles=4, resample=True, **SMALL))
    assert model.policy.n_particles == 4


def test_load_checks_its_keyword_arguments_and_n_particles_can_change(tmp_path) -> None:
    # rl-zoo3's --trained-agent passes the YAML's hyperparameters to load(): they are checked as at construction.
    model = DVRL("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=2, n_particles=3, policy_kwargs=SMALL)
    model.learn(8)
    model.save(tmp_path / "model.zip")
    with pytest.raises(HyperparameterValueError, match=names("gamma")):
        DVRL.load(tmp_path / "model.zip", gamma=1.5)
    with pytest.raises(HyperparameterValueError, match=names("max_grad_norm")):
        DVRL.load(tmp_path / "model.zip", max_grad_norm=-1)
    # The networks do not depend on the number of particles (beyond one): a load may change it.
    loaded = DVRL.load(tmp_path / "model.zip", env=make_vec_env("CartPole-v1", n_envs=2, seed=0), n_particles=5)
    assert loaded.n_particles == loaded.policy.n_particles == 5
    loaded.learn(8)
    assert loaded.rollout_buffer.normals.shape[3] == 5


def tiny_dvrl(env: Any, **kwargs: Any) -> DVRL:
    """A small, fast DVRL (4 steps per update, 3 particles, tiny networks)."""
    arguments: dict[str, Any] = dict(n_steps=4, multiplier_backprop_length=2, n_particles=3, seed=0, policy_kwargs=SMALL)
    return DVRL("MlpPolicy", env, **{**arguments, **kwargs})


@pytest.mark.parametrize("what", ["observation", "reward"])
def test_non_finite_environment_data_never_reaches_the_model(what: str, tmp_path) -> None:
    # Today's failure without the check: a NaN observation ended in torch.distributions' "Expected parameter logits".
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0, wrapper_class=NonFiniteAt, wrapper_kwargs=dict(step=7, what=what))
    model = tiny_dvrl(env)
    model.learn(8)  # one update, on steps 1 to 4
    before = model_tensors(model)
    match = rf"DVRL: the {what} from the environment is NaN or inf \(env index 0, 1\)"
    check_weights_survive(model, lambda: model.learn(16, reset_num_timesteps=False), match, before, tmp_path)
    assert model._n_updates == 1


def test_non_finite_reset_and_terminal_observations_are_caught() -> None:
    nan_everywhere = dict(
        wrapper_class=gym.wrappers.TransformObservation,
        wrapper_kwargs=dict(func=lambda obs: np.full_like(obs, np.nan), observation_space=None),
    )
    with pytest.raises(ValueError, match=r"DVRL: the observation from the environment is NaN or inf \(env index 0, 1\)"):
        tiny_dvrl(make_vec_env("CartPole-v1", n_envs=2, seed=0, **nan_everywhere)).learn(8)
    # The last observation of an episode cut by its time limit enters the filter (the bootstrap value).
    env = make_vec_env(
        "CartPole-v1",
        n_envs=2,
        seed=0,
        env_kwargs=dict(max_episode_steps=3),
        wrapper_class=NonFiniteAt,
        wrapper_kwargs=dict(step=3, what="observation"),
    )
    with pytest.raises(ValueError, match=r"DVRL: the terminal observation from the environment is NaN or inf"):
        tiny_dvrl(env).learn(8)


@pytest.mark.parametrize("bad, batch_norm", [("elbo", False), ("a2c", False), ("gradient", False), ("elbo", True)])
def test_non_finite_loss_keeps_the_last_finite_weights(bad: str, batch_norm: bool, monkeypatch, tmp_path) -> None:
    # With batch_norm the replay moves BatchNorm's running statistics before the loss is known: they are put back too.
    model = tiny_dvrl(make_vec_env("MountainHike-v0", n_envs=2, seed=0), policy_kwargs={**SMALL, "batch_norm": batch_norm})
    model.learn(8)
    before = model_tensors(model)
    replay_window = model.replay_window

    def bad_elbo_replay() -> tuple[list, list, list]:
        beliefs, phi_zs, elbos = replay_window()
        if bad == "elbo":
            return beliefs, phi_zs, [elbo * float("nan") for elbo in elbos]
        # A finite value with a NaN gradient: d sqrt(x) / dx is infinite at 0, times the 0 that x is multiplied by.
        return beliefs, phi_zs, [elbo + th.sqrt(0.0 * model.policy.value_net.weight.sum()) for elbo in elbos]

    def nan_returns(self: DVRLRolloutBuffer, last_values: th.Tensor, dones: np.ndarray) -> None:
        self.returns.fill_(float("nan"))

    if bad == "a2c":
        monkeypatch.setattr(DVRLRolloutBuffer, "compute_returns", nan_returns)
        match = r"The DVRL loss \(non-finite terms: A2C policy, A2C value\) is NaN or inf"
    else:
        monkeypatch.setattr(model, "replay_window", bad_elbo_replay)
        match = r"The DVRL loss \(non-finite term: ELBO\) is NaN" if bad == "elbo" else "The gradient of the DVRL loss is NaN"
    check_weights_survive(model, lambda: model.learn(8, reset_num_timesteps=False), match, before, tmp_path)
    assert model._n_updates == 1


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        # Episodes of 75 steps: the split (after 24 steps per env) is mid-episode and, with M = 4, mid-window.
        ("MountainHike-v0", dict(multiplier_backprop_length=4)),
        ("CartPole-v1", dict(multiplier_backprop_length=3, sliding_window=True, optimizer="adam")),
        ("CartPole-v1", dict(use_particle_filter=False, normalize_advantage=True)),
        ("MountainHike-v0", dict(model_max_grad_norm=1.0)),
    ],
)
def test_exact_resume(env_id: str, kwargs: dict, tmp_path) -> None:
    # learn(2n) = learn(n), save, load(force_reset=False), learn(n): the belief, the filter noise drawn ahead for the
    # next step and the backpropagation window travel with the save, the generators' states with ExactResumeMixin.
    check_exact_resume(lambda: tiny_dvrl(make_vec_env(env_id, n_envs=2, seed=0), **kwargs), 48, tmp_path)


def test_initialisation() -> None:
    policy = DVRLPolicy(spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (2,)), lambda _: 1e-3, **SMALL)
    relu_gain = math.sqrt(2.0)
    w = policy.prior.hidden.weight.detach()
    # Orthogonal rows (the layer is wider than tall) scaled by the ReLU gain, zero bias.
    assert th.allclose(w @ w.T, relu_gain**2 * th.eye(w.shape[0]), atol=1e-4)
    assert th.equal(policy.prior.hidden.bias, th.zeros_like(policy.prior.hidden.bias))
    assert float(policy.action_net.weight.detach().abs().max()) < 0.02 * relu_gain  # type: ignore[operator]
    assert th.equal(policy.log_std, th.zeros(2))
    assert isinstance(policy.particle_gru, th.nn.GRU)
    # The transition GRUCell: orthogonal (gain 1) weights and zero biases, as the original.
    w_hh = policy.transition.weight_hh.detach()
    assert th.allclose(w_hh.T @ w_hh, th.eye(16), atol=1e-4)
    assert th.equal(policy.transition.bias_ih.detach(), th.zeros(48))
    single = DVRLPolicy(spaces.Box(-1, 1, (3,)), spaces.Discrete(2), lambda _: 1e-3, n_particles=1, **SMALL)
    assert isinstance(single.particle_gru, th.nn.Linear)


@pytest.mark.parametrize("size", [(36, 36), (84, 84), (50, 61)])
def test_conv_decoder_reconstructs_full_size(size: tuple[int, int]) -> None:
    obs_space = spaces.Box(0, 255, (1, *size), np.uint8)
    policy = CnnPolicy(obs_space, spaces.Discrete(3), lambda _: 1e-3, n_particles=2, h_dim=8, z_dim=4, action_encoding=4)
    obs = th.randint(0, 256, (2, 1, *size), dtype=th.uint8)
    # The emission's hidden layer is as wide as the encoding (the conv output), as in the original.
    assert policy.emission_hidden.out_features == policy.obs_x_dim == int(np.prod(policy.obs_encoder.conv_shape))
    probability = policy.emission_head(th.randn(4, policy.obs_x_dim))
    assert probability.shape == (4, 1, *size)
    out = policy.filter_step(policy.initial_belief(2), obs, th.ones(2), policy.sample_noise(2))
    assert out.elbo.shape == (2,) and bool(th.isfinite(out.elbo).all())


def test_rnn_baseline_and_no_resampling() -> None:
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = DVRL("MlpPolicy", env, use_particle_filter=False, n_steps=4, seed=0, policy_kwargs=SMALL)
    assert not hasattr(model.policy, "prior") and model.policy.belief_particles == 1
    model.learn(40)
    action, (h, z, log_w, prev_action) = model.predict(env.reset())
    assert action.shape == (2, 1) and h.shape == (2, 1, 16) and z.shape == (2, 1, 0) and log_w.shape == (2, 1)
    assert model.logger.name_to_value["train/elbo"] == 0.0
    # With no ELBO weight the particles are not resampled (the step keeps particle k's h as particle k).
    model = DVRL("MlpPolicy", "CartPole-v1", elbo_coef=0.0, n_particles=3, seed=0, policy_kwargs=SMALL)
    assert model.policy.resample is False
    model.learn(20)
    policy = model.policy
    belief = Belief(th.randn(1, 3, 16), th.zeros(1, 3, 4), th.tensor([[0.0, -50.0, -50.0]]), th.zeros(1, 2))
    with th.no_grad():
        out = policy.filter_step(belief, th.zeros(1, 4), th.zeros(1), policy.sample_noise(1))
        # Without resampling the three particles keep distinct histories (with resampling particle 0 would be copied).
        assert len({tuple(row.tolist()) for row in out.belief.h[0]}) == 3


def test_split_clip_bounds_each_gradient_by_its_own_norm() -> None:
    # Two linear losses on one weight vector: gradients a = (3, 4) (norm 5) and b = (600, 800) (norm 1000), as the A2C
    # terms and the ELBO at the start of a Mountain Hike run. SGD with lr 1 makes the step the clipped gradient.
    weight = th.nn.Parameter(th.zeros(2))
    a, b = th.tensor([3.0, 4.0]), th.tensor([600.0, 800.0])
    optimizer = th.optim.SGD([weight], lr=1.0)
    norms = checked_split_step(optimizer, [(a @ weight, 0.5), ((b @ weight), 2.0)], "the test loss")
    assert [float(n) for n in norms] == pytest.approx([5.0, 1000.0])
    # Each part at its own bound: 0.5 * a / 5 + 2 * b / 1000 = (0.3, 0.4) + (1.2, 1.6), whatever the other's size.
    assert weight.detach().tolist() == pytest.approx([-1.5, -2.0], abs=1e-5)
    # With one global clip of 0.5 the A2C part would be scaled by 0.5 / ||a + b|| = 0.5 / 1005: the ELBO owns it.
    weight.data.zero_()
    checked_step(optimizer, a @ weight + b @ weight, "the test loss", 0.5)
    assert weight.detach().tolist() == pytest.approx((-(a + b) * 0.5 / 1005.0).tolist(), abs=1e-5)
    # A part under its bound is left alone; a constant part (no graph) counts as a zero gradient.
    weight.data.zero_()
    norms = checked_split_step(optimizer, [(a @ weight, 10.0), (th.tensor(1.0), 1.0)], "the test loss")
    assert float(norms[1]) == 0.0 and weight.detach().tolist() == pytest.approx([-3.0, -4.0])
    with pytest.raises(ValueError, match="The gradient of the test loss is NaN"):
        checked_split_step(optimizer, [(th.sqrt(0.0 * weight.sum()), 1.0)], "the test loss")


def test_checked_gradient_norm_is_the_global_norm_and_stops_non_finite_gradients() -> None:
    # The check shared by checked_step and checked_split_step: ||(3, 4, 12)|| = 13 over the gradients present.
    weight = th.nn.Parameter(th.zeros(3))
    optimizer = th.optim.SGD([weight], lr=1.0)
    norm = checked_gradient_norm(optimizer, [th.tensor([3.0, 4.0]), None, th.tensor([12.0])], "the test loss")
    assert float(norm) == pytest.approx(13.0)
    assert float(checked_gradient_norm(optimizer, [None], "the test loss")) == 0.0
    weight.grad = th.tensor([float("nan"), 0.0, 0.0])
    with pytest.raises(ValueError, match="The gradient of the test loss is NaN or inf"):
        checked_gradient_norm(optimizer, [weight.grad], "the test loss")
    assert weight.grad is None  # cleared, so that no later step can apply it


def test_split_clip_in_training_logs_both_norms_and_the_ess(tmp_path) -> None:
    model = tiny_dvrl(make_vec_env("MountainHike-v0", n_envs=2, seed=0), model_max_grad_norm=1.0, elbo_coef=1.0)
    model.learn(8)
    values = model.logger.name_to_value
    assert values["train/grad_norm_model"] > 0 and values["train/grad_norm_a2c"] > 0
    assert 1.0 <= values["train/ess"] <= 3.0  # K = 3 particles
    model.save(tmp_path / "model")
    assert DVRL.load(tmp_path / "model").model_max_grad_norm == 1.0
    default = tiny_dvrl(make_vec_env("MountainHike-v0", n_envs=2, seed=0))
    default.learn(8)
    assert default.model_max_grad_norm is None and "train/grad_norm" in default.logger.name_to_value
    # The RNN baseline has no model term: only the A2C bound acts, and no model norm or ESS is logged.
    rnn = tiny_dvrl(make_vec_env("MountainHike-v0", n_envs=2, seed=0), use_particle_filter=False, model_max_grad_norm=1.0)
    rnn.learn(8)
    assert "train/grad_norm_a2c" in rnn.logger.name_to_value
    assert "train/grad_norm_model" not in rnn.logger.name_to_value and "train/ess" not in rnn.logger.name_to_value


def test_effective_sample_size() -> None:
    log_weights = th.log(th.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [3.0, 1.0, 0.0, 0.0]]) + 1e-30) + 7.0
    assert effective_sample_size(log_weights).tolist() == pytest.approx([4.0, 1.0, 1.0 / (0.75**2 + 0.25**2)], rel=1e-5)


def test_optimizers() -> None:
    model = DVRL("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=SMALL)
    assert isinstance(model.policy.optimizer, th.optim.RMSprop)
    assert model.policy.optimizer.defaults["alpha"] == 0.99 and model.policy.optimizer.defaults["eps"] == 1e-5
    model = DVRL("MlpPolicy", "CartPole-v1", optimizer="adam", learning_rate=1e-3, seed=0, policy_kwargs=SMALL)
    assert isinstance(model.policy.optimizer, th.optim.Adam) and model.policy.optimizer.defaults["lr"] == 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("use_particle_filter", [True, False])
def test_learns_cue_memory(use_particle_filter: bool) -> None:
    """A seeded learning test on a POMDP that needs memory (the cue is seen two steps before it must be named)."""
    env = make_vec_env(CueMemory, n_envs=8, seed=0)
    model = DVRL(
        "MlpPolicy",
        env,
        learning_rate=3e-3,
        n_steps=5,
        multiplier_backprop_length=2,
        n_particles=4,
        use_particle_filter=use_particle_filter,
        seed=0,
        policy_kwargs=dict(h_dim=32, z_dim=8, encoder_sizes=[16], action_encoding=8),
    )
    model.learn(4000)
    mean_reward, _ = evaluate_policy(model, make_vec_env(CueMemory, n_envs=8, seed=1), n_eval_episodes=200, deterministic=True)
    assert mean_reward >= 0.95


def test_batch_norm_variant_runs() -> None:
    # The original's encoder_batch_norm: BatchNorm in the encoder, the action encoder, the proposal and emission hidden
    # layers and the decoder; running statistics are updated by the replay (training mode), not by acting.
    kwargs = dict(n_particles=3, seed=0, policy_kwargs={**SMALL, "batch_norm": True})
    with pytest.raises(ValueError, match="n_envs >= 2"):
        DVRL("MlpPolicy", "CartPole-v1", **kwargs).learn(20)
    model = DVRL("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), **kwargs)
    norms = [m for m in model.policy.modules() if isinstance(m, th.nn.BatchNorm1d)]
    assert len(norms) == 4  # encoder (1 layer), action encoder, proposal, emission (the decoder has no hidden layer)
    model.learn(20)
    assert all(int(m.num_batches_tracked) > 0 for m in norms)
    action, _ = model.predict(np.zeros(4, dtype=np.float32))
    assert action.shape == ()


def test_time_limit_truncation_is_bootstrapped() -> None:
    # Zero rewards and episodes cut by a time limit after 3 steps: the last step's reward becomes gamma * V of the
    # belief after the final observation (SB3's A2C bootstraps truncated episodes the same way); terminations would not.
    env = make_vec_env(
        "Pendulum-v1",
        n_envs=2,
        seed=0,
        env_kwargs=dict(max_episode_steps=3),
        wrapper_class=gym.wrappers.TransformReward,
        wrapper_kwargs=dict(func=lambda r: 0.0),
    )
    model = DVRL("MlpPolicy", env, n_steps=3, n_particles=2, gamma=0.5, seed=0, policy_kwargs=SMALL)
    _, callback = model._setup_learn(100, None)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, 3)
    rewards = model.rollout_buffer.rewards
    assert th.equal(rewards[:2], th.zeros(2, 2))
    assert bool((rewards[2] != 0).all()) and bool(th.isfinite(rewards[2]).all())
    # The episodes ended at the last step: the return there is the bootstrapped reward alone.
    assert th.equal(model.rollout_buffer.returns[2], rewards[2])
