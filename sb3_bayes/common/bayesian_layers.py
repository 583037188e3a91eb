"""
Bayes-by-backprop layers: affine layers with a mean-field Gaussian distribution over their weights.

Every weight ``w`` has the variational posterior ``q(w) = N(mu, sigma^2)`` (parameters ``*_mean`` and ``*_log_var``) and
a Gaussian prior ``p(w) = N(m, s^2)`` held in buffers (Blundell et al., 2015, "Weight Uncertainty in Neural Networks").
Training minimises ``E_q[-log p(D | w)] + KL(q || p)`` (their eq. 2); the KL between two diagonal Gaussians has a closed
form, so it is computed exactly instead of by Monte Carlo.

A layer runs in one of three modes (attribute ``mode``):

- ``"sample"``: the local reparameterisation trick (Kingma, Salimans and Welling, 2015, section 2.3). For an input row
  ``x`` the pre-activation ``b = W x + c`` is Gaussian with mean ``mu_W x + mu_c`` and variance ``sigma_W^2 x^2 +
  sigma_c^2``; it is sampled directly, with fresh noise per forward pass and per input row. Same distribution per row as
  sampling the weights, but gradients of much lower variance and no ``[B, out, in]`` weight tensor.
- ``"fixed"``: the ``S`` weight samples held in the buffers ``weight_sample`` / ``bias_sample`` (Thompson sampling:
  one network drawn from the posterior and kept for an episode). The standard-normal draws behind them are held too
  (``weight_noise`` / ``bias_noise``), so ``refresh()`` can map the same draw through the current posterior after a
  gradient step (the sample keeps its identity, as a bootstrap head does, while following the posterior).
  ``S == 1`` broadcasts over any input; ``S > 1`` needs an input ``[S, in]`` or ``[S, B, in]`` and applies sample ``s``
  to ``x[s]`` (one sample per environment).
- ``"mean"``: the posterior mean weights (deterministic evaluation, target networks).

Variational continual learning (Nguyen et al., 2018) replaces the prior with the previous task's posterior:
``posterior_to_prior`` copies ``q`` into the prior buffers.
"""

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypedDict

import torch as th
import torch.nn.functional as F
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_bayes.common.validation import ParameterValidator

WEIGHT_MODES = ("sample", "fixed", "mean")
#: The settings of every ``BayesianLinear`` that a policy takes (BayesianDDPG's ``policy_kwargs``, BayesianDQN's
#: ``policy_kwargs["bayesian_layer_kwargs"]``).
BAYESIAN_LAYER_SETTINGS = ("prior_std", "posterior_init_log_var", "posterior_init_mean_std")


# ------------------------------------------------------------------------------------------- construction-time checks
def check_bayesian_layer_settings(
    check: ParameterValidator, settings: dict[str, Any], name: str = "bayesian_layer_kwargs"
) -> dict[str, Any]:
    """
    Settings of Bayes-by-backprop layers, one check for every place that takes them (``BayesianLinear``,
    BayesianDDPG's policy, BayesianDQN's ``policy_kwargs["bayesian_layer_kwargs"]``): ``prior_std`` > 0,
    ``posterior_init_log_var`` a finite number, ``posterior_init_mean_std`` > 0 or None.

    :param check: The owner's validator.
    :param settings: The settings given (any subset of ``BAYESIAN_LAYER_SETTINGS``).
    :param name: The argument that holds them, for the message about an unknown key.
    :return: The settings given, checked, as Python numbers.
    """
    check.relation(
        name, settings, set(settings) <= set(BAYESIAN_LAYER_SETTINGS), f"a dict with keys among {BAYESIAN_LAYER_SETTINGS}"
    )
    checks = dict(
        prior_std=check.positive,
        posterior_init_log_var=check.real,
        posterior_init_mean_std=lambda key, value: check.optional(check.positive, key, value),
    )
    return {key: checks[key](key, value) for key, value in settings.items()}


class NetworkArguments(TypedDict):
    """The ``policy_kwargs`` that SB3's policies share after ``net_arch``, as :func:`check_network_arguments` returns them."""

    activation_fn: type[nn.Module]
    features_extractor_class: type[BaseFeaturesExtractor]
    features_extractor_kwargs: dict[str, Any] | None
    normalize_images: bool
    optimizer_class: type[th.optim.Optimizer]
    optimizer_kwargs: dict[str, Any] | None


