"""Reference returns on Mountain Hike that need no observation at all (so they hold for every noise level), on the
env's own action cost (the results before issue #14; ``references.py`` computes these and the observation-based
references on the settings of ``hyperparams/dvrl.yml``, with the same code).

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
from benchmarks.dvrl.references import best_of, fixed_walk, fixed_walk_grid, returns


def references(episodes: int) -> dict:
    """The mean and std return of random actions and of the best fixed walk (episodes seeded 0 ... episodes - 1)."""
    env = gym.make("MountainHikeNoise0-v0")  # the env's own action cost (0.1 per unit of the raw action)
    rng = np.random.default_rng(0)
    random_returns = returns(env, lambda t, obs, info: rng.uniform(-0.05, 0.05, 2), range(episodes))
    # Chosen on seeds 0-99, reported on seeds 10000 ... (references.best_of)
    best = best_of(env, fixed_walk, fixed_walk_grid(), 100, episodes)
    return dict(
        random_mean=float(np.mean(random_returns)),
        random_std=float(np.std(random_returns)),
        best_open_loop_angle_deg=best["params"][0],
        best_open_loop_steps=best["params"][1],
        best_open_loop_mean=best["mean"],
        best_open_loop_std=best["std"],
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
