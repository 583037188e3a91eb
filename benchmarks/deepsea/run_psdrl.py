"""
One PSDRL run on DeepSea with the settings of `hyperparams/psdrl.yml` (section `DeepSea<N>-v0`), optionally overridden.

python -m benchmarks.deepsea.run_psdrl --size 10 --seed 0 --episodes 1000 --out benchmarks/deepsea/results/psdrl_N10_s0.json \
    [--set value_max_states=1024 --set policy_kwargs.reward_prior_scale=1.0] [--after-success 50]

The run stops at the episode budget or `--after-success` episodes after the goal was first reached (to save CPU; the
success rate over those episodes is reported).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

import sb3_bayes.envs  # noqa: F401  (registers DeepSea)
from benchmarks.common import Timer, hyperparams_path, load_zoo_section, make_env, result_record, write_result
from benchmarks.deepsea.exploration import DeepSeaRecorder
from sb3_bayes import PSDRL
from sb3_bayes.psdrl.psdrl import history_tree


def load_settings(size: int, overrides: list[str]) -> dict[str, Any]:
    _, section = load_zoo_section(hyperparams_path("psdrl.yml"), f"DeepSea{size}-v0")
    for item in overrides:
        key, value = item.split("=", 1)
        if key.startswith("policy_kwargs."):
            section["policy_kwargs"][key.split(".", 1)[1]] = eval(value)
        else:
            section[key] = eval(value)
    return section


def run_arguments() -> argparse.ArgumentParser:
    """The arguments every PSDRL DeepSea script takes: size, seed, episode budget and YAML overrides."""
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, required=True)
    p.add_argument("--set", action="append", default=[], help="override, e.g. value_iterations=40 or policy_kwargs.ridge=1")
    return p


def build_model(size: int, seed: int, settings: dict[str, Any]) -> PSDRL:
    """PSDRL on a seeded ``DeepSea<size>-v0`` with the settings of :func:`load_settings` (one torch thread)."""
    torch.set_num_threads(1)
    hp = {k: v for k, v in settings.items() if k not in ("n_timesteps", "policy")}
    return PSDRL(settings["policy"], make_env(f"DeepSea{size}-v0", seed), seed=seed, verbose=0, **hp)


def main() -> None:
    p = run_arguments()
    p.add_argument("--after-success", type=int, default=50)
    p.add_argument("--out", required=True)
    p.add_argument("--max-wall-seconds", type=float, default=0.0, help="stop (and write the JSON) after this long")
    args = p.parse_args()

    settings = load_settings(args.size, args.set)
    model = build_model(args.size, args.seed, settings)
    rec = DeepSeaRecorder(args.size, args.episodes, args.after_success, args.max_wall_seconds)
    with Timer() as timer:
        model.learn(total_timesteps=args.size * args.episodes, callback=rec)
    summary = rec.summary()
    print(
        f"PSDRL N={args.size} seed {args.seed}: {summary} rounds {model.n_training_rounds} "
        f"wall {timer.wall_seconds:.0f}s cpu {timer.cpu_seconds:.0f}s",
        flush=True,
    )
    config = dict(
        size=args.size,
        episode_budget=args.episodes,
        after_success=args.after_success,
        max_wall_seconds=args.max_wall_seconds,
        overrides=args.set,
        settings={k: str(v) for k, v in settings.items()},
    )
    assert model.replay_buffer is not None
    episodes = list(model.replay_buffer.all_episodes())
    # How repetitive the replay is: what a refit with distinct_histories=True runs over, against every transition.
    replay = dict(transitions=model.replay_buffer.n_transitions(), distinct_histories=len(history_tree(episodes).counts))
    results = dict(summary=summary, returns=rec.returns, n_training_rounds=model.n_training_rounds, replay=replay)
    write_result(
        args.out,
        result_record(
            benchmark="deepsea",
            experiment="run_psdrl",
            algorithm="PSDRL",
            env=f"DeepSea{args.size}-v0",
            seed=args.seed,
            config=config,
            results=results,
            cpu_seconds=round(timer.cpu_seconds, 2),
            wall_seconds=round(timer.wall_seconds, 2),
        ),
    )


if __name__ == "__main__":
    main()
