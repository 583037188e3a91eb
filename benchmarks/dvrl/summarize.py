"""Tables of the DVRL learning benchmark from results/*.json -> results/summary.csv, results/summary.md (printed too).

A run's return at step t is the mean return of its training episodes that ended in (t - WINDOW, t] (all environments,
stochastic policies, as logged by rl-zoo3's Monitor). "final" is that value at the run's budget; methods are compared
at the same number of environment steps. Runs are grouped by environment and step budget.

    python benchmarks/dvrl/summarize.py
"""

from __future__ import annotations

import csv
import glob
import json
import os
from collections import defaultdict
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
WINDOW = 5000
METHODS = ["dvrl", "rnn", "ppo_lstm"]
NAMES = {"dvrl": "DVRL", "rnn": "RNN (DVRL, use_particle_filter=False)", "ppo_lstm": "RecurrentPPO (ppo_lstm)"}
ENV_ORDER = [
    "MountainHikeNoise0p1-v0",
    "MountainHikeNoise0p2-v0",
    "MountainHikeNoise0p5-v0",
    "CartPoleNoVel-v1",
    "PendulumNoVel-v1",
]


def load_runs() -> list[dict[str, Any]]:
    return [json.load(open(f)) for f in sorted(glob.glob(os.path.join(RESULTS, "*_s[0-9]*.json")))]


def group(runs: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Runs by ``"<env> (<budget>k)"`` and method."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        variant = ", actions rescaled to [-1, 1]" if any("RescaleAction" in x for x in run.get("extra_params", [])) else ""
        groups[f"{run['env']} ({run['steps'] // 1000}k{variant})"][run["method"]].append(run)
    return groups


def group_order(name: str) -> tuple[int, int, str]:
    env, budget = name.split(" (", 1)
    steps = int(budget.split("k")[0])
    return (ENV_ORDER.index(env) if env in ENV_ORDER else len(ENV_ORDER), steps + ("rescaled" in budget), env)


def window_return(run: dict[str, Any], t: int, window: int = WINDOW) -> float:
    rets = [e["ret"] for e in run["episodes"] if t - window < e["end_step"] <= t]
    return float(np.mean(rets)) if rets else float("nan")


def main() -> None:
    runs = load_runs()
    by_env = group(runs)
    envs = sorted(by_env, key=group_order)

    rows = []
    lines = []
    for env in envs:
        budgets = [r["steps"] for m in by_env[env].values() for r in m]
        budget = min(budgets)  # compare at equal environment steps
        checkpoints = [budget // 5 * k for k in range(1, 6)]
        lines.append(f"\n#### {env} (mean training return of the episodes that ended in the last {WINDOW} steps)\n")
        lines.append(
            "| method | seeds | " + " | ".join(f"{c // 1000}k" for c in checkpoints) + " | CPU s / run | steps / CPU s |"
        )
        lines.append("|---|---|" + "---|" * len(checkpoints) + "---|---|")
        for method in METHODS:
            mine = sorted(by_env[env].get(method, []), key=lambda r: r["seed"])
            if not mine:
                continue
            values = np.array([[window_return(r, c) for c in checkpoints] for r in mine])
            cpu = np.array([r["cpu_s"] for r in mine])
            steps_per_cpu = np.array([r["steps"] / r["cpu_s"] for r in mine])
            for r, v in zip(mine, values):
                rows.append(
                    dict(env=env, method=method, seed=r["seed"], steps=r["steps"], final_return=round(v[-1], 2),
                         cpu_s=r["cpu_s"], wall_s=r["wall_s"], **{f"return_{c}": round(x, 2) for c, x in zip(checkpoints, v)})
                )  # fmt: skip
            mean, std = values.mean(axis=0), values.std(axis=0)
            cells = " | ".join(f"{m:.1f} ± {s:.1f}" for m, s in zip(mean, std))
            lines.append(f"| {NAMES[method]} | {len(mine)} | {cells} | {cpu.mean():.0f} | {steps_per_cpu.mean():.0f} |")
        per_seed = []
        for method in METHODS:
            for r in sorted(by_env[env].get(method, []), key=lambda r: r["seed"]):
                per_seed.append(f"{NAMES[method].split(' ')[0]} s{r['seed']}: {window_return(r, budget):.1f}")
        lines.append("\nPer seed at " + f"{budget // 1000}k: " + "; ".join(per_seed))

    with open(os.path.join(RESULTS, "summary.csv"), "w", newline="") as f:
        keys = sorted({k for r in rows for k in r}, key=lambda k: (not k.startswith(("env", "method", "seed")), k))
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS, "summary.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
