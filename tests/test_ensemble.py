"""The batched ensemble against per-member references and the closed forms of its losses."""

import math

import pytest
import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_bayes.common import ensemble
from sb3_bayes.common.ensemble import (
    EnsembleLinear,
    GaussianEnsembleMLP,
    gaussian_nll_per_member,
    mse_per_member,
    soft_clamp_log_variance,
)
from sb3_bayes.common.normalization import Standardizer
from sb3_bayes.common.validation import HyperparameterTypeError, HyperparameterValueError


def member_forward(model: GaussianEnsembleMLP, member: int, x: th.Tensor) -> th.Tensor:
    """Reference: one member as a plain MLP built from its slice of the batched weights."""
    for layer in model.hidden_layers:
        assert isinstance(layer, EnsembleLinear)
        x = F.silu(x @ layer.weight[member] + layer.bias[member, 0])
    return x @ model.output_layer.weight[member] + model.output_layer.bias[member, 0]


@pytest.mark.parametrize("probabilistic", [True, False])
def test_batched_forward_matches_member_loop(probabilistic: bool) -> None:
    th.manual_seed(0)
    model = GaussianEnsembleMLP(6, 4, ensemble_size=5, net_arch=[32, 16], probabilistic=probabilistic, n_extra_outputs=1)
    x = th.randn(5, 11, 6)
    mean, logvar, extra = model(x)
    for member in range(5):
        raw = member_forward(model, member, x[member])
        th.testing.assert_close(mean[member], raw[:, :4])
        assert extra is not None
        th.testing.assert_close(extra[member], raw[:, -1:])
        if probabilistic:
            assert logvar is not None
            expected = soft_clamp_log_variance(raw[:, 4:8], model.min_logvar, model.max_logvar)
            th.testing.assert_close(logvar[member], expected)
        else:
            assert logvar is None


def test_chunked_inference_equals_autograd_forward() -> None:
    th.manual_seed(1)
    model = GaussianEnsembleMLP(5, 3, ensemble_size=4, net_arch=[64, 64])
    model.inference_chunk_size = 7
    x = th.randn(4, 50, 5)
    mean, logvar, _ = model(x)
    with th.no_grad():
        mean_chunked, logvar_chunked, _ = model(x)
    th.testing.assert_close(mean_chunked, mean.detach())
    assert logvar is not None and logvar_chunked is not None
    th.testing.assert_close(logvar_chunked, logvar.detach())


def one_hot_rows(n_rows: int, width: int, generator: th.Generator) -> th.Tensor:
    x = th.zeros(n_rows, width)
    x[th.arange(n_rows), th.randint(width, (n_rows,), generator=generator)] = 1.0
    return x


@pytest.mark.parametrize("kind", ["one_hot", "sparse_weighted", "dense", "zeros"])
def test_shared_input_equals_the_expanded_product(kind: str) -> None:
    """A 2-D input is read by every member: outputs and the weights' and biases' gradients equal the batched product of
    the input repeated per member, on the sparse path (one-hot, a few weighted entries, all zero) and the dense one."""
    generator = th.Generator().manual_seed(0)
    layer = EnsembleLinear(4, 400, 7)
    n_rows, width = 33, 400
    if kind == "one_hot":
        x = one_hot_rows(n_rows, width, generator)
    elif kind == "sparse_weighted":
        x = one_hot_rows(n_rows, width, generator) * th.randn(n_rows, 1, generator=generator)
        x[3, 5] = 2.5  # a second nonzero entry in one row, and a column shared with other rows
        x[4, 5] = -1.0
    elif kind == "dense":
        x = th.randn(n_rows, width, generator=generator)
    else:
        x = th.zeros(n_rows, width)
    assert (x.count_nonzero() <= ensemble.SPARSE_INPUT_DENSITY * x.numel()) == (kind != "dense")
    weights = th.randn(4, n_rows, 7, generator=generator)

    out = layer(x)
    (out * weights).sum().backward()
    grads = (layer.weight.grad.clone(), layer.bias.grad.clone())  # type: ignore[union-attr]
    layer.zero_grad()
    reference = th.baddbmm(layer.bias, x.unsqueeze(0).expand(4, -1, -1), layer.weight)
    (reference * weights).sum().backward()

    assert out.shape == (4, n_rows, 7)
    th.testing.assert_close(out, reference)
    th.testing.assert_close(grads[0], layer.weight.grad)
    th.testing.assert_close(grads[1], layer.bias.grad)


