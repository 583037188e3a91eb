"""BayesianDDPG vs SB3 TD3 and DDPG at equal environment steps: one run, a JSON with the evaluation curve and timings.

Usage: python -m benchmarks.bayes_ddpg.run_learning --algo bayes_ddpg --env Pendulum-v1 --seed 0 --out DIR
(``--n-timesteps N`` overrides the task's budget, e.g. 10000 for the longer InvertedPendulum-v5 runs; every other
setting stays the same.)
"""

import argparse
import os

import numpy as np
import torch as th
from stable_baselines3 import DDPG, TD3
from stable_baselines3.common.noise import NormalActionNoise

from benchmarks.common import Timer, learn_with_evaluation, make_env, make_eval_env, result_record, write_result
from sb3_bayes.bayes_ddpg import BayesianDDPG

# Shared by all algorithms (equal networks, steps, replay and optimiser settings); rl-zoo3's TD3 settings for these
# tasks, with [64, 64] networks instead of [400, 300] so that the CPU budget allows three seeds.
SETTINGS = {
    "Pendulum-v1": dict(
        n_timesteps=5000, eval_freq=500, common=dict(gamma=0.98, buffer_size=200_000, learning_starts=1000, learning_rate=1e-3)
    ),
    "InvertedPendulum-v5": dict(
        n_timesteps=5000,
        eval_freq=1000,
        common=dict(gamma=0.99, buffer_size=200_000, learning_starts=1000, learning_rate=1e-3),
    ),
}
NET_ARCH = [64, 64]
#: Gaussian action noise of TD3 and DDPG (rl-zoo3's 0.1); BayesianDDPG explores by posterior sampling only.
NOISE_STD = 0.1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--algo", choices=["bayes_ddpg", "td3", "ddpg"], required=True)
    parser.add_argument("--env", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-eval-episodes", type=int, default=5)
    parser.add_argument("--n-timesteps", type=int, default=None, help="override the task's step budget")
    parser.add_argument("--out", default="benchmarks/bayes_ddpg/results/learning")
    args = parser.parse_args()
    th.set_num_threads(1)
    settings = dict(SETTINGS[args.env])
    if args.n_timesteps is not None:
        settings["n_timesteps"] = args.n_timesteps
    env = make_env(args.env, args.seed)
    eval_env = make_eval_env(args.env, args.seed)
    kwargs: dict = dict(settings["common"], policy_kwargs=dict(net_arch=NET_ARCH), seed=args.seed)
    n_actions = env.action_space.shape[0]
    if args.algo != "bayes_ddpg":
        kwargs["action_noise"] = NormalActionNoise(np.zeros(n_actions), NOISE_STD * np.ones(n_actions))
    algo_class = {"bayes_ddpg": BayesianDDPG, "td3": TD3, "ddpg": DDPG}[args.algo]
    model = algo_class("MlpPolicy", env, **kwargs)
    with Timer() as total:
        curve, training = learn_with_evaluation(
            model,
            settings["n_timesteps"],
            settings["eval_freq"],
            eval_env,
            n_eval_episodes=args.n_eval_episodes,
            label=f"{args.algo} {args.env} {args.seed}",
        )
    config = dict(
        n_timesteps=settings["n_timesteps"],
        eval_freq=settings["eval_freq"],
        n_eval_episodes=args.n_eval_episodes,
        net_arch=NET_ARCH,
        settings=settings["common"],
        action_noise_std=None if args.algo == "bayes_ddpg" else NOISE_STD,
    )
    results = dict(
        timesteps=model.num_timesteps,
        curve=curve,
        final_eval_mean_return=curve[-1]["eval_mean_return"],
        total_cpu_s=total.cpu_seconds,
        total_wall_s=total.wall_seconds,
    )
    record = result_record(
        benchmark="bayes_ddpg",
        experiment="learning",
        algorithm=args.algo,
        env=args.env,
        seed=args.seed,
        config=config,
        results=results,
        cpu_seconds=training.cpu_seconds,
        wall_seconds=training.wall_seconds,
    )
    write_result(os.path.join(args.out, f"{args.algo}_{args.env}_s{args.seed}.json"), record)


if __name__ == "__main__":
    main()
