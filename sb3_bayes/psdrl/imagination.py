"""
Imagined trajectories of several sampled PSDRL models from one start state (the picture in the paper's README).

Every sampled model starts from the same encoded observation and recurrent state and receives the same actions, so the
differences between the rows come from the posterior over the last layer alone.

Command line::

    python -m sb3_bayes.psdrl.imagination --model logs/psdrl/PongNoFrameskip-v4_1/PongNoFrameskip-v4.zip \
        --env PongNoFrameskip-v4 --n-models 4 --horizon 16 --out imagination
"""

import argparse
from pathlib import Path

import numpy as np
import torch as th
from PIL import Image
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecTransposeImage

from sb3_bayes.psdrl.psdrl import PSDRL


def imagine(
    model: PSDRL,
    observation: np.ndarray,
    n_models: int = 4,
    horizon: int = 16,
    actions: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """
    Roll out ``n_models`` posterior samples for ``horizon`` steps from one observation and decode every latent state.

    :param model: A trained PSDRL model.
    :param observation: One observation as the policy sees it (e.g. a ``(1, 64, 64)`` uint8 frame).
    :param n_models: Number of sampled models (rows).
    :param horizon: Imagined steps (the first column is the reconstruction of the start state).
    :param actions: Actions to take, ``[horizon]``; None draws them uniformly with ``seed``.
    :param seed: Seed of the model samples and of the random actions.
    :return: Decoded observations ``[n_models, horizon + 1, *decoded_shape]`` as floats (frames in [0, 1]).
    """
    policy = model.policy
    generator = th.Generator(device=policy.posterior.device).manual_seed(seed)
    if actions is None:
        actions = np.random.default_rng(seed).integers(policy.transition.n_actions, size=horizon)
    if len(actions) != horizon:
        raise ValueError(f"Expected {horizon} actions, got {len(actions)}.")
    current_sample = policy.sampled_weight.clone()
    decoded = []
    try:
        with th.no_grad():
            obs = th.as_tensor(np.asarray(observation)[None], device=policy.device)
            start_latent = policy.encode(obs)
            for _ in range(n_models):
                policy.resample(generator)
                latent, hidden = start_latent, policy.initial_hidden(1)
                row = [policy.autoencoder.decode(latent)]  # type: ignore[operator]
                for action in actions:
                    action_one_hot = policy.one_hot(th.tensor([int(action)], device=policy.device))
                    step = policy.transition.step(latent, action_one_hot, hidden)
                    # Imagined states have no observation: the prior looks at the decoded one (the row's last frame).
                    projection = policy.prior_projection(row[-1])
                    features = policy.bayesian_features(step.features, projection, action_one_hot)
                    latent, _ = policy.predict_sampled(features)
                    hidden = step.hidden
                    row.append(policy.autoencoder.decode(latent))  # type: ignore[operator]
                decoded.append(th.cat(row).cpu().numpy())
    finally:
        policy.sampled_weight = current_sample  # the agent keeps acting on its own sample
    return np.stack(decoded)


def to_images(decoded: np.ndarray) -> np.ndarray:
    """
    Decoded observations as grayscale uint8 images ``[rows, cols, H, W]``: frames as they are, a flat vector whose
    length is a square (e.g. DeepSea's one-hot grid) as that square, any other vector as a one-pixel-high strip.

    :param decoded: ``[rows, cols, *decoded_shape]``.
    """
    rows, cols = decoded.shape[:2]
    values = decoded.reshape(rows, cols, -1)
    side = int(round(np.sqrt(values.shape[-1])))
    if decoded.ndim == 5:  # [rows, cols, channels, H, W]: average the channels
        images = decoded.mean(axis=2)
    elif side * side == values.shape[-1]:
        images = values.reshape(rows, cols, side, side)
    else:
        images = values.reshape(rows, cols, 1, -1)
    low, high = float(images.min()), float(images.max())
    scaled = (images - low) / (high - low) if high > low else np.zeros_like(images)
    return (np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def save_grid_and_gif(images: np.ndarray, out: str | Path, scale: int = 4, frame_ms: int = 200) -> tuple[Path, Path]:
    """
    Write ``<out>.png`` (one row per sampled model, time left to right) and ``<out>.gif`` (the models side by side,
    stepping through time).

    :param images: ``[rows, cols, H, W]`` uint8.
    :param out: Path without extension.
    :param scale: Pixel upscaling.
    :param frame_ms: GIF frame duration.
    :return: The two paths.
    """
    rows, cols, height, width = images.shape
    pad = 2
    grid = np.full((rows * (height + pad) + pad, cols * (width + pad) + pad), 128, dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            top, left = pad + r * (height + pad), pad + c * (width + pad)
            grid[top : top + height, left : left + width] = images[r, c]
    out = Path(out)
    png, gif = out.with_suffix(".png"), out.with_suffix(".gif")
    Image.fromarray(np.kron(grid, np.ones((scale, scale), dtype=np.uint8))).save(png)
    frames = []
    for c in range(cols):
        strip = np.full((height + 2 * pad, rows * (width + pad) + pad), 128, dtype=np.uint8)
        for r in range(rows):
            left = pad + r * (width + pad)
            strip[pad : pad + height, left : left + width] = images[r, c]
        frames.append(Image.fromarray(np.kron(strip, np.ones((scale, scale), dtype=np.uint8))))
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return png, gif


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Draw imagined trajectories of sampled PSDRL models (PNG grid and GIF).")
    parser.add_argument("--model", required=True, help="Path of a saved PSDRL model (.zip)")
    parser.add_argument("--env", required=True, help="Environment id (observations are taken from it)")
    parser.add_argument("--n-models", type=int, default=4)
    parser.add_argument("--horizon", type=int, default=16)
    parser.add_argument("--warmup-steps", type=int, default=30, help="Steps taken by the agent before imagining")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gym-packages", nargs="*", default=[], help="Modules to import that register environments")
    parser.add_argument("--out", default="imagination", help="Output path without extension")
    args = parser.parse_args(argv)

    import importlib

    for package in ["sb3_bayes.envs", *args.gym_packages]:
        importlib.import_module(package)
    model = PSDRL.load(args.model)
    if "NoFrameskip" in args.env:
        import ale_py
        import gymnasium as gym

        from sb3_bayes.common.wrappers import PSDRLAtariWrapper

        gym.register_envs(ale_py)  # Atari ids are registered by ale-py
        # The preprocessing of hyperparams/psdrl.yml's `atari` section.
        env: VecEnv = VecTransposeImage(make_vec_env(args.env, seed=args.seed, wrapper_class=PSDRLAtariWrapper))
    else:
        env = make_vec_env(args.env, seed=args.seed)
    obs = np.asarray(env.reset())
    state, start = None, np.array([True])
    for _ in range(args.warmup_steps):
        action, state = model.predict(obs, state=state, episode_start=start)
        next_obs, _, done, _ = env.step(action)
        obs, start = np.asarray(next_obs), done
    decoded = imagine(model, obs[0], args.n_models, args.horizon, seed=args.seed)
    png, gif = save_grid_and_gif(to_images(decoded), args.out)
    print(f"Wrote {png} and {gif}")


if __name__ == "__main__":
    main()
