"""What the PETS and SAC runs of this benchmark share: arguments, the YAML section's run settings, the recorder, the
training run and its result file."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import EpisodeRecorder, Timer, make_env, result_record, write_result


class Recorder(EpisodeRecorder):
    """Every episode, with the observation it ended in (does InvertedPendulum fall, does Pendulum end upright?)."""

    def episode_extras(self, info: dict[str, Any]) -> dict[str, Any]:
        return dict(terminal_obs=[round(float(x), 4) for x in info.get("terminal_observation", [])])


def run_arguments() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--env", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="default: n_timesteps of the YAML")
    p.add_argument("--out", required=True)
    return p


def run_settings(hp: dict[str, Any], steps: int | None, default_steps: int | None = None) -> tuple[int, str, dict[str, Any]]:
    """
    Pops the run settings off a YAML section: (steps: ``steps``, else the section's ``n_timesteps``, else
    ``default_steps``; policy; env_kwargs). What is left are the model's arguments.
    """
    yaml_steps = hp.pop("n_timesteps", default_steps)
    if steps is None and yaml_steps is None:
        raise ValueError("no --steps and no n_timesteps in the YAML section")
    budget = int(steps if steps is not None else yaml_steps)
    return budget, hp.pop("policy", "MlpPolicy"), hp.pop("env_kwargs", None) or {}


def learn_and_write(
    make_model: Callable[[Any], Any],
    args: argparse.Namespace,
    algorithm: str,
    steps: int,
    env_kwargs: dict[str, Any],
    config: dict[str, Any],
    results: Callable[[], dict[str, Any]] = dict,
) -> None:
    """Train ``make_model(env)`` (one torch thread) for ``steps`` steps, recording every episode, and write the result."""
    torch.set_num_threads(1)
    model = make_model(make_env(args.env, args.seed, env_kwargs=env_kwargs))
    rec = Recorder(verbose=1)
    overrides = f" overrides {config['overrides']}" if "overrides" in config else ""
    print(f"{algorithm} {args.env} seed {args.seed} steps {steps} section {config['yaml_section']}{overrides}", flush=True)
    with Timer() as timer:
        model.learn(total_timesteps=steps, callback=rec)
    print(f"done: wall {timer.wall_seconds:.0f}s cpu {timer.cpu_seconds:.0f}s", flush=True)
    write_result(
        args.out,
        result_record(
            benchmark="pets_learning",
            experiment=f"run_{algorithm.lower()}",
            algorithm=algorithm,
            env=args.env,
            seed=args.seed,
            config=dict(steps=steps, **config, env_kwargs=env_kwargs),
            results=dict(episodes=rec.episodes, **results()),
            cpu_seconds=round(timer.cpu_seconds, 2),
            wall_seconds=round(timer.wall_seconds, 2),
        ),
    )
