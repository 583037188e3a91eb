"""
What a planner with the *true* Pendulum-v1 dynamics returns from given start states: the reference for judging a
single PETS episode, whose return depends mostly on where the pendulum starts (near the top, about -1; hanging down,
a swing-up that costs far more).

For each training seed of the README's quick start (``python -m rl_zoo3.train --algo pets --env Pendulum-v1 --seed S``,
1000 steps = 5 episodes), it replays the environment's resets as rl-zoo3 seeds them (``make_vec_env(seed=S)``, one reset
per 200-step episode; Pendulum's dynamics draw no random numbers) to find the start state of the last episode, then
runs one episode from that state with CEM model-predictive control on the exact dynamics and reward (population 500,
50 elites, horizons 30 and 60, 10 iterations, warm-started: far more search than the quick start's iCEM).

From the repository root::

  python -m benchmarks.pets_learning.pendulum_start_reference --seeds 0 1 2 3 4 5 6 \\
      --out benchmarks/pets_learning/results/pendulum_start_reference.json
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from typing import Any

import numpy as np
import torch as th

from benchmarks import common

EPISODE_STEPS = 200
MAX_SPEED, MAX_TORQUE, DT, G = 8.0, 2.0, 0.05, 10.0


def start_states(seed: int, n_episodes: int) -> list[np.ndarray]:
    """The state ``(theta, theta_dot)`` at the start of each of the first ``n_episodes`` episodes of a seeded run."""
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("Pendulum-v1", n_envs=1, seed=seed)
    env.reset()
    states = []
    for _ in range(n_episodes):
        states.append(env.envs[0].unwrapped.state.copy())  # type: ignore[attr-defined]
        for _ in range(EPISODE_STEPS):  # the actions do not matter for the next reset
            env.step(np.zeros((1, 1), dtype=np.float32))
    return states


def rollout_return(theta: th.Tensor, theta_dot: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """Exact Pendulum-v1 return of action sequences ``[n, horizon, 1]`` from one state."""
    theta, theta_dot = theta.expand(actions.shape[0]), theta_dot.expand(actions.shape[0])
    total = th.zeros(actions.shape[0], dtype=actions.dtype)
    for t in range(actions.shape[1]):
        u = actions[:, t, 0].clamp(-MAX_TORQUE, MAX_TORQUE)
        angle = (theta + math.pi) % (2 * math.pi) - math.pi
        total = total - (angle**2 + 0.1 * theta_dot**2 + 0.001 * u**2)
        theta_dot = (theta_dot + (3 * G / 2 * th.sin(theta) + 3.0 * u) * DT).clamp(-MAX_SPEED, MAX_SPEED)
        theta = theta + theta_dot * DT
    return total


def planning_objective(theta: th.Tensor, theta_dot: th.Tensor, candidates: th.Tensor) -> th.Tensor:
    """The optimiser's objective: candidates ``[1, n, horizon, 1]`` to returns ``[1, n]``."""
    return rollout_return(theta, theta_dot, candidates[0])[None]


def true_model_episode(state: np.ndarray, seed: int, horizon: int) -> float:
    """One 200-step episode from ``state`` with CEM on the exact dynamics; the realised return."""
    import gymnasium as gym

    from sb3_bayes.common.trajectory_optimizers import CEMOptimizer

    th.manual_seed(seed)
    bound = th.full((1,), MAX_TORQUE, dtype=th.float64)
    optimizer = CEMOptimizer(-bound, bound, horizon=horizon, popsize=500, num_elites=50, max_iters=10, alpha=0.1, epsilon=0.0)
    env = gym.make("Pendulum-v1")
    env.reset(seed=seed)
    env.unwrapped.state = state.copy()  # type: ignore[attr-defined]
    warm_start, total = optimizer.initial_solution(1).double(), 0.0
    for _ in range(EPISODE_STEPS):
        theta, theta_dot = (th.tensor(value, dtype=th.float64) for value in env.unwrapped.state)  # type: ignore[attr-defined]
        objective = functools.partial(planning_objective, theta, theta_dot)
        solution = optimizer.solve(objective, warm_start)
        warm_start = optimizer.shift(solution.mean)
        _, reward, _, _, _ = env.step(solution.plan[0, 0].numpy().astype(np.float32))
        total += float(reward)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(7)))
    parser.add_argument("--episode", type=int, default=4, help="index of the episode whose start is used (4: the 5th)")
    parser.add_argument("--horizons", type=int, nargs="+", default=[30, 60], help="planning horizons of the reference CEM")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    th.set_num_threads(1)
    cpu0, wall0 = common.cpu_seconds(), time.perf_counter()
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        state = start_states(seed, args.episode + 1)[args.episode]
        angle = float((state[0] + math.pi) % (2 * math.pi) - math.pi)
        returns = {str(horizon): true_model_episode(state, seed, horizon) for horizon in args.horizons}
        rows.append(dict(seed=seed, start_angle=angle, start_velocity=float(state[1]), true_model_returns=returns))
        shown = ", ".join(f"horizon {horizon}: {value:.1f}" for horizon, value in returns.items())
        print(f"seed {seed}: start |angle| {abs(angle):.2f} rad, velocity {state[1]:+.2f}; true-model MPC return {shown}")
    record = common.result_record(
        benchmark="pets_learning",
        experiment="pendulum_start_reference",
        algorithm="CEM MPC on the true dynamics",
        env="Pendulum-v1",
        seed=None,
        config=dict(episode=args.episode, horizons=args.horizons, popsize=500, num_elites=50, iterations=10),
        results=dict(episodes=rows),
        cpu_seconds=common.cpu_seconds() - cpu0,
        wall_seconds=time.perf_counter() - wall0,
    )
    common.write_result(args.out, record)


if __name__ == "__main__":
    main()
