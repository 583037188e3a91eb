"""What both planners' timing scripts share: the configuration compared, the timing loop, random data, our reward file.

Kept free of sb3_bayes / mbrl imports so it runs in both virtual environments (benchmarks.common imports only the
standard library).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.common import REPO_ROOT, repo_path, result_record, timing_stats

# The exact configuration compared (see README.md).
CONFIG: dict[str, Any] = dict(
    env_id="Pendulum-v1",
    ensemble_size=5,
    hidden=[200, 200, 200],
    activation="SiLU",
    popsize=500,
    num_elites=50,
    plan_horizon=15,
    n_particles=20,
    cem_iters=5,
    cem_alpha=0.1,
    propagation="TSinf",
)

#: The environments whose shapes are timed (``--env``); every one has a known reward in ``known_rewards.py``.
ENVS = ("Pendulum-v1", "InvertedPendulum-v5", "Reacher-v5")
#: ``--config``: "paper" = :data:`CONFIG` on the env's shapes; "recommended" = the env's section of hyperparams/pets.yml.
CONFIGS = ("paper", "recommended")


def paper_config(env_id: str = CONFIG["env_id"]) -> dict[str, Any]:
    """The paper configuration (:data:`CONFIG`) on the shapes of ``env_id``."""
    if env_id not in ENVS:
        raise ValueError(f"env {env_id!r} is not one of {ENVS}")
    return dict(CONFIG, env_id=env_id)


def load_known_rewards_module():
    """Load ``sb3_bayes/envs/known_rewards.py`` as a standalone module (it only needs torch).

    This lets the mbrl-lib venv (which has no stable-baselines3) use *the same* Pendulum reward
    function as our PETS, instead of a re-transcription.
    """
    import importlib.util

    path = os.path.join(REPO_ROOT, "sb3_bayes", "envs", "known_rewards.py")
    spec = importlib.util.spec_from_file_location("_pets_speed_known_rewards", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


def random_env_data(n: int = 1000, seed: int = 0, env_id: str = CONFIG["env_id"]):
    """(obs, act, next_obs) from random actions in the real env ``env_id``, to fit input normalisers."""
    import gymnasium as gym

    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    O, A, N = [], [], []
    for _ in range(n):
        a = env.action_space.sample()
        nobs, _, term, trunc, _ = env.step(a)
        O.append(obs)
        A.append(a)
        N.append(nobs)
        obs = nobs
        if term or trunc:
            obs, _ = env.reset()
    return np.asarray(O, np.float32), np.asarray(A, np.float32), np.asarray(N, np.float32)


def random_pendulum_data(n: int = 1000, seed: int = 0):
    """:func:`random_env_data` on Pendulum-v1 (the name the first scripts of this benchmark use)."""
    return random_env_data(n, seed, "Pendulum-v1")


def time_actions(
    act_fn: Callable[[np.ndarray], np.ndarray], n_actions: int, n_warmup: int, seed: int = 0, env_id: str = CONFIG["env_id"]
):
    """Run a real episode of ``env_id`` (reset when it ends), planning every action with ``act_fn(obs)``.

    Warm-up actions are executed but not timed. Returns per-action wall and CPU seconds and
    the actions taken.
    """
    import gymnasium as gym

    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    wall, cpu, actions = [], [], []
    for i in range(n_warmup + n_actions):
        t0, c0 = time.perf_counter(), time.process_time()
        a = np.asarray(act_fn(obs), dtype=np.float32).reshape(env.action_space.shape)
        t1, c1 = time.perf_counter(), time.process_time()
        if i >= n_warmup:
            wall.append(t1 - t0)
            cpu.append(c1 - c0)
        actions.append(a.copy())
        obs, _, term, trunc, _ = env.step(a)
        if term or trunc:
            obs, _ = env.reset()
    return wall, cpu, actions


def arguments() -> argparse.ArgumentParser:
    """The arguments of both timing scripts."""
    p = argparse.ArgumentParser()
    p.add_argument("--n-actions", type=int, default=20)
    p.add_argument("--n-warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    p.add_argument("--env", choices=ENVS, default=CONFIG["env_id"], help="whose shapes, reward and episodes to time")
    return p


def result(
    experiment: str,
    args: argparse.Namespace,
    config: dict[str, Any],
    results: dict[str, Any],
    cpu_seconds: float | None,
    wall_seconds: float | None,
) -> dict[str, Any]:
    """A result of this benchmark (PETS on ``args.env``); the arguments go into ``config["args"]``."""
    arguments = dict(vars(args), out=None if args.out is None else repo_path(args.out))
    return result_record(
        benchmark="pets_speed",
        experiment=experiment,
        algorithm="PETS",
        env=args.env,
        seed=args.seed,
        config=dict(config, args=arguments),
        results=results,
        cpu_seconds=cpu_seconds,
        wall_seconds=wall_seconds,
    )


def planning_time(
    args: argparse.Namespace,
    act: Callable[[np.ndarray], np.ndarray],
    config: dict[str, Any],
    model_info: dict[str, Any],
) -> dict[str, Any]:
    """
    Times ``args.n_actions`` planned actions (:func:`time_actions`) and returns their result; its CPU and wall seconds
    are those of the timed actions.
    """
    wall, cpu, actions = time_actions(act, args.n_actions, args.n_warmup, seed=args.seed, env_id=args.env)
    results = dict(
        **timing_stats(wall, cpu),
        wall_all_s=wall,
        cpu_all_s=cpu,
        first_actions=[a.tolist() for a in actions[:5]],
        model_info=model_info,
    )
    config = dict(config)
    planner = config.pop("planner", None) or paper_config(args.env)
    return result("planning_time", args, dict(config, planner=planner), results, sum(cpu), sum(wall))
