"""Shared pieces of the PETS planning-speed benchmark (imported by both bench scripts).

Kept free of sb3_bayes / mbrl imports so it runs in both virtual environments.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

# The exact configuration compared (see README.md).
CONFIG = dict(
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


REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


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


def random_pendulum_data(n: int = 1000, seed: int = 0):
    """(obs, act, next_obs) from random actions in the real env, to fit input normalisers."""
    import gymnasium as gym

    env = gym.make(CONFIG["env_id"])
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


def time_actions(act_fn: Callable[[np.ndarray], np.ndarray], n_actions: int, n_warmup: int, seed: int = 0):
    """Run a real Pendulum-v1 episode, planning every action with ``act_fn(obs)``.

    Warm-up actions are executed but not timed. Returns per-action wall and CPU seconds and
    the actions taken.
    """
    import gymnasium as gym

    env = gym.make(CONFIG["env_id"])
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


def summarize(wall, cpu) -> dict:
    return dict(
        n_actions=len(wall),
        wall_mean_s=statistics.fmean(wall),
        wall_median_s=statistics.median(wall),
        wall_min_s=min(wall),
        cpu_mean_s=statistics.fmean(cpu),
        cpu_median_s=statistics.median(cpu),
        cpu_min_s=min(cpu),
    )


def env_info() -> dict:
    import torch

    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return dict(
        python=platform.python_version(),
        torch=torch.__version__,
        numpy=np.__version__,
        torch_threads=torch.get_num_threads(),
        cpu=model,
        nproc=os.cpu_count(),
    )


def dump(result: dict, path: str | None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")
