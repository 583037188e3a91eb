"""Elastic weight consolidation: per-sample Fisher, penalty, accumulation over tasks, saving."""

import pytest
import torch as th
from torch import nn
from torch.func import functional_call

from sb3_bayes.common.bayesian_layers import BayesianLinear
from sb3_bayes.common.ewc import ElasticWeightConsolidation, diagonal_fisher, gaussian_output_fisher


def _net() -> nn.Module:
    th.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))


def _data(n: int = 37) -> tuple[th.Tensor, th.Tensor]:
    gen = th.Generator().manual_seed(1)
    return th.randn(n, 3, generator=gen), th.randn(n, 1, generator=gen)


def _per_sample_loss(net: nn.Module):
    def loss(params: dict[str, th.Tensor], sample: tuple[th.Tensor, ...]) -> th.Tensor:
        x, y = sample
        pred = functional_call(net, params, (x.unsqueeze(0),))
        return 0.5 * (pred.squeeze(0) - y).pow(2).sum()

    return loss


def test_fisher_matches_brute_force_per_sample_loop():
    net = _net()
    x, y = _data()
    fisher = diagonal_fisher(net, _per_sample_loss(net), (x, y), chunk_size=8)  # several chunks, last one partial
    brute = {name: th.zeros_like(p) for name, p in net.named_parameters()}
    for i in range(len(x)):
        net.zero_grad()
        (0.5 * (net(x[i : i + 1]) - y[i : i + 1]).pow(2).sum()).backward()
        for name, p in net.named_parameters():
            brute[name] += p.grad.pow(2) / len(x)
    net.zero_grad()
    (0.5 * (net(x) - y).pow(2).sum(-1).mean()).backward()
    for name, p in net.named_parameters():
        assert th.allclose(fisher[name], brute[name], rtol=1e-5, atol=1e-7), name
        # not the square of the batch-mean gradient (which is much smaller)
        assert not th.allclose(fisher[name], p.grad.pow(2), rtol=0.1)
        assert float(fisher[name].sum()) > float(p.grad.pow(2).sum())


def test_fisher_subset_of_parameters_and_bayesian_layers():
    th.manual_seed(2)
    net = nn.Sequential(BayesianLinear(3, 4), nn.ReLU(), BayesianLinear(4, 1))
    net[0].mode = "mean"
    net[2].mode = "mean"
    x, y = _data(10)
    names = ["0.weight_mean", "2.bias_mean"]
    fisher = diagonal_fisher(net, _per_sample_loss(net), (x, y), parameter_names=names)
    assert set(fisher) == set(names)
    assert fisher["0.weight_mean"].shape == (4, 3)
    with pytest.raises(ValueError, match="not parameters"):
        diagonal_fisher(net, _per_sample_loss(net), (x, y), parameter_names=["nope"])
    with pytest.raises(ValueError, match="leading dimension"):
        diagonal_fisher(net, _per_sample_loss(net), (x, y[:3]))


def test_penalty_zero_at_anchor_and_quadratic():
    net = _net()
    ewc = ElasticWeightConsolidation(net, ewc_lambda=3.0)
    assert float(ewc.penalty(net)) == 0.0  # before the first consolidation
    assert int(ewc.n_consolidations) == 0
    x, y = _data()
    fisher = diagonal_fisher(net, _per_sample_loss(net), (x, y))
    ewc.consolidate(net, fisher)
    assert int(ewc.n_consolidations) == 1
    assert float(ewc.penalty(net)) == 0.0  # exactly 0 at the anchor
    anchor = {name: p.detach().clone() for name, p in net.named_parameters()}
    direction = {name: th.randn_like(p) for name, p in net.named_parameters()}
    values = []
    for step in (1.0, 2.0, 3.0):
        with th.no_grad():
            for name, p in net.named_parameters():
                p.copy_(anchor[name] + step * 1e-2 * direction[name])
        values.append(float(ewc.penalty(net)))
    expected = 3.0 * sum(float((fisher[n] * (1e-2 * direction[n]) ** 2).sum()) for n in fisher)
    assert values[0] == pytest.approx(expected, rel=1e-4)
    assert values[1] == pytest.approx(4 * values[0], rel=1e-4)
    assert values[2] == pytest.approx(9 * values[0], rel=1e-4)
    # gradient flows to the parameters: 2 * lambda * F * (theta - theta*)
    net.zero_grad()
    ewc.penalty(net).backward()
    name = "0.weight"
    p = dict(net.named_parameters())[name]
    assert th.allclose(p.grad, 2 * 3.0 * fisher[name] * (p.detach() - anchor[name]), rtol=1e-4, atol=1e-9)


