"""BayesianDQN's deep-exploration heads: the ensemble with randomized prior functions (Osband et al., 2018) and its
bootstrap masks, and the random-feature prior of the Bayesian last layer."""

import math

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from torch import nn

import sb3_bayes.envs  # noqa: F401  (registers DeepSea)
from sb3_bayes.bayes_dqn import BayesianDQN
from sb3_bayes.bayes_dqn.buffers import BootstrapNStepReplayBuffer, BootstrapReplayBuffer, bootstrap_masks
from sb3_bayes.bayes_dqn.policies import EnsembleQHead, q_mode
from sb3_bayes.common.ensemble import EnsembleLinear


def _ensemble(n_envs: int = 1, **kwargs) -> BayesianDQN:
    settings = dict(learning_starts=16, batch_size=16, buffer_size=500, train_freq=1, target_update_interval=8, seed=0)
    policy_kwargs = dict(net_arch=[8, 8], n_heads=5, prior_scale=2.0)
    policy_kwargs.update(kwargs.pop("policy_kwargs", {}))
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)
    return BayesianDQN("MlpPolicy", env, head="ensemble", policy_kwargs=policy_kwargs, **{**settings, **kwargs})


def _by_hand(layers: nn.Sequential, x: th.Tensor, member: int) -> th.Tensor:
    """One member of a stack of EnsembleLinear layers, with a loop and plain matrix products."""
    linear = [layer for layer in layers if isinstance(layer, EnsembleLinear)]
    for index, layer in enumerate(linear):
        x = x @ layer.weight[member] + layer.bias[member, 0]
        if index < len(linear) - 1:
            x = th.relu(x)
    return x


def test_members_are_trained_network_plus_scaled_fixed_prior() -> None:
    model = _ensemble()
    q_net = model.q_net
    head = q_net.head
    assert isinstance(head, EnsembleQHead)
    obs = th.randn(7, 4)
    members = q_net.member_q_values(obs)
    assert members.shape == (5, 7, 2)
    for k in range(5):  # Q_k = f_k + beta p_k (Osband et al., 2018, eq. 2)
        expected = _by_hand(head.members, obs, k) + 2.0 * _by_hand(head.prior, obs, k)
        th.testing.assert_close(members[k], expected, rtol=1e-5, atol=1e-5)
    with q_mode(q_net, "mean"):
        th.testing.assert_close(q_net(obs), members.mean(dim=0))
    head.head_sample = th.tensor([3])
    th.testing.assert_close(q_net(obs), members[3])  # "fixed": the held member
    head.head_sample = th.arange(7) % 5
    th.testing.assert_close(q_net(obs), members[th.arange(7) % 5, th.arange(7)])  # one member per row


def test_prior_gets_no_gradient_and_never_changes() -> None:
    model = _ensemble()
    head = model.q_net.head
    prior = {name: buffer.clone() for name, buffer in head.prior.named_buffers()}
    members = [p.clone() for p in head.members.parameters()]
    assert prior and not list(head.prior.parameters())  # buffers: no optimiser, no Polyak update, no EWC sees them
    assert all(id(p) not in {id(q) for q in model.policy.optimizer.param_groups[0]["params"]} for p in prior.values())
    model.q_net.member_q_values(th.randn(4, 4)).sum().backward()
    assert all(not buffer.requires_grad and buffer.grad is None for buffer in head.prior.buffers())
    model.learn(40)  # 24 gradient steps
    for name, buffer in head.prior.named_buffers():
        assert th.equal(buffer, prior[name]), name
        assert th.equal(model.q_net_target.head.prior.get_buffer(name), prior[name])  # the target's is the same
    assert any(not th.equal(p, q) for p, q in zip(head.members.parameters(), members))  # the members did train
    # So the TD targets compute the prior term once for the online and the target network.
    obs = th.randn(6, 4)
    prior_term = model.q_net.scaled_prior(obs)
    assert prior_term is not None and th.equal(model.q_net_target.scaled_prior(obs), prior_term)
    th.testing.assert_close(model.q_net.member_q_values(obs, prior_term), model.q_net.member_q_values(obs), rtol=0, atol=0)


def test_prior_scale_zero_is_bootstrapped_dqn() -> None:
    model = _ensemble(policy_kwargs=dict(prior_scale=0.0))
    assert model.q_net.prior_features_extractor is None
    obs = th.randn(3, 4)
    expected = th.stack([_by_hand(model.q_net.head.members, obs, k) for k in range(5)])
    th.testing.assert_close(model.q_net.member_q_values(obs), expected, rtol=1e-5, atol=1e-5)


def test_bootstrap_masks_rate_and_reproducible() -> None:
    numbers = np.arange(20_000)
    masks = bootstrap_masks(numbers, 10, 0.3, seed=7)
    assert masks.shape == (10, 20_000) and set(np.unique(masks)) <= {0.0, 1.0}
    assert abs(masks.mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / masks.size)
    assert np.all(np.abs(masks.mean(axis=1) - 0.3) < 0.02)  # every member
    np.testing.assert_array_equal(bootstrap_masks(numbers[::-1], 10, 0.3, seed=7), masks[:, ::-1])  # per transition
    assert not np.array_equal(bootstrap_masks(numbers, 10, 0.3, seed=8), masks)  # the seed matters
    assert np.all(bootstrap_masks(numbers[:100], 3, 1.0, seed=7) == 1.0)
    # Independent across members: the agreement of two members is that of independent coins.
    agreement = (masks[0] == masks[1]).mean()
    assert abs(agreement - (0.3**2 + 0.7**2)) < 0.02


