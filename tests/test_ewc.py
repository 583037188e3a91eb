"""
Elastic weight consolidation: per-sample Fisher, penalty, accumulation over tasks, saving; and the consolidation
component that BayesianDDPG and BayesianDQN share (EWC summed and online, VCL), against brute-force references.
"""

import io
import zipfile

import numpy as np
import pytest
import torch as th
import torch.nn.functional as F
from reliability import names
from stable_baselines3.common.env_util import make_vec_env
from torch import nn
from torch.func import functional_call

import sb3_bayes.common.consolidation as consolidation_module
from sb3_bayes.bayes_ddpg import BayesianDDPG
from sb3_bayes.bayes_dqn import BayesianDQN
from sb3_bayes.bayes_dqn.policies import q_mode
from sb3_bayes.common.bayesian_layers import BayesianLinear, bayesian_layers, kl_divergence, weight_mode
from sb3_bayes.common.ewc import ElasticWeightConsolidation, diagonal_fisher, gaussian_output_fisher
from sb3_bayes.common.validation import HyperparameterValueError


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


# ------------------------------------------------------------------- the consolidation component of both algorithms
def _ddpg(**kwargs) -> BayesianDDPG:
    env = make_vec_env("Pendulum-v1", n_envs=1, seed=0, env_kwargs=dict(max_episode_steps=20))
    return BayesianDDPG("MlpPolicy", env, learning_starts=10, batch_size=8, buffer_size=200, seed=0,
                        policy_kwargs=dict(net_arch=[8], n_critics=2), **kwargs)  # fmt: skip


def _dqn(**kwargs) -> BayesianDQN:
    arguments = {**dict(learning_starts=10, batch_size=8, buffer_size=200, train_freq=1, seed=0), **kwargs}
    return BayesianDQN("MlpPolicy", make_vec_env("CartPole-v1", seed=0), policy_kwargs=dict(net_arch=[8]), **arguments)


BUILD = {"ddpg": _ddpg, "dqn": _dqn}


def _means(module: nn.Module, prefix: str = "") -> list[str]:
    return [name for name, _ in module.named_parameters() if name.startswith(prefix) and not name.endswith("log_var")]


def test_ewc_modules_are_module_paths_in_both_algorithms() -> None:
    ddpg = _ddpg(consolidation="ewc", ewc_modules=("actor", "critic.qf1"))
    assert list(ddpg.ewc.keys()) == ["actor", "critic"]
    assert ddpg.ewc["actor"].parameter_names == _means(ddpg.actor)
    assert ddpg.ewc["critic"].parameter_names == _means(ddpg.critic, "qf1.")  # the second critic only
    dqn = _dqn(consolidation="ewc", ewc_modules="q_net.head")  # one path as a string
    assert dqn.ewc_modules == ("q_net.head",) and list(dqn.ewc.keys()) == ["q_net"]
    assert dqn.ewc["q_net"].parameter_names == ["head.weight_mean", "head.bias_mean"]
    for build, modules in ((_ddpg, ("q_net",)), (_dqn, ("critic",)), (_dqn, ("q_net.nothing",))):
        with pytest.raises(HyperparameterValueError, match=names("ewc_modules")):
            build(consolidation="ewc", ewc_modules=modules)


@pytest.mark.parametrize("algo", ["ddpg", "dqn"])
def test_penalty_equals_the_hand_computed_sum(algo: str) -> None:
    modules = ("actor", "critic.qf1") if algo == "ddpg" else ("q_net.hidden", "q_net.head")
    model = BUILD[algo](consolidation="ewc", ewc_modules=modules, ewc_lambda=3.0)
    model.learn(30)
    networks = model.consolidated_networks
    anchors = {net: {n: p.detach().clone() for n, p in getattr(model, net).named_parameters()} for net in networks}
    model.consolidate(n_samples=25)
    assert all(float(model._consolidation_penalty(net)) == 0.0 for net in networks)  # at the anchors
    model.learn(20, reset_num_timesteps=False)  # moves away from them
    for net, ewc in model.ewc.networks():
        params = dict(getattr(model, net).named_parameters())
        # lambda * sum_i F_i (theta_i - theta*_i)^2 (Kirkpatrick et al., 2017, eq. 3) over the selected parameters
        expected = 3.0 * sum(
            float((ewc.fisher_of(n) * (params[n].detach() - anchors[net][n]).pow(2)).sum()) for n in ewc.parameter_names
        )
        assert expected > 0
        assert float(model._consolidation_penalty(net).detach()) == pytest.approx(expected, rel=1e-5)


