"""
DVRL networks: a particle filter over a variational RNN (VRNN) whose particles form the agent's belief, and the
actor-critic heads that read the belief (Igl, Zintgraf, Le, Wood and Whiteson, ICML 2018, section 3 and figure 2).

Shapes used throughout: ``B`` filters (one per environment), ``K`` particles per filter, ``H = h_dim``, ``Z = z_dim``.
The belief is a :class:`Belief` (``h [B, K, H]``, ``z [B, K, Z]``, ``log_weights [B, K]`` and the previous action
``[B, action_input_dim]``); one :meth:`DVRLPolicy.filter_step` consumes an observation and advances it by one step.
"""

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.distributions import (
    CategoricalDistribution,
    DiagGaussianDistribution,
    Distribution,
    make_proba_distribution,
)
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_action_dim, get_flattened_obs_dim, is_image_space, preprocess_obs
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from sb3_bayes.common.particle_filter import gather_particles, log_mean_exp, normalized_weights, systematic_resample
from sb3_bayes.common.policies import constructor_arguments
from sb3_bayes.common.validation import ParameterValidator

EMISSIONS = ("gaussian", "bernoulli")
ENCODERS = ("mlp", "cnn")
# Lower bound added to every softplus variance: keeps the Gaussian log-densities finite when a head saturates.
MIN_VARIANCE = 1e-6
# Probabilities of the Bernoulli-style emission are clamped to [EPS, 1 - EPS] before taking logs.
BERNOULLI_EPS = 1e-6
LOG_2PI = math.log(2.0 * math.pi)


class Belief(NamedTuple):
    """The recurrent state of DVRL: a weighted particle set per environment and the previous action."""

    h: th.Tensor  # [B, K, H] deterministic VRNN states
    z: th.Tensor  # [B, K, Z] latent samples (empty [B, 1, 0] for the RNN baseline)
    log_weights: th.Tensor  # [B, K] unnormalised log importance weights
    prev_action: th.Tensor  # [B, action_input_dim] one-hot (Discrete) or raw (Box) previous action


class FilterNoise(NamedTuple):
    """The random numbers of one filter step; storing them lets the update recompute the step exactly."""

    uniforms: th.Tensor  # [B] systematic-resampling offsets in [0, 1)
    normals: th.Tensor  # [B, K, Z] standard normal draws of the reparameterised latent samples


class FilterStep(NamedTuple):
    """Output of one filter step."""

    belief: Belief  # the new belief (prev_action still the one consumed by this step)
    phi_z: th.Tensor  # [B, K, H] encoded latent samples (policy input), empty for the RNN baseline
    elbo: th.Tensor  # [B] per-step ELBO term log sum_k wbar_{t-1,k} w_{t,k} (log mean_k w_k after resampling)


def gaussian_log_density(value: th.Tensor, mean: th.Tensor, variance: th.Tensor) -> th.Tensor:
    """
    Log-density of a diagonal Gaussian, summed over the last dimension.

    :param value: Points ``[..., D]``.
    :param mean: Means ``[..., D]``.
    :param variance: Variances ``[..., D]`` (positive).
    :return: ``[...]``.
    """
    return -0.5 * (LOG_2PI + variance.log() + (value - mean).pow(2) / variance).sum(dim=-1)


def bernoulli_log_density(value: th.Tensor, probability: th.Tensor) -> th.Tensor:
    """
    The original's "pseudo-Bernoulli" log-likelihood of values in ``[0, 1]`` (pixels divided by 255):
    ``sum_i x_i log p_i + (1 - x_i) log(1 - p_i)``, with ``p`` clamped to ``[1e-6, 1 - 1e-6]``.

    :param value: Values in ``[0, 1]``, ``[B, 1, *event_shape]`` (broadcast over the particles).
    :param probability: Probabilities ``[B, K, *event_shape]``.
    :return: Log-likelihood summed over the event, ``[B, K]``.
    """
    p = probability.clamp(BERNOULLI_EPS, 1.0 - BERNOULLI_EPS)
    log_lik = value * p.log() + (1.0 - value) * (-p).log1p()
    return log_lik.flatten(start_dim=2).sum(dim=-1)


class GaussianHead(nn.Module):
    """
    ``Linear -> ReLU`` followed by a mean head and a softplus variance head: the prior and proposal networks of the
    original code (the filter step uses their weights through :class:`FusedWeights`).

    :param input_dim: Input size.
    :param hidden_dim: Hidden size.
    :param output_dim: Size of the Gaussian.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(input_dim, hidden_dim)
        self.mean = nn.Linear(hidden_dim, output_dim)
        self.variance = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        hidden = F.relu(self.hidden(x))
        return self.mean(hidden), F.softplus(self.variance(hidden)) + MIN_VARIANCE


def conv_output_shape(observation_space: spaces.Box, encoder: nn.Module) -> tuple[int, ...]:
    """Shape of one encoded image (without the batch dimension), found with a forward pass of zeros."""
    with th.no_grad():
        was_training = encoder.training
        encoder.eval()
        out = encoder(th.zeros(1, *observation_space.shape))
        encoder.train(was_training)
    return tuple(out.shape[1:])


class ConvEncoder(nn.Module):
    """
    The Atari observation encoder of the paper: conv 8x8 stride 4, 4x4 stride 2, 3x3 stride 1 with ``channels``
    (32, 64, 32 by default), each followed by BatchNorm (optional) and ReLU; the output is flattened (32x7x7 on 84x84).

    :param observation_space: Image space, channel-first.
    :param channels: Output channels of the three convolutions.
    :param batch_norm: Whether to put BatchNorm after each convolution.
    """

    def __init__(self, observation_space: spaces.Box, channels: Sequence[int], batch_norm: bool) -> None:
        super().__init__()
        in_channels = observation_space.shape[0]
        layers: list[nn.Module] = []
        for out_channels, kernel, stride in zip(channels, (8, 4, 3), (4, 2, 1), strict=True):
            layers.append(nn.Conv2d(in_channels, out_channels, kernel, stride=stride))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU())
            in_channels = out_channels
        self.convs = nn.Sequential(*layers)
        self.conv_shape = conv_output_shape(observation_space, self.convs)
        self.output_dim = int(np.prod(self.conv_shape))

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return self.convs(obs).flatten(start_dim=1)


def mlp_layers(sizes: Sequence[int], batch_norm: bool) -> list[nn.Module]:
    """``Linear [-> BatchNorm1d] -> ReLU`` between consecutive ``sizes``."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), *([nn.BatchNorm1d(n_out)] if batch_norm else []), nn.ReLU()]
    return layers


