"""Tables of the DVRL learning benchmark from results/*.json -> results/summary.csv, results/summary.md (printed too).

A run's return at step t is the mean return of its training episodes that ended in (t - WINDOW, t] (all environments,
stochastic policies, as logged by rl-zoo3's Monitor, i.e. below any VecNormalize: true returns). "final" is that value
at the group's budget; methods are compared at the same number of environment steps. Runs are grouped by environment
and step budget (and marked when their actions were rescaled to [-1, 1] by an env wrapper).

    python -m benchmarks.dvrl.summarize                                   # results/
    python -m benchmarks.dvrl.summarize --results benchmarks/dvrl/results/unscaled_actions
    python -m benchmarks.dvrl.summarize --results benchmarks/dvrl/results/belief   # the belief grid (issue #14)

Runs with evaluation episodes (``run_zoo.py --eval-episodes``) get a table of their final evaluation return next to the
references of ``<results>/references.json`` (``references.py``), and runs with a training log (``--train-log``) a
table of the ELBO, explained variance and effective sample size at the end of training.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections import defaultdict
from typing import Any

import numpy as np

from benchmarks.common import read_result, read_results

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
WINDOW = 5000
METHODS = ["dvrl", "rnn", "ppo_lstm"]
NAMES = {"dvrl": "DVRL", "rnn": "RNN (DVRL, use_particle_filter=False)", "ppo_lstm": "RecurrentPPO (ppo_lstm)"}
ENV_ORDER = [
    "MountainHikeNoise0-v0",
    "MountainHikeNoise0p1-v0",
    "MountainHikeNoise0p2-v0",
    "MountainHikeNoise0p3-v0",
    "MountainHikeNoise0p5-v0",
    "MountainHikeNoise1-v0",
    "CartPoleNoVel-v1",
    "PendulumNoVel-v1",
    "NoisyPositionCartPoleNoise0-v0",
    "NoisyPositionCartPoleNoise0p05-v0",
    "NoisyPositionCartPoleNoise0p1-v0",
    "NoisyPositionCartPoleNoise0p2-v0",
]
#: The references of references.py, in the order of the tables and plots.
REFERENCES = {
    "oracle": "oracle (true state)",
    "two_frames": "two frames",
    "memoryless": "best memoryless",
    "blind": "blind walk",
    "random": "random",
}
#: The training diagnostics of the tables and plots (keys of run_zoo.py's train_log).
DIAGNOSTICS = {"elbo": "ELBO", "explained_variance": "explained variance", "ess": "effective sample size"}


def load_runs(results: str = RESULTS) -> list[dict[str, Any]]:
    """The runs of ``results`` with the fields of the tables: method, steps, episodes."""
    runs = read_results(os.path.join(results, "*_s[0-9]*.json"))
    for run in runs:
        run.update(method=run["algorithm"], steps=run["config"]["steps"], episodes=run["results"]["episodes"])
    return runs


def rescaled(run: dict[str, Any]) -> bool:
    """Whether the run's actions went through gymnasium's RescaleAction (from the YAML or from -params)."""
    config = run["config"]
    return "RescaleAction" in config.get("config_yml", "") or any("RescaleAction" in x for x in config.get("extra_params", []))


def group(runs: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Runs by ``"<env> (<budget>k)"`` and method."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        variant = ", actions rescaled to [-1, 1]" if rescaled(run) else ""
        groups[f"{run['env']} ({run['steps'] // 1000}k{variant})"][run["method"]].append(run)
    return groups


def group_order(name: str) -> tuple[int, int, str]:
    env, budget = name.split(" (", 1)
    steps = int(budget.split("k")[0])
    return (ENV_ORDER.index(env) if env in ENV_ORDER else len(ENV_ORDER), steps + ("rescaled" in budget), env)


def label(name: str) -> str:
    """``"<env> (<budget>k, actions rescaled ...)"`` -> ``"<env>"`` plus a short mark of the variant."""
    return name.split(" (")[0] + (" (actions in [-1, 1])" if "rescaled" in name else "")


def load_references(results: str) -> dict[str, dict[str, dict[str, Any]]]:
    """The references of ``<results>/references.json`` by env id ({} without the file)."""
    path = os.path.join(results, "references.json")
    return read_result(path)["results"]["references"] if os.path.exists(path) else {}


def last_diagnostics(run: dict[str, Any]) -> dict[str, float]:
    """The last record of a run's training log ({} without one)."""
    log = run["results"].get("train_log") or []
    return log[-1] if log else {}


