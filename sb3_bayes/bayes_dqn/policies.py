"""
Policies of BayesianDQN: Q-networks with a posterior over their weights and held Thompson samples.

Two heads share one network layout ``features extractor -> hidden layers -> head``:

- ``"bbb"`` (BBQN, Lipton et al., 2018, "BBQ-Networks", section 3): every fully-connected layer is a Bayes-by-backprop
  layer (mean-field Gaussian weights, Blundell et al., 2015) from :mod:`sb3_bayes.common.bayesian_layers`; the
  convolutions of ``CnnPolicy`` (Nature-DQN) stay deterministic.
- ``"blr"`` (BDQN, Azizzadenesheli et al., 2018, section 3): the hidden layers are ordinary ``nn.Linear`` layers and the
  last layer is a closed-form Bayesian linear regression per action on the penultimate features
  (:class:`sb3_bayes.common.blr.PerActionBayesianLinearRegression`, held by the policy); the Q-networks only carry the
  posterior mean and the held samples.

Every Q-network has a *mode*: ``"fixed"`` (act with the held Thompson samples, one per environment), ``"mean"`` (the
posterior mean: deterministic actions and targets) and ``"sample"`` (training: fresh local-reparameterisation noise
per row for ``"bbb"``; the posterior mean for ``"blr"``, whose features are trained against the mean, BDQN eq. 3).
"""

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
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
from sb3_bayes.common.utils import check_image_observations
from sb3_bayes.common.validation import ParameterValidator

HEADS = ("bbb", "blr")
Q_MODES = ("sample", "fixed", "mean")


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