def check_network_arguments(
    check: ParameterValidator,
    activation_fn: Any,
    features_extractor_class: Any,
    features_extractor_kwargs: Any,
    normalize_images: Any,
    optimizer_class: Any,
    optimizer_kwargs: Any,
) -> NetworkArguments:
    """
    The ``policy_kwargs`` that SB3's policies share, checked by the constructors of BayesianDDPG's and BayesianDQN's
    policies (each checks its own ``net_arch``, whose form differs), which pass the result on to SB3's constructor by
    name.

    :param check: The policy's validator.
    :param activation_fn: A subclass of ``nn.Module``.
    :param features_extractor_class: A subclass of ``BaseFeaturesExtractor``.
    :param features_extractor_kwargs: A dict or None.
    :param normalize_images: A bool.
    :param optimizer_class: A subclass of ``th.optim.Optimizer``.
    :param optimizer_kwargs: A dict or None.
    :return: The checked arguments, by name.
    """
    return NetworkArguments(
        activation_fn=check.subclass("activation_fn", activation_fn, nn.Module),
        features_extractor_class=check.subclass("features_extractor_class", features_extractor_class, BaseFeaturesExtractor),
        features_extractor_kwargs=check.keyword_arguments("features_extractor_kwargs", features_extractor_kwargs),
        normalize_images=check.boolean("normalize_images", normalize_images),
        optimizer_class=check.subclass("optimizer_class", optimizer_class, th.optim.Optimizer),
        optimizer_kwargs=check.keyword_arguments("optimizer_kwargs", optimizer_kwargs),
    )


def gaussian_kl(mean_q: th.Tensor, log_var_q: th.Tensor, mean_p: th.Tensor, log_var_p: th.Tensor) -> th.Tensor:
    """
    ``KL(N(mean_q, exp(log_var_q)) || N(mean_p, exp(log_var_p)))`` summed over all elements.

    ``0.5 * (log_var_p - log_var_q + (var_q + (mean_q - mean_p)^2) / var_p - 1)`` per element.

    :param mean_q: Means of ``q``.
    :param log_var_q: Log variances of ``q``.
    :param mean_p: Means of ``p`` (same shape).
    :param log_var_p: Log variances of ``p`` (same shape).
    :return: 0-dim tensor.
    """
    return 0.5 * (log_var_p - log_var_q + (log_var_q.exp() + (mean_q - mean_p).pow(2)) * th.exp(-log_var_p) - 1.0).sum()


