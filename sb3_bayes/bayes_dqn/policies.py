"""
Policies of BayesianDQN: Q-networks with a posterior over their weights and held Thompson samples.

Three heads; the first two share one network layout ``features extractor -> hidden layers -> head``:

- ``"bbb"`` (BBQN, Lipton et al., 2018, "BBQ-Networks", section 3): every fully-connected layer is a Bayes-by-backprop
  layer (mean-field Gaussian weights, Blundell et al., 2015) from :mod:`sb3_bayes.common.bayesian_layers`; the
  convolutions of ``CnnPolicy`` (Nature-DQN) stay deterministic.
- ``"blr"`` (BDQN, Azizzadenesheli et al., 2018, section 3): the hidden layers are ordinary ``nn.Linear`` layers and the
  last layer is a closed-form Bayesian linear regression per action on the penultimate features
  (:class:`sb3_bayes.common.blr.PerActionBayesianLinearRegression`, held by the policy); the Q-networks only carry the
  posterior mean and the held samples. With ``prior_features=K > 0`` the regression's inputs are
  ``[phi(s), c psi(s)]`` with ``psi`` ``K`` fixed random Fourier features of the observation
  (:class:`sb3_bayes.common.random_features.RandomFourierFeatures`, PSDRL's random-feature prior): learned features
  put untried inputs in the span of tried ones, so their posterior variance shrinks with the data of other states; the
  random features keep it where no data are near.
- ``"ensemble"`` (Bootstrapped DQN with randomized prior functions, Osband, Aslanides and Cassirer, NeurIPS 2018):
  ``n_heads`` MLPs (``net_arch`` each) after the features extractor, evaluated as one batched product per layer
  (:class:`sb3_bayes.common.ensemble.EnsembleLinear`), each plus a fixed random prior network of the same layout:
  ``Q_k(s, a) = f_k(s, a) + beta p_k(s, a)`` (their eq. 2, ``beta = prior_scale``). The priors are buffers, never
  trained; their features extractor is a frozen copy of the network's own. A held "sample" is a member's index.

Every Q-network has a *mode*: ``"fixed"`` (act with the held Thompson samples, one per environment), ``"mean"`` (the
posterior mean: deterministic actions and targets) and ``"sample"`` (training: fresh local-reparameterisation noise
per row for ``"bbb"``; the posterior mean for ``"blr"``, whose features are trained against the mean, BDQN eq. 3;
the mean of the members for ``"ensemble"``, whose members BayesianDQN trains one by one on their own targets).
"""

import contextlib
import copy
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, preprocess_obs
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from sb3_bayes.common.bayesian_layers import (
    HELD_SAMPLE_BUFFERS,
    BayesianLinear,
    HeldSamples,
    HeldSampleSlot,
    check_bayesian_layer_settings,
    check_network_arguments,
    held_sample_slots,
    resample_weights,
    swap_held_samples,
    using_held_samples,
)
from sb3_bayes.common.blr import PerActionBayesianLinearRegression
from sb3_bayes.common.ensemble import EnsembleLinear
from sb3_bayes.common.policies import EpisodeStartPolicy
from sb3_bayes.common.random_features import RandomFourierFeatures
from sb3_bayes.common.utils import check_image_observations
from sb3_bayes.common.validation import ParameterValidator

HEADS = ("bbb", "blr", "ensemble")
Q_MODES = ("sample", "fixed", "mean")


