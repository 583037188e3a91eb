"""One SB3 DQN run on DeepSea with rl-zoo3's epsilon-greedy CartPole-v1 settings (rl-zoo3 has no DeepSea entry).

python -m benchmarks.deepsea.run_dqn --size 10 --seed 0 --episodes 1000 --out benchmarks/deepsea/results/dqn_N10_s0.json
"""

from __future__ import annotations

import argparse

import torch
from stable_baselines3 import DQN

import sb3_bayes.envs  # noqa: F401  (registers DeepSea)
from benchmarks.common import Timer, make_env, result_record, write_result
from benchmarks.deepsea.exploration import DeepSeaRecorder, coverage, summarize_episodes

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
    torch.set_num_threads(1)

    model = DQN("MlpPolicy", make_env(f"DeepSea{args.size}-v0", args.seed), seed=args.seed, verbose=0, **HYPERPARAMS)
    rec = DeepSeaRecorder(args.size)
    with Timer() as timer:
        model.learn(total_timesteps=args.size * args.episodes, callback=rec)
    returns = rec.returns[: args.episodes]  # learn() runs whole train_freq chunks
    summary = {**summarize_episodes(returns, rec.successes[: args.episodes]), **coverage(rec.cells, args.size)}
    print(
        f"DQN N={args.size} seed {args.seed}: {summary} wall {timer.wall_seconds:.0f}s cpu {timer.cpu_seconds:.0f}s",
        flush=True,
    )
    write_result(
        args.out,
        result_record(
            benchmark="deepsea",
            experiment="run_dqn",
            algorithm="DQN",
            env=f"DeepSea{args.size}-v0",
            seed=args.seed,
            config=dict(size=args.size, episode_budget=args.episodes, hyperparams={k: str(v) for k, v in HYPERPARAMS.items()}),
            results=dict(summary=summary, returns=returns),
            cpu_seconds=round(timer.cpu_seconds, 2),
            wall_seconds=round(timer.wall_seconds, 2),
        ),
    )


if __name__ == "__main__":
    main()