class BayesianLinear(nn.Module):
    """
    Affine layer ``y = W x + c`` with independent Gaussian weights and biases (Bayes by backprop).

    :param in_features: Input width.
    :param out_features: Output width.
    :param bias: Whether the layer has a (Gaussian) bias.
    :param prior_std: Standard deviation of the zero-mean Gaussian prior of every weight and bias. The default
        ``10 ** -0.5`` is the original project's prior precision of 10.
    :param posterior_init_log_var: Initial log variance of every weight and bias (the original project's -9: the network
        starts nearly deterministic and the KL term widens the posterior where the data allow it).
    :param posterior_init_mean_std: Standard deviation of the normal initialisation of the posterior means (biases start
        at zero). ``None`` uses ``nn.Linear``'s initialisation (uniform in ``+-1/sqrt(in_features)``), so a Bayesian
        network starts like its deterministic counterpart.
    :param n_samples: Number ``S`` of held weight samples for the ``"fixed"`` mode.
    """

    weight_sample: th.Tensor
    bias_sample: th.Tensor
    weight_noise: th.Tensor
    bias_noise: th.Tensor
    prior_weight_mean: th.Tensor
    prior_weight_log_var: th.Tensor
    prior_bias_mean: th.Tensor
    prior_bias_log_var: th.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        prior_std: float = 10**-0.5,
        posterior_init_log_var: float = -9.0,
        posterior_init_mean_std: float | None = None,
        n_samples: int = 1,
    ) -> None:
        super().__init__()
        check = ParameterValidator(type(self).__name__)
        settings = check_bayesian_layer_settings(
            check,
            dict(
                prior_std=prior_std,
                posterior_init_log_var=posterior_init_log_var,
                posterior_init_mean_std=posterior_init_mean_std,
            ),
        )
        check.integer("n_samples", n_samples)
        self.in_features = check.integer("in_features", in_features, minimum=0)
        self.out_features = check.integer("out_features", out_features)
        self.has_bias = check.boolean("bias", bias)
        self.prior_std = settings["prior_std"]
        self.posterior_init_log_var = settings["posterior_init_log_var"]
        self.posterior_init_mean_std = settings["posterior_init_mean_std"]
        self.mode = "sample"

        self.weight_mean = nn.Parameter(th.empty(out_features, in_features))
        self.weight_log_var = nn.Parameter(th.empty(out_features, in_features))
        prior_log_var = 2.0 * math.log(prior_std)
        self.register_buffer("prior_weight_mean", th.zeros(out_features, in_features))
        self.register_buffer("prior_weight_log_var", th.full((out_features, in_features), prior_log_var))
        self.register_buffer("weight_sample", th.empty(n_samples, out_features, in_features))
        self.register_buffer("weight_noise", th.empty(n_samples, out_features, in_features))
        if bias:
            self.bias_mean: nn.Parameter | None = nn.Parameter(th.empty(out_features))
            self.bias_log_var: nn.Parameter | None = nn.Parameter(th.empty(out_features))
            self.register_buffer("prior_bias_mean", th.zeros(out_features))
            self.register_buffer("prior_bias_log_var", th.full((out_features,), prior_log_var))
            self.register_buffer("bias_sample", th.empty(n_samples, out_features))
            self.register_buffer("bias_noise", th.empty(n_samples, out_features))
        else:
            self.register_parameter("bias_mean", None)
            self.register_parameter("bias_log_var", None)
            self.register_buffer("prior_bias_mean", None)
            self.register_buffer("prior_bias_log_var", None)
            self.register_buffer("bias_sample", None)
            self.register_buffer("bias_noise", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the posterior (means and log variances) and draw fresh held samples."""
        if self.posterior_init_mean_std is None:
            # nn.Linear's default: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)), same for the bias.
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            nn.init.uniform_(self.weight_mean, -bound, bound)
            if self.bias_mean is not None:
                nn.init.uniform_(self.bias_mean, -bound, bound)
        else:
            nn.init.normal_(self.weight_mean, 0.0, self.posterior_init_mean_std)
            if self.bias_mean is not None:
                nn.init.zeros_(self.bias_mean)
        nn.init.constant_(self.weight_log_var, self.posterior_init_log_var)
        if self.bias_log_var is not None:
            nn.init.constant_(self.bias_log_var, self.posterior_init_log_var)
        self.resample()

    @property
    def n_samples(self) -> int:
        """Number ``S`` of held weight samples."""
        return self.weight_sample.shape[0]

    def set_mode(self, mode: str) -> None:
        """
        :param mode: ``"sample"``, ``"fixed"`` or ``"mean"``.
        """
        if mode not in WEIGHT_MODES:
            raise ValueError(f"Unknown weight mode {mode!r}, expected one of {WEIGHT_MODES}.")
        self.mode = mode

    @th.no_grad()
    def resample(self, n_samples: int | None = None, indices: th.Tensor | None = None) -> None:
        """
        Draw held weight samples from the current posterior (torch's global RNG, which SB3 seeds).

        :param n_samples: New number of held samples ``S`` (all are redrawn); ``None`` keeps ``S``.
        :param indices: Redraw only these rows of the held samples (e.g. the environments whose episode just started);
            ``None`` redraws all. Cannot be combined with a change of ``S``.
        """
        if n_samples is not None and n_samples != self.n_samples:
            if indices is not None:
                raise ValueError("resample: cannot change the number of samples and redraw selected indices at once.")
            if n_samples < 1:
                raise ValueError(f"n_samples must be >= 1, got {n_samples}.")
            for name in ("weight_sample", "weight_noise", "bias_sample", "bias_noise"):
                buffer = getattr(self, name)
                if buffer is not None:
                    setattr(self, name, buffer.new_empty((n_samples, *buffer.shape[1:])))
        rows = th.arange(self.n_samples, device=self.weight_sample.device) if indices is None else th.as_tensor(indices)
        rows = rows.to(device=self.weight_sample.device, dtype=th.long).flatten()
        if rows.numel() == 0:
            return
        self.weight_noise[rows] = th.randn((len(rows), *self.weight_mean.shape), device=self.weight_noise.device)
        if self.bias_noise is not None:
            self.bias_noise[rows] = th.randn((len(rows), self.out_features), device=self.bias_noise.device)
        self.refresh(rows)

    @th.no_grad()
    def refresh(self, indices: th.Tensor | None = None) -> None:
        """
        Recompute the held samples from the held standard-normal draws and the *current* posterior:
        ``w_s = mu + sigma * eps_s`` (no new randomness). Call after the posterior changed to keep each held sample's
        identity (same ``eps_s``) while it follows the posterior.

        :param indices: Only these rows, or ``None`` for all.
        """
        rows = slice(None) if indices is None else th.as_tensor(indices, device=self.weight_sample.device, dtype=th.long)
        std = th.exp(0.5 * self.weight_log_var)
        self.weight_sample[rows] = self.weight_mean + std * self.weight_noise[rows]
        if self.bias_sample is not None:
            assert self.bias_mean is not None and self.bias_log_var is not None
            self.bias_sample[rows] = self.bias_mean + th.exp(0.5 * self.bias_log_var) * self.bias_noise[rows]

    def forward(self, x: th.Tensor) -> th.Tensor:
        """
        :param x: Input ``[..., in_features]`` (``"fixed"`` mode with ``S > 1``: ``[S, in]`` or ``[S, B, in]``).
        :return: Output ``[..., out_features]``.
        """
        if self.mode == "mean":
            return F.linear(x, self.weight_mean, self.bias_mean)
        if self.mode == "fixed":
            return self._forward_fixed(x)
        if self.mode != "sample":
            raise ValueError(f"Unknown weight mode {self.mode!r}, expected one of {WEIGHT_MODES}.")
        # Local reparameterisation (Kingma et al., 2015, eq. 6): sample the pre-activations, not the weights.
        mean = F.linear(x, self.weight_mean, self.bias_mean)
        var = F.linear(x * x, self.weight_log_var.exp(), None if self.bias_log_var is None else self.bias_log_var.exp())
        return mean + var.sqrt() * th.randn_like(mean)

    def _forward_fixed(self, x: th.Tensor) -> th.Tensor:
        n_samples = self.n_samples
        if n_samples == 1:
            return F.linear(x, self.weight_sample[0], None if self.bias_sample is None else self.bias_sample[0])
        if x.dim() not in (2, 3) or x.shape[0] != n_samples:
            raise ValueError(
                f"BayesianLinear in 'fixed' mode holds {n_samples} weight samples and needs an input of shape "
                f"[{n_samples}, in] or [{n_samples}, B, in], got {tuple(x.shape)}."
            )
        squeeze = x.dim() == 2
        x3 = x.unsqueeze(1) if squeeze else x
        # One batched product: sample s multiplies x[s] (no Python loop over samples).
        if self.bias_sample is None:
            out = th.bmm(x3, self.weight_sample.transpose(1, 2))
        else:
            out = th.baddbmm(self.bias_sample.unsqueeze(1), x3, self.weight_sample.transpose(1, 2))
        return out.squeeze(1) if squeeze else out

    def kl_divergence(self) -> th.Tensor:
        """
        Closed-form ``KL(q || p)`` summed over the weights and biases of this layer.

        :return: 0-dim tensor (differentiable w.r.t. the posterior parameters).
        """
        kl = gaussian_kl(self.weight_mean, self.weight_log_var, self.prior_weight_mean, self.prior_weight_log_var)
        if self.bias_mean is not None:
            assert self.bias_log_var is not None
            kl = kl + gaussian_kl(self.bias_mean, self.bias_log_var, self.prior_bias_mean, self.prior_bias_log_var)
        return kl

    @th.no_grad()
    def posterior_to_prior(self) -> None:
        """Make the current posterior the prior (variational continual learning, Nguyen et al., 2018, eq. 4)."""
        self.prior_weight_mean.copy_(self.weight_mean)
        self.prior_weight_log_var.copy_(self.weight_log_var)
        if self.bias_mean is not None:
            assert self.bias_log_var is not None
            self.prior_bias_mean.copy_(self.bias_mean)
            self.prior_bias_log_var.copy_(self.bias_log_var)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # The number of held samples S is state (one per environment): adopt the saved S before copying.
        for name in ("weight_sample", "bias_sample", "weight_noise", "bias_noise"):
            key = prefix + name
            current = getattr(self, name)
            if key in state_dict and current is not None and state_dict[key].shape != current.shape:
                setattr(self, name, current.new_empty(state_dict[key].shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.has_bias}, "
            f"prior_std={self.prior_std:.4g}, n_samples={self.n_samples}, mode={self.mode}"
        )


ModuleOrLayers = nn.Module | Sequence[BayesianLinear]


def bayesian_layers(module: ModuleOrLayers) -> list[BayesianLinear]:
    """
    :param module: Any module, or a list of layers already collected by this function (hot loops pass the list to skip
        walking the module tree on every call).
    :return: Every ``BayesianLinear`` inside it (itself included), in ``modules()`` order.
    """
    if not isinstance(module, nn.Module):
        return list(module)
    return [m for m in module.modules() if isinstance(m, BayesianLinear)]


def set_weight_mode(module: ModuleOrLayers, mode: str) -> None:
    """
    Set the mode of every ``BayesianLinear`` inside ``module``.

    :param module: Any module (or the list of its Bayesian layers).
    :param mode: ``"sample"``, ``"fixed"`` or ``"mean"``.
    """
    for layer in bayesian_layers(module):
        layer.set_mode(mode)


@contextlib.contextmanager
def weight_mode(module: ModuleOrLayers, mode: str) -> Iterator[None]:
    """
    Context manager: run every ``BayesianLinear`` inside ``module`` in ``mode``, then restore each layer's previous mode.

    :param module: Any module (or the list of its Bayesian layers).
    :param mode: ``"sample"``, ``"fixed"`` or ``"mean"``.
    """
    layers = bayesian_layers(module)
    previous = [layer.mode for layer in layers]
    try:
        for layer in layers:
            layer.set_mode(mode)
        yield
    finally:
        for layer, old in zip(layers, previous):
            layer.mode = old


def resample_weights(module: ModuleOrLayers, n_samples: int | None = None, indices: th.Tensor | None = None) -> None:
    """
    Redraw the held samples of every ``BayesianLinear`` inside ``module`` (see ``BayesianLinear.resample``).

    :param module: Any module (or the list of its Bayesian layers).
    :param n_samples: New number of held samples, or ``None`` to keep it.
    :param indices: Only these rows, or ``None`` for all.
    """
    for layer in bayesian_layers(module):
        layer.resample(n_samples=n_samples, indices=indices)


def refresh_weights(module: ModuleOrLayers, indices: th.Tensor | None = None) -> None:
    """
    Recompute the held samples of every ``BayesianLinear`` inside ``module`` from their held noise and the current
    posterior (see ``BayesianLinear.refresh``).

    :param module: Any module (or the list of its Bayesian layers).
    :param indices: Only these rows, or ``None`` for all.
    """
    for layer in bayesian_layers(module):
        layer.refresh(indices)


def kl_divergence(module: ModuleOrLayers) -> th.Tensor:
    """
    Sum of the closed-form KL terms of every ``BayesianLinear`` inside ``module``.

    :param module: Any module (or the list of its Bayesian layers).
    :return: 0-dim tensor, 0 if the module has no Bayesian layer.
    """
    layers = bayesian_layers(module)
    if not layers:
        param = next(module.parameters(), None) if isinstance(module, nn.Module) else None
        return th.zeros((), device=None if param is None else param.device)
    return th.stack([layer.kl_divergence() for layer in layers]).sum()


def posterior_to_prior(module: ModuleOrLayers) -> None:
    """
    VCL: copy the current posterior of every ``BayesianLinear`` inside ``module`` into its prior (detached).

    :param module: Any module (or the list of its Bayesian layers).
    """
    for layer in bayesian_layers(module):
        layer.posterior_to_prior()


def count_weights(module: ModuleOrLayers) -> int:
    """
    :param module: Any module (or the list of its Bayesian layers).
    :return: Number of Gaussian weights and biases in its Bayesian layers (the number of KL terms).
    """
    return sum(
        layer.weight_mean.numel() + (0 if layer.bias_mean is None else layer.bias_mean.numel())
        for layer in bayesian_layers(module)
    )


def create_bayesian_mlp(
    input_dim: int,
    output_dim: int,
    net_arch: list[int],
    activation_fn: type[nn.Module] = nn.ReLU,
    squash_output: bool = False,
    with_bias: bool = True,
    **layer_kwargs: Any,
) -> list[nn.Module]:
    """
    ``stable_baselines3.common.torch_layers.create_mlp`` with ``BayesianLinear`` layers.

    :param input_dim: Input width.
    :param output_dim: Output width (``<= 0``: no output layer, the last hidden layer is the output).
    :param net_arch: Hidden layer widths.
    :param activation_fn: Activation after each hidden layer.
    :param squash_output: Whether to end with ``Tanh``.
    :param with_bias: Whether the layers have biases.
    :param layer_kwargs: Forwarded to every ``BayesianLinear`` (``prior_std``, ``posterior_init_log_var``, ...).
    :return: The list of modules, to be wrapped in ``nn.Sequential``.
    """
    modules: list[nn.Module] = []
    last = input_dim
    for width in net_arch:
        modules += [BayesianLinear(last, width, bias=with_bias, **layer_kwargs), activation_fn()]
        last = width
    if output_dim > 0:
        modules.append(BayesianLinear(last, output_dim, bias=with_bias, **layer_kwargs))
    if squash_output:
        modules.append(nn.Tanh())
    return modules


# ---------------------------------------------------------------------------------------------------- held sample sets
#: Buffers that make up a held Thompson sample: the samples and the standard-normal draws behind them. The names are
#: those of ``BayesianLinear`` (BayesianDQN's regression head holds a ``weight_sample`` too, its ensemble head the index
#: of the member each environment follows, ``head_sample``).
HELD_SAMPLE_BUFFERS = ("weight_sample", "bias_sample", "weight_noise", "bias_noise", "head_sample")

#: Where one held-sample buffer lives: ``(name in the network, owning module, buffer name)``.
HeldSampleSlot = tuple[str, nn.Module, str]


class HeldSamples(nn.Module):
    """
    A set of held Thompson samples kept outside the network (the training environments' set), as buffers so that it
    saves and loads with the policy's ``state_dict``; loading takes the saved names and shapes.
    """

    def is_empty(self) -> bool:
        return len(self._buffers) == 0

    def get(self) -> dict[str, th.Tensor]:
        """The samples, by the network's buffer names."""
        return {name.replace("__", "."): buffer for name, buffer in self._buffers.items() if buffer is not None}

    def set(self, samples: dict[str, th.Tensor]) -> None:
        """Hold ``samples`` (by reference), replacing the previous ones."""
        self._buffers.clear()
        for name, value in samples.items():
            self._buffers[name.replace(".", "__")] = value  # what register_buffer does, without its checks per step

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # The names and shapes depend on the network and the number of environments: take the saved ones.
        self._buffers.clear()
        for key, value in state_dict.items():
            if key.startswith(prefix) and "." not in key[len(prefix) :]:
                self.register_buffer(key[len(prefix) :], th.empty_like(value))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)


def held_sample_slots(module: nn.Module) -> list[HeldSampleSlot]:
    """
    :param module: A network.
    :return: Every held-sample buffer inside it (see ``HELD_SAMPLE_BUFFERS``), in ``named_buffers()`` order; cache the
        list, the buffers are read through it at each swap.
    """
    slots: list[HeldSampleSlot] = []
    for name, _ in module.named_buffers():
        module_name, _, buffer_name = name.rpartition(".")
        if buffer_name in HELD_SAMPLE_BUFFERS:
            slots.append((name, module.get_submodule(module_name), buffer_name))
    return slots


def swap_held_samples(slots: Sequence[HeldSampleSlot], new: dict[str, th.Tensor]) -> dict[str, th.Tensor]:
    """
    Put the tensors of ``new`` into the network by reference (no copies: acting swaps once per step).

    :param slots: From :func:`held_sample_slots`.
    :param new: Tensors by name; slots without an entry keep theirs.
    :return: The tensors the network held before, by name.
    """
    old: dict[str, th.Tensor] = {}
    for name, owner, buffer_name in slots:
        buffer = owner._buffers[buffer_name]
        assert buffer is not None
        old[name] = buffer
        if name in new:
            owner._buffers[buffer_name] = new[name]
    return old


@contextlib.contextmanager
def using_held_samples(slots: Sequence[HeldSampleSlot], store: HeldSamples, draw: Callable[[], None]) -> Iterator[None]:
    """
    Run with the held samples kept in ``store`` swapped into the network, then put the network's own back and keep
    what the block left (redraws included) in ``store``. Training acts through this, so ``predict`` calls from outside
    ``learn`` (``EvalCallback``, ``evaluate_policy``) neither see nor disturb the training environments' samples.

    :param slots: From :func:`held_sample_slots`.
    :param store: The set swapped in.
    :param draw: Called inside the block when ``store`` is empty (first use): draws the set in the network.
    """
    first_use = store.is_empty()
    # On first use the network's own set is copied, since `draw` may redraw it in place.
    if first_use:
        outside = {name: buffer.clone() for name, buffer in swap_held_samples(slots, {}).items()}
    else:
        outside = swap_held_samples(slots, store.get())
    try:
        if first_use:
            draw()
        yield
    finally:
        store.set(swap_held_samples(slots, outside))
