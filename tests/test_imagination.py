"""Imagined trajectories of sampled PSDRL models: shapes, diversity across samples, and the PNG/GIF files."""

import numpy as np
import torch as th
from frame_envs import RandomFrames
from PIL import Image

import sb3_bayes.envs  # noqa: F401  (registers DeepSea)
from sb3_bayes import PSDRL
from sb3_bayes.psdrl.imagination import imagine, main, save_grid_and_gif, to_images


def test_imagined_frames_from_sampled_models(tmp_path) -> None:
    model = PSDRL(
        "CnnPolicy",
        RandomFrames(channels_first=False, episode_length=15),
        batch_size=4,
        sequence_length=8,
        warmup_freq=15,
        value_batch_size=32,
        policy_kwargs=dict(cnn_depth=4, gru_dim=16, transition_prior_scale=1.0),
        seed=0,
    )
    model.learn(30)
    before = model.policy.sampled_weight.clone()
    obs = model.env.reset()[0]
    decoded = imagine(model, obs, n_models=3, horizon=5, seed=1)
    assert decoded.shape == (3, 6, 1, 64, 64)
    # Same start state for every model; different sampled models imagine different futures.
    np.testing.assert_allclose(decoded[0, 0], decoded[1, 0])
    assert np.abs(decoded[0, 1:] - decoded[1, 1:]).max() > 0
    assert th.equal(before, model.policy.sampled_weight)  # the agent's own sample is untouched
    images = to_images(decoded)
    assert images.shape == (3, 6, 64, 64) and images.dtype == np.uint8
    png, gif = save_grid_and_gif(images, tmp_path / "imagined", scale=1)
    assert Image.open(png).size == (6 * 66 + 2, 3 * 66 + 2)
    assert Image.open(gif).n_frames == 6


def test_command_line_on_deep_sea(tmp_path) -> None:
    # With the random-feature prior of the DeepSea YAML: imagined states have no observation, the prior sees the
    # decoded one.
    prior = dict(prior_features=32, prior_lengthscale=0.5, prior_feature_scale=10.0, ridge=100.0)
    model = PSDRL("MlpPolicy", "DeepSea5-v0", warmup_freq=5, batch_size=4, sequence_length=5, seed=0, policy_kwargs=prior)
    model.learn(20)
    decoded = imagine(model, model.env.reset()[0], n_models=2, horizon=4, seed=0)
    assert decoded.shape == (2, 5, 25) and np.abs(decoded[0, 1:] - decoded[1, 1:]).max() > 0
    model.save(tmp_path / "model")
    main(["--model", str(tmp_path / "model.zip"), "--env", "DeepSea5-v0", "--n-models", "2", "--horizon", "4",
          "--warmup-steps", "2", "--out", str(tmp_path / "deep_sea")])  # fmt: skip
    assert Image.open(tmp_path / "deep_sea.gif").n_frames == 5
    width, height = Image.open(tmp_path / "deep_sea.png").size  # 5 columns and 2 rows of 5x5 grids, 4x upscaled
    assert (width, height) == (4 * (5 * 7 + 2), 4 * (2 * 7 + 2))


def test_command_line_on_an_atari_game(tmp_path) -> None:
    """Atari ids (registered by ale-py) get the psdrl.yml preprocessing: 64x64 grayscale frames, channels first."""
    model = PSDRL(
        "CnnPolicy", RandomFrames(channels_first=False, episode_length=15), policy_kwargs=dict(cnn_depth=4, gru_dim=8), seed=0
    )
    model.save(tmp_path / "model")
    main(["--model", str(tmp_path / "model.zip"), "--env", "PongNoFrameskip-v4", "--n-models", "2", "--horizon", "2",
          "--warmup-steps", "1", "--out", str(tmp_path / "pong")])  # fmt: skip
    assert Image.open(tmp_path / "pong.png").size == (4 * (3 * 66 + 2), 4 * (2 * 66 + 2))
