"""
One PSDRL run on DeepSea with the settings of `hyperparams/psdrl.yml` (section `DeepSea<N>-v0`), optionally overridden.

python benchmarks/deepsea/run_psdrl.py --size 10 --seed 0 --episodes 1000 --out benchmarks/deepsea/results/psdrl_N10_s0.json \
    [--set value_max_states=1024 --set policy_kwargs.reward_prior_scale=1.0] [--after-success 50]

The run stops at the episode budget or `--after-success` episodes after the goal was first reached (to save CPU; the
success rate over those episodes is reported).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import torch

torch.set_num_threads(1)

import yaml  # noqa: E402
from common import REPO_ROOT, coverage, cpu_seconds, machine_info, record_cells, save_json, summarize_episodes  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

import sb3_bayes.envs  # noqa: E402,F401  (registers DeepSea)
from sb3_bayes import PSDRL  # noqa: E402


class StopAfterSuccess(BaseCallback):
    """Records episode returns; stops `after` episodes after the first success (0: never) or at the budget."""

    def __init__(self, budget: int, after: int, size: int) -> None:
        super().__init__()
        self.returns: list[float] = []
        self.round_at_episode: list[int] = []
        self.budget, self.after, self.first, self.size = budget, after, None, size
        self.cells: set[tuple[int, int]] = set()
        self.t0 = time.perf_counter()

    def _on_step(self) -> bool:
        record_cells(self.locals["infos"], self.cells)
        for info in self.locals["infos"]:
            if "episode" in info:
                self.returns.append(round(float(info["episode"]["r"]), 4))
                if self.first is None and self.returns[-1] > 0.5:
                    self.first = len(self.returns)
                n = len(self.returns)
                if n % 50 == 0:
                    print(
                        f"episode {n}: successes {sum(r > 0.5 for r in self.returns)} first {self.first} "
                        f"cells {coverage(self.cells, self.size)['cells_visited']} "
                        f"{time.perf_counter() - self.t0:.0f}s",
                        flush=True,
                    )
        n = len(self.returns)
        if n >= self.budget:
            return False
        return not (self.after > 0 and self.first is not None and n >= self.first + self.after)


def load_settings(size: int, overrides: list[str]) -> dict[str, Any]:
    with open(os.path.join(REPO_ROOT, "hyperparams", "psdrl.yml")) as f:
        section = dict(yaml.load(f, Loader=yaml.UnsafeLoader)[f"DeepSea{size}-v0"])
    section["policy_kwargs"] = eval(section["policy_kwargs"])
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
    """PSDRL on a seeded ``DeepSea<size>-v0`` with the settings of :func:`load_settings`."""
    hp = {k: v for k, v in settings.items() if k not in ("n_timesteps", "policy")}
    env = make_vec_env(f"DeepSea{size}-v0", n_envs=1, seed=seed)
    return PSDRL(settings["policy"], env, seed=seed, verbose=0, **hp)


def main() -> None:
    p = run_arguments()
    p.add_argument("--after-success", type=int, default=50)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    settings = load_settings(args.size, args.set)
    model = build_model(args.size, args.seed, settings)
    rec = StopAfterSuccess(args.episodes, args.after_success, args.size)
    t0, c0 = time.perf_counter(), cpu_seconds()
    model.learn(total_timesteps=args.size * args.episodes, callback=rec)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    summary = {**summarize_episodes(rec.returns), **coverage(rec.cells, args.size)}
    if rec.first is not None:
        after = [r > 0.5 for r in rec.returns[rec.first :]]
        summary["success_rate_after_first"] = round(sum(after) / max(len(after), 1), 3)
    print(
        f"PSDRL N={args.size} seed {args.seed}: {summary} rounds {model.n_training_rounds} wall {wall:.0f}s cpu {cpu:.0f}s",
        flush=True,
    )
    save_json(
        args.out,
        dict(
            algo="PSDRL",
            size=args.size,
            seed=args.seed,
            episode_budget=args.episodes,
            after_success=args.after_success,
            overrides=args.set,
            settings={k: str(v) for k, v in settings.items()},
            summary=summary,
            returns=rec.returns,
            n_training_rounds=model.n_training_rounds,
            wall_s=round(wall, 2),
            cpu_s=round(cpu, 2),
            machine=machine_info(),
        ),
    )


if __name__ == "__main__":
    main()
