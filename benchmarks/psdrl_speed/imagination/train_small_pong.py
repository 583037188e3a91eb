"""
Train PSDRL (CnnPolicy, reduced sizes) on Pong for what a shared 2-core CPU allows, for the imagination picture.

python benchmarks/psdrl_speed/imagination/train_small_pong.py --steps 2000 --out /tmp/psdrl_pong_small.zip

Same preprocessing, schedule shape and losses as `hyperparams/psdrl.yml` (section `atari`), with smaller networks
(first convolution 8 channels, so a 128-dimensional latent; GRU 64; heads 192), smaller batches (8 windows of 32
steps), more autoencoder updates per round (the decoder has to learn Pong's frames quickly) and learning rate 5e-4.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch as th

th.set_num_threads(1)

import ale_py  # noqa: E402
import gymnasium as gym  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

from sb3_bayes import PSDRL  # noqa: E402
from sb3_bayes.common.wrappers import PSDRLAtariWrapper  # noqa: E402

SETTINGS = dict(
    learning_rate=5e-4,
    buffer_size=100_000,
    batch_size=8,
    sequence_length=32,
    autoencoder_iterations=40,
    model_iterations=5,
    value_iterations=2,
    value_batch_size=256,
    warmup_freq=250,
    reward_transform="tanh",
    policy_kwargs=dict(cnn_depth=8, gru_dim=64, transition_hidden_dim=192, terminal_hidden_dim=128, value_hidden_dim=192),
)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--resume", default=None, help="continue training a saved model (its replay starts empty)")
    args = p.parse_args()
    gym.register_envs(ale_py)
    env = make_vec_env(
        "PongNoFrameskip-v4",
        seed=args.seed,
        env_kwargs=dict(max_episode_steps=108000),
        wrapper_class=PSDRLAtariWrapper,  # the preprocessing of hyperparams/psdrl.yml (section atari)
    )
    if args.resume is None:
        model = PSDRL("CnnPolicy", env, seed=args.seed, verbose=1, **SETTINGS)
    else:
        model = PSDRL.load(args.resume, env=env, seed=args.seed)
    t0 = time.perf_counter()
    c0 = time.process_time()
    model.learn(args.steps, log_interval=4, reset_num_timesteps=args.resume is None)
    model.save(args.out)
    info = dict(
        steps=model.num_timesteps,
        rounds=model.n_training_rounds,
        autoencoder_updates=model.n_training_rounds * model.autoencoder_iterations,
        wall_s=round(time.perf_counter() - t0, 1),
        cpu_s=round(time.process_time() - c0, 1),
        settings={k: str(v) for k, v in SETTINGS.items()},
    )
    print(json.dumps(info))
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