@dataclass(frozen=True)
class QHeadSettings:
    """
    The head of a ``BayesianQNetwork`` and its settings: arguments of ``BayesianDQNPolicy`` (``policy_kwargs`` entries)
    of the same names, checked there and handed to its two Q-networks (online and target) as one value.

    :param head: ``"bbb"``, ``"blr"`` or ``"ensemble"``.
    :param bayesian_layer_kwargs: Keyword arguments of every ``BayesianLinear`` (``"bbb"`` only): ``prior_std``,
        ``posterior_init_log_var``, ``posterior_init_mean_std``.
    :param n_heads: Number of members ``K`` (``"ensemble"``).
    :param prior_scale: ``beta`` of the members' prior networks (``"ensemble"``).
    :param prior_features: Number of random Fourier features of the observation appended to the regression's inputs
        (``"blr"``; 0: none).
    :param prior_lengthscale: Their kernel's lengthscale, in units of the preprocessed observation.
    :param prior_feature_scale: Their multiplier ``c``.
    """

    head: str = "bbb"
    bayesian_layer_kwargs: dict[str, Any] = field(default_factory=dict)
    n_heads: int = 10
    prior_scale: float = 5.0
    prior_features: int = 0
    prior_lengthscale: float = 1.0
    prior_feature_scale: float = 1.0

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The settings' names, which are also the names of the policy's arguments that set them."""
        return tuple(setting.name for setting in fields(cls))


class NatureCNNTrunk(NatureCNN):
    """
    The convolutions of the Nature-DQN network (Mnih et al., 2015) without its fully-connected layer, whose output
    (3136 values for 84x84 frames) feeds the Bayes-by-backprop layers of the ``"bbb"`` head, so that both fully-connected
    layers of the Nature network (``[512]`` hidden, then the Q-values) are Bayesian as in BBQN.

    :param observation_space: Image observation space (channels first).
    :param normalized_image: Whether the images are already normalised (see ``NatureCNN``).
    """

    def __init__(self, observation_space: spaces.Box, normalized_image: bool = False) -> None:
        super().__init__(observation_space, features_dim=512, normalized_image=normalized_image)
        n_flatten = int(self.linear[0].in_features)  # type: ignore[index, arg-type]
        self.linear = nn.Identity()  # type: ignore[assignment]
        self._features_dim = n_flatten


class ThompsonLinearHead(nn.Module):
    """
    Output layer of the ``"blr"`` head: ``Q(s, a) = phi(s)^T w_a`` with ``w`` the posterior mean (``mean_weight``) or a
    held Thompson sample (``weight_sample``, ``[S, K, d]``: sample ``s`` acts for row ``s`` of the batch, or for every
    row when ``S == 1``). The posterior itself lives in the policy; this layer only holds float32 copies.

    :param n_features: ``d``.
    :param n_actions: ``K``.
    """

    mean_weight: th.Tensor
    weight_sample: th.Tensor

    def __init__(self, n_features: int, n_actions: int) -> None:
        super().__init__()
        self.n_features = n_features
        self.n_actions = n_actions
        self.mode = "fixed"
        self.register_buffer("mean_weight", th.zeros(n_actions, n_features))
        self.register_buffer("weight_sample", th.zeros(1, n_actions, n_features))

    def forward(self, features: th.Tensor) -> th.Tensor:
        if self.mode != "fixed":
            # "mean" and "sample": BDQN regresses the features onto the targets through the posterior mean.
            return features @ self.mean_weight.T
        if self.weight_sample.shape[0] == 1:
            return features @ self.weight_sample[0].T
        if features.shape[0] != self.weight_sample.shape[0]:
            raise ValueError(
                f"{self.weight_sample.shape[0]} held Thompson samples need a batch of as many rows, got {features.shape[0]}."
            )
        return th.einsum("sd,skd->sk", features, self.weight_sample)


def frozen(module: nn.Module) -> nn.Module:
    """
    Turn every parameter of ``module`` into a buffer of the same name (in place): it then gets no gradient, no optimiser
    sees it, Polyak updates skip it, and it still saves, loads and is copied into the target network with the
    ``state_dict``. Randomized prior functions are never trained (Osband et al., 2018, section 4).

    :param module: The module.
    :return: ``module``.
    """
    for submodule in module.modules():
        for name, parameter in list(submodule._parameters.items()):
            del submodule._parameters[name]
            submodule.register_buffer(name, None if parameter is None else parameter.detach())
    return module


def ensemble_mlp(
    n_members: int, in_features: int, net_arch: list[int], out_features: int, activation_fn: type[nn.Module]
) -> nn.Sequential:
    """
    ``n_members`` MLPs as one stack of :class:`~sb3_bayes.common.ensemble.EnsembleLinear` layers (inputs and outputs
    ``[n_members, batch, width]``), initialised like Sonnet's and Haiku's ``Linear`` (bsuite's Bootstrapped DQN): weights
    from a normal truncated at two standard deviations with standard deviation ``1 / sqrt(fan_in)``, zero biases. That
    initialisation keeps the scale of a random prior network's outputs near that of its inputs through the layers, so
    ``prior_scale`` means the same at any width.

    :param n_members: Number of members.
    :param in_features: Input width.
    :param net_arch: Hidden widths.
    :param out_features: Output width.
    :param activation_fn: Activation between layers.
    :return: The stack.
    """
    widths = [in_features, *net_arch, out_features]
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        layer = EnsembleLinear(n_members, width_in, width_out)
        std = 1.0 / math.sqrt(width_in)
        nn.init.trunc_normal_(layer.weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)
        layers.append(layer)
        if index < len(widths) - 2:
            layers.append(activation_fn())
    return nn.Sequential(*layers)


class EnsembleQHead(nn.Module):
    """
    Head of the ``"ensemble"`` Q-network: ``K`` trained MLPs ``f_k`` and ``K`` fixed random prior MLPs ``p_k`` of the same
    layout, ``Q_k(s, a) = f_k(s, a) + beta p_k(s, a)`` (Osband et al., 2018, eq. 2), all members in one batched product
    per layer. The held Thompson samples are member indices (``head_sample``, ``[S]``: member ``head_sample[s]`` acts for
    row ``s``, or for every row when ``S == 1``).

    :param n_heads: ``K``.
    :param in_features: Width of the features the members act on.
    :param prior_in_features: Width of the prior networks' input.
    :param net_arch: Hidden widths of every member.
    :param n_actions: Number of actions.
    :param activation_fn: Activation function.
    :param prior_scale: ``beta`` (0: no prior, plain bootstrapped DQN).
    """

    head_sample: th.Tensor

    def __init__(
        self,
        n_heads: int,
        in_features: int,
        prior_in_features: int,
        net_arch: list[int],
        n_actions: int,
        activation_fn: type[nn.Module],
        prior_scale: float,
    ) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.prior_scale = prior_scale
        self.mode = "fixed"
        self.members = ensemble_mlp(n_heads, in_features, net_arch, n_actions, activation_fn)
        self.prior = frozen(ensemble_mlp(n_heads, prior_in_features, net_arch, n_actions, activation_fn))
        self.register_buffer("head_sample", th.zeros(1, dtype=th.long))

    def scaled_prior(self, prior_features: th.Tensor | None) -> th.Tensor | None:
        """
        :param prior_features: ``[batch, prior_in_features]`` (None when ``prior_scale`` is 0).
        :return: ``beta p_k(s, .)`` of every member's fixed prior network, ``[K, batch, n_actions]`` (None: no prior).
        """
        if prior_features is None or self.prior_scale == 0.0:
            return None
        with th.no_grad():
            return self.prior_scale * self.prior(prior_features)

    def all_members(self, features: th.Tensor, scaled_prior: th.Tensor | None) -> th.Tensor:
        """
        :param features: ``[batch, in_features]``.
        :param scaled_prior: From :meth:`scaled_prior` (None: no prior).
        :return: ``Q_k(s, .)`` of every member, ``[K, batch, n_actions]``.
        """
        q_values = self.members(features)  # the first layer reads the shared input (EnsembleLinear.forward_shared)
        return q_values if scaled_prior is None else q_values + scaled_prior

    def forward(self, member_q_values: th.Tensor) -> th.Tensor:
        """
        :param member_q_values: From :meth:`all_members`.
        :return: ``[batch, n_actions]``: the held members' Q-values (``"fixed"``) or the members' mean (``"mean"``, and
            ``"sample"``: training uses :meth:`all_members`).
        """
        if self.mode != "fixed":
            return member_q_values.mean(dim=0)
        if self.head_sample.shape[0] == 1:
            return member_q_values[self.head_sample[0]]
        n_rows = member_q_values.shape[1]
        if n_rows != self.head_sample.shape[0]:
            raise ValueError(f"{self.head_sample.shape[0]} held ensemble members need a batch of as many rows, got {n_rows}.")
        return member_q_values[self.head_sample, th.arange(n_rows, device=member_q_values.device)]

    def sample_members(self, count: int) -> th.Tensor:
        """``count`` member indices drawn uniformly (Thompson sampling over the ensemble, Osband et al., 2018, Alg. 1)."""
        return th.randint(self.n_heads, (count,), device=self.head_sample.device)


class BayesianQNetwork(BasePolicy):
    """
    Q-network with a posterior over its weights: features extractor, hidden layers (``net_arch``) and a ``"bbb"`` or
    ``"blr"`` head; or features extractor and ``n_heads`` members of ``net_arch`` with randomized priors
    (``"ensemble"``).

    :param observation_space: Observation space.
    :param action_space: Discrete action space.
    :param features_extractor: The features extractor.
    :param features_dim: Its output size.
    :param net_arch: Hidden widths after the features extractor (of every member for ``"ensemble"``).
    :param activation_fn: Activation function.
    :param normalize_images: Whether to divide images by 255.
    :param head_settings: The head and its settings (None: the defaults of :class:`QHeadSettings`).
    """

    action_space: spaces.Discrete

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        head_settings: QHeadSettings | None = None,
    ) -> None:
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        self.net_arch = [64, 64] if net_arch is None else list(net_arch)
        self.activation_fn = activation_fn
        self.features_dim = features_dim
        settings = QHeadSettings() if head_settings is None else head_settings
        self.head_settings = settings
        self.head_type = ParameterValidator(type(self).__name__).choice("head", settings.head, HEADS)
        n_heads, prior_scale, prior_features = settings.n_heads, settings.prior_scale, settings.prior_features
        n_actions = int(self.action_space.n)
        # Layers that carry a mode (filled on first use by `q_mode`; not submodules of their own).
        self.mode_layers: list[nn.Module] | None = None
        # Random-feature prior of the "blr" head (None: off).
        self.prior_kernel: RandomFourierFeatures | None = None
        # The frozen features extractor of the "ensemble" head's prior networks (None: no prior).
        self.prior_features_extractor: nn.Module | None = None
        self.head: nn.Module
        if self.head_type == "ensemble":
            # The members' hidden layers are their own (batched inside the head); the features extractor is shared.
            self.hidden = nn.Sequential()
            self.feature_dim = features_dim
            if prior_scale > 0:
                self.prior_features_extractor = frozen(copy.deepcopy(features_extractor))
            self.head = EnsembleQHead(
                n_heads, features_dim, features_dim, self.net_arch, n_actions, activation_fn, prior_scale
            )
            return
        layers: list[nn.Module] = []
        last = features_dim
        for width in self.net_arch:
            layers += [self._linear(last, width), activation_fn()]
            last = width
        self.hidden = nn.Sequential(*layers)
        if self.head_type == "blr" and prior_features > 0:
            self.prior_kernel = RandomFourierFeatures(
                get_flattened_obs_dim(observation_space), prior_features, settings.prior_lengthscale
            )
        self.feature_dim = last + (prior_features if self.prior_kernel is not None else 0)
        self.head = (
            BayesianLinear(last, n_actions, **settings.bayesian_layer_kwargs)
            if self.head_type == "bbb"
            else ThompsonLinearHead(self.feature_dim, n_actions)
        )

    def _linear(self, in_features: int, out_features: int) -> nn.Module:
        if self.head_type == "bbb":
            return BayesianLinear(in_features, out_features, **self.head_settings.bayesian_layer_kwargs)
        return nn.Linear(in_features, out_features)

    def penultimate(self, obs: PyTorchObs) -> th.Tensor:
        """
        The features the head acts on: BDQN's ``phi(x)`` (the last hidden layer's output), followed by the scaled random
        Fourier features ``c psi(x)`` of the observation where the ``"blr"`` head has a random-feature prior (as PSDRL's
        Bayesian last layer); the features extractor's output for ``"ensemble"``.
        """
        features = self.hidden(self.extract_features(obs, self.features_extractor))
        if self.prior_kernel is None:
            return features
        flat = th.flatten(preprocess_obs(obs, self.observation_space, self.normalize_images), start_dim=1)  # type: ignore[arg-type]
        return th.cat([features, self.head_settings.prior_feature_scale * self.prior_kernel(flat.float())], dim=1)

    def scaled_prior(self, obs: PyTorchObs) -> th.Tensor | None:
        """
        The ``"ensemble"`` head's fixed prior term ``beta p_k(s, .)`` of every member (Osband et al., 2018, eq. 2). It
        never changes, so a target network (a copy) has the same one: a caller that needs both networks' Q-values at
        the same observations computes it once and passes it to :meth:`member_q_values` of each.

        :param obs: Observation batch.
        :return: ``[K, batch, n_actions]`` (None when the head has no prior).
        """
        assert isinstance(self.head, EnsembleQHead), "scaled_prior needs head='ensemble'"
        if self.prior_features_extractor is None:
            return None
        with th.no_grad():
            return self.head.scaled_prior(self.extract_features(obs, self.prior_features_extractor))  # type: ignore[arg-type]

    def member_q_values(self, obs: PyTorchObs, scaled_prior: th.Tensor | None = None) -> th.Tensor:
        """
        Q-values of every member of the ``"ensemble"`` head, ``Q_k = f_k + beta p_k`` (Osband et al., 2018, eq. 2).

        :param obs: Observation batch.
        :param scaled_prior: ``beta p_k`` at ``obs`` from :meth:`scaled_prior` (None: computed here).
        :return: ``[K, batch, n_actions]``.
        """
        assert isinstance(self.head, EnsembleQHead), "member_q_values needs head='ensemble'"
        if scaled_prior is None:
            scaled_prior = self.scaled_prior(obs)
        return self.head.all_members(self.penultimate(obs), scaled_prior)

    def forward(self, obs: PyTorchObs) -> th.Tensor:
        """
        Q-values in the current mode.

        :param obs: Observation batch.
        :return: ``[batch, n_actions]``.
        """
        if isinstance(self.head, EnsembleQHead):
            return self.head(self.member_q_values(obs))
        return self.head(self.penultimate(obs))

    def _predict(self, observation: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        with q_mode(self, "mean" if deterministic else "fixed"):
            return self(observation).argmax(dim=1).reshape(-1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                net_arch=self.net_arch,
                features_dim=self.features_dim,
                activation_fn=self.activation_fn,
                features_extractor=self.features_extractor,
                head_settings=self.head_settings,
            )
        )
        return data


#: The layers that carry a mode.
MODE_LAYERS = (BayesianLinear, ThompsonLinearHead, EnsembleQHead)


def _mode_layers(module: nn.Module) -> list[nn.Module]:
    # Every layer with a mode; a Q-network caches its list (the modules never change after construction).
    if isinstance(module, BayesianQNetwork):
        if module.mode_layers is None:
            module.mode_layers = [m for m in module.modules() if isinstance(m, MODE_LAYERS)]
        return module.mode_layers
    return [m for m in module.modules() if isinstance(m, MODE_LAYERS)]


def set_q_mode(module: nn.Module, mode: str) -> None:
    """
    Put every Bayesian layer and every BDQN head inside ``module`` into ``mode`` (``"sample"``, ``"fixed"``, ``"mean"``).

    :param module: A Q-network (or any module containing them).
    :param mode: The mode.
    """
    if mode not in Q_MODES:
        raise ValueError(f"Unknown mode '{mode}': choose one of {', '.join(Q_MODES)}.")
    for layer in _mode_layers(module):
        layer.mode = mode  # type: ignore[assignment]


@contextlib.contextmanager
def q_mode(module: nn.Module, mode: str) -> Iterator[None]:
    """Temporarily put ``module`` into ``mode`` (see :func:`set_q_mode`); the previous modes are restored after."""
    layers = _mode_layers(module)
    previous = [layer.mode for layer in layers]
    set_q_mode(module, mode)
    try:
        yield
    finally:
        for layer, layer_mode in zip(layers, previous):
            layer.mode = layer_mode


class BayesianDQNPolicy(EpisodeStartPolicy, DQNPolicy):
    """
    Policy of BayesianDQN: the online and target Q-networks (:class:`BayesianQNetwork`), the BDQN posterior (``"blr"``
    head) and the held Thompson samples.

    The online network acts in ``"fixed"`` mode with one held sample per environment (the target network always uses
    the posterior mean). :meth:`resample` draws new held samples, for all environments or only those whose episode just
    started.

    :param observation_space: Observation space.
    :param action_space: Discrete action space.
    :param lr_schedule: Learning rate schedule.
    :param net_arch: Hidden widths (default ``[64, 64]``).
    :param activation_fn: Activation function.
    :param features_extractor_class: Features extractor.
    :param features_extractor_kwargs: Its keyword arguments.
    :param normalize_images: Whether to divide images by 255.
    :param optimizer_class: Optimiser class (Adam).
    :param optimizer_kwargs: Its keyword arguments besides the learning rate.
    :param head: ``"bbb"`` (Bayes-by-backprop layers), ``"blr"`` (Bayesian linear regression per action) or
        ``"ensemble"`` (bootstrapped members with randomized prior functions).
    :param bayesian_layer_kwargs: Keyword arguments of every ``BayesianLinear`` (``"bbb"`` only).
    :param blr_prior_var: Prior variance of the ``"blr"`` weights (BDQN: 0.001).
    :param blr_noise_var: Noise variance of the ``"blr"`` regression (BDQN: 1).
    :param n_heads: Number of members ``K`` of the ``"ensemble"`` head (Osband et al., 2018: 10 to 20), >= 1.
    :param prior_scale: Scale ``beta`` of the members' random prior networks (``"ensemble"``; eq. 2 of Osband et al.,
        2018; 0: none, plain bootstrapped DQN), >= 0.
    :param prior_features: Number ``K`` of random Fourier features of the observation appended to the ``"blr"``
        regression's inputs (0: none, BDQN), >= 0: a squared-exponential-kernel prior whose uncertainty only data near
        an observation remove (as PSDRL's ``prior_features``).
    :param prior_lengthscale: Lengthscale of that kernel, in units of the preprocessed observation (> 0; two one-hot
        observations are ``sqrt(2)`` apart).
    :param prior_feature_scale: Multiplier ``c`` of the random features (> 0): their part of a Q-value has prior variance
        about ``c^2 blr_prior_var``.
    """

    q_net: BayesianQNetwork  # type: ignore[assignment]
    q_net_target: BayesianQNetwork  # type: ignore[assignment]

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] | None = None,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        head: str = "bbb",
        bayesian_layer_kwargs: dict[str, Any] | None = None,
        blr_prior_var: float = 1e-3,
        blr_noise_var: float = 1.0,
        n_heads: int = 10,
        prior_scale: float = 5.0,
        prior_features: int = 0,
        prior_lengthscale: float = 1.0,
        prior_feature_scale: float = 1.0,
    ) -> None:
        check = ParameterValidator(type(self).__name__)
        # Read by `make_q_net`, which the parent's constructor calls. The "blr" head ignores the Bayesian layer settings
        # (checked all the same) and the "bbb" head the regression's variances; every head checks the settings of the others.
        self.head_type = check.choice("head", head, HEADS)
        features_extractor_class, default_net_arch = self.default_network(self.head_type, features_extractor_class)
        net_arch = default_net_arch if net_arch is None else check.sizes("net_arch", net_arch)
        network_arguments = check_network_arguments(
            check,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
        )
        check_image_observations(observation_space, features_extractor_class, features_extractor_kwargs, type(self).__name__)
        check.keyword_arguments("bayesian_layer_kwargs", bayesian_layer_kwargs)
        self.bayesian_layer_kwargs = check_bayesian_layer_settings(check, dict(bayesian_layer_kwargs or {}))
        self.blr_prior_var = check.positive("blr_prior_var", blr_prior_var)
        self.blr_noise_var = check.positive("blr_noise_var", blr_noise_var)
        self.n_heads = check.integer("n_heads", n_heads)
        self.prior_scale = check.non_negative("prior_scale", prior_scale)
        self.prior_features = check.integer("prior_features", prior_features, minimum=0)  # 0: no random-feature prior
        self.prior_lengthscale = check.positive("prior_lengthscale", prior_lengthscale)
        self.prior_feature_scale = check.positive("prior_feature_scale", prior_feature_scale)
        super().__init__(observation_space, action_space, lr_schedule, net_arch, **network_arguments)

    @staticmethod
    def default_network(
        head: str, features_extractor_class: type[BaseFeaturesExtractor] | None
    ) -> tuple[type[BaseFeaturesExtractor], list[int]]:
        """
        The features extractor and hidden widths used where the arguments leave them out (``CnnPolicy`` overrides it).

        :param head: The checked head.
        :param features_extractor_class: The given features extractor, or None.
        :return: The features extractor and the default ``net_arch`` (``FlattenExtractor`` and ``[64, 64]`` here).
        """
        return features_extractor_class or FlattenExtractor, [64, 64]

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        self.blr_posterior: PerActionBayesianLinearRegression | None = None
        if self.head_type == "blr":
            self.blr_posterior = PerActionBayesianLinearRegression(
                self.q_net.feature_dim,
                int(self.action_space.n),  # type: ignore[attr-defined]
                ridge=1.0 / self.blr_prior_var,
                noise_precision=1.0 / self.blr_noise_var,
                device=self.device,
            )
        # Held samples of the training environments, swapped in by `rollout_thompson`.
        self.rollout_samples = HeldSamples()
        self._held_slots: list[HeldSampleSlot] | None = None
        set_q_mode(self.q_net, "fixed")
        set_q_mode(self.q_net_target, "mean")
        self.resample(1)

    def make_q_net(self) -> BayesianQNetwork:  # type: ignore[override]
        # Separate features extractors for the online and the target network, as in SB3's DQN.
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return BayesianQNetwork(**net_args, head_settings=self.q_head_settings()).to(self.device)  # type: ignore[arg-type]

    def q_head_settings(self) -> QHeadSettings:
        """The head settings of this policy's arguments, as its Q-networks take them."""
        # The head's name is kept as `head_type` (as in the Q-networks, whose `head` is the module), the rest by name.
        settings = {name: getattr(self, name) for name in QHeadSettings.names() if name != "head"}
        return QHeadSettings(head=self.head_type, **settings)

    # ------------------------------------------------------------------------------------------------ Thompson samples
    @property
    def n_held_samples(self) -> int:
        """Number of held Thompson samples (one per environment)."""
        head = self.q_net.head
        held = head.head_sample if isinstance(head, EnsembleQHead) else head.weight_sample
        assert isinstance(held, th.Tensor)
        return int(held.shape[0])

    def resample(self, n_samples: int | None = None, indices: th.Tensor | np.ndarray | None = None) -> None:
        """
        Draw new held Thompson samples of the online network's weights.

        :param n_samples: New number of samples (all redrawn); None keeps the number.
        :param indices: Redraw only these samples (the environments whose episode just started).
        """
        if indices is not None:
            indices = th.as_tensor(indices, dtype=th.long, device=self.device).reshape(-1)
            if indices.numel() == 0:
                return
        if self.head_type == "bbb":
            resample_weights(self.q_net, n_samples=n_samples, indices=indices)
            return
        if isinstance(self.q_net.head, EnsembleQHead):
            ensemble = self.q_net.head
            if indices is None:
                ensemble.head_sample = ensemble.sample_members(
                    ensemble.head_sample.shape[0] if n_samples is None else n_samples
                )
            else:
                ensemble.head_sample[indices] = ensemble.sample_members(int(indices.numel()))
            return
        assert self.blr_posterior is not None
        head = self.q_net.head
        assert isinstance(head, ThompsonLinearHead)
        if indices is None:
            count = head.weight_sample.shape[0] if n_samples is None else n_samples
            head.weight_sample = self.blr_posterior.sample(count).to(head.weight_sample.dtype)
        else:
            new = self.blr_posterior.sample(int(indices.numel())).to(head.weight_sample.dtype)
            head.weight_sample[indices] = new

    def prepare_thompson(
        self, observation: np.ndarray | dict[str, np.ndarray], episode_start: np.ndarray | None = None
    ) -> None:
        """
        Keep one held sample per row of a batch of observations (one per environment): a batch of another size redraws
        all of them; otherwise the samples of the rows whose episode starts are redrawn (Thompson sampling per episode).

        :param observation: The observation (a batch, or a single one).
        :param episode_start: Which rows start an episode (None: none of them).
        """
        n_batch = observation.shape[0] if self.is_vectorized_observation(observation) else 1  # type: ignore[union-attr]
        if self.n_held_samples != n_batch:
            self.resample(n_batch)
        elif episode_start is not None:
            self.resample(indices=np.flatnonzero(np.asarray(episode_start, dtype=bool).reshape(-1)))

    def _held_sample_slots(self) -> list[HeldSampleSlot]:
        # Cached: the online network's modules never change after construction.
        if self._held_slots is None:
            self._held_slots = held_sample_slots(self.q_net)
        return self._held_slots

    def thompson_state(self) -> dict[str, th.Tensor]:
        """Copies of the online network's held samples, by buffer name."""
        return {name: buffer.clone() for name, buffer in swap_held_samples(self._held_sample_slots(), {}).items()}

    @contextlib.contextmanager
    def rollout_thompson(self, n_envs: int) -> Iterator[None]:
        """
        Act, inside ``learn``, with the held samples of the training environments (kept in ``rollout_samples``), so
        that ``predict`` calls from outside (``EvalCallback``, ``evaluate_policy``) neither see nor disturb them.

        :param n_envs: Number of training environments (the first use draws one sample per environment).
        """
        with using_held_samples(self._held_sample_slots(), self.rollout_samples, lambda: self.resample(n_envs)):
            yield

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        # The number of held samples varies (one per environment): size the buffers like the saved ones first.
        for name, buffer in list(self.named_buffers()):
            if _is_held_sample(name) and name in state_dict and state_dict[name].shape != buffer.shape:
                module_name, _, buffer_name = name.rpartition(".")
                setattr(self.get_submodule(module_name), buffer_name, th.empty_like(state_dict[name]))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -------------------------------------------------------------------------------------------------------- acting
    def _prepare_predict(
        self, observation: np.ndarray | dict[str, np.ndarray], episode_start: np.ndarray | None, deterministic: bool
    ) -> None:
        # Greedy w.r.t. the held Thompson samples (deterministic=False), those of the starting episodes redrawn first,
        # or w.r.t. the posterior mean.
        if not deterministic:
            self.prepare_thompson(observation, episode_start)

    def _predict(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        if not deterministic and self.n_held_samples not in (1, obs.shape[0]):  # type: ignore[union-attr]
            self.resample(obs.shape[0])  # type: ignore[union-attr]
        return self.q_net._predict(obs, deterministic=deterministic)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        head_settings = asdict(self.q_head_settings())
        data.update(dict(**head_settings, blr_prior_var=self.blr_prior_var, blr_noise_var=self.blr_noise_var))
        return data


def _is_held_sample(buffer_name: str) -> bool:
    # Held samples and, for Bayes-by-backprop layers, the standard-normal draws behind them.
    return buffer_name.rpartition(".")[2] in HELD_SAMPLE_BUFFERS


MlpPolicy = BayesianDQNPolicy


class CnnPolicy(BayesianDQNPolicy):
    """
    BayesianDQN policy for images: the Nature-DQN network. With the ``"bbb"`` head the convolutions feed two
    Bayes-by-backprop layers (``net_arch=[512]``, then the Q-values; BBQN); with the ``"blr"`` head the deterministic
    Nature CNN (convolutions and its 512-unit layer) gives the 512-d features of the per-action regression (BDQN); with
    the ``"ensemble"`` head the convolutions are shared and every member has its own ``[512]`` layer (Bootstrapped DQN),
    its prior a frozen copy of the convolutions and members of the same layout.

    Same parameters as :class:`BayesianDQNPolicy`; ``features_extractor_class`` and ``net_arch`` default by head
    (:meth:`default_network`).
    """

    @staticmethod
    def default_network(
        head: str, features_extractor_class: type[BaseFeaturesExtractor] | None
    ) -> tuple[type[BaseFeaturesExtractor], list[int]]:
        # "bbb" and "ensemble" (Bootstrapped DQN's shared convolutional torso and a 512-unit layer per member, Osband et
        # al., 2016) act on the convolutions' output; "blr" on the Nature CNN's 512 features.
        if features_extractor_class is None:
            features_extractor_class = NatureCNNTrunk if head in ("bbb", "ensemble") else NatureCNN
        return features_extractor_class, [512] if features_extractor_class is NatureCNNTrunk else []
