"""Bayesian DDPG: DDPG/TD3 with Bayes-by-backprop actor and critics, posterior-sampling exploration and EWC/VCL."""

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.td3.td3 import TD3
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from typing_extensions import Unpack

from sb3_bayes.bayes_ddpg.policies import BayesianDDPGPolicy, CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_bayes.common.base_class import AlgorithmSettings, NamedRunsMixin, make_checked_env
from sb3_bayes.common.bayesian_layers import bayesian_layers, kl_divergence, refresh_weights, weight_mode
from sb3_bayes.common.buffers import PlaceholderReplayBufferMixin
from sb3_bayes.common.consolidation import ConsolidationMixin, ReplaySamples
from sb3_bayes.common.ewc import gaussian_output_fisher
from sb3_bayes.common.random_state import ExactResumeMixin
from sb3_bayes.common.utils import check_flat_box
from sb3_bayes.common.validation import ParameterValidator

_OBSERVATION_SPACES = (spaces.Box, spaces.Dict, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


class _PreSquashActor(nn.Module):
    """The actor's output before its final ``Tanh`` (the pre-squash mean), for the EWC Fisher of the actor."""

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: th.Tensor | dict[str, th.Tensor]) -> th.Tensor:
        features = self.actor.extract_features(obs, self.actor.features_extractor)  # type: ignore[operator]
        mu = self.actor.mu
        assert isinstance(mu, nn.Sequential)
        return mu[:-1](features) if isinstance(mu[-1], nn.Tanh) else mu(features)