def test_buffer_numbers_transitions_across_wraps() -> None:
    model = _ensemble(buffer_size=50, learning_starts=10_000)
    model.learn(130)
    buffer = model.replay_buffer
    assert isinstance(buffer, BootstrapReplayBuffer) and buffer.n_added == 130
    numbers = buffer.transition_numbers(np.arange(50))
    # Rows 0..29 hold transitions 100..129 (third pass), rows 30..49 transitions 80..99 (second pass).
    np.testing.assert_array_equal(numbers, np.r_[np.arange(100, 130), np.arange(80, 100)])
    buffer.sample(8)
    np.testing.assert_array_equal(buffer.last_transition_numbers(), buffer.transition_numbers(buffer.last_batch_inds))
    assert isinstance(_ensemble(n_steps=3).replay_buffer, BootstrapNStepReplayBuffer)


def test_each_member_trains_only_on_its_bootstrap_sample(monkeypatch) -> None:
    import sb3_bayes.bayes_dqn.bayes_dqn as module

    model = _ensemble(bootstrap_prob=0.5, learning_starts=10_000)
    model.learn(64)
    zero_member = np.zeros((5, 16), dtype=np.float32)
    zero_member[:, :] = 1.0
    zero_member[2] = 0.0  # member 2 sees none of the minibatch
    monkeypatch.setattr(module, "bootstrap_masks", lambda *args: zero_member)
    before = [p.detach().clone() for p in model.q_net.head.members.parameters()]
    model.train(1, batch_size=16)
    for before_p, after_p in zip(before, model.q_net.head.members.parameters()):
        assert th.equal(before_p[2], after_p[2])  # no gradient, no Adam step for the masked member
        assert not th.equal(before_p[0], after_p[0])


def test_member_held_per_episode_and_resampled_at_episode_start() -> None:
    # Many members, so that a redraw picks another one (the run is seeded: the same draws every time).
    model = _ensemble(n_envs=3, learning_starts=10_000, policy_kwargs=dict(n_heads=1000, net_arch=[4]))
    assert model.thompson_interval == 0  # a member per episode
    held, dones = [], []

    def record(locals_, globals_) -> bool:
        held.append(model.policy.rollout_samples.get()["head.head_sample"].clone())
        dones.append(locals_["dones"].copy())
        return True

    model.learn(300, callback=record)
    assert sum(done.sum() for done in dones) >= 6
    assert all(sample.shape == (3,) for sample in held)
    for t in range(len(held) - 1):
        for env in range(3):
            assert (held[t][env] != held[t + 1][env]) == bool(dones[t][env]), (t, env)
    # predict: redraws where an episode starts, the mean of the members when deterministic.
    obs = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    model.predict(obs)
    before = model.policy.q_net.head.head_sample.clone()
    model.predict(obs, episode_start=np.array([False, True, False]))
    after = model.policy.q_net.head.head_sample
    assert after[1] != before[1] and after[0] == before[0] and after[2] == before[2]
    action, _ = model.predict(obs, deterministic=True)
    with th.no_grad():
        expected = model.q_net.member_q_values(th.as_tensor(obs)).mean(dim=0).argmax(dim=1).numpy()
    np.testing.assert_array_equal(action, expected)


def test_ensemble_save_load_round_trip(tmp_path) -> None:
    model = _ensemble()
    model.learn(40)
    model.save(tmp_path / "model.zip")
    loaded = BayesianDQN.load(tmp_path / "model.zip")
    assert loaded.bootstrap_seed == model.bootstrap_seed and loaded.policy.n_heads == 5
    obs = th.randn(6, 4)
    th.testing.assert_close(loaded.q_net.member_q_values(obs), model.q_net.member_q_values(obs))


def test_blr_regresses_on_learned_and_random_features() -> None:
    env = make_vec_env("DeepSea5-v0", seed=0)
    policy_kwargs = dict(net_arch=[8], prior_features=32, prior_lengthscale=0.5, prior_feature_scale=3.0)
    model = BayesianDQN("MlpPolicy", env, head="blr", learning_starts=10, posterior_update_freq=20, seed=0,
                        policy_kwargs=policy_kwargs)  # fmt: skip
    q_net = model.q_net
    assert q_net.feature_dim == 8 + 32 and model.policy.blr_posterior.n_features == 40
    obs = th.eye(25)[:4]
    features = q_net.penultimate(obs)
    th.testing.assert_close(features[:, :8], q_net.hidden(obs))
    th.testing.assert_close(features[:, 8:], 3.0 * q_net.prior_kernel(obs))
    model.learn(45)  # refits and acts on the 40 features
    assert model.n_posterior_updates >= 2
    # The random features never train.
    projection = q_net.prior_kernel.projection.clone()
    model.learn(10, reset_num_timesteps=False)
    assert th.equal(q_net.prior_kernel.projection, projection)


@pytest.mark.parametrize("head", ["bbb", "ensemble"])
def test_random_feature_prior_belongs_to_blr(head: str) -> None:
    # Only the Bayesian last layer has a regression to extend: the other heads build no kernel.
    model = BayesianDQN("MlpPolicy", "CartPole-v1", head=head, policy_kwargs=dict(net_arch=[8], prior_features=16))
    assert model.q_net.prior_kernel is None
