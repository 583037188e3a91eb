"""
Train PSDRL (CnnPolicy, reduced sizes) on Pong for what a shared 2-core CPU allows, for the imagination picture.

python -m benchmarks.psdrl_speed.imagination.train_small_pong --steps 2000 --out pong_small_2k.zip

writes the model (``--out``) and, next to it, the run's result (``pong_small_2k.json``; the ``train_info_*.json`` here).

Same preprocessing, schedule shape and losses as `hyperparams/psdrl.yml` (section `atari`), with smaller networks
(first convolution 8 channels, so a 128-dimensional latent; GRU 64; heads 192), smaller batches (8 windows of 32
steps), more autoencoder updates per round (the decoder has to learn Pong's frames quickly) and learning rate 5e-4.
"""

from __future__ import annotations

import argparse
import os

import ale_py
import gymnasium as gym
import torch as th

from benchmarks.common import Timer, make_env, result_record, write_result
from sb3_bayes import PSDRL
from sb3_bayes.common.wrappers import PSDRLAtariWrapper

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
    th.set_num_threads(1)
    gym.register_envs(ale_py)
    env = make_env(
        "PongNoFrameskip-v4",
        args.seed,
        env_kwargs=dict(max_episode_steps=108000),
        wrapper_class=PSDRLAtariWrapper,  # the preprocessing of hyperparams/psdrl.yml (section atari)
    )
    if args.resume is None:
        model = PSDRL("CnnPolicy", env, seed=args.seed, verbose=1, **SETTINGS)
    else:
        model = PSDRL.load(args.resume, env=env, seed=args.seed)
    with Timer() as timer:  # training and saving, as in train_info_*.json
        model.learn(args.steps, log_interval=4, reset_num_timesteps=args.resume is None)
        model.save(args.out)
    results = dict(
        steps=model.num_timesteps,
        rounds=model.n_training_rounds,
        autoencoder_updates=model.n_training_rounds * model.autoencoder_iterations,
    )
    print(results, flush=True)
    record = result_record(
        benchmark="psdrl_speed",
        experiment="train_small_pong",
        algorithm="PSDRL",
        env="PongNoFrameskip-v4",
        seed=args.seed,
        config=dict(steps=args.steps, resume=args.resume, settings={k: str(v) for k, v in SETTINGS.items()}),
        results=results,
        cpu_seconds=round(timer.cpu_seconds, 1),
        wall_seconds=round(timer.wall_seconds, 1),
    )
    write_result(os.path.splitext(args.out)[0] + ".json", record)


if __name__ == "__main__":
    main()