class BayesianQNetwork(BasePolicy):
    """
    Q-network with a posterior over its weights: features extractor, hidden layers (``net_arch``) and a ``"bbb"`` or
    ``"blr"`` head.

    :param observation_space: Observation space.
    :param action_space: Discrete action space.
    :param features_extractor: The features extractor.
    :param features_dim: Its output size.
    :param net_arch: Hidden widths after the features extractor.
    :param activation_fn: Activation function.
    :param normalize_images: Whether to divide images by 255.
    :param head: ``"bbb"`` or ``"blr"``.
    :param bayesian_layer_kwargs: Keyword arguments of every ``BayesianLinear`` (``"bbb"`` only): ``prior_std``,
        ``posterior_init_log_var``, ``posterior_init_mean_std``.
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
        head: str = "bbb",
        bayesian_layer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        self.net_arch = [64, 64] if net_arch is None else list(net_arch)
        self.activation_fn = activation_fn
        self.features_dim = features_dim
        self.head_type = check_head(head, type(self).__name__)
        self.bayesian_layer_kwargs = dict(bayesian_layer_kwargs or {})
        n_actions = int(self.action_space.n)
        layers: list[nn.Module] = []
        last = features_dim
        for width in self.net_arch:
            layers += [self._linear(last, width), activation_fn()]
            last = width
        self.hidden = nn.Sequential(*layers)
        self.feature_dim = last
        # Layers that carry a mode (filled on first use by `q_mode`; not submodules of their own).
        self.mode_layers: list[nn.Module] | None = None
        self.head: nn.Module = (
            BayesianLinear(last, n_actions, **self.bayesian_layer_kwargs)
            if self.head_type == "bbb"
            else ThompsonLinearHead(last, n_actions)
        )

    def _linear(self, in_features: int, out_features: int) -> nn.Module:
        if self.head_type == "bbb":
            return BayesianLinear(in_features, out_features, **self.bayesian_layer_kwargs)
        return nn.Linear(in_features, out_features)

    def penultimate(self, obs: PyTorchObs) -> th.Tensor:
        """The features the head acts on (BDQN's ``phi(x)``; the last hidden layer's output)."""
        return self.hidden(self.extract_features(obs, self.features_extractor))

    def forward(self, obs: PyTorchObs) -> th.Tensor:
        """
        Q-values in the current mode.

        :param obs: Observation batch.
        :return: ``[batch, n_actions]``.
        """
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
                head=self.head_type,
                bayesian_layer_kwargs=self.bayesian_layer_kwargs,
            )
        )
        return data


def check_head(head: str, owner: str) -> str:
    """
    :param head: The head's name.
    :param owner: The class it is given to, for the message.
    :return: The name, checked (a ``HyperparameterValueError`` for an unknown one).
    """
    return ParameterValidator(owner).choice("head", head, HEADS)


def _mode_layers(module: nn.Module) -> list[nn.Module]:
    # Every layer with a mode; a Q-network caches its list (the modules never change after construction).
    if isinstance(module, BayesianQNetwork):
        if module.mode_layers is None:
            module.mode_layers = [m for m in module.modules() if isinstance(m, (BayesianLinear, ThompsonLinearHead))]
        return module.mode_layers
    return [m for m in module.modules() if isinstance(m, (BayesianLinear, ThompsonLinearHead))]


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


class BayesianDQNPolicy(DQNPolicy):
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
    :param head: ``"bbb"`` (Bayes-by-backprop layers) or ``"blr"`` (Bayesian linear regression per action).
    :param bayesian_layer_kwargs: Keyword arguments of every ``BayesianLinear`` (``"bbb"`` only).
    :param blr_prior_var: Prior variance of the ``"blr"`` weights (BDQN: 0.001).
    :param blr_noise_var: Noise variance of the ``"blr"`` regression (BDQN: 1).
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
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        head: str = "bbb",
        bayesian_layer_kwargs: dict[str, Any] | None = None,
        blr_prior_var: float = 1e-3,
        blr_noise_var: float = 1.0,
    ) -> None:
        check = ParameterValidator(type(self).__name__)
        net_arch = check.optional(check.sizes, "net_arch", net_arch)
        check_network_arguments(
            check,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
        )
        check_image_observations(observation_space, features_extractor_class, features_extractor_kwargs, type(self).__name__)
        # Read by `make_q_net`, which the parent's constructor calls. The "blr" head ignores the Bayesian layer settings
        # (checked all the same) and the "bbb" head the regression's variances.
        self.head_type = check.choice("head", head, HEADS)
        check.keyword_arguments("bayesian_layer_kwargs", bayesian_layer_kwargs)
        self.bayesian_layer_kwargs = check_bayesian_layer_settings(check, dict(bayesian_layer_kwargs or {}))
        self.blr_prior_var = check.positive("blr_prior_var", blr_prior_var)
        self.blr_noise_var = check.positive("blr_noise_var", blr_noise_var)
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            [64, 64] if net_arch is None else net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
        )

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
        return BayesianQNetwork(
            **net_args, head=self.head_type, bayesian_layer_kwargs=self.bayesian_layer_kwargs  # type: ignore[arg-type]
        ).to(self.device)

    # ------------------------------------------------------------------------------------------------ Thompson samples
    @property
    def n_held_samples(self) -> int:
        """Number of held Thompson samples (one per environment)."""
        weight_sample = self.q_net.head.weight_sample
        assert isinstance(weight_sample, th.Tensor)
        return int(weight_sample.shape[0])

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
    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        Greedy action w.r.t. the held Thompson samples (``deterministic=False``) or the posterior mean; the samples of
        the environments where ``episode_start`` is true are redrawn first.
        """
        if not deterministic:
            self.prepare_thompson(observation, episode_start)
        return super().predict(observation, state, None, deterministic)

    def _predict(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        if not deterministic and self.n_held_samples not in (1, obs.shape[0]):  # type: ignore[union-attr]
            self.resample(obs.shape[0])  # type: ignore[union-attr]
        return self.q_net._predict(obs, deterministic=deterministic)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                head=self.head_type,
                bayesian_layer_kwargs=self.bayesian_layer_kwargs,
                blr_prior_var=self.blr_prior_var,
                blr_noise_var=self.blr_noise_var,
            )
        )
        return data


def _is_held_sample(buffer_name: str) -> bool:
    # Held samples and, for Bayes-by-backprop layers, the standard-normal draws behind them.
    return buffer_name.rpartition(".")[2] in HELD_SAMPLE_BUFFERS


MlpPolicy = BayesianDQNPolicy


class CnnPolicy(BayesianDQNPolicy):
    """
    BayesianDQN policy for images: the Nature-DQN network. With the ``"bbb"`` head the convolutions feed two
    Bayes-by-backprop layers (``net_arch=[512]``, then the Q-values; BBQN); with the ``"blr"`` head the deterministic
    Nature CNN (convolutions and its 512-unit layer) gives the 512-d features of the per-action regression (BDQN).

    Same parameters as :class:`BayesianDQNPolicy`; ``features_extractor_class`` and ``net_arch`` default by head.
    """

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
    ) -> None:
        bbb = check_head(head, type(self).__name__) == "bbb"
        if features_extractor_class is None:
            features_extractor_class = NatureCNNTrunk if bbb else NatureCNN
        if net_arch is None:
            net_arch = [512] if features_extractor_class is NatureCNNTrunk else []
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
            head,
            bayesian_layer_kwargs,
            blr_prior_var,
            blr_noise_var,
        )
