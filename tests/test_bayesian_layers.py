"""Bayes-by-backprop layers: closed-form KL, local reparameterisation, modes, held samples, VCL prior, setting checks."""

import math

import pytest
import torch as th
from reliability import names
from torch import nn

from sb3_bayes.common.bayesian_layers import (
    BayesianLinear,
    bayesian_layers,
    check_bayesian_layer_settings,
    count_weights,
    create_bayesian_mlp,
    kl_divergence,
    posterior_to_prior,
    refresh_weights,
    resample_weights,
    set_weight_mode,
    weight_mode,
)
from sb3_bayes.common.validation import HyperparameterTypeError, HyperparameterValueError, ParameterValidator


def _random_posterior(layer: BayesianLinear, seed: int = 0) -> None:
    gen = th.Generator().manual_seed(seed)
    with th.no_grad():
        for p in (layer.weight_mean, layer.bias_mean):
            p.copy_(th.randn(p.shape, generator=gen))
        for p in (layer.weight_log_var, layer.bias_log_var):
            p.copy_(th.randn(p.shape, generator=gen) * 0.5 - 1.0)
        layer.prior_weight_mean.copy_(th.randn(layer.prior_weight_mean.shape, generator=gen) * 0.3)
        layer.prior_bias_mean.copy_(th.randn(layer.prior_bias_mean.shape, generator=gen) * 0.3)
        layer.prior_weight_log_var.copy_(th.randn(layer.prior_weight_log_var.shape, generator=gen) * 0.3)
        layer.prior_bias_log_var.copy_(th.randn(layer.prior_bias_log_var.shape, generator=gen) * 0.3)


def test_kl_closed_form_matches_monte_carlo():
    th.manual_seed(0)
    layer = BayesianLinear(3, 2)
    _random_posterior(layer)
    n = 400_000
    total_mc = 0.0
    with th.no_grad():
        for mean, log_var, p_mean, p_log_var in (
            (layer.weight_mean, layer.weight_log_var, layer.prior_weight_mean, layer.prior_weight_log_var),
            (layer.bias_mean, layer.bias_log_var, layer.prior_bias_mean, layer.prior_bias_log_var),
        ):
            q = th.distributions.Normal(mean.double(), (0.5 * log_var.double()).exp())
            p = th.distributions.Normal(p_mean.double(), (0.5 * p_log_var.double()).exp())
            w = q.sample((n,))
            total_mc += float((q.log_prob(w) - p.log_prob(w)).sum(dim=tuple(range(1, w.dim()))).mean())
    closed = float(layer.kl_divergence().detach())
    assert closed > 0
    assert closed == pytest.approx(total_mc, rel=0.02)
    # Against torch's own closed form as well.
    with th.no_grad():
        ref = (
            th.distributions.kl_divergence(
                th.distributions.Normal(layer.weight_mean, (0.5 * layer.weight_log_var).exp()),
                th.distributions.Normal(layer.prior_weight_mean, (0.5 * layer.prior_weight_log_var).exp()),
            ).sum()
            + th.distributions.kl_divergence(
                th.distributions.Normal(layer.bias_mean, (0.5 * layer.bias_log_var).exp()),
                th.distributions.Normal(layer.prior_bias_mean, (0.5 * layer.prior_bias_log_var).exp()),
            ).sum()
        )
    assert closed == pytest.approx(float(ref), rel=1e-5)


def test_kl_zero_when_posterior_equals_prior_and_gradients_flow():
    layer = BayesianLinear(4, 3, prior_std=0.5, posterior_init_log_var=2 * math.log(0.5))
    with th.no_grad():
        layer.weight_mean.zero_()
        layer.bias_mean.zero_()
    assert float(layer.kl_divergence().detach()) == pytest.approx(0.0, abs=1e-6)
    with th.no_grad():
        layer.weight_mean.fill_(0.1)
    kl = layer.kl_divergence()
    kl.backward()
    assert layer.weight_mean.grad is not None and layer.weight_log_var.grad is not None
    # d/dmu of 0.5 (mu - m)^2 / s^2 = mu / s^2
    assert th.allclose(layer.weight_mean.grad, th.full_like(layer.weight_mean, 0.1 / 0.25))