def final_tables(by_env: dict[str, dict[str, list[dict[str, Any]]]], envs: list[str], references: dict) -> list[str]:
    """
    The evaluation returns (deterministic, and sampled where the runs have them) with the references, and the training
    diagnostics at the budget (markdown lines; none without evaluated runs or training logs).
    """
    lines: list[str] = []
    # Deterministic actions (the policy's mean) and sampled ones (the policy that training optimised): on Mountain Hike
    # the two can differ by more than the methods do (docs/dvrl.md, "Late snapshots").
    for key, actions in (("eval_returns", "deterministic actions"), ("eval_returns_stochastic", "sampled actions")):
        evaluated = [env for env in envs if any(key in r["results"] for m in by_env[env].values() for r in m)]
        if not evaluated:
            continue
        n_eval = max(len(r["results"].get(key, [])) for env in evaluated for m in by_env[env].values() for r in m)
        lines += [
            f"\n#### Final return: {n_eval} fixed-seed evaluation episodes ({actions}), mean ± std over "
            "seeds, with the references of references.json\n",
            "| environment | budget | "
            + " | ".join(NAMES[m].split(" (")[0] for m in METHODS)
            + " | "
            + " | ".join(REFERENCES.values())
            + " |",
            "|---|---|" + "---|" * (len(METHODS) + len(REFERENCES)),
        ]
        for env in evaluated:
            cells = []
            for method in METHODS:
                runs = [r for r in by_env[env].get(method, []) if key in r["results"]]
                finals = [f for f in (float(np.mean(r["results"][key])) for r in runs) if np.isfinite(f)]
                cells.append(f"{np.mean(finals):.1f} ± {np.std(finals):.1f} ({len(finals)})" if finals else "not run")
            refs = references.get(env.split(" (")[0], {})
            cells += [f"{refs[name]['mean']:.1f}" if name in refs else "" for name in REFERENCES]
            budget = min(r["steps"] for m in by_env[env].values() for r in m)
            lines.append(f"| {label(env)} | {budget // 1000}k | " + " | ".join(cells) + " |")
    logged = [env for env in envs if any(last_diagnostics(r) for m in by_env[env].values() for r in m)]
    if logged:
        lines += [
            "\n#### Training diagnostics at the budget (last record of the training log, mean over seeds)\n",
            "| environment | method | " + " | ".join(DIAGNOSTICS.values()) + " |",
            "|---|---|" + "---|" * len(DIAGNOSTICS),
        ]
        for env in logged:
            for method in METHODS:
                records = [last_diagnostics(r) for r in by_env[env].get(method, [])]
                records = [r for r in records if r]
                if records:
                    cells = [
                        f"{np.mean([r[k] for r in records]):.3g}" if all(k in r for r in records) else "" for k in DIAGNOSTICS
                    ]
                    lines.append(f"| {label(env)} | {NAMES[method].split(' (')[0]} | " + " | ".join(cells) + " |")
    return lines


def window_return(run: dict[str, Any], t: int, window: int = WINDOW) -> float:
    rets = [e["ret"] for e in run["episodes"] if t - window < e["end_step"] <= t]
    return float(np.mean(rets)) if rets else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=RESULTS, help="folder of the result files (summary.csv / summary.md go there)")
    args = p.parse_args()
    runs = load_runs(args.results)
    by_env = group(runs)
    envs = sorted(by_env, key=group_order)

    rows = []
    # Headline: the return at the budget and the speed of each method, one row per environment
    lines = [
        f"#### Return at the budget (mean ± std over seeds, episodes that ended in the last {WINDOW} steps; seeds)\n",
        "| environment | budget | " + " | ".join(NAMES[m].split(" (")[0] for m in METHODS) + " | DVRL - RNN |",
        "|---|---|" + "---|" * len(METHODS) + "---|",
    ]
    for env in envs:
        budget = min(r["steps"] for m in by_env[env].values() for r in m)
        cells, finals = [], {}
        for method in METHODS:
            mine = by_env[env].get(method, [])
            if not mine:
                cells.append("not run")
                continue
            finals[method] = np.array([window_return(r, budget) for r in mine])
            cells.append(f"{finals[method].mean():.1f} ± {finals[method].std():.1f} ({len(mine)})")
        diff = f"{finals['dvrl'].mean() - finals['rnn'].mean():+.1f}" if {"dvrl", "rnn"} <= set(finals) else ""
        lines.append(f"| {label(env)} | {budget // 1000}k | " + " | ".join(cells) + f" | {diff} |")
    lines += [
        "\n#### Environment steps per CPU second of the whole rl-zoo3 process (mean over seeds)\n",
        "| environment | budget | " + " | ".join(NAMES[m].split(" (")[0] for m in METHODS) + " |",
        "|---|---|" + "---|" * len(METHODS),
    ]
    for env in envs:
        cells = []
        for method in METHODS:
            mine = by_env[env].get(method, [])
            cells.append(f"{np.mean([r['steps'] / r['cpu_seconds'] for r in mine]):.0f}" if mine else "not run")
        budget = min(r["steps"] for m in by_env[env].values() for r in m)
        lines.append(f"| {label(env)} | {budget // 1000}k | " + " | ".join(cells) + " |")
    lines += final_tables(by_env, envs, load_references(args.results))
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
            cpu = np.array([r["cpu_seconds"] for r in mine])
            steps_per_cpu = np.array([r["steps"] / r["cpu_seconds"] for r in mine])
            for r, v in zip(mine, values):
                returns = {f"return_{c}": round(x, 2) for c, x in zip(checkpoints, v)}
                rows.append(
                    dict(env=env, method=method, seed=r["seed"], steps=r["steps"], final_return=round(v[-1], 2),
                         cpu_s=r["cpu_seconds"], wall_s=r["wall_seconds"], **returns)
                )  # fmt: skip
            mean, std = values.mean(axis=0), values.std(axis=0)
            cells = " | ".join(f"{m:.1f} ± {s:.1f}" for m, s in zip(mean, std))
            lines.append(f"| {NAMES[method]} | {len(mine)} | {cells} | {cpu.mean():.0f} | {steps_per_cpu.mean():.0f} |")
        per_seed = []
        for method in METHODS:
            for r in sorted(by_env[env].get(method, []), key=lambda r: r["seed"]):
                per_seed.append(f"{NAMES[method].split(' ')[0]} s{r['seed']}: {window_return(r, budget):.1f}")
        lines.append("\nPer seed at " + f"{budget // 1000}k: " + "; ".join(per_seed))

    with open(os.path.join(args.results, "summary.csv"), "w", newline="") as f:
        keys = sorted({k for r in rows for k in r}, key=lambda k: (not k.startswith(("env", "method", "seed")), k))
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.results, "summary.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
