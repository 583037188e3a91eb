"""
Elastic weight consolidation (Kirkpatrick et al., 2017, "Overcoming catastrophic forgetting in neural networks").

After a task, the parameters ``theta*`` are anchored and the diagonal of the Fisher information ``F`` is estimated on the
task's data; learning the next tasks adds ``lambda * sum_i F_i (theta_i - theta*_i)^2`` to the loss (their eq. 3, with
the factor 1/2 folded into ``lambda``). The Fisher is the mean over samples of the *squared per-sample gradients* of the
log-likelihood (the empirical Fisher), not the square of the batch-mean gradient, which is much smaller (gradients of
different samples cancel) and near zero at a minimum. Per-sample gradients come from ``torch.func``
(``vmap(grad(...))`` over chunks of samples), not from a Python loop.

Several tasks: the Fisher terms add up (one anchor, the latest parameters, with the summed Fisher; as in Kirkpatrick et
al.'s follow-up note and in Continual World's EWC), or, with ``online=True``, decay: ``F <- decay * F + F_new`` (online
EWC, Schwarz et al., 2018, "Progress & Compress", eq. 8).
"""

from collections.abc import Callable, Sequence

import torch as th
from torch import nn
from torch.func import grad, vmap

from sb3_bayes.common.validation import ParameterValidator


def _safe_name(name: str) -> str:
    # Buffer names may not contain '.'; parameter names never contain '-'.
    return name.replace(".", "-")