def test_local_reparameterisation_matches_weight_sampling():
    th.manual_seed(1)
    layer = BayesianLinear(5, 3)
    _random_posterior(layer, seed=1)
    x = th.randn(5)
    n = 200_000
    with th.no_grad():
        local = layer(x.expand(n, 5))  # "sample" mode: fresh noise per row
        layer.resample(n_samples=n)
        layer.mode = "fixed"
        reference = layer(x.expand(n, 5))  # one sampled weight matrix per row
        analytic_mean = layer.weight_mean @ x + layer.bias_mean
        analytic_var = layer.weight_log_var.exp() @ (x * x) + layer.bias_log_var.exp()
    for out in (local, reference):
        assert th.allclose(out.mean(0), analytic_mean, atol=4 * float(analytic_var.max().sqrt()) / math.sqrt(n))
        assert th.allclose(out.var(0), analytic_var, rtol=0.02)
    # Rows are independent in "sample" mode.
    corr = th.corrcoef(th.stack([local[:-1, 0], local[1:, 0]]))[0, 1]
    assert abs(float(corr)) < 0.01


def test_modes_and_context_manager():
    th.manual_seed(2)
    net = nn.Sequential(*create_bayesian_mlp(4, 2, [8, 8], posterior_init_log_var=-2.0))
    assert len(bayesian_layers(net)) == 3
    assert count_weights(net) == 4 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2
    x = th.randn(6, 4)
    # sample mode: stochastic
    assert not th.allclose(net(x), net(x))
    # mean mode equals the deterministic network with the mean weights
    set_weight_mode(net, "mean")
    ref = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    with th.no_grad():
        for lin, bl in zip([m for m in ref if isinstance(m, nn.Linear)], bayesian_layers(net)):
            lin.weight.copy_(bl.weight_mean)
            lin.bias.copy_(bl.bias_mean)
    assert th.allclose(net(x), ref(x), atol=1e-6)
    assert th.equal(net(x), net(x))
    # context manager restores the previous modes (even mixed ones)
    bayesian_layers(net)[1].mode = "sample"
    with weight_mode(net, "fixed"):
        assert all(layer.mode == "fixed" for layer in bayesian_layers(net))
    assert [layer.mode for layer in bayesian_layers(net)] == ["mean", "sample", "mean"]
    with pytest.raises(ValueError, match="weight mode"):
        set_weight_mode(net, "thompson")


def test_fixed_samples_stay_fixed_until_resample():
    th.manual_seed(3)
    layer = BayesianLinear(4, 3, posterior_init_log_var=-1.0)
    layer.mode = "fixed"
    x = th.randn(10, 4)
    y1 = layer(x)
    th.randn(100)  # other use of the global RNG changes nothing
    assert th.equal(layer(x), y1)
    assert th.equal(layer(x[:3]), y1[:3])  # S == 1 broadcasts over any batch
    layer.resample()
    y2 = layer(x)
    assert not th.allclose(y1, y2)
    # held samples are distributed as the posterior
    layer.resample(n_samples=50_000)
    assert th.allclose(layer.weight_sample.mean(0), layer.weight_mean, atol=0.02)
    assert th.allclose(layer.weight_sample.var(0), layer.weight_log_var.exp(), rtol=0.05)


def test_per_row_samples_with_several_held_samples():
    th.manual_seed(4)
    layer = BayesianLinear(4, 3, posterior_init_log_var=-1.0, n_samples=3)
    layer.mode = "fixed"
    x = th.randn(3, 4)
    out = layer(x)
    expected = th.stack([layer.weight_sample[s] @ x[s] + layer.bias_sample[s] for s in range(3)])
    assert th.allclose(out, expected, atol=1e-6)
    xb = th.randn(3, 5, 4)
    outb = layer(xb)
    assert outb.shape == (3, 5, 3)
    for s in range(3):
        assert th.allclose(outb[s], xb[s] @ layer.weight_sample[s].T + layer.bias_sample[s], atol=1e-6)
    with pytest.raises(ValueError, match="3 weight samples"):
        layer(th.randn(4, 4))


def test_resample_selected_indices_only():
    th.manual_seed(5)
    net = nn.Sequential(*create_bayesian_mlp(3, 2, [5], posterior_init_log_var=-1.0, n_samples=4))
    before = [(layer.weight_sample.clone(), layer.bias_sample.clone()) for layer in bayesian_layers(net)]
    resample_weights(net, indices=th.tensor([1, 3]))
    for (w, b), layer in zip(before, bayesian_layers(net)):
        for rows_same, rows_new in (([0, 2], [1, 3]),):
            assert th.equal(layer.weight_sample[rows_same], w[rows_same])
            assert th.equal(layer.bias_sample[rows_same], b[rows_same])
            assert not th.any(layer.weight_sample[rows_new] == w[rows_new])
    with pytest.raises(ValueError, match="cannot change"):
        resample_weights(net, n_samples=2, indices=th.tensor([0]))
    resample_weights(net, n_samples=2)
    assert all(layer.weight_sample.shape[0] == 2 for layer in bayesian_layers(net))


