"""Reference returns on Mountain Hike that need no observation at all (so they hold for every noise level).

* random: uniform actions in the action box;
* best open loop: walk in a fixed direction at full speed for k steps, then stand still (cost 0), with the direction
  and k chosen on a grid to maximise the mean return over 500 seeded episodes.

    python -m benchmarks.dvrl.open_loop_reference --out benchmarks/dvrl/results/open_loop_reference.json
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import sb3_bayes.envs  # noqa: F401
from benchmarks.common import Timer, result_record, write_result


def episode_return(env: gym.Env, seed: int, policy) -> float:
    env.reset(seed=seed)
    total, t, done = 0.0, 0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(policy(t))
        total += float(reward)
        t += 1
        done = terminated or truncated
    return total


def references(episodes: int) -> dict:
    """The mean and std return of random actions and of the best fixed walk (episodes seeded 0 ... episodes - 1)."""
    env = gym.make("MountainHikeNoise0-v0")
    seeds = range(episodes)
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
    return dict(
        random_mean=float(np.mean(random_returns)),
        random_std=float(np.std(random_returns)),
        best_open_loop_angle_deg=best[1],
        best_open_loop_steps=best[2],
        best_open_loop_mean=float(np.mean(open_loop)),
        best_open_loop_std=float(np.std(open_loop)),
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--episodes", type=int, default=500)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    with Timer() as timer:
        results = references(args.episodes)
    print(results)
    record = result_record(
        benchmark="dvrl",
        experiment="open_loop_reference",
        algorithm=None,
        env="MountainHikeNoise0-v0",
        seed=None,
        config=dict(episodes=args.episodes),
        results=results,
        cpu_seconds=round(timer.cpu_seconds, 2),
        wall_seconds=round(timer.wall_seconds, 2),
    )
    write_result(args.out, record)


if __name__ == "__main__":
    main()