def test_sum_vs_online_accumulation():
    net = _net()
    f1 = {name: th.full_like(p, 2.0) for name, p in net.named_parameters()}
    f2 = {name: th.full_like(p, 5.0) for name, p in net.named_parameters()}
    summed = ElasticWeightConsolidation(net, ewc_lambda=1.0)
    online = ElasticWeightConsolidation(net, ewc_lambda=1.0, online=True, decay=0.5)
    for ewc in (summed, online):
        ewc.consolidate(net, f1)
    with th.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    for ewc in (summed, online):
        ewc.consolidate(net, f2)
    for name, p in net.named_parameters():
        assert th.allclose(summed.fisher_of(name), th.full_like(p, 7.0))
        assert th.allclose(online.fisher_of(name), th.full_like(p, 0.5 * 2.0 + 5.0))
        assert th.equal(summed.anchor_of(name), p.detach())  # the anchor is the latest task's parameters
    assert int(summed.n_consolidations) == 2


def test_state_dict_round_trip_and_not_a_submodule():
    net = _net()
    ewc = ElasticWeightConsolidation(net, ewc_lambda=2.0)
    x, y = _data()
    ewc.consolidate(net, diagonal_fisher(net, _per_sample_loss(net), (x, y)))
    # the regularised network is not part of the EWC state
    assert not any(k.startswith("0.") for k in ewc.state_dict())
    assert len(list(ewc.parameters())) == 0
    other = ElasticWeightConsolidation(_net(), ewc_lambda=2.0)
    other.load_state_dict(ewc.state_dict())
    for key, value in ewc.state_dict().items():
        assert th.equal(other.state_dict()[key], value), key
    with th.no_grad():
        for p in net.parameters():
            p.add_(0.01)
    assert float(other.penalty(net)) == pytest.approx(float(ewc.penalty(net)), rel=1e-6)
    assert float(ewc.penalty(net)) > 0


def test_gaussian_output_fisher_equals_sum_of_squared_jacobians():
    th.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2))
    x = th.randn(9, 3)

    def output_fn(params: dict[str, th.Tensor], sample: tuple[th.Tensor, ...]) -> th.Tensor:
        return functional_call(net, params, (sample[0].unsqueeze(0),)).squeeze(0)

    fisher = gaussian_output_fisher(net, output_fn, (x,), chunk_size=4)
    brute = {name: th.zeros_like(p) for name, p in net.named_parameters()}
    for i in range(len(x)):
        for k in range(2):
            net.zero_grad()
            net(x[i : i + 1])[0, k].backward()
            for name, p in net.named_parameters():
                brute[name] += p.grad.pow(2) / len(x)
    for name in brute:
        assert th.allclose(fisher[name], brute[name], rtol=1e-5, atol=1e-8), name
    # Monte Carlo check of the expectation over labels y ~ N(f(x), I): mean of squared gradients of -log N(y; f, I)
    n_labels = 4000
    labels = net(x).detach().repeat_interleave(n_labels, 0) + th.randn(len(x) * n_labels, 2)

    def nll(params: dict[str, th.Tensor], sample: tuple[th.Tensor, ...]) -> th.Tensor:
        xi, yi = sample
        return 0.5 * (functional_call(net, params, (xi.unsqueeze(0),)).squeeze(0) - yi).pow(2).sum()

    mc = diagonal_fisher(net, nll, (x.repeat_interleave(n_labels, 0), labels), chunk_size=4096)
    for name in brute:
        assert th.allclose(mc[name], brute[name], rtol=0.15, atol=1e-3), name