def test_posterior_to_prior_and_state_dict():
    th.manual_seed(6)
    layer = BayesianLinear(3, 2, posterior_init_log_var=-3.0)
    assert float(layer.kl_divergence().detach()) > 0
    posterior_to_prior(layer)
    assert float(layer.kl_divergence().detach()) == pytest.approx(0.0, abs=1e-6)
    # detached copies: training the posterior moves it away from the prior again
    with th.no_grad():
        layer.weight_mean.add_(1.0)
    assert not th.equal(layer.prior_weight_mean, layer.weight_mean)
    assert not layer.prior_weight_mean.requires_grad
    assert float(kl_divergence(layer)) > 0
    # the number of held samples is restored from a state dict
    layer.resample(n_samples=5)
    other = BayesianLinear(3, 2)
    other.load_state_dict(layer.state_dict())
    for name, value in layer.state_dict().items():
        assert th.equal(other.state_dict()[name], value), name
    assert other.n_samples == 5
    # modules without Bayesian layers have KL 0
    assert float(kl_divergence(nn.Linear(2, 2))) == 0.0


def test_no_bias_layer():
    layer = BayesianLinear(3, 2, bias=False, n_samples=2)
    layer.mode = "fixed"
    out = layer(th.ones(2, 3))
    assert th.allclose(out, layer.weight_sample.sum(-1))
    layer.mode = "sample"
    assert layer(th.ones(4, 3)).shape == (4, 2)
    assert float(layer.kl_divergence().detach()) > 0


def test_refresh_follows_the_posterior_with_the_same_draw():
    th.manual_seed(7)
    layer = BayesianLinear(3, 2, posterior_init_log_var=-2.0, n_samples=2)
    noise = layer.weight_noise.clone()
    assert th.allclose(layer.weight_sample, layer.weight_mean + (0.5 * layer.weight_log_var).exp() * noise)
    with th.no_grad():
        layer.weight_mean.add_(0.5)
        layer.weight_log_var.sub_(1.0)
        layer.bias_mean.add_(0.5)
    stale = layer.weight_sample.clone()
    layer.refresh()
    assert th.equal(layer.weight_noise, noise)  # same draw, no new randomness
    assert not th.allclose(layer.weight_sample, stale)
    assert th.allclose(layer.weight_sample, layer.weight_mean + (0.5 * layer.weight_log_var).exp() * noise)
    assert th.allclose(layer.bias_sample, layer.bias_mean + (0.5 * layer.bias_log_var).exp() * layer.bias_noise)
    # refresh of selected rows only
    with th.no_grad():
        layer.weight_mean.add_(1.0)
    before = layer.weight_sample.clone()
    refresh_weights(layer, indices=th.tensor([1]))
    assert th.equal(layer.weight_sample[0], before[0])
    assert th.allclose(layer.weight_sample[1], layer.weight_mean + (0.5 * layer.weight_log_var).exp() * noise[1])


@pytest.mark.parametrize(
    "kwargs, error, parameter",
    [
        (dict(prior_std=0.0), HyperparameterValueError, "prior_std"),
        (dict(prior_std="big"), HyperparameterTypeError, "prior_std"),
        (dict(posterior_init_log_var=float("nan")), HyperparameterValueError, "posterior_init_log_var"),
        (dict(posterior_init_mean_std=-0.1), HyperparameterValueError, "posterior_init_mean_std"),
        (dict(n_samples=0), HyperparameterValueError, "n_samples"),
        (dict(out_features=0), HyperparameterValueError, "out_features"),
        (dict(bias="yes"), HyperparameterTypeError, "bias"),
    ],
)
def test_layer_settings_are_checked_by_name(kwargs: dict, error: type, parameter: str) -> None:
    with pytest.raises(error, match=rf"BayesianLinear: .*{names(parameter)}"):
        BayesianLinear(**{**dict(in_features=3, out_features=2), **kwargs})


def test_one_check_of_the_layer_settings_for_every_owner() -> None:
    check = ParameterValidator("SomePolicy")
    given = dict(prior_std=1, posterior_init_mean_std=None)
    assert check_bayesian_layer_settings(check, given) == dict(prior_std=1.0, posterior_init_mean_std=None)
    with pytest.raises(HyperparameterValueError, match=r"SomePolicy: .*\bbayesian_layer_kwargs\b.*prior_sd") as info:
        check_bayesian_layer_settings(check, dict(prior_sd=1.0))
    assert info.value.parameter == "bayesian_layer_kwargs"
