"""One SB3 DQN run on DeepSea with rl-zoo3's epsilon-greedy CartPole-v1 settings (rl-zoo3 has no DeepSea entry).

python benchmarks/deepsea/run_dqn.py --size 10 --seed 0 --episodes 1000 --out benchmarks/deepsea/results/dqn_N10_s0.json
"""

from __future__ import annotations

import argparse
import time

import torch

torch.set_num_threads(1)

from common import EpisodeRecorder, coverage, cpu_seconds, machine_info, save_json, summarize_episodes  # noqa: E402
from stable_baselines3 import DQN  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

import sb3_bayes.envs  # noqa: E402,F401  (registers DeepSea)

# rl-zoo3 hyperparams/dqn.yml, CartPole-v1 (its epsilon-greedy settings for a small discrete task), except that the
# exploration schedule spans the same fraction (0.16) of this run's episode budget instead of 50k steps.
HYPERPARAMS = dict(
    learning_rate=2.3e-3,
    batch_size=64,
    buffer_size=100_000,
    learning_starts=1000,
    gamma=0.99,
    target_update_interval=10,
    train_freq=256,
    gradient_steps=128,
    exploration_fraction=0.16,
    exploration_final_eps=0.04,
    policy_kwargs=dict(net_arch=[256, 256]),
)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    env = make_vec_env(f"DeepSea{args.size}-v0", n_envs=1, seed=args.seed)
    model = DQN("MlpPolicy", env, seed=args.seed, verbose=0, **HYPERPARAMS)
    rec = EpisodeRecorder()
    t0, c0 = time.perf_counter(), cpu_seconds()
    model.learn(total_timesteps=args.size * args.episodes, callback=rec)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    returns = [e["ret"] for e in rec.episodes][: args.episodes]  # learn() runs whole train_freq chunks
    summary = {**summarize_episodes(returns), **coverage(rec.cells, args.size)}
    print(f"DQN N={args.size} seed {args.seed}: {summary} wall {wall:.0f}s cpu {cpu:.0f}s", flush=True)
    save_json(
        args.out,
        dict(
            algo="DQN",
            size=args.size,
            seed=args.seed,
            episode_budget=args.episodes,
            hyperparams={k: str(v) for k, v in HYPERPARAMS.items()},
            summary=summary,
            returns=returns,
            wall_s=round(wall, 2),
            cpu_s=round(cpu, 2),
            machine=machine_info(),
        ),
    )


if __name__ == "__main__":
    main()
