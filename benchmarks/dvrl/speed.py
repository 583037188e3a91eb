"""Training speed (environment steps per second) of DVRL, its RNN baseline and sb3-contrib RecurrentPPO.

Same environment (MountainHikeNoise0p2-v0), same number of environments (16), one torch thread, the learning settings
and env wrappers of hyperparams/dvrl.yml (DVRL with 15 particles as in the paper's runs, and with the YAML's 10; the
RNN baseline is ``use_particle_filter=False``) and of benchmarks/dvrl/ppo_lstm_mountain_hike.yml (RecurrentPPO).
Each method first trains for a warm-up, then ``learn`` is timed over a fixed number of steps; the methods are
interleaved over several rounds and the median is reported. Steps per CPU second (process time of this
single-threaded process) is the robust number on a shared machine; steps per wall second is reported as well.

    python -m benchmarks.dvrl.speed --out benchmarks/dvrl/results/speed.json
    python -m benchmarks.dvrl.speed --profile dvrl15     # cProfile of the timed DVRL updates (top functions)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
from typing import Any

import torch
from rl_zoo3.utils import get_wrapper_class
from sb3_contrib import RecurrentPPO

import sb3_bayes.envs  # noqa: F401
from benchmarks.common import (
    Timer,
    hyperparams_path,
    load_zoo_section,
    make_env,
    result_record,
    write_result,
)
from sb3_bayes.dvrl import DVRL

HERE = os.path.dirname(os.path.abspath(__file__))
ENV_ID = "MountainHikeNoise0p2-v0"
N_ENVS = 16


def section(path: str, env_id: str) -> tuple[dict[str, Any], Any]:
    """The model kwargs of an rl-zoo3 YAML section and the env wrapper it names (rl-zoo3's ``env_wrapper``)."""
    _, hp = load_zoo_section(path, env_id)
    wrapper = get_wrapper_class(hp)
    for key in ("n_timesteps", "n_envs", "normalize", "env_wrapper"):
        hp.pop(key, None)
    return hp, wrapper


def build(method: str, seed: int = 0) -> tuple[Any, int, int]:
    """The model, its warm-up steps and its timed steps (whole rollouts/updates)."""
    if method == "ppo_lstm":
        hp, wrapper = section(os.path.join(HERE, "ppo_lstm_mountain_hike.yml"), ENV_ID)
        env = make_env(ENV_ID, seed, n_envs=N_ENVS, wrapper_class=wrapper)
        policy = hp.pop("policy")
        model = RecurrentPPO(policy, env, seed=seed, device="cpu", **hp)
        rollout = model.n_steps * N_ENVS
        return model, rollout, 2 * rollout
    hp, wrapper = section(hyperparams_path("dvrl.yml"), ENV_ID)
    env = make_env(ENV_ID, seed, n_envs=N_ENVS, wrapper_class=wrapper)
    policy = hp.pop("policy")
    if method == "rnn":
        hp["use_particle_filter"] = False
    elif method.startswith("dvrl"):
        hp["n_particles"] = int(method[4:])
    else:
        raise ValueError(f"unknown method {method!r}")
    model = DVRL(policy, env, seed=seed, device="cpu", **hp)
    update = model.n_steps * N_ENVS
    return model, 10 * update, 40 * update


def time_method(method: str, profile: bool = False) -> dict[str, Any]:
    model, warmup, steps = build(method)
    model.learn(warmup)
    profiler = cProfile.Profile() if profile else None
    with Timer() as timer:
        if profiler is not None:
            profiler.enable()
        model.learn(steps, reset_num_timesteps=False)
        if profiler is not None:
            profiler.disable()
    wall, cpu = timer.wall_seconds, timer.cpu_seconds
    out = dict(method=method, steps=steps, wall_s=wall, cpu_s=cpu, steps_per_cpu_s=steps / cpu, steps_per_wall_s=steps / wall)
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
        out["profile"] = text.getvalue()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="*", default=["ppo_lstm", "dvrl15", "dvrl10", "rnn"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=None)
    p.add_argument("--profile", default=None, help="profile one method once and print the top functions")
    args = p.parse_args()
    torch.set_num_threads(1)

    if args.profile:
        result = time_method(args.profile, profile=True)
        print(result.pop("profile"))
        print(result)
        return

    runs: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for method in args.methods:
            result = time_method(method)
            result["round"] = r
            result["loadavg"] = os.getloadavg()
            runs.append(result)
            print(
                f"round {r} {method:9s} {result['steps']:6d} steps  {result['steps_per_cpu_s']:7.1f} steps/CPU-s  "
                f"{result['steps_per_wall_s']:7.1f} steps/wall-s  load {result['loadavg'][0]:.1f}",
                flush=True,
            )
    summary = {}
    for method in args.methods:
        mine = [x for x in runs if x["method"] == method]
        summary[method] = dict(
            median_steps_per_cpu_s=statistics.median(x["steps_per_cpu_s"] for x in mine),
            median_steps_per_wall_s=statistics.median(x["steps_per_wall_s"] for x in mine),
        )
    if "ppo_lstm" in summary:
        base = summary["ppo_lstm"]["median_steps_per_cpu_s"]
        for method in summary:
            summary[method]["ratio_to_ppo_lstm_cpu"] = summary[method]["median_steps_per_cpu_s"] / base
    for method, s in summary.items():
        print(method, {k: round(v, 2) for k, v in s.items()})
    if args.out:
        record = result_record(
            benchmark="dvrl",
            experiment="speed",
            algorithm=None,
            env=ENV_ID,
            seed=0,
            config=dict(n_envs=N_ENVS, rounds=args.rounds, methods=args.methods),
            results=dict(summary=summary, runs=runs),
            cpu_seconds=sum(x["cpu_s"] for x in runs),
            wall_seconds=sum(x["wall_s"] for x in runs),
        )
        write_result(args.out, record)


if __name__ == "__main__":
    main()