def diagonal_fisher(
    module: nn.Module,
    per_sample_loss: Callable[[dict[str, th.Tensor], tuple[th.Tensor, ...]], th.Tensor],
    batch: Sequence[th.Tensor],
    parameter_names: Sequence[str] | None = None,
    chunk_size: int = 256,
) -> dict[str, th.Tensor]:
    """
    Empirical diagonal Fisher ``F_i = mean_n (d loss_n / d theta_i)^2`` from per-sample gradients.

    :param module: The network whose parameters are differentiated.
    :param per_sample_loss: ``(params, sample) -> loss`` of ONE sample (0-dim), where ``params`` maps the names in
        ``parameter_names`` to tensors and ``sample`` is a tuple of tensors without the leading sample dimension. It calls
        ``torch.func.functional_call(module, params, ...)`` itself (parameters not in ``params`` keep the module's values).
        For a log-likelihood model, ``loss_n = -log p(y_n | x_n, theta)``.
    :param batch: Tuple of tensors with a common leading sample dimension ``N``.
    :param parameter_names: Names (as in ``named_parameters``) to compute the Fisher of; default: every parameter that
        requires grad.
    :param chunk_size: Samples per vectorised call (bounds the memory of the per-sample gradients).
    :return: Name -> Fisher diagonal, shaped like the parameter.
    """
    batch = tuple(batch)
    if not batch:
        raise ValueError("diagonal_fisher needs a non-empty batch tuple.")
    n_samples = batch[0].shape[0]
    if n_samples == 0 or any(t.shape[0] != n_samples for t in batch):
        raise ValueError(
            f"diagonal_fisher needs tensors with one non-zero leading dimension, got {[tuple(t.shape) for t in batch]}."
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    named = dict(module.named_parameters())
    if parameter_names is None:
        parameter_names = [name for name, p in named.items() if p.requires_grad]
    missing = [name for name in parameter_names if name not in named]
    if missing:
        raise ValueError(f"diagonal_fisher: {missing} are not parameters of the module.")
    params = {name: named[name].detach() for name in parameter_names}
    fisher = {name: th.zeros_like(p) for name, p in params.items()}
    # randomness="different": layers that sample noise (e.g. Bayes-by-backprop in "sample" mode) draw it per sample.
    per_sample_grads = vmap(grad(per_sample_loss), in_dims=(None, 0), randomness="different")
    for start in range(0, n_samples, chunk_size):
        chunk = tuple(t[start : start + chunk_size] for t in batch)
        grads = per_sample_grads(params, chunk)
        for name in fisher:
            fisher[name] += grads[name].pow(2).sum(dim=0)
    return {name: value / n_samples for name, value in fisher.items()}


def gaussian_output_fisher(
    module: nn.Module,
    output_fn: Callable[[dict[str, th.Tensor], tuple[th.Tensor, ...]], th.Tensor],
    inputs: Sequence[th.Tensor],
    parameter_names: Sequence[str] | None = None,
    chunk_size: int = 256,
) -> dict[str, th.Tensor]:
    """
    Diagonal Fisher of a unit-variance Gaussian likelihood around a network's outputs, ``y ~ N(f_theta(x), I)``:
    ``F_i = mean_n sum_k (d f_k(x_n) / d theta_i)^2``, the expectation over labels taken exactly.

    This is the Fisher that Kirkpatrick et al. (2017) use (labels drawn from the model, not the data), for networks
    whose outputs are not log-probabilities: a deterministic actor (the mean of a Gaussian policy, Continual World's
    choice for the actor) or a critic (a Gaussian TD-regression). The unit variance only scales ``F``, which
    ``ewc_lambda`` absorbs. The expectation over ``y`` is exact: ``E_y[(J^T (y - f))_i^2] = sum_k J_ki^2``, computed as
    the per-sample Fisher of ``loss = f_k`` for every one-hot ``k`` (inputs repeated ``K`` times), times ``K``.

    :param module: The network.
    :param output_fn: ``(params, sample) -> f`` of ONE input (``f`` of shape ``[K]``); it calls
        ``torch.func.functional_call(module, params, ...)`` itself.
    :param inputs: Tuple of tensors with a common leading sample dimension.
    :param parameter_names: See ``diagonal_fisher``.
    :param chunk_size: See ``diagonal_fisher``.
    :return: Name -> Fisher diagonal.
    """
    inputs = tuple(inputs)
    if not inputs or inputs[0].shape[0] == 0:
        raise ValueError("gaussian_output_fisher needs at least one input sample.")
    named = dict(module.named_parameters())
    names = [n for n, p in named.items() if p.requires_grad] if parameter_names is None else list(parameter_names)
    with th.no_grad():
        n_outputs = output_fn({n: named[n].detach() for n in names if n in named}, tuple(t[0] for t in inputs)).numel()
    n_samples = inputs[0].shape[0]
    repeated = tuple(t.repeat_interleave(n_outputs, dim=0) for t in inputs)
    one_hot = th.eye(n_outputs, device=inputs[0].device).repeat(n_samples, 1)

    def per_sample_loss(params: dict[str, th.Tensor], sample: tuple[th.Tensor, ...]) -> th.Tensor:
        *xs, direction = sample
        return (output_fn(params, tuple(xs)).reshape(-1) * direction).sum()

    fisher = diagonal_fisher(module, per_sample_loss, (*repeated, one_hot), names, chunk_size=chunk_size)
    return {name: value * n_outputs for name, value in fisher.items()}


class ElasticWeightConsolidation(nn.Module):
    """
    The EWC state of one module: Fisher diagonal and anchor per parameter, held as buffers so that it saves and loads
    with a ``state_dict``. The regularised module is NOT registered as a submodule (it belongs to the algorithm).

    :param module: The module to regularise (only used to read the parameter names and shapes).
    :param ewc_lambda: Weight ``lambda`` of the penalty.
    :param online: Online EWC (decaying Fisher) instead of the sum over tasks.
    :param decay: Decay ``gamma`` of the old Fisher in online EWC (1.0 = plain sum).
    :param parameter_names: Parameters to regularise; default: every parameter that requires grad.
    """

    n_consolidations: th.Tensor

    def __init__(
        self,
        module: nn.Module,
        ewc_lambda: float,
        online: bool = False,
        decay: float = 1.0,
        parameter_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        check = ParameterValidator(type(self).__name__)
        self.ewc_lambda = check.non_negative("ewc_lambda", ewc_lambda)
        self.online = check.boolean("ewc_online", online)
        self.decay = check.fraction("ewc_decay", decay, zero=True)
        named = dict(module.named_parameters())
        if parameter_names is None:
            parameter_names = [name for name, p in named.items() if p.requires_grad]
        missing = [name for name in parameter_names if name not in named]
        if missing:
            raise ValueError(f"ElasticWeightConsolidation: {missing} are not parameters of the module.")
        self.parameter_names = list(parameter_names)
        self.fisher = nn.Module()
        self.anchor = nn.Module()
        for name in self.parameter_names:
            self.fisher.register_buffer(_safe_name(name), th.zeros_like(named[name], requires_grad=False))
            self.anchor.register_buffer(_safe_name(name), th.zeros_like(named[name], requires_grad=False))
        self.register_buffer("n_consolidations", th.zeros((), dtype=th.long))

    def fisher_of(self, name: str) -> th.Tensor:
        """:return: The accumulated Fisher diagonal of parameter ``name``."""
        return getattr(self.fisher, _safe_name(name))

    def anchor_of(self, name: str) -> th.Tensor:
        """:return: The anchor ``theta*`` of parameter ``name``."""
        return getattr(self.anchor, _safe_name(name))

    @th.no_grad()
    def consolidate(self, module: nn.Module, fisher: dict[str, th.Tensor]) -> None:
        """
        Anchor the current parameters of ``module`` and accumulate ``fisher``.

        :param module: The regularised module (same parameter names as at construction).
        :param fisher: Name -> Fisher diagonal of the task just learned (e.g. from ``diagonal_fisher``).
        """
        named = dict(module.named_parameters())
        for name in self.parameter_names:
            if name not in fisher:
                raise ValueError(f"consolidate: the Fisher has no entry for parameter {name!r}.")
            old = self.fisher_of(name)
            new = fisher[name].detach().to(old)
            if new.shape != old.shape:
                raise ValueError(f"consolidate: Fisher of {name!r} has shape {tuple(new.shape)}, expected {tuple(old.shape)}.")
            old.copy_(self.decay * old + new if self.online else old + new)
            self.anchor_of(name).copy_(named[name].detach())
        self.n_consolidations += 1

    def penalty(self, module: nn.Module) -> th.Tensor:
        """
        ``ewc_lambda * sum_i F_i (theta_i - theta*_i)^2``, exactly 0 before the first consolidation.

        :param module: The regularised module.
        :return: 0-dim tensor, differentiable w.r.t. the module's parameters.
        """
        named = dict(module.named_parameters())
        first = named[self.parameter_names[0]] if self.parameter_names else None
        if first is None or int(self.n_consolidations) == 0 or self.ewc_lambda == 0.0:
            return th.zeros((), device=None if first is None else first.device)
        total = th.stack(
            [(self.fisher_of(name) * (named[name] - self.anchor_of(name)).pow(2)).sum() for name in self.parameter_names]
        ).sum()
        return self.ewc_lambda * total

    def extra_repr(self) -> str:
        return (
            f"ewc_lambda={self.ewc_lambda}, online={self.online}, decay={self.decay}, n_parameters={len(self.parameter_names)}"
        )