def _newest_rows(model, n: int) -> np.ndarray:
    buffer = model.replay_buffer
    return (buffer.pos - 1 - np.arange(n)) % buffer.buffer_size


def test_dqn_fisher_is_the_mean_squared_per_sample_gradient_of_the_td_loss(monkeypatch) -> None:
    monkeypatch.setattr(consolidation_module, "RECENT_CHUNK_ROWS", 7)  # several chunks, the last one partial
    model = _dqn(consolidation="ewc")
    model.learn(40)
    model.consolidate(n_samples=25)
    buffer, rows = model.replay_buffer, _newest_rows(model, 25)  # the most recent transitions
    obs, next_obs = th.as_tensor(buffer.observations[rows, 0]), th.as_tensor(buffer.next_observations[rows, 0])
    rewards = th.as_tensor(buffer.rewards[rows, 0])[:, None]
    dones = th.as_tensor(buffer.dones[rows, 0] * (1 - buffer.timeouts[rows, 0]))[:, None]
    actions = buffer.actions[rows, 0, 0].astype(int)
    targets = model._td_targets(rewards, next_obs, dones, model.gamma)[:, 0]
    ewc, params = model.ewc["q_net"], dict(model.q_net.named_parameters())
    brute = {n: th.zeros_like(params[n]) for n in ewc.parameter_names}
    with q_mode(model.q_net, "mean"):
        for i in range(25):
            model.q_net.zero_grad()
            F.smooth_l1_loss(model.q_net(obs[i : i + 1])[0, actions[i]], targets[i]).backward()
            for n in brute:
                brute[n] += params[n].grad.pow(2) / 25
    assert set(brute) == set(_means(model.q_net))
    for n in brute:
        assert th.allclose(ewc.fisher_of(n), brute[n], rtol=1e-4, atol=1e-10), n


def test_ddpg_fisher_is_the_gaussian_output_fisher_of_pre_squash_actions_and_q_values(monkeypatch) -> None:
    monkeypatch.setattr(consolidation_module, "RECENT_CHUNK_ROWS", 5)
    model = _ddpg(consolidation="ewc", ewc_modules=("actor", "critic"))
    model.learn(30)
    model.consolidate(n_samples=12)
    rows = _newest_rows(model, 12)
    obs = th.as_tensor(model.replay_buffer.observations[rows, 0])
    actions = th.as_tensor(model.replay_buffer.actions[rows, 0])
    actor, critic = model.actor, model.critic

    def outputs(i: int) -> dict[str, th.Tensor]:
        features = actor.extract_features(obs[i : i + 1], actor.features_extractor)
        return {"actor": actor.mu[:-1](features)[0], "critic": th.cat(critic(obs[i : i + 1], actions[i : i + 1]), dim=1)[0]}

    brute = {net: {n: th.zeros_like(p) for n, p in getattr(model, net).named_parameters()} for net in ("actor", "critic")}
    with weight_mode(actor, "mean"), weight_mode(critic, "mean"):
        for i in range(12):
            for net, output in outputs(i).items():
                for k in range(len(output)):  # sum_k (d f_k / d theta)^2: the Fisher of N(f(x), I)
                    named = list(getattr(model, net).named_parameters())
                    grads = th.autograd.grad(output[k], [p for _, p in named], retain_graph=True, allow_unused=True)
                    for (n, _), g in zip(named, grads):
                        if g is not None:  # the log variances do not enter the mean-weight output
                            brute[net][n] += g.pow(2) / 12
    for net, ewc in model.ewc.networks():
        for n in ewc.parameter_names:
            assert th.allclose(ewc.fisher_of(n), brute[net][n], rtol=1e-4, atol=1e-10), (net, n)