class MlpEncoder(nn.Module):
    """
    Observation encoder for vectors: ``Linear [-> BatchNorm] -> ReLU`` per entry of ``sizes`` (Mountain Hike:
    2 -> 64 -> 64, no BatchNorm).

    :param input_dim: Flattened observation size.
    :param sizes: Hidden sizes, at least one (the last is the encoding size; checked by :class:`DVRLPolicy`).
    :param batch_norm: Whether to put BatchNorm after each Linear.
    """

    def __init__(self, input_dim: int, sizes: Sequence[int], batch_norm: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(*mlp_layers([input_dim, *sizes], batch_norm))
        self.output_dim = sizes[-1]

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return self.net(obs.flatten(start_dim=1))


class MlpDecoder(nn.Module):
    """
    The vector emission after its hidden layer (the original's ``fc`` decoder): the encoder's layers in reverse
    (``sizes[-1] -> ... -> sizes[0]``, Mountain Hike 64 -> 64), then a mean head and a softplus variance head
    (Gaussian), or one sigmoid head of probabilities (Bernoulli-style).

    :param sizes: The encoder's hidden sizes.
    :param output_dim: Flattened observation size.
    :param emission: ``"gaussian"`` or ``"bernoulli"``.
    :param batch_norm: Whether to put BatchNorm after each hidden Linear.
    """

    def __init__(self, sizes: Sequence[int], output_dim: int, emission: str, batch_norm: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(*mlp_layers(list(reversed(sizes)), batch_norm))
        self.mean = nn.Linear(sizes[0], output_dim)
        self.variance = nn.Linear(sizes[0], output_dim) if emission == "gaussian" else None

    def forward(self, hidden: th.Tensor) -> tuple[th.Tensor, th.Tensor | None]:
        """:return: (mean, variance) of the Gaussian, or (probabilities, None)."""
        out = self.net(hidden)
        if self.variance is None:
            return th.sigmoid(self.mean(out)), None
        return self.mean(out), F.softplus(self.variance(out)) + MIN_VARIANCE


class ConvDecoder(nn.Module):
    """
    The Atari emission decoder after the emission's hidden layer (whose width is the encoder's output, 32x7x7 on
    84x84, as in the original): that layer reshaped to the encoder's conv shape, then transposed convolutions
    mirroring the encoder (3x3/1, 4x4/2, 8x8/4; BatchNorm and ReLU between them) and a sigmoid, giving pixel
    probabilities. ``output_size`` makes each transposed convolution return exactly the size its mirrored
    convolution consumed, so any image size the encoder accepts is reconstructed at full size.

    :param observation_space: Image space, channel-first.
    :param channels: The encoder's channels.
    :param batch_norm: Whether to put BatchNorm between the transposed convolutions.
    """

    def __init__(self, observation_space: spaces.Box, channels: Sequence[int], batch_norm: bool) -> None:
        super().__init__()
        c, height, width = observation_space.shape
        self.sizes: list[tuple[int, int]] = [(height, width)]
        for kernel, stride in zip((8, 4, 3), (4, 2, 1), strict=True):
            height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
            self.sizes.append((height, width))
        self.start_shape = (channels[2], height, width)
        self.deconvs = nn.ModuleList(
            [
                nn.ConvTranspose2d(channels[2], channels[1], 3, stride=1),
                nn.ConvTranspose2d(channels[1], channels[0], 4, stride=2),
                nn.ConvTranspose2d(channels[0], c, 8, stride=4),
            ]
        )
        self.norms = nn.ModuleList(
            [nn.BatchNorm2d(n) if batch_norm else nn.Identity() for n in (channels[1], channels[0])]  # type: ignore[misc]
        )

    def forward(self, hidden: th.Tensor) -> th.Tensor:
        out = hidden.view(-1, *self.start_shape)
        for i, deconv in enumerate(self.deconvs):
            out = deconv(out, output_size=list(self.sizes[2 - i]))
            if i < 2:
                out = F.relu(self.norms[i](out))
        return th.sigmoid(out)


class FusedWeights(NamedTuple):
    """
    The weights of one filter step regrouped by input, built once per rollout or update (see
    :meth:`DVRLPolicy.fused_weights`): ``W x`` of a layer over concatenated inputs is the sum of its column blocks
    times each input, so the inputs shared by the particles of an env (``phi(o_t)``, ``enc(a_{t-1})``) are multiplied
    once per env, and every matrix that reads ``h_{t-1}`` (or ``phi(z_t)``) is one stacked product.
    """

    w_h: th.Tensor  # [H + H + X + 3H, H]: prior, proposal, emission hidden layers, GRU hidden gates (r, u, n)
    b_h: th.Tensor  # their biases (the GRU's bias_hh)
    w_a: th.Tensor  # [H + H + X + 3H, A]: the same four from enc(a_{t-1}) (the GRU's input gates last)
    w_x: th.Tensor  # [H + 3H, X]: proposal hidden layer and GRU input gates from phi(o_t)
    b_x: th.Tensor  # zeros for the proposal (its bias is in b_h), the GRU's bias_ih
    w_z: th.Tensor  # [X + 3H, H]: emission hidden layer and GRU input gates from phi(z_t)
    w_prior: th.Tensor  # [2Z, H] prior mean and variance heads
    b_prior: th.Tensor
    w_proposal: th.Tensor  # [2Z, H] proposal mean and variance heads
    b_proposal: th.Tensor


class DVRLPolicy(BasePolicy):
    """
    The DVRL belief network and actor-critic (paper section 3, figure 2; the original code's ``DVRLPolicy``).

    Per environment the belief is ``K`` weighted particles of a VRNN; one step (:meth:`filter_step`) resamples the
    previous particles (systematic resampling), samples ``z_t ~ q(z_t | h_{t-1}, a_{t-1}, o_t)``, weights it by
    ``p(z_t | h_{t-1}, a_{t-1}) p(o_t | h_{t-1}, z_t, a_{t-1}) / q(z_t | ...)`` and advances
    ``h_t = GRUCell([phi(o_t), phi(z_t), enc(a_{t-1})], h_{t-1})``. The policy reads the particles as a sequence of
    ``[h_k, phi(z_k), wbar_k]`` through a GRU (a Linear when ``K = 1``); a categorical or diagonal-Gaussian actor
    and a linear critic act on its final state. With ``use_particle_filter=False`` it is the paper's RNN baseline:
    ``h_t = GRUCell([phi(o_t), enc(a_{t-1})], h_{t-1})`` with actor and critic on ``h_t``.

    Layer layout (the original code's): prior ``Linear([h, enc(a)] -> H) -> ReLU`` with a mean and a softplus
    variance head; proposal the same on ``[h, phi(o), enc(a)]`` (BatchNorm before the ReLU with ``batch_norm``);
    ``phi(z) = ReLU(Linear(z))``; emission hidden layer ``[h_{t-1}, phi(z_t), enc(a)] -> X`` (the width of the
    observation encoding), then the mirrored MLP decoder with mean and softplus-variance heads (Gaussian) or a
    sigmoid head (Bernoulli-style), or the transposed-conv decoder (images).

    All envs and particles are computed together: one batched product per layer and step over the ``B * K`` rows,
    with the inputs shared by an env's particles multiplied once per env (:class:`FusedWeights`).

    Every argument is checked here (types, ranges, choices; :class:`~sb3_bayes.common.validation.ParameterValidator`),
    so that a bad ``policy_kwargs`` entry fails when the model is built, with an error that names it. The arguments are
    kept as given (``n_particles``, ``z_dim``; what :meth:`_get_constructor_parameters` saves); the belief's own widths
    are :attr:`belief_particles` ``K`` and :attr:`belief_z_dim` ``Z`` (1 and 0 for the RNN baseline, whose belief is
    one recurrent state without latent).

    :param observation_space: Observation space (Box, Discrete, MultiDiscrete or MultiBinary; images for CnnPolicy).
    :param action_space: Action space (Discrete or Box).
    :param lr_schedule: Learning-rate schedule (the optimiser starts at ``lr_schedule(1)``).
    :param n_particles: Particles per environment ``K`` (not used by the RNN baseline). With :class:`DVRL` this is
        its ``n_particles`` argument, passed by name (not a ``policy_kwargs`` entry).
    :param use_particle_filter: False gives the RNN baseline (DVRL passes its own argument by name).
    :param resample: Whether to resample every step (DVRL switches it off when the ELBO weight is 0).
    :param h_dim: Size of the GRU states (and of the prior/proposal hidden layers and of phi(z)).
    :param z_dim: Size of the latent ``z`` (not used by the RNN baseline).
    :param encoder: ``"mlp"`` or ``"cnn"`` observation encoder.
    :param encoder_sizes: Hidden sizes of the MLP encoder, at least one (its last entry is the encoding size ``X``);
        the vector decoder mirrors them.
    :param cnn_channels: Channels of the three convolutions of the CNN encoder.
    :param action_encoding: Output size of the action encoder ``Linear(action_dim, action_encoding) -> ReLU``
        (one-hot input for Discrete actions).
    :param emission: ``"gaussian"`` (softplus variance; vector observations) or ``"bernoulli"`` (sigmoid
        probabilities of values in [0, 1]; a transposed-conv decoder with the CNN encoder).
    :param batch_norm: BatchNorm in the encoders, the proposal and emission hidden layers and the decoder (the
        original's ``encoder_batch_norm``; on for its Atari runs, off on Mountain Hike).
    :param bounded_action_mean: Box actions only: the Gaussian's mean is ``centre + half_range * tanh(u)`` of the
        action net's output ``u``, so that it stays inside the action box; the sample is not squashed, so its
        log-probability and entropy stay the Gaussian's (A2C's terms unchanged). Off by default (the original's
        unbounded mean): with an unbounded mean A2C can push the mean out of the box, where every sample is clipped
        to the same corner, the actions no longer differ and the policy gradient has nothing to learn from. The
        bound removes that drift, not a mean pinned to the box's edge by a saturated ``tanh`` (docs/dvrl.md, "The late
        collapse" and "The remedy").
    :param normalize_images: Whether to divide uint8 images by 255 (SB3's ``preprocess_obs``).
    :param optimizer_class: The optimiser (DVRL passes RMSprop or Adam, from its ``optimizer`` argument).
    :param optimizer_kwargs: Its keyword arguments (DVRL passes them, from ``rms_prop_alpha`` and ``rms_prop_eps``).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        n_particles: int = 10,
        use_particle_filter: bool = True,
        resample: bool = True,
        h_dim: int = 256,
        z_dim: int = 256,
        encoder: str = "mlp",
        encoder_sizes: Sequence[int] = (64, 64),
        cnn_channels: Sequence[int] = (32, 64, 32),
        action_encoding: int = 128,
        emission: str = "gaussian",
        batch_norm: bool = False,
        bounded_action_mean: bool = False,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.RMSprop,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        # Every argument is checked before anything is built (DVRL passes its own arguments through here too).
        check = ParameterValidator(type(self).__name__)
        n_particles = check.integer("n_particles", n_particles)
        use_particle_filter = check.boolean("use_particle_filter", use_particle_filter)
        resample = check.boolean("resample", resample)
        h_dim = check.integer("h_dim", h_dim)
        z_dim = check.integer("z_dim", z_dim)
        encoder = check.choice("encoder", encoder, ENCODERS)
        encoder_sizes = check.sizes("encoder_sizes", encoder_sizes, allow_empty=False)
        cnn_channels = check.sizes("cnn_channels", cnn_channels)
        check.relation("cnn_channels", cnn_channels, len(cnn_channels) == 3, "three channel counts (one per convolution)")
        action_encoding = check.integer("action_encoding", action_encoding)
        emission = check.choice("emission", emission, EMISSIONS)
        check.relation(
            "emission",
            emission,
            encoder != "cnn" or not use_particle_filter or emission == "bernoulli",
            "'bernoulli' with the CNN encoder: its transposed-conv decoder gives pixel probabilities",
        )
        batch_norm = check.boolean("batch_norm", batch_norm)
        bounded_action_mean = check.boolean("bounded_action_mean", bounded_action_mean)
        check.relation(
            "bounded_action_mean",
            bounded_action_mean,
            not bounded_action_mean
            or (
                isinstance(action_space, spaces.Box)
                and bool(np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high)))
            ),
            f"True only with a Box action space with finite bounds (got {action_space})",
        )
        normalize_images = check.boolean("normalize_images", normalize_images)
        check.subclass("optimizer_class", optimizer_class, th.optim.Optimizer)
        check.keyword_arguments("optimizer_kwargs", optimizer_kwargs)
        super().__init__(
            observation_space,
            action_space,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )
        check_spaces(observation_space, action_space)
        self.n_particles = n_particles
        self.use_particle_filter = use_particle_filter
        self.resample = resample
        self.h_dim = h_dim
        self.z_dim = z_dim
        # The RNN baseline's belief is one recurrent state without latent: one "particle", no z.
        self.belief_particles = n_particles if use_particle_filter else 1
        self.belief_z_dim = z_dim if use_particle_filter else 0
        self.encoder = encoder
        self.encoder_sizes = tuple(encoder_sizes)
        self.cnn_channels = tuple(cnn_channels)
        self.action_encoding = action_encoding
        self.emission = emission
        self.batch_norm = batch_norm
        self.bounded_action_mean = bounded_action_mean

        self._build_networks(observation_space, action_space)
        self._init_weights()
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _build_encoders(self, observation_space: spaces.Space) -> int:
        """Build the observation encoder (MLP or the paper's conv net); return its output size."""
        if self.encoder == "cnn":
            if not (isinstance(observation_space, spaces.Box) and is_image_space(observation_space, check_channels=False)):
                raise ValueError(f"The CNN encoder of DVRL needs image observations, got {observation_space}: use MlpPolicy.")
            encoder = ConvEncoder(observation_space, self.cnn_channels, self.batch_norm)
        else:
            encoder = MlpEncoder(get_flattened_obs_dim(observation_space), self.encoder_sizes, self.batch_norm)  # type: ignore[assignment]
        self.obs_encoder: nn.Module = encoder
        return encoder.output_dim

    def _build_networks(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        """Build every network (the layer layout of the original code; see :class:`FusedWeights` for the step)."""
        h_dim, z_dim, a_dim = self.h_dim, self.belief_z_dim, self.action_encoding
        x_dim = self.obs_x_dim = self._build_encoders(observation_space)
        self.obs_flat_dim = get_flattened_obs_dim(observation_space)
        if isinstance(action_space, spaces.Discrete):
            self.action_input_dim = int(action_space.n)
        else:
            self.action_input_dim = get_action_dim(action_space)
        self.action_encoder = nn.Sequential(*mlp_layers([self.action_input_dim, a_dim], self.batch_norm))

        if self.use_particle_filter:
            # Prior p(z_t | h_{t-1}, a_{t-1}) on [h, enc(a)] and proposal q(z_t | h_{t-1}, a_{t-1}, o_t) on
            # [h, phi(o), enc(a)] (paper section 3, "Model"): Linear -> ReLU, mean head and softplus variance head.
            self.prior = GaussianHead(h_dim + a_dim, h_dim, z_dim)
            self.proposal = GaussianHead(h_dim + x_dim + a_dim, h_dim, z_dim)
            self.phi_z = nn.Sequential(nn.Linear(z_dim, h_dim), nn.ReLU())
            # Emission p(o_t | h_{t-1}, z_t, a_{t-1}) on [h_{t-1}, phi(z_t), enc(a)] (conditioned on the previous h as in
            # the original code): a hidden layer as wide as the observation encoding, then the decoder.
            self.emission_hidden = nn.Linear(2 * h_dim + a_dim, x_dim)
            if self.encoder == "cnn":
                self.emission_head: nn.Module = ConvDecoder(
                    observation_space, self.cnn_channels, self.batch_norm  # type: ignore[arg-type]
                )
            else:
                self.emission_head = MlpDecoder(self.encoder_sizes, self.obs_flat_dim, self.emission, self.batch_norm)
            # BatchNorm after the proposal's and the emission's hidden layers (the original's encoder_batch_norm).
            self.proposal_norm: nn.Module = nn.BatchNorm1d(h_dim) if self.batch_norm else nn.Identity()
            self.emission_norm: nn.Module = nn.BatchNorm1d(x_dim) if self.batch_norm else nn.Identity()
            # Deterministic transition h_t = GRUCell([phi(o_t), phi(z_t), enc(a_{t-1})], h_{t-1}).
            self.transition = nn.GRUCell(x_dim + h_dim + a_dim, h_dim)
            # Particle aggregation: the particles as a sequence of [h_k, phi(z_k), wbar_k] through a GRU.
            if self.belief_particles > 1:
                self.particle_gru: nn.Module = nn.GRU(2 * h_dim + 1, h_dim, batch_first=True)
            else:
                self.particle_gru = nn.Linear(2 * h_dim + 1, h_dim)
        else:
            self.transition = nn.GRUCell(x_dim + a_dim, h_dim)

        self.action_dist = make_proba_distribution(action_space)
        if isinstance(self.action_dist, DiagGaussianDistribution):
            self.action_net, self.log_std = self.action_dist.proba_distribution_net(latent_dim=h_dim, log_std_init=0.0)
            if self.bounded_action_mean:
                assert isinstance(action_space, spaces.Box)
                low = th.as_tensor(action_space.low, dtype=th.float32)
                high = th.as_tensor(action_space.high, dtype=th.float32)
                # Not saved: they follow from the action space, so models saved before this option load unchanged.
                self.register_buffer("action_centre", (high + low) / 2, persistent=False)
                self.register_buffer("action_half_range", (high - low) / 2, persistent=False)
        else:
            assert isinstance(self.action_dist, CategoricalDistribution)
            self.action_net = self.action_dist.proba_distribution_net(latent_dim=h_dim)
        self.value_net = nn.Linear(h_dim, 1)

    def _init_weights(self) -> None:
        """
        The original's ``reset_parameters``: orthogonal weights with the ReLU gain and zero biases for every Linear and
        (transposed) convolution; orthogonal weights (gain 1) and zero biases for the transition GRUCell; the particle
        GRU keeps PyTorch's initialisation. The Gaussian actor's mean weights are scaled by 0.01, so that the first
        actions are close to zero.
        """
        relu_gain = nn.init.calculate_gain("relu")
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.orthogonal_(module.weight, gain=relu_gain)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.GRUCell):
                nn.init.orthogonal_(module.weight_ih)
                nn.init.orthogonal_(module.weight_hh)
                assert module.bias_ih is not None and module.bias_hh is not None
                nn.init.zeros_(module.bias_ih)
                nn.init.zeros_(module.bias_hh)
        if isinstance(self.action_dist, DiagGaussianDistribution):
            assert isinstance(self.action_net, nn.Linear)
            with th.no_grad():
                self.action_net.weight.mul_(0.01)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return constructor_arguments(self, DVRLPolicy, super()._get_constructor_parameters())

    # ------------------------------------------------------------------ belief
    def initial_belief(self, n_envs: int) -> Belief:
        """
        The belief at an episode start: h, z and log-weights zero (uniform weights), previous action zero.

        :param n_envs: Number of filters ``B``.
        :return: The belief.
        """
        k = self.belief_particles
        return Belief(
            h=th.zeros(n_envs, k, self.h_dim, device=self.device),
            z=th.zeros(n_envs, k, self.belief_z_dim, device=self.device),
            log_weights=th.zeros(n_envs, k, device=self.device),
            prev_action=th.zeros(n_envs, self.action_input_dim, device=self.device),
        )

    def sample_noise(self, n_envs: int) -> FilterNoise:
        """
        Draw the random numbers of one filter step from torch's global generator (seeded by ``set_random_seed``).

        :param n_envs: Number of filters ``B``.
        :return: The noise.
        """
        return FilterNoise(
            uniforms=th.rand(n_envs, device=self.device),
            normals=th.randn(n_envs, self.belief_particles, self.belief_z_dim, device=self.device),
        )

    def action_input(self, actions: th.Tensor) -> th.Tensor:
        """
        The action as the action encoder reads it: one-hot for Discrete, flattened floats for Box.

        :param actions: Actions ``[B]`` or ``[B, 1]`` (indices) or ``[B, action_dim]``.
        :return: ``[B, action_input_dim]``.
        """
        if isinstance(self.action_space, spaces.Discrete):
            return F.one_hot(actions.long().reshape(-1), self.action_input_dim).float()
        return actions.float().reshape(-1, self.action_input_dim)

    def fused_weights(self) -> FusedWeights:
        """
        Regroup the weights of the prior, proposal and emission hidden layers and of the GRU by input (see
        :class:`FusedWeights`). Cheap (concatenations), differentiable; build it once per rollout or update.

        :return: The regrouped weights.
        """
        h, x = self.h_dim, self.obs_x_dim
        w_prior, w_prop, w_em = self.prior.hidden.weight, self.proposal.hidden.weight, self.emission_hidden.weight
        w_ih = self.transition.weight_ih
        assert self.transition.bias_ih is not None and self.transition.bias_hh is not None
        return FusedWeights(
            w_h=th.cat([w_prior[:, :h], w_prop[:, :h], w_em[:, :h], self.transition.weight_hh]),
            b_h=th.cat(
                [self.prior.hidden.bias, self.proposal.hidden.bias, self.emission_hidden.bias, self.transition.bias_hh]
            ),
            w_a=th.cat([w_prior[:, h:], w_prop[:, h + x :], w_em[:, 2 * h :], w_ih[:, x + h :]]),
            w_x=th.cat([w_prop[:, h : h + x], w_ih[:, :x]]),
            b_x=th.cat([th.zeros_like(self.transition.bias_ih[:h]), self.transition.bias_ih]),
            w_z=th.cat([w_em[:, h : 2 * h], w_ih[:, x : x + h]]),
            w_prior=th.cat([self.prior.mean.weight, self.prior.variance.weight]),
            b_prior=th.cat([self.prior.mean.bias, self.prior.variance.bias]),
            w_proposal=th.cat([self.proposal.mean.weight, self.proposal.variance.weight]),
            b_proposal=th.cat([self.proposal.mean.bias, self.proposal.variance.bias]),
        )

    @staticmethod
    def _norm(norm: nn.Module, x: th.Tensor) -> th.Tensor:
        """Apply a BatchNorm1d (or Identity) to ``[B, K, D]`` over the ``B * K`` rows."""
        return x if isinstance(norm, nn.Identity) else norm(x.reshape(-1, x.shape[-1])).view(x.shape)

    def _emission_log_likelihood(self, hidden: th.Tensor, obs_float: th.Tensor, n_envs: int) -> th.Tensor:
        """``log p(o_t | h_{t-1}, z_t, a_{t-1})`` ``[B, K]`` from the emission's hidden layer ``[B * K, X]``."""
        k = self.belief_particles
        if self.encoder == "cnn":
            probability = self.emission_head(hidden)
            return bernoulli_log_density(obs_float.unsqueeze(1), probability.view(n_envs, k, *obs_float.shape[1:]))
        mean, variance = self.emission_head(hidden)
        target = obs_float.reshape(n_envs, 1, -1)
        if variance is None:
            return bernoulli_log_density(target, mean.view(n_envs, k, -1))
        return gaussian_log_density(target, mean.view(n_envs, k, -1), variance.view(n_envs, k, -1))

    def filter_step(
        self,
        belief: Belief,
        obs: th.Tensor,
        episode_starts: th.Tensor,
        noise: FilterNoise,
        weights: FusedWeights | None = None,
        weight_gradients: bool = True,
    ) -> FilterStep:
        """
        One step of the belief update (paper algorithm 1), for every env and particle at once.

        Where ``episode_starts`` is 1 the belief is reset first (h, z, log-weights and previous action to zero).
        Then, with the particle filter: resample the previous particles (systematic, with ``noise.uniforms``) unless
        resampling is off, sample ``z_t = mu_q + sigma_q * noise.normals`` (reparameterised), compute the new
        log-weight ``log p(z_t) + log p(o_t) - log q(z_t)`` (it replaces the old one, as in the original code, also
        when resampling is off), and advance ``h``. The ELBO term is ``log mean_k w_{t,k}`` (auto-encoding SMC, Le et
        al. 2018 eq. 4: the log of the step's factor of the evidence estimate). The step is a deterministic function of its
        inputs and ``noise``, so a stored ``noise`` reproduces it exactly.

        :param belief: The belief before the step (``prev_action`` = action taken after the previous observation).
        :param obs: Observations ``o_t`` as given by the env (uint8 images are scaled here).
        :param episode_starts: ``[B]`` 1.0 where ``o_t`` is the first observation of an episode.
        :param noise: Random numbers of this step.
        :param weights: :meth:`fused_weights` (built here when None).
        :param weight_gradients: False computes the log-weights and the ELBO term without autograd graph (same
            values). The window replay uses it for the steps before the newest rollout: there the weights only pick
            ancestors (not differentiable) and their ELBO terms are not in the loss, so only ``h`` and ``z`` need a
            graph, which saves the backward pass of the prior and the emission.
        :return: The new belief (its ``prev_action`` unchanged: the caller sets the action chosen next), ``phi(z_t)``
            and the ELBO term.
        """
        keep = 1.0 - episode_starts.float()
        h = belief.h * keep.view(-1, 1, 1)
        log_weights = belief.log_weights * keep.view(-1, 1)
        prev_action = belief.prev_action * keep.view(-1, 1)
        n_envs, k, h_dim = h.shape[0], self.belief_particles, self.h_dim

        obs_float = preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images)
        assert isinstance(obs_float, th.Tensor)
        phi_x = self.obs_encoder(obs_float)  # [B, X]
        enc_a = self.action_encoder(prev_action)  # [B, A]

        if not self.use_particle_filter:
            h_new = self.transition(th.cat([phi_x, enc_a], dim=1), h[:, 0])
            empty = h_new.new_zeros(n_envs, 1, 0)
            return FilterStep(Belief(h_new.unsqueeze(1), empty, log_weights, prev_action), empty, h_new.new_zeros(n_envs))

        if self.resample:
            # Systematic resampling of the previous particles (not differentiable: the indices are picked with the
            # detached weights); the new weights then replace the old ones.
            h = gather_particles(h, systematic_resample(log_weights, noise.uniforms))

        w = self.fused_weights() if weights is None else weights
        x_dim = self.obs_x_dim
        # Inputs shared by an env's particles, once per env, split as [prior, proposal, emission, GRU input gates]
        # (split rather than slices: its backward is one concatenation instead of a zero-filled copy per slice).
        a_prior, a_proposal, a_emission, a_gates = (
            F.linear(enc_a, w.w_a).unsqueeze(1).split([h_dim, h_dim, x_dim, 3 * h_dim], -1)
        )
        x_proposal, x_gates = F.linear(phi_x, w.w_x, w.b_x).unsqueeze(1).split([h_dim, 3 * h_dim], -1)
        # Everything that reads h_{t-1}, in one product over the B * K particles.
        h_prior, h_proposal, h_emission, gates_h = F.linear(h, w.w_h, w.b_h).split([h_dim, h_dim, x_dim, 3 * h_dim], -1)

        proposal_hidden = F.relu(self._norm(self.proposal_norm, h_proposal + a_proposal + x_proposal))
        proposal_mean, proposal_var = F.linear(proposal_hidden, w.w_proposal, w.b_proposal).chunk(2, dim=-1)
        proposal_std = (F.softplus(proposal_var) + MIN_VARIANCE).sqrt()
        z = proposal_mean + proposal_std * noise.normals
        phi_z = self.phi_z(z)  # [B, K, H]
        z_emission, z_gates = F.linear(phi_z, w.w_z).split([x_dim, 3 * h_dim], -1)

        with th.set_grad_enabled(th.is_grad_enabled() and weight_gradients):
            prior_mean, prior_var = F.linear(F.relu(h_prior + a_prior), w.w_prior, w.b_prior).chunk(2, dim=-1)
            log_prior = gaussian_log_density(z, prior_mean, F.softplus(prior_var) + MIN_VARIANCE)
            emission_hidden = F.relu(self._norm(self.emission_norm, h_emission + a_emission + z_emission))
            log_emission = self._emission_log_likelihood(emission_hidden.reshape(n_envs * k, x_dim), obs_float, n_envs)
            # log q(z) with z = mu + sigma * eps: the squared standardised residual is eps^2.
            log_proposal = -0.5 * (LOG_2PI + 2.0 * proposal_std.log() + noise.normals.pow(2)).sum(dim=-1)
            # The new log-weight is the incremental one, with or without resampling (as in the original code).
            new_log_weights = log_prior + log_emission - log_proposal  # [B, K]
            elbo = log_mean_exp(new_log_weights)

        # GRUCell (PyTorch's gate order r, u, n): the input gates from phi(o), phi(z), enc(a); the hidden gates from h.
        i_reset, i_update, i_candidate = (a_gates + x_gates + z_gates).chunk(3, dim=-1)
        h_reset, h_update, h_candidate = gates_h.chunk(3, dim=-1)
        reset = th.sigmoid(i_reset + h_reset)
        update = th.sigmoid(i_update + h_update)
        candidate = th.tanh(i_candidate + reset * h_candidate)
        h_new = candidate + update * (h - candidate)
        return FilterStep(Belief(h_new, z, new_log_weights, prev_action), phi_z, elbo)

    def belief_features(self, h: th.Tensor, phi_z: th.Tensor, log_weights: th.Tensor) -> th.Tensor:
        """
        The policy's summary of a belief: the particles as a sequence of ``[h_k, phi(z_k), wbar_k]`` through the
        particle GRU, its final state (a Linear when ``K = 1``); ``h`` itself for the RNN baseline.

        :param h: ``[N, K, H]``.
        :param phi_z: ``[N, K, H]``.
        :param log_weights: ``[N, K]``.
        :return: ``[N, H]``.
        """
        if not self.use_particle_filter:
            return h[:, 0]
        particles = th.cat([h, phi_z, normalized_weights(log_weights).unsqueeze(-1)], dim=-1)
        if self.belief_particles > 1:
            _, final = self.particle_gru(particles)
            return final[0]
        return self.particle_gru(particles[:, 0])

    def distribution(self, features: th.Tensor) -> Distribution:
        """
        The action distribution given belief features.

        :param features: ``[N, H]``.
        :return: SB3 distribution.
        """
        return self.action_head(features)[0]

    def action_head(self, features: th.Tensor) -> tuple[Distribution, th.Tensor]:
        """
        The action distribution given belief features, and the head's raw output ``u`` it was built from.

        :param features: ``[N, H]``.
        :return: SB3 distribution and ``u`` ``[N, action dim]``: the Gaussian's mean (its pre-``tanh`` value with
            ``bounded_action_mean``) or the categorical logits.
        """
        pre_activation = self.action_net(features)
        if isinstance(self.action_dist, DiagGaussianDistribution):
            mean_actions = pre_activation
            if self.bounded_action_mean:
                centre, half_range = self.get_buffer("action_centre"), self.get_buffer("action_half_range")
                mean_actions = centre + half_range * th.tanh(pre_activation)
            return self.action_dist.proba_distribution(mean_actions, self.log_std), pre_activation
        return self.action_dist.proba_distribution(action_logits=pre_activation), pre_activation  # type: ignore[call-arg]

    def step(
        self,
        belief: Belief,
        obs: th.Tensor,
        episode_starts: th.Tensor,
        noise: FilterNoise,
        deterministic: bool = False,
        weights: FusedWeights | None = None,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, FilterStep]:
        """
        Update the belief with ``obs`` and act on it.

        :param belief: Belief before the observation.
        :param obs: Observations.
        :param episode_starts: ``[B]`` episode-start flags.
        :param noise: Random numbers of the filter step.
        :param deterministic: Mode of the action distribution instead of a sample.
        :param weights: :meth:`fused_weights` (built when None).
        :return: actions, values ``[B]``, log-probabilities ``[B]``, and the filter step (new belief with
            ``prev_action`` still the consumed one).
        """
        out = self.filter_step(belief, obs, episode_starts, noise, weights)
        features = self.belief_features(out.belief.h, out.phi_z, out.belief.log_weights)
        distribution = self.distribution(features)
        actions = distribution.get_actions(deterministic=deterministic)
        return actions, self.value_net(features).flatten(), distribution.log_prob(actions), out

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> th.Tensor:  # type: ignore[override]
        """Act from the initial belief (a stateless call; use :meth:`predict` with ``state`` for the recurrent one)."""
        return self._predict(obs, deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        assert isinstance(observation, th.Tensor)
        n_envs = observation.shape[0]
        starts = th.ones(n_envs, device=self.device)
        actions, _, _, _ = self.step(
            self.initial_belief(n_envs), observation, starts, self.sample_noise(n_envs), deterministic
        )
        return actions

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """
        Update the belief with the observation and return the action and the new belief (as sb3-contrib's
        RecurrentPPO does with LSTM states).

        The belief is stochastic (latent samples, resampling) even with ``deterministic=True``, which only takes the
        mode of the action distribution: seed torch (``th.manual_seed``) for reproducible calls.

        :param observation: Observation(s), batched or single.
        :param state: ``(h [B, K, H], z [B, K, Z], log_weights [B, K], prev_action [B, action_input_dim])`` as
            returned by the previous call, or None for the initial belief.
        :param episode_start: ``[B]`` booleans; where true the belief is reset before the observation is used.
        :param deterministic: Whether to return the mode of the action distribution.
        :return: The action(s) (clipped to the bounds of a Box space) and the new state (its ``prev_action`` is the
            action returned, unclipped, as the model saw it).
        """
        self.set_training_mode(False)
        obs_tensor, vectorized_env = self.obs_to_tensor(observation)
        assert isinstance(obs_tensor, th.Tensor)
        n_envs = obs_tensor.shape[0]
        if state is None:
            belief = self.initial_belief(n_envs)
        else:
            if len(state) != 4:
                raise ValueError(f"DVRL's state is (h, z, log_weights, prev_action), got a tuple of {len(state)} arrays.")
            belief = Belief(*(th.as_tensor(np.asarray(s), dtype=th.float32, device=self.device) for s in state))
            if belief.h.shape != (n_envs, self.belief_particles, self.h_dim):
                raise ValueError(
                    f"State h has shape {tuple(belief.h.shape)}, expected {(n_envs, self.belief_particles, self.h_dim)}."
                )
        starts = (
            th.zeros(n_envs, device=self.device)
            if episode_start is None
            else th.as_tensor(np.asarray(episode_start), dtype=th.float32, device=self.device).reshape(n_envs)
        )
        with th.no_grad():
            actions, _, _, out = self.step(belief, obs_tensor, starts, self.sample_noise(n_envs), deterministic)
            new_state = (
                out.belief.h.cpu().numpy(),
                out.belief.z.cpu().numpy(),
                out.belief.log_weights.cpu().numpy(),
                self.action_input(actions).cpu().numpy(),
            )
        np_actions = actions.cpu().numpy().reshape((-1, *(self.action_space.shape or ())))
        if isinstance(self.action_space, spaces.Box):
            np_actions = np.clip(np_actions, self.action_space.low, self.action_space.high)
        if not vectorized_env:
            np_actions = np_actions.squeeze(axis=0)
        return np_actions, new_state


class CnnPolicy(DVRLPolicy):
    """
    DVRL with the paper's Atari networks: the conv encoder with BatchNorm, the transposed-conv Bernoulli-style
    emission, ``h_dim = z_dim = 256`` (see :class:`DVRLPolicy` for the arguments).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        encoder: str = "cnn",
        emission: str = "bernoulli",
        batch_norm: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space, action_space, lr_schedule, encoder=encoder, emission=emission, batch_norm=batch_norm, **kwargs
        )


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """
    Raise a one-line ``ValueError`` for spaces DVRL does not support.

    :param observation_space: Box, Discrete, MultiDiscrete or MultiBinary.
    :param action_space: Discrete or Box.
    """
    if not isinstance(observation_space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        raise ValueError(
            f"DVRL supports Box, Discrete, MultiDiscrete and MultiBinary observation spaces, got {observation_space}: "
            "flatten it (e.g. gymnasium's FlattenObservation)."
        )
    if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
        raise ValueError(f"DVRL supports Discrete and Box action spaces, got {action_space}.")


MlpPolicy = DVRLPolicy
