"""Policies of BayesianDDPG: SB3's TD3/DDPG actor and critics with Bayes-by-backprop layers."""

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.td3.policies import Actor, TD3Policy
from torch import nn

from sb3_bayes.common.bayesian_layers import (
    HeldSamples,
    bayesian_layers,
    check_bayesian_layer_settings,
    check_network_arguments,
    create_bayesian_mlp,
    held_sample_slots,
    refresh_weights,
    resample_weights,
    using_held_samples,
    weight_mode,
)
from sb3_bayes.common.policies import EpisodeStartPolicy, constructor_arguments
from sb3_bayes.common.utils import check_image_observations
from sb3_bayes.common.validation import ParameterValidator


def _bayes_layer_kwargs(prior_std: float, posterior_init_log_var: float, posterior_init_mean_std: float | None) -> dict:
    return dict(
        prior_std=prior_std, posterior_init_log_var=posterior_init_log_var, posterior_init_mean_std=posterior_init_mean_std
    )


class BayesianActor(Actor):
    """
    Deterministic TD3/DDPG actor whose layers are ``BayesianLinear``: each weight sample is one deterministic policy.

    :param observation_space: Observation space.
    :param action_space: Action space.
    :param net_arch: Hidden layer widths.
    :param features_extractor: Network to extract features.
    :param features_dim: Number of features.
    :param activation_fn: Activation function.
    :param normalize_images: Whether to divide images by 255.
    :param prior_std: Standard deviation of the Gaussian prior of every weight.
    :param posterior_init_log_var: Initial log variance of the posterior of every weight.
    :param posterior_init_mean_std: Standard deviation of the initial posterior means (None: ``nn.Linear``'s init).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: nn.Module,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        prior_std: float = 10**-0.5,
        posterior_init_log_var: float = -9.0,
        posterior_init_mean_std: float | None = None,
    ) -> None:
        super().__init__(
            observation_space, action_space, net_arch, features_extractor, features_dim, activation_fn, normalize_images
        )
        self.prior_std = prior_std
        self.posterior_init_log_var = posterior_init_log_var
        self.posterior_init_mean_std = posterior_init_mean_std
        layer_kwargs = _bayes_layer_kwargs(prior_std, posterior_init_log_var, posterior_init_mean_std)
        action_dim = get_action_dim(self.action_space)
        # Replace the deterministic MLP built by Actor.__init__ (same shape, Bayesian layers).
        self.mu = nn.Sequential(*create_bayesian_mlp(features_dim, action_dim, net_arch, activation_fn, True, **layer_kwargs))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return constructor_arguments(self, BayesianActor, super()._get_constructor_parameters())


class BayesianContinuousCritic(ContinuousCritic):
    """
    SB3's ``ContinuousCritic`` (``n_critics`` Q-networks of ``[features, action]``) with ``BayesianLinear`` layers.

    :param observation_space: Observation space.
    :param action_space: Action space.
    :param net_arch: Hidden layer widths.
    :param features_extractor: Network to extract features.
    :param features_dim: Number of features.
    :param activation_fn: Activation function.
    :param normalize_images: Whether to divide images by 255.
    :param n_critics: Number of Q-networks (1: DDPG, 2: TD3's clipped double Q).
    :param share_features_extractor: Whether the features extractor is shared with the actor.
    :param prior_std: Standard deviation of the Gaussian prior of every weight.
    :param posterior_init_log_var: Initial log variance of the posterior of every weight.
    :param posterior_init_mean_std: Standard deviation of the initial posterior means (None: ``nn.Linear``'s init).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        n_critics: int = 1,
        share_features_extractor: bool = True,
        prior_std: float = 10**-0.5,
        posterior_init_log_var: float = -9.0,
        posterior_init_mean_std: float | None = None,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            net_arch,
            features_extractor,
            features_dim,
            activation_fn,
            normalize_images,
            n_critics,
            share_features_extractor,
        )
        layer_kwargs = _bayes_layer_kwargs(prior_std, posterior_init_log_var, posterior_init_mean_std)
        action_dim = get_action_dim(self.action_space)
        self.q_networks = []
        for idx in range(n_critics):
            q_net = nn.Sequential(*create_bayesian_mlp(features_dim + action_dim, 1, net_arch, activation_fn, **layer_kwargs))
            self.add_module(f"qf{idx}", q_net)  # replaces the deterministic network of the same name
            self.q_networks.append(q_net)


class BayesianDDPGPolicy(EpisodeStartPolicy, TD3Policy):
    """
    TD3/DDPG policy (actor, critics and their targets) with Bayes-by-backprop layers.

    Acting: ``deterministic=True`` uses the posterior mean weights; ``deterministic=False`` acts with the actor's held
    weight samples (Thompson sampling, one sample per environment), redrawn where ``episode_start`` is true. Inside
    ``learn`` the training environments act with their own held samples (``rollout_samples``, swapped in by
    :meth:`rollout_thompson`), so stochastic ``predict`` calls from outside (``EvalCallback``, ``evaluate_policy``,
    the continual runner's stochastic evaluation) neither see nor redraw them.

    :param observation_space: Observation space.
    :param action_space: Action space.
    :param lr_schedule: Learning rate schedule.
    :param net_arch: Layer widths (list, or dict with ``pi`` and ``qf``); default ``[400, 300]`` (``[256, 256]`` after
        a CNN), as SB3's TD3.
    :param activation_fn: Activation function.
    :param features_extractor_class: Features extractor (None: the policy's ``default_features_extractor_class``,
        ``FlattenExtractor`` for ``MlpPolicy``, ``NatureCNN`` for ``CnnPolicy``, ``CombinedExtractor`` for
        ``MultiInputPolicy``).
    :param features_extractor_kwargs: Its keyword arguments.
    :param normalize_images: Whether to divide images by 255.
    :param optimizer_class: Optimizer.
    :param optimizer_kwargs: Optimizer keyword arguments (besides the learning rate).
    :param n_critics: Number of critics; 1 (DDPG) by default, 2 for TD3's clipped double Q.
    :param share_features_extractor: Whether actor and critic share the features extractor.
    :param bayesian_actor: Whether the actor is Bayesian (needed for posterior-sampling exploration); if False it is
        SB3's deterministic actor and exploration comes from ``action_noise`` only.
    :param bayesian_critic: Whether the critics are Bayesian.
    :param prior_std: Standard deviation of the Gaussian prior of every weight (default: the original project's prior
        precision 10).
    :param posterior_init_log_var: Initial posterior log variance (the original project's -9).
    :param posterior_init_mean_std: Standard deviation of the initial posterior means (None: ``nn.Linear``'s init).
    """

    # The features extractor when none is given; CnnPolicy and MultiInputPolicy differ only in this.
    default_features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] | None = None,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 1,
        share_features_extractor: bool = False,
        bayesian_actor: bool = True,
        bayesian_critic: bool = True,
        prior_std: float = 10**-0.5,
        posterior_init_log_var: float = -9.0,
        posterior_init_mean_std: float | None = None,
    ) -> None:
        if features_extractor_class is None:
            features_extractor_class = self.default_features_extractor_class
        check = ParameterValidator(type(self).__name__)
        net_arch = self._check_net_arch(check, net_arch)
        network_arguments = check_network_arguments(
            check,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
        )
        n_critics = check.integer("n_critics", n_critics)
        share_features_extractor = check.boolean("share_features_extractor", share_features_extractor)
        bayesian_actor = check.boolean("bayesian_actor", bayesian_actor)
        bayesian_critic = check.boolean("bayesian_critic", bayesian_critic)
        layer_settings = check_bayesian_layer_settings(
            check,
            dict(
                prior_std=prior_std,
                posterior_init_log_var=posterior_init_log_var,
                posterior_init_mean_std=posterior_init_mean_std,
            ),
        )
        check_image_observations(
            observation_space,
            features_extractor_class,
            features_extractor_kwargs,
            type(self).__name__,
            hint="use MlpPolicy for vector observations or MultiInputPolicy for Dict observations",
        )
        self.bayesian_actor = bayesian_actor
        self.bayesian_critic = bayesian_critic
        self.layer_kwargs = layer_settings
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            n_critics=n_critics,
            share_features_extractor=share_features_extractor,
            **network_arguments,
        )

    @staticmethod
    def _check_net_arch(check: ParameterValidator, net_arch: Any) -> list[int] | dict[str, list[int]] | None:
        # SB3's TD3 takes one list for actor and critics, or a dict with both "pi" and "qf".
        if isinstance(net_arch, dict):
            check.relation("net_arch", net_arch, set(net_arch) == {"pi", "qf"}, "a list of widths or dict(pi=[...], qf=[...])")
            return {key: check.sizes("net_arch", widths) for key, widths in net_arch.items()}
        return check.optional(check.sizes, "net_arch", net_arch)

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        # Collected once: acting walks these lists at every step instead of the module tree.
        self.actor_layers = bayesian_layers(self.actor)
        # Held actor samples of the training environments, swapped in by `rollout_thompson` (saved with the policy).
        self.rollout_samples = HeldSamples()
        self._held_slots = held_sample_slots(self.actor)

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> Actor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        if not self.bayesian_actor:
            return Actor(**actor_kwargs).to(self.device)
        return BayesianActor(**actor_kwargs, **self.layer_kwargs).to(self.device)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> ContinuousCritic:
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        if not self.bayesian_critic:
            return ContinuousCritic(**critic_kwargs).to(self.device)
        return BayesianContinuousCritic(**critic_kwargs, **self.layer_kwargs).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(bayesian_actor=self.bayesian_actor, bayesian_critic=self.bayesian_critic, **self.layer_kwargs)
        return data

    def thompson_resample(self, indices: np.ndarray | th.Tensor | None = None, n_samples: int | None = None) -> None:
        """
        Draw new held actor samples (one per environment).

        :param indices: Only these environments (e.g. those whose episode just started), or all.
        :param n_samples: New number of held samples (number of environments), or keep it.
        """
        idx = None if indices is None else th.as_tensor(np.asarray(indices), dtype=th.long, device=self.device)
        resample_weights(self.actor_layers, n_samples=n_samples, indices=idx)

    @property
    def n_thompson_samples(self) -> int:
        """Number of held actor samples in the actor now (0 when the actor is not Bayesian)."""
        return self.actor_layers[0].n_samples if self.actor_layers else 0

    @contextlib.contextmanager
    def rollout_thompson(self, n_envs: int) -> Iterator[None]:
        """
        Act, inside ``learn``, with the held actor samples of the training environments (kept in ``rollout_samples``)
        instead of those ``predict`` uses outside ``learn``.

        :param n_envs: Number of training environments (the first use draws one sample per environment).
        """
        if not self.actor_layers:  # deterministic actor: nothing held
            yield
            return
        with using_held_samples(self._held_slots, self.rollout_samples, lambda: self.thompson_resample(n_samples=n_envs)):
            yield

    def _prepare_predict(
        self, observation: np.ndarray | dict[str, np.ndarray], episode_start: np.ndarray | None, deterministic: bool
    ) -> None:
        # With deterministic=False the actor's held sample is redrawn for every environment where an episode starts
        # (posterior sampling once per episode).
        if not deterministic and episode_start is not None and self.n_thompson_samples > 0:
            starts = np.asarray(episode_start, dtype=bool).reshape(-1)
            if starts.any() and starts.size == self.n_thompson_samples:
                self.thompson_resample(np.flatnonzero(starts))

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        if self.n_thompson_samples == 0:
            return self.actor(observation)
        if deterministic:
            with weight_mode(self.actor_layers, "mean"):
                return self.actor(observation)
        first = next(iter(observation.values())) if isinstance(observation, dict) else observation
        n_envs = first.shape[0]
        if n_envs != self.n_thompson_samples:
            # One held sample per environment; a different number of environments draws a fresh set.
            self.thompson_resample(n_samples=n_envs)
        else:
            # Same draws, mapped through the current posterior (training moved it since the episode started).
            refresh_weights(self.actor_layers)
        with weight_mode(self.actor_layers, "fixed"):
            return self.actor(observation)


MlpPolicy = BayesianDDPGPolicy


class CnnPolicy(BayesianDDPGPolicy):
    """``BayesianDDPGPolicy`` with SB3's ``NatureCNN`` features extractor (image observations)."""

    default_features_extractor_class = NatureCNN


class MultiInputPolicy(BayesianDDPGPolicy):
    """``BayesianDDPGPolicy`` with SB3's ``CombinedExtractor`` (``Dict`` observation spaces)."""

    default_features_extractor_class = CombinedExtractor