@pytest.mark.parametrize("algo", ["ddpg", "dqn"])
@pytest.mark.parametrize("online", [False, True])
def test_fisher_sums_or_decays_over_tasks(algo: str, online: bool, monkeypatch) -> None:
    model = BUILD[algo](consolidation="ewc", ewc_online=online, ewc_decay=0.25)

    def constant_fisher(value: float):
        def fisher(network: str, parameter_names: list[str], samples) -> dict[str, th.Tensor]:
            params = dict(getattr(model, network).named_parameters())
            return {n: th.full_like(params[n], value) for n in parameter_names}

        return fisher

    model.learn(20)
    monkeypatch.setattr(model, "_ewc_fisher", constant_fisher(2.0))
    model.consolidate(n_samples=10)
    model.learn(15, reset_num_timesteps=False)
    monkeypatch.setattr(model, "_ewc_fisher", constant_fisher(5.0))
    model.consolidate(n_samples=10)
    # Summed: F_1 + F_2 (Kirkpatrick et al., 2017); online: decay * F_1 + F_2 (Schwarz et al., 2018, eq. 8).
    expected = 0.25 * 2.0 + 5.0 if online else 2.0 + 5.0
    for net, ewc in model.ewc.networks():
        params = dict(getattr(model, net).named_parameters())
        for n in ewc.parameter_names:
            assert th.allclose(ewc.fisher_of(n), th.full_like(params[n], expected))
            assert th.equal(ewc.anchor_of(n), params[n].detach())  # the latest task's parameters
    assert model.n_consolidations == 2 and model.ewc.n_consolidations == 2


@pytest.mark.parametrize("algo", ["ddpg", "dqn"])
def test_vcl_makes_the_posterior_the_prior(algo: str) -> None:
    model = BUILD[algo](consolidation="vcl")
    assert model.ewc is None
    for task in range(2):
        model.learn(25, reset_num_timesteps=task == 0)
        model.consolidate()
        for net in model.consolidated_networks:
            layers = bayesian_layers(getattr(model, net))
            assert layers
            for layer in layers:  # q_{t} becomes the prior of task t + 1 (Nguyen et al., 2018, eq. 4)
                assert th.equal(layer.prior_weight_mean, layer.weight_mean.detach())
                assert th.equal(layer.prior_weight_log_var, layer.weight_log_var.detach())
                assert th.equal(layer.prior_bias_mean, layer.bias_mean.detach())
                assert th.equal(layer.prior_bias_log_var, layer.bias_log_var.detach())
            assert float(kl_divergence(layers)) == pytest.approx(0.0, abs=1e-5)
        assert model.n_consolidations == task + 1 and model._prior_timesteps == model.num_timesteps


def test_consolidate_checks_its_argument_and_its_data() -> None:
    model = _dqn(consolidation="ewc")
    with pytest.raises(ValueError, match="after learn"):
        model.consolidate()
    with pytest.raises(HyperparameterValueError, match=names("n_samples")):
        model.consolidate(n_samples=0)


def test_recent_replay_samples_are_the_newest_transitions(monkeypatch) -> None:
    monkeypatch.setattr(consolidation_module, "RECENT_CHUNK_ROWS", 16)
    model = _dqn(buffer_size=50, learning_starts=1000)
    model.learn(80)  # the buffer is full and has wrapped around
    assert model.replay_buffer.full
    chunks = list(model._recent_replay_samples(60))
    assert [len(chunk.actions) for chunk in chunks] == [16, 16, 16, 2]  # all 50, newest first
    expected = model.replay_buffer.observations[_newest_rows(model, 50), 0]
    assert th.equal(th.cat([chunk.observations for chunk in chunks]), th.as_tensor(expected))


def test_bayes_dqn_models_saved_with_the_old_ewc_state_still_load(tmp_path) -> None:
    model = _dqn(consolidation="ewc", ewc_modules=("q_net.head",))
    model.learn(30)
    model.consolidate(n_samples=20)
    model.save(tmp_path / "new.zip")
    # BayesianDQN's layout before both algorithms shared EWCState: the keys had no network name in front.
    with zipfile.ZipFile(tmp_path / "new.zip") as new, zipfile.ZipFile(tmp_path / "old.zip", "w") as old:
        for item in new.infolist():
            data = new.read(item.filename)
            if item.filename == "ewc.pth":
                state = th.load(io.BytesIO(data), weights_only=True)
                assert set(state) == {"q_net.n_consolidations", *(f"q_net.{k}.head-{p}" for k in ("fisher", "anchor")
                                                                  for p in ("weight_mean", "bias_mean"))}  # fmt: skip
                buffer = io.BytesIO()
                th.save({key.removeprefix("q_net."): value for key, value in state.items()}, buffer)
                data = buffer.getvalue()
            old.writestr(item, data)
    loaded = BayesianDQN.load(tmp_path / "old.zip")
    assert loaded.ewc.state_dict().keys() == model.ewc.state_dict().keys()
    assert all(th.equal(value, loaded.ewc.state_dict()[key]) for key, value in model.ewc.state_dict().items())
