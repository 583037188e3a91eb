"""PSDRL networks: autoencoder, recurrent transition model with a Bayesian last layer, terminal model, value network."""

import copy
from typing import Any, NamedTuple

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from sb3_bayes.common.blr import SAMPLING_MODES, BayesianLinearRegression
from sb3_bayes.common.policies import constructor_arguments
from sb3_bayes.common.random_features import RandomFourierFeatures
from sb3_bayes.common.utils import PLANNING_DTYPES, check_finite, planning_precision
from sb3_bayes.common.validation import ParameterValidator

TERMINAL_INPUTS = ("next_latent", "state_action")


def mlp(sizes: list[int], activation: type[nn.Module] = nn.Tanh, last_activation: bool = True) -> nn.Sequential:
    """Linear layers of the given widths with ``activation`` between them (and after the last one if asked)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or last_activation:
            layers.append(activation())
    return nn.Sequential(*layers)


class ConvAutoencoder(nn.Module):
    """
    The PSDRL autoencoder for 64x64 frames: four convolutions (kernel 4, stride 2, ReLU), 1 -> 48 -> 96 -> 192 -> 384
    channels and 64 -> 2 pixels, flattened to a 1536-dimensional latent; the decoder mirrors it (transposed
    convolutions, the last with kernel 6 to land on 64 pixels) and ends in a sigmoid.

    :param n_channels: Input channels (1 for grayscale).
    :param depth: Channels of the first convolution (48 in the paper); later ones double.
    """

    def __init__(self, n_channels: int = 1, depth: int = 48) -> None:
        super().__init__()
        widths = [n_channels, depth, 2 * depth, 4 * depth, 8 * depth]
        self.encoder = nn.Sequential(
            *[m for i in range(4) for m in (nn.Conv2d(widths[i], widths[i + 1], 4, stride=2), nn.ReLU())], nn.Flatten()
        )
        self.latent_dim = self.latent_size(depth)
        kernels = [4, 4, 4, 6]
        decoder: list[nn.Module] = [nn.Unflatten(1, (widths[-1], 2, 2))]
        for i, kernel in enumerate(kernels):
            decoder.append(nn.ConvTranspose2d(widths[4 - i], widths[3 - i], kernel, stride=2))
            decoder.append(nn.ReLU() if i < 3 else nn.Sigmoid())
        self.decoder = nn.Sequential(*decoder)

    @staticmethod
    def latent_size(depth: int) -> int:
        """The latent size for a first convolution of ``depth`` channels: ``8 * depth`` channels of 2x2 pixels."""
        return 8 * depth * 2 * 2

    def encode(self, obs: th.Tensor) -> th.Tensor:
        return self.encoder(obs)

    def decode(self, latent: th.Tensor) -> th.Tensor:
        return self.decoder(latent)


class MlpAutoencoder(nn.Module):
    """
    Autoencoder for vector observations (in place of the convolutional one), tanh hidden layers.

    :param obs_dim: Observation size.
    :param latent_dim: Latent size.
    :param hidden_dim: Hidden width.
    """

    def __init__(self, obs_dim: int, latent_dim: int = 64, hidden_dim: int = 128) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = mlp([obs_dim, hidden_dim, latent_dim], last_activation=True)
        self.decoder = mlp([latent_dim, hidden_dim, obs_dim], last_activation=False)

    def encode(self, obs: th.Tensor) -> th.Tensor:
        return self.encoder(obs)

    def decode(self, latent: th.Tensor) -> th.Tensor:
        return self.decoder(latent)


class TransitionStep(NamedTuple):
    """One step of the transition model, for a batch of states and one action each."""

    hidden: th.Tensor  # h' [batch, gru_dim]
    features: th.Tensor  # phi [batch, feature_dim], the input of the Bayesian last layer


class TransitionModel(nn.Module):
    """
    ``h' = GRU([z, a], h)``; ``phi = MLP([h', z, a])`` (three tanh layers and one linear layer); the last layer maps
    ``phi`` to ``[z', r]``. During gradient training the last layer is an ordinary linear map; for acting and value
    fitting it is replaced by a weight sample of the Bayesian linear regression over ``phi``.

    :param latent_dim: Latent size.
    :param n_actions: Number of discrete actions.
    :param gru_dim: Recurrent state size (756 in the paper).
    :param hidden_dim: Width of the head (2292 in the paper, the size of ``[h', z]``).
    """

    def __init__(self, latent_dim: int, n_actions: int, gru_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.n_actions = n_actions
        self.gru_dim = gru_dim
        self.feature_dim = hidden_dim
        self.gru = nn.GRUCell(latent_dim + n_actions, gru_dim)
        self.head = nn.Sequential(
            mlp([gru_dim + latent_dim + n_actions, hidden_dim, hidden_dim, hidden_dim], last_activation=True),
            nn.Linear(hidden_dim, hidden_dim),
        )
        self.output_layer = nn.Linear(hidden_dim, latent_dim + 1)

    def recur(self, latent: th.Tensor, action_one_hot: th.Tensor, hidden: th.Tensor) -> th.Tensor:
        """
        ``h' = GRU([z, a], h)``, the only recurrent part (the head does not feed back), so callers can run the head
        once over many steps.

        :param latent: ``z`` ``[batch, latent_dim]``.
        :param action_one_hot: ``[batch, n_actions]``.
        :param hidden: ``h`` ``[batch, gru_dim]``.
        """
        return self.gru(th.cat([latent, action_one_hot], dim=-1), hidden)

    def features(self, next_hidden: th.Tensor, latent: th.Tensor, action_one_hot: th.Tensor) -> th.Tensor:
        """
        ``phi = MLP([h', z, a])`` for inputs with any leading dimensions.

        The first layer is applied to ``h'`` and to ``[z, a]`` separately (the same linear map): during training
        ``z`` carries no gradient, and this way back-propagation does not compute one for it.
        """
        trunk = self.head[0]
        assert isinstance(trunk, nn.Sequential)
        first = trunk[0]
        assert isinstance(first, nn.Linear)
        gru_dim = self.gru_dim
        pre_activation = F.linear(next_hidden, first.weight[:, :gru_dim]) + F.linear(
            th.cat([latent, action_one_hot], dim=-1), first.weight[:, gru_dim:], first.bias
        )
        return self.head[1](trunk[1:](pre_activation))

    def step(self, latent: th.Tensor, action_one_hot: th.Tensor, hidden: th.Tensor) -> TransitionStep:
        """
        :param latent: ``z`` ``[batch, latent_dim]``.
        :param action_one_hot: ``[batch, n_actions]``.
        :param hidden: ``h`` ``[batch, gru_dim]``.
        """
        next_hidden = self.recur(latent, action_one_hot, hidden)
        return TransitionStep(next_hidden, self.features(next_hidden, latent, action_one_hot))


class PSDRLPolicy(BasePolicy):
    """
    Policy of PSDRL: the networks, the posterior over the transition model's last layer, the current model sample,
    and greedy one-step look-ahead acting with respect to that sample.

    :param observation_space: Observation space (64x64 image for ``CnnPolicy``, flat ``Box`` for ``MlpPolicy``).
    :param action_space: ``Discrete`` action space.
    :param lr_schedule: Learning rate of every component (1e-4 in the paper).
    :param latent_dim: Latent size of the MLP autoencoder (the convolutional one has ``8 * depth * 4``).
    :param encoder_hidden_dim: Hidden width of the MLP autoencoder.
    :param cnn_depth: Channels of the first convolution of the convolutional autoencoder (48 in the paper).
    :param gru_dim: Recurrent state size.
    :param transition_hidden_dim: Width of the transition head; None: ``latent_dim + gru_dim`` (the paper's 2292).
    :param terminal_hidden_dim: Width of the terminal model; None: ``latent_dim``.
    :param terminal_input: What the terminal model sees: ``"next_latent"`` (the original: the next latent, the
        sampled model's prediction of it when planning) or ``"state_action"`` (the latent before the move and the
        one-hot action). A move never tried has a next-latent prediction the model has never been trained on, and a
        terminal model that misreads it lets the value fit bootstrap past the episode end, which inflates every value
        (it pays on tasks whose termination the current state tells, such as DeepSea's last row).
    :param value_hidden_dim: Width of the value network; None: ``latent_dim + gru_dim``.
    :param ridge: Prior precision of the Bayesian linear regression (100).
    :param noise_precision: Its noise precision (1).
    :param transition_prior_scale: Posterior covariance scale of the latent outputs (1e-3).
    :param reward_prior_scale: Posterior covariance scale of the reward output (1e-3).
    :param sampling: ``"thompson"`` (default, samples from the posterior) or ``"original"`` (the original code's
        covariance-as-scale draw).
    :param prior_features: Width ``K`` of a random-feature prior appended to the Bayesian last layer's input (0, the
        paper's model: none). The learned features generalise, so the regression is as confident about moves never
        tried as about tried ones; ``K`` random Fourier features of ``[o, a]`` (the preprocessed observation, flattened,
        and the one-hot action: a squared-exponential kernel,
        :class:`~sb3_bayes.common.random_features.RandomFourierFeatures`) add prior uncertainty that only data near
        ``(o, a)`` remove, which makes the sampled models optimistic exactly where the agent has not been. The kernel
        is on the observation, not on the latent ``z``: the autoencoder maps inputs it has rarely seen close together.
    :param prior_lengthscale: Lengthscale of that kernel, in the units of the preprocessed observation (frames in
        [0, 1]); two actions are at distance ``sqrt(2)``.
    :param prior_feature_scale: Multiplier ``c`` of the random features: their part of a prediction has the prior
        variance ``c^2 prior_scale / ridge`` for every output.
    :param gamma: Discount of the look-ahead.
    :param exploration_epsilon: Probability of a uniformly random action (0.001).
    :param inference_dtype: ``"float32"`` or ``"bfloat16"``: autocast of the look-ahead and value-target passes
        through the big MLPs (acting and value fitting; gradient training stays float32). Pays off on GPUs and on CPUs
        with AMX or AVX512-BF16.
    :param optimizer_class: Optimizer of every component.
    :param optimizer_kwargs: Its keyword arguments.
    """

    sampled_weight: th.Tensor

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        latent_dim: int = 64,
        encoder_hidden_dim: int = 128,
        cnn_depth: int = 48,
        gru_dim: int = 64,
        transition_hidden_dim: int | None = None,
        terminal_hidden_dim: int | None = None,
        terminal_input: str = "next_latent",
        value_hidden_dim: int | None = None,
        ridge: float = 100.0,
        noise_precision: float = 1.0,
        transition_prior_scale: float = 1e-3,
        reward_prior_scale: float = 1e-3,
        sampling: str = "thompson",
        prior_features: int = 0,
        prior_lengthscale: float = 1.0,
        prior_feature_scale: float = 1.0,
        gamma: float = 0.99,
        exploration_epsilon: float = 0.001,
        inference_dtype: str = "float32",
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            normalize_images=normalize_images,
        )
        self.latent_dim = latent_dim
        self.encoder_hidden_dim = encoder_hidden_dim
        self.cnn_depth = cnn_depth
        self.gru_dim = gru_dim
        self.transition_hidden_dim = transition_hidden_dim
        self.terminal_hidden_dim = terminal_hidden_dim
        self.terminal_input = terminal_input
        self.value_hidden_dim = value_hidden_dim
        self.ridge = ridge
        self.noise_precision = noise_precision
        self.transition_prior_scale = transition_prior_scale
        self.reward_prior_scale = reward_prior_scale
        self.sampling = sampling
        self.prior_features = prior_features
        self.prior_lengthscale = prior_lengthscale
        self.prior_feature_scale = prior_feature_scale
        self.gamma = gamma
        self.exploration_epsilon = exploration_epsilon
        self.inference_dtype = inference_dtype
        self._check_hyperparameters()
        if optimizer_class is th.optim.Adam and optimizer_kwargs is None:
            # One fused kernel per step instead of a loop over the parameters: 4-5x faster Adam steps on a CPU for
            # these 30M-parameter models, the same update up to rounding.
            self.optimizer_kwargs = dict(fused=True)
        self._build(lr_schedule)

    def _check_hyperparameters(self) -> None:
        """
        Check every ``policy_kwargs`` entry (types, ranges), so that a bad value fails when the model is built rather
        than inside a training round; integers and reals are normalised (a NumPy scalar from a YAML file or a sampler
        becomes an ``int`` or a ``float``).
        """
        check = ParameterValidator(type(self).__name__)
        self.latent_dim = check.integer("latent_dim", self.latent_dim)
        self.encoder_hidden_dim = check.integer("encoder_hidden_dim", self.encoder_hidden_dim)
        self.cnn_depth = check.integer("cnn_depth", self.cnn_depth)
        self.gru_dim = check.integer("gru_dim", self.gru_dim)
        # None: the default width (a width of 0 used to mean the same by accident of `or`).
        self.transition_hidden_dim = check.optional(check.integer, "transition_hidden_dim", self.transition_hidden_dim)
        self.terminal_hidden_dim = check.optional(check.integer, "terminal_hidden_dim", self.terminal_hidden_dim)
        self.value_hidden_dim = check.optional(check.integer, "value_hidden_dim", self.value_hidden_dim)
        check.choice("terminal_input", self.terminal_input, TERMINAL_INPUTS)
        # The prior precision and the noise precision of the Bayesian last layer (Bishop, PRML, eq. 3.54): A = beta X^T X
        # + ridge I is positive definite only for ridge > 0.
        self.ridge = check.positive("ridge", self.ridge)
        self.noise_precision = check.positive("noise_precision", self.noise_precision)
        # Covariance scales: 0 is a point mass (the agent acts on the posterior mean), negative ones are no covariance.
        self.transition_prior_scale = check.non_negative("transition_prior_scale", self.transition_prior_scale)
        self.reward_prior_scale = check.non_negative("reward_prior_scale", self.reward_prior_scale)
        check.choice("sampling", self.sampling, SAMPLING_MODES)
        self.prior_features = check.integer("prior_features", self.prior_features, minimum=0)  # 0: no prior
        self.prior_lengthscale = check.positive("prior_lengthscale", self.prior_lengthscale)
        self.prior_feature_scale = check.positive("prior_feature_scale", self.prior_feature_scale)
        self.gamma = check.fraction("gamma", self.gamma)
        self.exploration_epsilon = check.fraction("exploration_epsilon", self.exploration_epsilon, zero=True)
        check.choice("inference_dtype", self.inference_dtype, PLANNING_DTYPES)
        check.subclass("optimizer_class", self.optimizer_class, th.optim.Optimizer)
        check.keyword_arguments("optimizer_kwargs", self.optimizer_kwargs)
        self.normalize_images = check.boolean("normalize_images", self.normalize_images)

    def _make_autoencoder(self) -> nn.Module:
        assert self.observation_space.shape is not None
        return MlpAutoencoder(int(np.prod(self.observation_space.shape)), self.latent_dim, self.encoder_hidden_dim)

    def _build(self, lr_schedule: Schedule) -> None:
        assert isinstance(self.action_space, spaces.Discrete)
        n_actions = int(self.action_space.n)
        self.autoencoder = self._make_autoencoder()
        latent_dim = int(self.autoencoder.latent_dim)  # type: ignore[arg-type]
        transition_hidden = self.transition_hidden_dim or latent_dim + self.gru_dim
        self.transition = TransitionModel(latent_dim, n_actions, self.gru_dim, transition_hidden)
        terminal_hidden = self.terminal_hidden_dim or latent_dim
        terminal_in = latent_dim + (n_actions if self.terminal_input == "state_action" else 0)
        self.terminal = mlp([terminal_in, terminal_hidden, terminal_hidden, terminal_hidden, 1], last_activation=False)
        value_hidden = self.value_hidden_dim or latent_dim + self.gru_dim
        self.value = mlp([latent_dim + self.gru_dim, *[value_hidden] * 4, 1], last_activation=False)
        self.value_target = copy.deepcopy(self.value)
        self.value_target.requires_grad_(False)
        # The Bayesian last layer: a bias feature (and the random-feature prior, if any) is appended to phi, and there
        # is one output per latent unit + reward.
        assert self.observation_space.shape is not None
        obs_dim = int(np.prod(self.observation_space.shape))
        self.prior_kernel = (
            RandomFourierFeatures(obs_dim + n_actions, self.prior_features, self.prior_lengthscale)
            if self.prior_features > 0
            else None
        )
        prior_scale = th.full((latent_dim + 1,), self.transition_prior_scale, dtype=th.float64)
        prior_scale[-1] = self.reward_prior_scale
        self.posterior = BayesianLinearRegression(
            transition_hidden + 1 + self.prior_features, latent_dim + 1, self.ridge, self.noise_precision, prior_scale
        )
        # The model the agent currently acts on: a draw from the prior until the first training round.
        self.register_buffer("sampled_weight", self.posterior.sample(self.sampling).float())
        lr = lr_schedule(1)
        self.autoencoder_optimizer = self.optimizer_class(self.autoencoder.parameters(), lr=lr, **self.optimizer_kwargs)  # type: ignore[call-arg]
        model_parameters = [*self.transition.parameters(), *self.terminal.parameters()]
        self.model_optimizer = self.optimizer_class(model_parameters, lr=lr, **self.optimizer_kwargs)  # type: ignore[call-arg]
        self.value_optimizer = self.optimizer_class(self.value.parameters(), lr=lr, **self.optimizer_kwargs)  # type: ignore[call-arg]
        self.optimizer = self.model_optimizer  # what SB3's generic code (learning-rate updates) expects

    @property
    def optimizers(self) -> list[th.optim.Optimizer]:
        return [self.autoencoder_optimizer, self.model_optimizer, self.value_optimizer]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return constructor_arguments(self, PSDRLPolicy, super()._get_constructor_parameters())

    # ----------------------------------------------------------------------------------------------------------------
    # Model pieces
    # ----------------------------------------------------------------------------------------------------------------
    def preprocess(self, obs: th.Tensor) -> th.Tensor:
        """Observations (uint8 frames or vectors) as network input (frames scaled to [0, 1])."""
        processed = preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images)
        assert isinstance(processed, th.Tensor)
        return processed.float() if isinstance(self.autoencoder, ConvAutoencoder) else processed.float().flatten(1)

    def encode(self, obs: th.Tensor) -> th.Tensor:
        """Latent state ``z`` of raw observations ``[batch, *obs_shape]``."""
        return self.autoencoder.encode(self.preprocess(obs))  # type: ignore[operator]

    def one_hot(self, actions: th.Tensor) -> th.Tensor:
        return F.one_hot(actions.long(), self.transition.n_actions).float()

    def prior_projection(self, processed_obs: th.Tensor) -> th.Tensor | None:
        """
        The observation's part of the random-feature prior's projection (:meth:`bayesian_features` adds the
        action's), or None without a prior. Computed once per state and shared by all actions.

        :param processed_obs: Preprocessed observations (:meth:`preprocess`) ``[batch, ...]``.
        """
        if self.prior_kernel is None:
            return None
        return self.prior_kernel.projection_of(processed_obs.flatten(1))

    def bayesian_features(
        self, features: th.Tensor, prior_projection: th.Tensor | None, action_one_hot: th.Tensor
    ) -> th.Tensor:
        """
        Input of the Bayesian last layer: ``[phi, 1]`` (it has a bias), followed by ``c psi([o, a])`` when the policy
        has a random-feature prior (``prior_features > 0``).

        :param features: ``phi`` ``[..., feature_dim]`` (:meth:`TransitionModel.features`).
        :param prior_projection: :meth:`prior_projection` of the observation the transition starts from
            (``[..., K]``), None without a prior.
        :param action_one_hot: ``[..., n_actions]``.
        """
        parts = [features, th.ones_like(features[..., :1])]
        if self.prior_kernel is not None:
            if prior_projection is None:
                raise ValueError("This policy has a random-feature prior: pass the observation's prior_projection.")
            parts.append(self.prior_part(prior_projection, action_one_hot).to(features.dtype))
        return th.cat(parts, dim=-1)

    def prior_part(self, prior_projection: th.Tensor, action_one_hot: th.Tensor) -> th.Tensor:
        """
        ``c psi([o, a])``, the random-feature prior's columns of :meth:`bayesian_features` (they depend on the
        observation and action only, never on the trained networks).

        :param prior_projection: :meth:`prior_projection` of the observations ``[..., K]``.
        :param action_one_hot: ``[..., n_actions]``.
        """
        assert self.prior_kernel is not None
        obs_dim = self.prior_kernel.input_dim - self.transition.n_actions
        projection = prior_projection + self.prior_kernel.projection_of(action_one_hot, start=obs_dim)
        return self.prior_feature_scale * self.prior_kernel.features_from_projection(projection)

    def predict_sampled(self, bayesian_features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``(z', r)`` under the current model sample, from :meth:`bayesian_features`."""
        out = bayesian_features @ self.sampled_weight
        return out[..., :-1], out[..., -1]

    def resample(self, generator: th.Generator | None = None) -> None:
        """Draw a new model from the posterior (posterior sampling, section 3 of the paper)."""
        self.sampled_weight = self.posterior.sample(self.sampling, generator).float()

    def lookahead(
        self, latent: th.Tensor, hidden: th.Tensor, prior_projection: th.Tensor | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """
        One step of the sampled model for every action from every state.

        :param latent: ``z`` ``[batch, latent_dim]``.
        :param hidden: ``h`` ``[batch, gru_dim]``.
        :param prior_projection: :meth:`prior_projection` of the states' observations ``[batch, K]`` (needed only with
            a random-feature prior).
        :return: ``(next_latent [batch, A, latent_dim], next_hidden [batch, A, gru_dim], reward [batch, A],
            not_terminal [batch, A])``.
        """
        batch, n_actions = latent.shape[0], self.transition.n_actions
        actions = th.arange(n_actions, device=latent.device).repeat(batch)
        with planning_precision(self.device, PLANNING_DTYPES[self.inference_dtype]):
            action_one_hot = self.one_hot(actions)
            latents = latent.repeat_interleave(n_actions, 0)  # every state once per action
            step = self.transition.step(latents, action_one_hot, hidden.repeat_interleave(n_actions, 0))
            projection = None if prior_projection is None else prior_projection.repeat_interleave(n_actions, 0)
            next_latent, reward = self.predict_sampled(self.bayesian_features(step.features, projection, action_one_hot))
            # The terminal model thresholds its prediction at 0.5 (it is regressed on the done flag).
            terminal = self.terminal_prediction(latents, action_one_hot, next_latent)
            not_terminal = (terminal < 0.5).float()
        shape = (batch, n_actions)
        next_hidden = step.hidden.float().view(*shape, -1)
        return next_latent.float().view(*shape, -1), next_hidden, reward.float().view(shape), not_terminal.view(shape)

    def terminal_prediction(self, latent: th.Tensor, action_one_hot: th.Tensor, next_latent: th.Tensor) -> th.Tensor:
        """
        The terminal model's prediction of the done flag of moves ``[batch]`` (see ``terminal_input``).

        :param latent: ``z`` before the move ``[batch, latent_dim]``.
        :param action_one_hot: ``[batch, n_actions]``.
        :param next_latent: ``z'`` after it (true or predicted) ``[batch, latent_dim]``.
        """
        if self.terminal_input == "state_action":
            return self.terminal(th.cat([latent, action_one_hot.to(latent.dtype)], dim=-1)).squeeze(-1)
        return self.terminal(next_latent).squeeze(-1)

    def action_values(
        self, next_latent: th.Tensor, next_hidden: th.Tensor, reward: th.Tensor, not_terminal: th.Tensor, target: bool = False
    ) -> th.Tensor:
        """``Q(a) = r(a) + gamma V(z'(a), h'(a)) [not terminal(a)]`` ``[batch, A]``."""
        value_net = self.value_target if target else self.value
        with planning_precision(self.device, PLANNING_DTYPES[self.inference_dtype]):
            values = value_net(th.cat([next_latent, next_hidden], dim=-1)).squeeze(-1).float()
        return reward + self.gamma * values * not_terminal

    # ----------------------------------------------------------------------------------------------------------------
    # Acting
    # ----------------------------------------------------------------------------------------------------------------
    def act(self, obs: th.Tensor, hidden: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor]:
        """
        Greedy one-step look-ahead with respect to the sampled model, ties broken at random, and with probability
        ``exploration_epsilon`` a uniformly random action (unless ``deterministic``).

        :param obs: Raw observations ``[batch, *obs_shape]``.
        :param hidden: Recurrent states ``[batch, gru_dim]``.
        :param deterministic: Skip the epsilon-random actions.
        :return: ``(actions [batch], next hidden states [batch, gru_dim])``; the state follows the chosen action.
        """
        with th.no_grad():
            processed = self.preprocess(obs)
            latent = self.autoencoder.encode(processed)  # type: ignore[operator]
            next_latent, next_hidden, reward, not_terminal = self.lookahead(latent, hidden, self.prior_projection(processed))
            q_values = self.action_values(next_latent, next_hidden, reward, not_terminal)
            # NaN values would make every action "not the best" (and multinomial fail with an obscure message).
            check_finite(
                q_values, "PSDRL's look-ahead value of an action", "the model or value network diverged, lower learning_rate"
            )
            best = q_values == q_values.max(dim=1, keepdim=True).values
            actions = th.multinomial(best.float(), 1).squeeze(1)  # uniform among the maximisers
            if not deterministic and self.exploration_epsilon > 0:
                random_actions = th.randint_like(actions, self.transition.n_actions)
                explore = th.rand(actions.shape, device=actions.device) < self.exploration_epsilon
                actions = th.where(explore, random_actions, actions)
            chosen_hidden = next_hidden[th.arange(len(actions), device=actions.device), actions]
        return actions, chosen_hidden

    def initial_hidden(self, n: int) -> th.Tensor:
        return th.zeros(n, self.gru_dim, device=self.device)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        raise NotImplementedError("PSDRL is recurrent: use predict(obs, state, episode_start), which carries its state.")

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        Act with the current model sample. ``state`` holds the recurrent state (returned by the previous call; None
        starts from zeros) and is reset where ``episode_start`` is true, as for SB3's recurrent policies.
        """
        self.set_training_mode(False)
        obs_tensor, vectorized_env = self.obs_to_tensor(observation)
        n = obs_tensor.shape[0]  # type: ignore[union-attr]
        hidden = self.initial_hidden(n) if state is None else th.as_tensor(state[0], device=self.device).float()
        if episode_start is not None:
            starts = th.as_tensor(np.asarray(episode_start, dtype=bool).reshape(-1), device=self.device)
            hidden = th.where(starts[:, None], th.zeros_like(hidden), hidden)
        actions, hidden = self.act(obs_tensor, hidden, deterministic)  # type: ignore[arg-type]
        actions_np = actions.cpu().numpy()
        if not vectorized_env:
            actions_np = actions_np.squeeze(axis=0)
        return actions_np, (hidden.cpu().numpy(),)

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> th.Tensor:
        return self.act(obs, self.initial_hidden(obs.shape[0]), deterministic)[0]


class PSDRLCnnPolicy(PSDRLPolicy):
    """
    PSDRL with the paper's convolutional autoencoder (64x64 frames) and paper-size networks by default.

    :param observation_space: Observation space: 64x64 frames, channels first.
    :param action_space: ``Discrete`` action space.
    :param lr_schedule: Learning rate of every component.
    :param latent_dim: The latent size is the convolutional autoencoder's, ``8 * cnn_depth * 2 * 2`` (1536 for the
        paper's depth 48): None, or that value (a saved model stores it).
    :param cnn_depth: Channels of the first convolution (48 in the paper).
    :param gru_dim: Recurrent state size (756 in the paper).
    :param kwargs: The other arguments of :class:`PSDRLPolicy`.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        latent_dim: int | None = None,
        cnn_depth: int = 48,
        gru_dim: int = 756,
        **kwargs: Any,
    ) -> None:
        shape = observation_space.shape
        if len(shape) != 3 or shape[1:] != (64, 64):
            raise ValueError(
                f"CnnPolicy expects 64x64 frames (channels first), got observation shape {shape}: wrap Atari games with "
                "sb3_bayes.common.wrappers.PSDRLAtariWrapper as in hyperparams/psdrl.yml, or use MlpPolicy for vectors."
            )
        # The latent size follows from the depth; a different latent_dim used to be ignored without a word.
        check = ParameterValidator(type(self).__name__)
        conv_latent = ConvAutoencoder.latent_size(check.integer("cnn_depth", cnn_depth))
        if latent_dim is not None:
            allowed = f"None or {conv_latent}, the convolutional autoencoder's latent size 8 * cnn_depth * 2 * 2"
            check.relation("latent_dim", latent_dim, check.integer("latent_dim", latent_dim) == conv_latent, allowed)
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            latent_dim=conv_latent,
            cnn_depth=cnn_depth,
            gru_dim=gru_dim,
            **kwargs,
        )

    def _make_autoencoder(self) -> nn.Module:
        assert self.observation_space.shape is not None
        return ConvAutoencoder(self.observation_space.shape[0], self.cnn_depth)


MlpPolicy = PSDRLPolicy
CnnPolicy = PSDRLCnnPolicy