def test_shared_input_keeps_the_gradient_of_its_input() -> None:
    """An input that needs a gradient (a trained features extractor before the layer) takes the dense product: the
    sparse path would give its zero entries no gradient."""
    layer = EnsembleLinear(3, 50, 4)
    x = one_hot_rows(6, 50, th.Generator().manual_seed(1)).requires_grad_(True)
    layer(x).sum().backward()
    assert x.grad is not None
    th.testing.assert_close(x.grad, layer.weight.sum(dim=(0, 2)).expand(6, -1))


def test_soft_clamp_bounds_and_identity_in_the_middle() -> None:
    raw = th.linspace(-50, 50, 1001)
    low, high = th.tensor(-10.0), th.tensor(0.5)
    clamped = soft_clamp_log_variance(raw, low, high)
    # The second softplus may overshoot the upper bound by softplus(max - min) - (max - min) = 2.75e-5 (as the original).
    assert bool((clamped >= low).all()) and bool((clamped <= high + 3e-5).all())
    # Far from both bounds the clamp is close to the identity, and it is monotone everywhere.
    middle = (raw > -4) & (raw < -2)
    assert float((clamped[middle] - raw[middle]).abs().max()) < 0.1
    assert bool((clamped[1:] >= clamped[:-1]).all())
    # Closed form at one point: max - softplus(max - raw), then min + softplus(lv - min).
    value = th.tensor(0.3)
    lv = 0.5 - math.log1p(math.exp(0.5 - 0.3))
    expected = -10.0 + math.log1p(math.exp(lv + 10.0))
    assert soft_clamp_log_variance(value, low, high).item() == pytest.approx(expected, rel=1e-6)


def test_gaussian_nll_closed_form() -> None:
    mean = th.tensor([[[0.0, 1.0]], [[2.0, -1.0]]])
    logvar = th.tensor([[[0.0, math.log(4.0)]], [[math.log(0.25), 0.0]]])
    target = th.tensor([[[1.0, 3.0]], [[2.0, 1.0]]])
    # Member 0: ((1)^2 / 1 + 0 + (2)^2 / 4 + log 4) / 2; member 1: (0 + log .25 + 4 + 0) / 2.
    expected = th.tensor([(1.0 + 1.0 + math.log(4.0)) / 2, (math.log(0.25) + 4.0) / 2])
    th.testing.assert_close(gaussian_nll_per_member(mean, logvar, target), expected)
    th.testing.assert_close(mse_per_member(mean, target), th.tensor([2.5, 2.0]))


def test_regularisers() -> None:
    model = GaussianEnsembleMLP(2, 1, ensemble_size=2, net_arch=[3])
    with th.no_grad():
        for layer in model.linear_layers:
            layer.weight.fill_(2.0)
    n_hidden, n_out = 2 * 2 * 3, 2 * 3 * 2  # elements of the two weight tensors
    expected = 0.5 * 0.1 * 4.0 * n_hidden + 0.5 * 0.2 * 4.0 * n_out
    assert model.weight_decay_penalty([0.1, 0.2]).item() == pytest.approx(expected)
    assert model.logvar_bound_penalty().item() == pytest.approx(0.01 * (0.5 - (-10.0)))
    with pytest.raises(ValueError, match="weight decays"):
        model.weight_decay_penalty([0.1])


@pytest.mark.parametrize(
    "kwargs, error, parameter",
    [
        (dict(ensemble_size=0), HyperparameterValueError, "ensemble_size"),
        (dict(ensemble_size=2.0), HyperparameterTypeError, "ensemble_size"),
        (dict(net_arch=[]), HyperparameterValueError, "net_arch"),
        (dict(net_arch=[8, -1]), HyperparameterValueError, "net_arch"),
    ],
)
def test_ensemble_arguments_are_checked(kwargs: dict, error: type, parameter: str) -> None:
    with pytest.raises(error, match=rf"^GaussianEnsembleMLP: {parameter} must be"):
        GaussianEnsembleMLP(3, 2, **kwargs)


def test_logvar_bounds_receive_gradient() -> None:
    model = GaussianEnsembleMLP(3, 2, ensemble_size=2, net_arch=[8], activation_fn=nn.ReLU)
    mean, logvar, _ = model(th.randn(2, 5, 3))
    assert logvar is not None
    (gaussian_nll_per_member(mean, logvar, th.randn(2, 5, 2)).sum() + model.logvar_bound_penalty()).backward()
    assert model.max_logvar.grad is not None and model.min_logvar.grad is not None


def test_standardizer() -> None:
    data = th.tensor([[1.0, 5.0], [3.0, 5.0]])
    normalizer = Standardizer(2)
    normalizer.fit(data)
    # Constant features keep a unit scale instead of dividing by zero.
    th.testing.assert_close(normalizer(data), th.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        normalizer.fit(th.zeros(3, 3))
