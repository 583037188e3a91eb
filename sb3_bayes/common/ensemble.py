"""Batched ensembles of (probabilistic) MLPs, the dynamics model of PETS (Chua et al., 2018, section 4.1)."""

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_bayes.common.validation import ParameterValidator

_INPLACE_ACTIVATIONS: dict[type[nn.Module], Callable[[th.Tensor], th.Tensor]] = {
    nn.SiLU: lambda x: F.silu(x, inplace=True),
    nn.ReLU: lambda x: F.relu(x, inplace=True),
    nn.Tanh: lambda x: x.tanh_(),
    nn.ELU: lambda x: F.elu(x, inplace=True),
}
#: ``(weight, bias)`` of every affine layer, input to output: a copy of an ensemble's weights (e.g. cast to bfloat16).
LayerWeights = list[tuple[th.Tensor, th.Tensor]]
#: Largest share of nonzero entries at which :meth:`EnsembleLinear.forward_shared` sums weight rows instead of running a
#: matrix product. Gathering a row and scattering its gradient cost about a hundred times the product's multiply-adds
#: for it on a CPU (break-even near 1 % nonzero at 20 x [1600, 50]); one-hot inputs of width n have 1 / n.
SPARSE_INPUT_DENSITY = 0.005


class EnsembleLinear(nn.Module):
    """
    ``ensemble_size`` independent affine layers evaluated with one batched matrix product.

    Weights are stored as ``[ensemble_size, in_features, out_features]`` so that a forward pass over all members
    is a single ``baddbmm`` call, never a Python loop over members.

    :param ensemble_size: Number of members.
    :param in_features: Input width.
    :param out_features: Output width.
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.ensemble_size = ensemble_size
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(th.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(th.zeros(ensemble_size, 1, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The original code draws weights from a normal truncated at two standard deviations, std = 1 / (2 sqrt(fan_in)).
        std = 1.0 / (2.0 * math.sqrt(self.in_features))
        nn.init.trunc_normal_(self.weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)
        nn.init.zeros_(self.bias)

    def forward(self, x: th.Tensor) -> th.Tensor:
        """
        :param x: Input of shape ``[ensemble_size, batch, in_features]`` (one input per member), or
            ``[batch, in_features]``: one input that every member reads (:meth:`forward_shared`).
        :return: Output of shape ``[ensemble_size, batch, out_features]``.
        """
        if x.dim() == 2:
            return self.forward_shared(x)
        return th.baddbmm(self.bias, x, self.weight)

    def forward_shared(self, x: th.Tensor) -> th.Tensor:
        """
        Every member applied to the same input. A mostly-zero input (one-hot observations, such as DeepSea's grid) costs
        one row of each member's weights per nonzero entry instead of a full matrix product: ``x W_k`` is the sum over
        the nonzero columns ``j`` of ``x_j W_k[j]``, exactly. That path is taken only where no gradient has to reach
        ``x`` (it would miss the zero entries' gradient), not inside ``torch.func`` transforms (EWC's per-sample Fisher
        runs under ``vmap``, which cannot branch on data), and on the CPU only (on a GPU the product is cheap, and
        counting the nonzero entries would synchronise the device); the weights and biases get their gradients either way.

        :param x: Input of shape ``[batch, in_features]``.
        :return: Output of shape ``[ensemble_size, batch, out_features]``.
        """
        sparse = x.device.type == "cpu" and not x.requires_grad and not th._C._functorch.is_functorch_wrapped_tensor(x)
        if sparse and x.count_nonzero() <= SPARSE_INPUT_DENSITY * x.numel():
            rows, cols = x.nonzero(as_tuple=True)
            contributions = self.weight[:, cols, :] * x[rows, cols].unsqueeze(-1)  # [ensemble_size, nonzeros, out]
            out = th.zeros(self.ensemble_size, x.shape[0], self.out_features, dtype=contributions.dtype, device=x.device)
            return out.index_add(1, rows, contributions) + self.bias
        return th.baddbmm(self.bias, x.unsqueeze(0).expand(self.ensemble_size, -1, -1), self.weight)

    def extra_repr(self) -> str:
        return f"ensemble_size={self.ensemble_size}, in_features={self.in_features}, out_features={self.out_features}"


def soft_clamp_log_variance(raw_logvar: th.Tensor, min_logvar: th.Tensor, max_logvar: th.Tensor) -> th.Tensor:
    """
    Bound a raw log-variance smoothly between learned limits (PETS, appendix A.1):
    ``lv = max - softplus(max - raw)``, then ``lv = min + softplus(lv - min)``.

    Unlike a hard clamp the gradient never vanishes, and the limits themselves receive gradient.

    :param raw_logvar: Unbounded network output.
    :param min_logvar: Lower bound, broadcastable to ``raw_logvar``.
    :param max_logvar: Upper bound, broadcastable to ``raw_logvar``.
    :return: The bounded log-variance.
    """
    logvar = max_logvar - F.softplus(max_logvar - raw_logvar)
    return min_logvar + F.softplus(logvar - min_logvar)


class GaussianEnsembleMLP(nn.Module):
    """
    An ensemble of MLPs whose outputs are Gaussian (mean and bounded log-variance per output dimension), or
    deterministic (mean only), plus optional extra unconstrained outputs (e.g. termination logits).

    :param in_dim: Input width.
    :param out_dim: Number of Gaussian output dimensions.
    :param ensemble_size: Number of members (1 for a single network).
    :param net_arch: Hidden layer widths.
    :param activation_fn: Activation between layers (the paper uses swish, ``nn.SiLU``).
    :param probabilistic: Whether to predict a log-variance (P models) or only a mean (D models).
    :param n_extra_outputs: Additional outputs that are returned as raw values (no variance).
    :param init_max_logvar: Initial value of the learned upper log-variance bound (original: 0.5).
    :param init_min_logvar: Initial value of the learned lower log-variance bound (original: -10).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        ensemble_size: int = 5,
        net_arch: Sequence[int] = (200, 200, 200),
        activation_fn: type[nn.Module] = nn.SiLU,
        probabilistic: bool = True,
        n_extra_outputs: int = 0,
        init_max_logvar: float = 0.5,
        init_min_logvar: float = -10.0,
    ) -> None:
        super().__init__()
        check = ParameterValidator(type(self).__name__)
        check.integer("ensemble_size", ensemble_size)
        check.sizes("net_arch", net_arch, allow_empty=False)
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.ensemble_size = ensemble_size
        self.probabilistic = probabilistic
        self.n_extra_outputs = n_extra_outputs
        widths = [in_dim, *net_arch]
        n_outputs = out_dim * (2 if probabilistic else 1) + n_extra_outputs
        self.hidden_layers = nn.ModuleList(
            EnsembleLinear(ensemble_size, w_in, w_out) for w_in, w_out in zip(widths[:-1], widths[1:])
        )
        self.output_layer = EnsembleLinear(ensemble_size, widths[-1], n_outputs)
        self.activation = activation_fn()
        self.inplace_activation = _INPLACE_ACTIVATIONS.get(activation_fn)
        # Rows per chunk of a no-grad forward pass (chosen so one chunk's activations fit in a core's L2 cache).
        self.inference_chunk_size = 256
        # Bounds are shared by the members, one per output dimension (original code: `max_logvar`, `min_logvar`).
        self.max_logvar = nn.Parameter(th.full((out_dim,), init_max_logvar), requires_grad=probabilistic)
        self.min_logvar = nn.Parameter(th.full((out_dim,), init_min_logvar), requires_grad=probabilistic)
        # Weights that no-grad passes use instead of the parameters (see `inference_weights`).
        self._inference_weights: LayerWeights | None = None

    def cast_weights(self, dtype: th.dtype) -> LayerWeights:
        """
        A detached copy of the affine layers' weights and biases in ``dtype``, for ``inference_weights``.

        :param dtype: E.g. ``th.bfloat16``.
        :return: ``(weight, bias)`` per affine layer, input to output.
        """
        return [(layer.weight.detach().to(dtype), layer.bias.detach().to(dtype)) for layer in self.linear_layers]

    @contextlib.contextmanager
    def inference_weights(self, weights: LayerWeights | None) -> Iterator[None]:
        """
        Evaluate no-grad forward passes with ``weights`` (from ``cast_weights``) instead of the parameters: inputs are
        cast to their dtype and the outputs back to float32, so that only the matrix products run in, e.g., bfloat16.
        Passes with autograd (training) always use the parameters.

        :param weights: The weights, or None for the parameters.
        """
        previous, self._inference_weights = self._inference_weights, weights
        try:
            yield
        finally:
            self._inference_weights = previous

    @property
    def linear_layers(self) -> list[EnsembleLinear]:
        """All affine layers, input to output (the order of the per-layer weight decays)."""
        return [*self.hidden_layers, self.output_layer]  # type: ignore[list-item]

    def _trunk(self, x: th.Tensor) -> th.Tensor:
        """Raw outputs of all layers, ``[ensemble_size, batch, n_outputs]``."""
        if th.is_grad_enabled():
            for layer in self.hidden_layers:
                x = self.activation(layer(x))
            return self.output_layer(x)
        weights = self._inference_weights or [(layer.weight, layer.bias) for layer in self.linear_layers]
        # Only the products run in the copy's dtype: what comes out (means, log-variances) is float32 again.
        return self._no_grad_trunk(x.to(weights[0][0].dtype), weights).float()

    def _no_grad_trunk(self, x: th.Tensor, weights: LayerWeights) -> th.Tensor:
        """``_trunk`` without autograd, with the given weights."""
        if self.inplace_activation is None:
            for weight, bias in weights[:-1]:
                x = self.activation(th.baddbmm(bias, x, weight))
            return th.baddbmm(weights[-1][1], x, weights[-1][0])
        # Without autograd (planning), evaluate the batch in row chunks whose activations stay in the CPU cache, write
        # every layer into a buffer reused across chunks (`baddbmm` then adds the bias inside the matrix product at no
        # extra pass) and apply the activation in place: the planner's passes are otherwise memory-bound.
        chunk = self.inference_chunk_size
        buffers = [
            th.empty(self.ensemble_size, min(chunk, x.shape[1]), weight.shape[-1], device=x.device, dtype=x.dtype)
            for weight, _ in weights[:-1]
        ]
        outputs = []
        for start in range(0, x.shape[1], chunk):
            h = x[:, start : start + chunk]
            for (weight, bias), buffer in zip(weights[:-1], buffers):
                out = buffer[:, : h.shape[1]]
                if out.dtype == h.dtype and out.is_contiguous():
                    h = th.baddbmm(bias, h, weight, out=out)
                else:  # autocast (the product's dtype differs from the input's) or a short last chunk
                    h = th.baddbmm(bias, h, weight)
                self.inplace_activation(h)
            outputs.append(th.baddbmm(weights[-1][1], h, weights[-1][0]))
        return outputs[0] if len(outputs) == 1 else th.cat(outputs, dim=1)

    def forward(self, x: th.Tensor) -> tuple[th.Tensor, th.Tensor | None, th.Tensor | None]:
        """
        :param x: Input ``[ensemble_size, batch, in_dim]``.
        :return: ``(mean, logvar, extra)`` with shapes ``[ensemble_size, batch, out_dim]`` (``logvar`` is None for
            deterministic models) and ``[ensemble_size, batch, n_extra_outputs]`` (None when there are none).
        """
        out = self._trunk(x)
        mean = out[..., : self.out_dim]
        logvar = None
        if self.probabilistic:
            raw_logvar = out[..., self.out_dim : 2 * self.out_dim]
            logvar = soft_clamp_log_variance(raw_logvar, self.min_logvar, self.max_logvar)
        extra = out[..., out.shape[-1] - self.n_extra_outputs :] if self.n_extra_outputs > 0 else None
        return mean, logvar, extra

    def weight_decay_penalty(self, weight_decays: Sequence[float]) -> th.Tensor:
        """
        Per-layer L2 penalty ``sum_l decay_l * ||W_l||^2 / 2`` over all members (``tf.nn.l2_loss`` in the original).

        :param weight_decays: One coefficient per affine layer, input to output.
        :return: Scalar penalty.
        """
        layers = self.linear_layers
        if len(weight_decays) != len(layers):
            raise ValueError(f"Expected {len(layers)} weight decays (one per linear layer), got {len(weight_decays)}.")
        penalty = th.zeros((), device=self.output_layer.weight.device)
        for decay, layer in zip(weight_decays, layers):
            if decay != 0.0:
                penalty = penalty + 0.5 * decay * layer.weight.pow(2).sum()
        return penalty

    def logvar_bound_penalty(self, coefficient: float = 0.01) -> th.Tensor:
        """
        Keeps the learned log-variance bounds tight: ``coefficient * (sum max_logvar - sum min_logvar)``.

        :param coefficient: Weight of the penalty (original: 0.01).
        :return: Scalar penalty (zero for deterministic models).
        """
        if not self.probabilistic:
            return th.zeros((), device=self.max_logvar.device)
        return coefficient * (self.max_logvar.sum() - self.min_logvar.sum())


def gaussian_nll_per_member(mean: th.Tensor, logvar: th.Tensor, target: th.Tensor) -> th.Tensor:
    """
    The PETS training loss without constants: mean over batch and dimensions of ``(mu - y)^2 exp(-lv) + lv``.

    :param mean: Predicted means ``[ensemble_size, batch, dim]``.
    :param logvar: Predicted log-variances, same shape.
    :param target: Targets, same shape.
    :return: One loss per member, ``[ensemble_size]``.
    """
    return ((mean - target).pow(2) * th.exp(-logvar) + logvar).mean(dim=(1, 2))


def mse_per_member(mean: th.Tensor, target: th.Tensor) -> th.Tensor:
    """
    Squared error loss of deterministic members (D and DE models).

    :param mean: Predictions ``[ensemble_size, batch, dim]``.
    :param target: Targets, same shape.
    :return: One loss per member, ``[ensemble_size]``.
    """
    return (mean - target).pow(2).mean(dim=(1, 2))