class BayesianDDPG(ExactResumeMixin, NamedRunsMixin, ConsolidationMixin, PlaceholderReplayBufferMixin, TD3):
    """
    Bayesian DDPG: SB3's DDPG/TD3 whose actor and critics are Bayes-by-backprop networks (mean-field Gaussian weights,
    Blundell et al., 2015), trained on the per-data-set variational objective

    ``critic: sum_j mean_batch (Q_j(s, a) - y)^2 + kl_weight * KL(q_critic || prior) / N``,
    ``actor: -mean_batch Q_1(s, mu(s)) + kl_weight * KL(q_actor || prior) / N``,

    with ``N`` the number of transitions in the replay buffer (Blundell et al., eq. 8-9: the KL is charged once per data
    set, so per minibatch it is divided by the data set size, not by the batch size); after a task switch that emptied
    the buffer, ``N`` keeps counting the steps since the prior was set (see ``_n_data``). ``Q(s, a)`` is evaluated with
    the action ``a`` actually taken (stored in the buffer) and fresh weight noise (local reparameterisation).

    Exploration is posterior sampling: the actor acts with a held weight sample, one per environment, redrawn at the
    start of each episode (and every ``resample_every`` steps if set) and mapped through the current posterior after
    every gradient step (same draw, the posterior moves); ``action_noise`` stays available on top. The training
    environments' samples are kept apart from those of ``predict`` outside ``learn`` (``policy.rollout_samples``), so a
    stochastic evaluation during training does not redraw them. Targets use the
    target networks (Polyak copies of the variational parameters) with their posterior mean weights, or the critic
    average over ``n_target_samples`` weight samples.

    Defaults are DDPG's (one critic, no policy delay, no target smoothing), as SB3's DDPG is TD3 with those switched
    off; ``policy_kwargs=dict(n_critics=2), policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5`` is TD3's.

    Continual learning (:class:`~sb3_bayes.common.consolidation.ConsolidationMixin`, shared with BayesianDQN, with the
    same meaning of every argument): ``consolidation="ewc"`` adds ``ewc_lambda * sum_i F_i (theta_i - theta*_i)^2``
    (Kirkpatrick et al., 2017, eq. 3; summed over tasks, or online with ``ewc_online``, Schwarz et al., 2018) on the
    posterior means of ``ewc_modules`` after every ``consolidate()``; ``"vcl"`` makes the posterior the prior of the next
    task (variational continual learning, Nguyen et al., 2018). The Fisher is that of a unit-variance Gaussian around
    the actor's pre-squash action and the critics' Q-values (see :meth:`_ewc_fisher`).

    Every argument and ``policy_kwargs`` entry is checked when the model is built (and at ``load``); a NaN or inf
    observation or reward raises before it is stored, and a non-finite loss or gradient before the optimiser step
    (the weights stay those of the last finite update). ``save`` stores the random generators' states, so training
    resumes exactly after ``load`` (:class:`~sb3_bayes.common.random_state.ExactResumeMixin`).

    :param policy: The policy model to use (``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``).
    :param env: The environment to learn from (if registered in Gym, can be str).
    :param learning_rate: Adam learning rate of actor and critics (a schedule is accepted).
    :param buffer_size: Size of the replay buffer.
    :param learning_starts: Steps of uniformly random actions before learning starts.
    :param batch_size: Minibatch size.
    :param tau: Polyak coefficient of the target networks.
    :param gamma: Discount factor.
    :param train_freq: Update the model every ``train_freq`` steps (or a tuple such as ``(1, "episode")``).
    :param gradient_steps: Gradient steps per update (-1: as many as environment steps).
    :param action_noise: Optional action noise on top of posterior sampling.
    :param replay_buffer_class: Replay buffer class (None: SB3's choice).
    :param replay_buffer_kwargs: Its keyword arguments.
    :param optimize_memory_usage: SB3's memory-efficient replay buffer.
    :param n_steps: n-step returns (SB3's ``NStepReplayBuffer``).
    :param policy_delay: Actor and targets are updated every ``policy_delay`` critic updates (DDPG: 1, TD3: 2).
    :param target_policy_noise: Std of the Gaussian noise of target policy smoothing (DDPG: 0, TD3: 0.2).
    :param target_noise_clip: Clip of that noise (TD3: 0.5).
    :param kl_weight: Weight of the KL terms (1 is the evidence lower bound; smaller values tempers the posterior).
    :param resample_every: Also redraw the held actor samples every this many environment steps (None: once per
        episode only; else >= 1).
    :param n_target_samples: 0: target critics with the posterior mean weights; k > 0: mean of k sampled target
        Q-values per transition.
    :param consolidation: ``"none"``, ``"ewc"`` or ``"vcl"`` (what ``consolidate()`` does at a task switch).
    :param ewc_lambda: Weight of the EWC penalty (>= 0).
    :param ewc_online: Online EWC (decaying old Fisher terms, Schwarz et al., 2018) instead of their sum.
    :param ewc_decay: Decay of the old Fisher in online EWC, in ``[0, 1]``.
    :param ewc_modules: Modules whose parameters EWC anchors, by attribute path: ``"actor"`` (Continual World's default),
        ``"critic"``, or parts of them (``"actor.mu"``, ``"critic.qf0"``).
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    :param settings: The arguments every algorithm passes on to SB3's ``BaseAlgorithm`` unchanged, by name and with SB3's
        defaults (:class:`~sb3_bayes.common.base_class.AlgorithmSettings`): ``stats_window_size``, ``tensorboard_log``,
        ``policy_kwargs``, ``verbose``, ``seed``, ``device``. Here ``policy_kwargs`` holds the policy's arguments:
        ``net_arch``, ``n_critics``, ``bayesian_actor``, ``prior_std``, ``posterior_init_log_var``, ...
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    policy: BayesianDDPGPolicy
    consolidated_networks = ("actor", "critic")

    def __init__(
        self,
        policy: str | type[BayesianDDPGPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 1e-3,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        policy_delay: int = 1,
        target_policy_noise: float = 0.0,
        target_noise_clip: float = 0.0,
        kl_weight: float = 1.0,
        resample_every: int | None = None,
        n_target_samples: int = 0,
        consolidation: str = "none",
        ewc_lambda: float = 1e4,
        ewc_online: bool = False,
        ewc_decay: float = 1.0,
        ewc_modules: str | Sequence[str] = ("actor",),
        _init_setup_model: bool = True,
        **settings: Unpack[AlgorithmSettings],
    ) -> None:
        env = make_checked_env(type(self).__name__, env, settings, self._check_spaces)
        self.kl_weight = kl_weight
        self.resample_every = resample_every
        self.n_target_samples = n_target_samples
        self._set_consolidation_arguments(consolidation, ewc_lambda, ewc_online, ewc_decay, ewc_modules)
        super().__init__(
            policy,
            env,  # type: ignore[arg-type]
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            policy_delay=policy_delay,
            target_policy_noise=target_policy_noise,
            target_noise_clip=target_noise_clip,
            _init_setup_model=False,
            **settings,
        )
        if _init_setup_model:
            self._setup_model()

    @staticmethod
    def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
        if not isinstance(observation_space, _OBSERVATION_SPACES):
            raise ValueError(
                f"BayesianDDPG does not support the observation space {observation_space}: use Box, Dict, Discrete, "
                "MultiDiscrete or MultiBinary observations."
            )
        check_flat_box(action_space, "action", "BayesianDDPG", finite=True)

    def _check_hyperparameters(self) -> None:
        """
        Check every constructor argument (``policy_kwargs`` entries are checked by the policy's constructor): at
        construction and at ``load(**kwargs)``, before anything is allocated. Raises a ``HyperparameterValueError`` or
        ``HyperparameterTypeError`` that names the argument, the value and what is allowed.
        """
        check = ParameterValidator(type(self).__name__)
        self._check_off_policy_hyperparameters(check)
        bayesian = [self.policy_kwargs.get(key, True) is not False for key in ("bayesian_actor", "bayesian_critic")]
        self._check_consolidation_hyperparameters(
            check,
            vcl_allowed=any(bayesian),
            vcl_needs="'none' or 'ewc' when bayesian_actor and bayesian_critic are both False (VCL replaces the prior of "
            "Bayesian layers)",
        )
        self.policy_delay = check.integer("policy_delay", self.policy_delay)
        self.target_policy_noise = check.non_negative("target_policy_noise", self.target_policy_noise)
        self.target_noise_clip = check.non_negative("target_noise_clip", self.target_noise_clip)
        check.relation(
            "target_noise_clip",
            self.target_noise_clip,
            self.target_policy_noise == 0 or self.target_noise_clip > 0,
            f"> 0 with target_policy_noise={self.target_policy_noise} (a clip of 0 removes the smoothing noise)",
        )
        self.kl_weight = check.non_negative("kl_weight", self.kl_weight)
        self.resample_every = check.optional(check.integer, "resample_every", self.resample_every)
        self.n_target_samples = check.integer("n_target_samples", self.n_target_samples, minimum=0)

    def _setup_model(self) -> None:
        self._check_hyperparameters()
        self._check_spaces(self.observation_space, self.action_space)
        super()._setup_model()
        # Collected once; the training loop switches their modes several times per gradient step.
        self._layers = {
            name: bayesian_layers(getattr(self, name)) for name in ("actor", "critic", "actor_target", "critic_target")
        }
        self._setup_consolidation()

    def _n_buffer(self) -> int:
        assert self.replay_buffer is not None
        return max(self.replay_buffer.size() * self.n_envs, 1)

    def _n_data(self) -> int:
        """
        ``N`` of ``KL / N``: the number of transitions the posterior has been fit to since its prior was set, i.e.
        the transitions in the replay buffer, or, if more, the environment steps since the prior was last replaced
        (at construction, or by a VCL consolidation). The two agree in single-task training until the buffer is full.
        After a task switch that empties the buffer, counting only the few new transitions would let the prior
        ``N(0, s^2)`` overwhelm everything learned so far (``KL / 1`` at the first step: a collapse of the weights
        towards 0, measured as catastrophic forgetting in benchmarks/bayes_ddpg); with VCL the old data live in the new
        prior, so only the new task's transitions count.
        """
        return max(self._n_buffer(), self.num_timesteps - self._prior_timesteps)

    def _target_q_values(self, next_obs: th.Tensor | dict[str, th.Tensor], next_actions: th.Tensor) -> th.Tensor:
        """Target critics' ``[B, n_critics]`` values: posterior mean weights, or the mean of ``n_target_samples`` samples."""
        if self.n_target_samples == 0:
            with weight_mode(self._layers["critic_target"], "mean"):
                return th.cat(self.critic_target(next_obs, next_actions), dim=1)
        k, batch = self.n_target_samples, next_actions.shape[0]
        if isinstance(next_obs, dict):
            obs_k: th.Tensor | dict[str, th.Tensor] = {key: v.repeat(k, *([1] * (v.dim() - 1))) for key, v in next_obs.items()}
        else:
            obs_k = next_obs.repeat(k, *([1] * (next_obs.dim() - 1)))
        with weight_mode(self._layers["critic_target"], "sample"):
            q = th.cat(self.critic_target(obs_k, next_actions.repeat(k, 1)), dim=1)  # type: ignore[arg-type]
        return q.view(k, batch, -1).mean(dim=0)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])
        assert self.replay_buffer is not None
        n_data = self._n_data()

        actor_losses, critic_losses, td_losses, kl_critic_values, kl_actor_values = [], [], [], [], []
        for _ in range(gradient_steps):
            self._n_updates += 1
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma

            with th.no_grad():
                with weight_mode(self._layers["actor_target"], "mean"):
                    next_actions = self.actor_target(replay_data.next_observations)
                if self.target_policy_noise > 0:
                    noise = th.randn_like(next_actions) * self.target_policy_noise
                    noise = noise.clamp(-self.target_noise_clip, self.target_noise_clip)
                    next_actions = (next_actions + noise).clamp(-1, 1)
                next_q_values, _ = th.min(
                    self._target_q_values(replay_data.next_observations, next_actions), dim=1, keepdim=True
                )
                target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values

            # The critics see the action actually taken (buffer actions are scaled to [-1, 1], as the actor's output).
            current_q_values = self.critic(replay_data.observations, replay_data.actions)
            td_loss = sum(F.mse_loss(current_q, target_q_values) for current_q in current_q_values)
            assert isinstance(td_loss, th.Tensor)
            kl_critic = kl_divergence(self._layers["critic"]) / n_data
            critic_loss, _ = self._consolidated_step(
                "critic", self.critic.optimizer, td_loss + self.kl_weight * kl_critic, "the BayesianDDPG critic loss"
            )
            critic_losses.append(critic_loss)
            td_losses.append(td_loss.item())
            kl_critic_values.append(kl_critic.item())

            if self._n_updates % self.policy_delay == 0:
                # Deterministic policy gradient through the posterior-mean critic; the actor's own weights are
                # sampled (local reparameterisation), so the actor posterior is fit to the same objective.
                with weight_mode(self._layers["critic"], "mean"):
                    q_pi = self.critic.q1_forward(replay_data.observations, self.actor(replay_data.observations))
                kl_actor = kl_divergence(self._layers["actor"]) / n_data
                actor_loss, _ = self._consolidated_step(
                    "actor", self.actor.optimizer, -q_pi.mean() + self.kl_weight * kl_actor, "the BayesianDDPG actor loss"
                )
                actor_losses.append(actor_loss)
                kl_actor_values.append(kl_actor.item())

                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)
                polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)
                polyak_update(self.actor_batch_norm_stats, self.actor_batch_norm_stats_target, 1.0)

        if self.policy.n_thompson_samples > 0 and not self.policy.rollout_samples.is_empty():
            # The training environments' held samples keep their noise draws and follow the updated posterior
            # (w = mu + sigma * eps with the same eps): the saved samples are always those of the current posterior.
            with self.policy.rollout_thompson(self.n_envs):
                refresh_weights(self.policy.actor_layers)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        self.logger.record("train/td_loss", np.mean(td_losses))
        self.logger.record("train/kl_critic", np.mean(kl_critic_values))
        if actor_losses:
            self.logger.record("train/actor_loss", np.mean(actor_losses))
            self.logger.record("train/kl_actor", np.mean(kl_actor_values))
        with th.no_grad():
            for name in ("actor", "critic"):
                layers = self._layers[name]
                if layers:
                    std_sum = sum(float(th.exp(0.5 * layer.weight_log_var).sum()) for layer in layers)
                    n_weights = sum(layer.weight_log_var.numel() for layer in layers)
                    self.logger.record(f"train/{name}_posterior_std", std_sum / n_weights)

    def _episodes_ended(self, indices: np.ndarray) -> None:
        # Posterior sampling: a new actor sample for every environment whose episode just ended.
        with self.policy.rollout_thompson(self.n_envs):
            if self.policy.n_thompson_samples == self.n_envs:
                self.policy.thompson_resample(indices)

    def _on_step(self) -> None:
        super()._on_step()
        if self.resample_every is not None and (self.num_timesteps // self.n_envs) % self.resample_every == 0:
            if self.policy.n_thompson_samples > 0:
                with self.policy.rollout_thompson(self.n_envs):
                    self.policy.thompson_resample()

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        # The training environments act with their own held samples.
        with self.policy.rollout_thompson(self.n_envs):
            return super()._sample_action(learning_starts, action_noise, n_envs)

    def _ewc_fisher(self, network: str, parameter_names: list[str], samples: ReplaySamples) -> dict[str, th.Tensor]:
        """
        The EWC Fisher of the actor or the critics on replayed transitions: that of a unit-variance Gaussian around the
        network's output, computed exactly from per-sample Jacobians (``gaussian_output_fisher``), with the posterior
        mean weights: for each critic its Q-value of the action taken; for the actor its action *before* the final
        tanh, i.e. the mean of a tanh-squashed Gaussian policy (the policy Fisher Continual World uses with SAC). After
        the tanh, saturated actions (bang-bang torques) would have a near-zero Jacobian and so leave exactly the
        weights that produce them unprotected.

        :param network: ``"actor"`` or ``"critic"``.
        :param parameter_names: The network's parameters to estimate the Fisher of.
        :param samples: Replayed transitions.
        :return: Parameter name -> Fisher diagonal (the mean over the transitions).
        """
        obs = samples.observations
        keys: list[str] = sorted(obs) if isinstance(obs, dict) else []
        obs_inputs = tuple(obs[k] for k in keys) if isinstance(obs, dict) else (obs,)

        def as_obs(xs: tuple[th.Tensor, ...]) -> th.Tensor | dict[str, th.Tensor]:
            batched = tuple(x.unsqueeze(0) for x in xs)
            return dict(zip(keys, batched)) if keys else batched[0]

        pre_squash_actor = _PreSquashActor(self.actor)

        def actor_output(params: dict[str, th.Tensor], sample: tuple[th.Tensor, ...]) -> th.Tensor:
            prefixed = {f"actor.{name}": value for name, value in params.items()}
            return functional_call(pre_squash_actor, prefixed, (as_obs(sample),)).squeeze(0)

        def critic_output(params: dict[str, th.Tensor], sample: tuple[th.Tensor, ...]) -> th.Tensor:
            *xs, action = sample
            q_values = functional_call(self.critic, params, (as_obs(tuple(xs)), action.unsqueeze(0)))
            return th.cat(q_values, dim=1).squeeze(0)

        module = getattr(self, network)
        with weight_mode(module, "mean"):
            if network == "actor":
                return gaussian_output_fisher(module, actor_output, obs_inputs, parameter_names)
            return gaussian_output_fisher(module, critic_output, (*obs_inputs, samples.actions), parameter_names)
