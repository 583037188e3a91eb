"""Reference returns on Mountain Hike that need no observation at all (so they hold for every noise level).

* random: uniform actions in the action box;
* best open loop: walk in a fixed direction at full speed for k steps, then stand still (cost 0), with the direction
  and k chosen on a grid to maximise the mean return over 500 seeded episodes.

    python benchmarks/dvrl/open_loop_reference.py --out benchmarks/dvrl/results/open_loop_reference.json
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np

import sb3_bayes.envs  # noqa: F401


def episode_return(env: gym.Env, seed: int, policy) -> float:
    env.reset(seed=seed)
    total, t, done = 0.0, 0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(policy(t))
        total += float(reward)
        t += 1
        done = terminated or truncated
    return total


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--episodes", type=int, default=500)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    env = gym.make("MountainHikeNoise0-v0")
    seeds = range(args.episodes)
    rng = np.random.default_rng(0)
    random_returns = [episode_return(env, s, lambda t: rng.uniform(-0.05, 0.05, 2)) for s in seeds]
    best = (-np.inf, None, None)
    for angle_deg in range(20, 71, 5):
        angle = np.deg2rad(angle_deg)
        move = 0.05 * np.array([np.cos(angle), np.sin(angle)])
        for k in range(20, 56, 2):
            ret = float(
                np.mean(
                    [episode_return(env, s, lambda t, move=move, k=k: move if t < k else np.zeros(2)) for s in seeds[:100]]
                )
            )
            if ret > best[0]:
                best = (ret, angle_deg, k)
    angle = np.deg2rad(best[1])
    move = 0.05 * np.array([np.cos(angle), np.sin(angle)])
    open_loop = [episode_return(env, 10_000 + s, lambda t: move if t < best[2] else np.zeros(2)) for s in seeds]
    result = dict(
        random_mean=float(np.mean(random_returns)),
        random_std=float(np.std(random_returns)),
        best_open_loop_angle_deg=best[1],
        best_open_loop_steps=best[2],
        best_open_loop_mean=float(np.mean(open_loop)),
        best_open_loop_std=float(np.std(open_loop)),
        episodes=args.episodes,
        command="python benchmarks/dvrl/open_loop_reference.py --out benchmarks/dvrl/results/open_loop_reference.json",
    )
    print(result)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
