"""PSDRL: look-ahead and value targets against brute force, input validation, posterior use, DeepSea exploration."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces

import sb3_bayes.envs  # noqa: F401  (registers DeepSea)
from sb3_bayes import PSDRL

TINY = dict(
    batch_size=8,
    sequence_length=10,
    warmup_freq=20,
    value_batch_size=64,
    policy_kwargs=dict(latent_dim=8, gru_dim=8, encoder_hidden_dim=16),
)


def test_unsupported_spaces_raise_value_error() -> None:
    with pytest.raises(ValueError, match="PSDRL supports only Discrete action spaces, got Box"):
        PSDRL("MlpPolicy", "Pendulum-v1")
    with pytest.raises(ValueError, match="CnnPolicy expects 64x64 frames"):
        PSDRL("CnnPolicy", "CartPole-v1")
    with pytest.raises(ValueError, match="Unknown resample_schedule"):
        PSDRL("MlpPolicy", "CartPole-v1", resample_schedule="step")
    with pytest.raises(ValueError, match="Unknown sampling"):
        PSDRL("MlpPolicy", "CartPole-v1", policy_kwargs=dict(sampling="mean"))


@pytest.fixture(scope="module")
def trained() -> PSDRL:
    model = PSDRL("MlpPolicy", "CartPole-v1", seed=0, **TINY)
    model.learn(120)
    assert model.n_training_rounds > 0
    return model


def test_lookahead_matches_a_loop_over_actions(trained: PSDRL) -> None:
    policy = trained.policy
    th.manual_seed(0)
    latent, hidden = th.randn(5, 8), th.randn(5, 8)
    with th.no_grad():
        next_latent, next_hidden, reward, not_terminal = policy.lookahead(latent, hidden)
        for action in range(2):
            one_hot = policy.one_hot(th.full((5,), action))
            step = policy.transition.step(latent, one_hot, hidden)
            out = th.cat([step.features, th.ones(5, 1)], dim=1) @ policy.sampled_weight
            th.testing.assert_close(next_hidden[:, action], step.hidden)
            th.testing.assert_close(next_latent[:, action], out[:, :-1])
            th.testing.assert_close(reward[:, action], out[:, -1])
            expected_alive = (policy.terminal(out[:, :-1]).squeeze(-1) < 0.5).float()
            th.testing.assert_close(not_terminal[:, action], expected_alive)


def test_value_targets_equal_brute_force(trained: PSDRL) -> None:
    policy = trained.policy
    th.manual_seed(1)
    latent, hidden = th.randn(4, 8), th.randn(4, 8)
    with th.no_grad():
        targets = policy.action_values(*policy.lookahead(latent, hidden), target=True).max(dim=1).values
        for i in range(4):
            best = -np.inf
            for action in range(2):
                step = policy.transition.step(latent[i : i + 1], policy.one_hot(th.tensor([action])), hidden[i : i + 1])
                out = th.cat([step.features, th.ones(1, 1)], dim=1) @ policy.sampled_weight
                terminal = float(policy.terminal(out[:, :-1])) >= 0.5
                value = float(policy.value_target(th.cat([out[:, :-1], step.hidden], dim=1)))
                best = max(best, float(out[0, -1]) + policy.gamma * value * (not terminal))
            assert float(targets[i]) == pytest.approx(best, rel=1e-5, abs=1e-6)


def test_acting_uses_the_sample_and_resets_state(trained: PSDRL) -> None:
    obs = trained.env.reset()
    actions, state = trained.predict(obs, deterministic=True)
    assert state is not None and state[0].shape == (1, 8)
    # episode_start resets the recurrent state: the same as starting without a state.
    th.manual_seed(0)
    again, _ = trained.predict(obs, state=state, episode_start=np.array([True]), deterministic=True)
    th.manual_seed(0)
    fresh, _ = trained.predict(obs, deterministic=True)
    np.testing.assert_array_equal(again, fresh)
    before = trained.policy.sampled_weight.clone()
    trained.policy.resample()
    assert not th.equal(before, trained.policy.sampled_weight)


def test_episode_resampling_and_original_sampling() -> None:
    kwargs = {**TINY, "policy_kwargs": dict(latent_dim=8, gru_dim=8, encoder_hidden_dim=16, sampling="original")}
    model = PSDRL("MlpPolicy", "CartPole-v1", resample_schedule="episode", seed=0, **kwargs)
    model.learn(150)
    assert model.n_training_rounds > 0 and model.policy.sampling == "original"


class FrameEnv(gym.Env):
    """64x64 grayscale frames (channels last, as AtariWrapper returns them) and 3 actions."""

    observation_space = spaces.Box(0, 255, (64, 64, 1), dtype=np.uint8)
    action_space = spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), float(action == 1), self.t >= 15, False, {}


def test_cnn_policy_on_frames() -> None:
    model = PSDRL(
        "CnnPolicy",
        FrameEnv(),
        batch_size=4,
        sequence_length=8,
        warmup_freq=15,
        value_batch_size=32,
        policy_kwargs=dict(cnn_depth=4, gru_dim=16),
        seed=0,
    )
    assert model.policy.transition.latent_dim == 8 * 4 * 4  # 4 convolutions, 2x2 spatial at the end
    model.learn(40)
    assert model.n_training_rounds >= 1
    assert model.replay_buffer is not None
    assert next(model.replay_buffer.all_episodes()).observations.dtype == np.uint8


def test_psdrl_reaches_the_deep_sea_goal() -> None:
    """Seeded learning test: deep exploration finds the single rewarding path of DeepSea 5 (2^-5 for random play)."""
    th.set_num_threads(1)
    model = PSDRL(
        "MlpPolicy",
        "DeepSea5-v0",
        learning_rate=1e-3,
        batch_size=64,
        sequence_length=5,
        warmup_freq=5,
        autoencoder_iterations=10,
        model_iterations=10,
        value_iterations=10,
        value_batch_size=256,
        reward_transform="none",
        seed=0,
        policy_kwargs=dict(
            latent_dim=32, gru_dim=32, encoder_hidden_dim=64, ridge=1.0, reward_prior_scale=0.1, transition_prior_scale=1e-3
        ),
    )
    model.learn(5 * 100)
    successes = [info["r"] > 0.5 for info in model.ep_info_buffer]
    assert any(successes)


def test_bfloat16_lookahead_keeps_the_greedy_actions(trained: PSDRL) -> None:
    policy = trained.policy
    th.manual_seed(2)
    latent, hidden = th.randn(256, 8), th.randn(256, 8)
    q_values = {}
    for dtype in ("float32", "bfloat16"):
        policy.inference_dtype = dtype
        with th.no_grad():
            q_values[dtype] = policy.action_values(*policy.lookahead(latent, hidden))
    policy.inference_dtype = "float32"
    assert q_values["bfloat16"].dtype == th.float32
    gap = (q_values["float32"][:, 0] - q_values["float32"][:, 1]).abs()
    clear = gap > 0.05 * gap.max()  # decisions that are not near-ties
    agree = q_values["float32"].argmax(1) == q_values["bfloat16"].argmax(1)
    assert float(agree[clear].float().mean()) > 0.95
