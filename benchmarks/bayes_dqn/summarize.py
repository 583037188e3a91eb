"""Collect the JSON results of run_learning.py into CSV tables and a plot of the learning curves.

Usage: python -m benchmarks.bayes_dqn.summarize [--results benchmarks/bayes_dqn/results/learning]
    [--deepsea benchmarks/bayes_dqn/results/deepsea]
Writes: results/learning_curves.csv (every evaluation), results/learning_summary.csv (one row per run),
results/learning_table.csv (per algorithm and task: mean +- std over seeds), learning_curves.png, and from the runs of
benchmarks.bayes_dqn.deepsea results/deepsea_table.csv (episodes to the first goal and to bsuite's solve, per seed).
"""

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.common import read_results

NAMES = {"bbb": "BayesianDQN (bbb)", "blr": "BayesianDQN (blr)", "ensemble": "BayesianDQN (ensemble)", "dqn": "DQN"}


def fmt(value: float, decimals: int = 1) -> str:
    """A return with ``decimals`` decimals, or with 4 if it is below 1 in magnitude (DeepSea's returns are ~ -0.005)."""
    return f"{value:.{decimals}f}" if abs(value) >= 1 else f"{value:.4f}"


def summarize_deepsea(folder: Path) -> None:
    """
    ``deepsea_table.csv`` next to ``folder`` (the runs of ``benchmarks.bayes_dqn.deepsea``): per setting and size, the
    episodes to the first goal and to bsuite's solve (running bad fraction below 0.9) of every seed (None: not within the
    budget) and the CPU and wall seconds.
    """
    runs = read_results(str(folder / "*.json"))
    by_setting: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for run in runs:
        by_setting[(run["algorithm"], run["config"]["size"])].append(run)
    with open(folder.parent / "deepsea_table.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["algorithm", "size", "seeds", "episode_budget", "first_goal", "solved", "episodes_run", "cpu_s", "wall_s"]
        )
        for (algorithm, size), group in sorted(by_setting.items()):
            group.sort(key=lambda run: run["seed"])
            summaries = [run["results"]["summary"] for run in group]
            row = [
                algorithm,
                size,
                " ".join(str(run["seed"]) for run in group),
                " ".join(str(run["config"]["episode_budget"]) for run in group),
                " ".join(str(summary["first_success_episode"]) for summary in summaries),
                " ".join(str(summary["solved_episode"]) for summary in summaries),
                " ".join(str(summary["episodes"]) for summary in summaries),
                " ".join(f"{run['cpu_seconds']:.0f}" for run in group),
                " ".join(f"{run['wall_seconds']:.0f}" for run in group),
            ]
            writer.writerow(row)
            print(*row, sep=" | ")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", default="benchmarks/bayes_dqn/results/learning")
    parser.add_argument("--deepsea", default="benchmarks/bayes_dqn/results/deepsea")
    args = parser.parse_args()
    if Path(args.deepsea).is_dir():
        summarize_deepsea(Path(args.deepsea))
    folder = Path(args.results)
    runs = read_results(str(folder / "*.json"))
    for run in runs:  # the fields of the tables
        run.update(run["results"], algo=run["algorithm"], steps=run["config"]["steps"])
    out = folder.parent
    with open(out / "learning_curves.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["algo", "env", "seed", "timesteps", "eval_mean_return", "train_episodes", "train_successes"])
        for run in runs:
            for point in run["curve"]:
                writer.writerow(
                    [
                        run["algo"],
                        run["env"],
                        run["seed"],
                        point["timesteps"],
                        point["eval_mean_return"],
                        point["train_episodes"],
                        point["train_successes"],
                    ]
                )
    by_task: dict[tuple[str, str], list[dict]] = defaultdict(list)
    with open(out / "learning_summary.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            [
                "algo",
                "env",
                "seed",
                "steps",
                "final_eval",
                "mean_last3_eval",
                "train_mean_last20",
                "train_successes",
                "first_success_episode",
                "train_cpu_s",
                "train_wall_s",
            ]
        )
        for run in runs:
            evals = [p["eval_mean_return"] for p in run["curve"]]
            row = dict(
                final=evals[-1],
                last3=float(np.mean(evals[-3:])),
                all_evals=float(np.mean(evals)),
                train=float(np.mean(run["last_train_returns"])) if run["last_train_returns"] else float("nan"),
                successes=run["curve"][-1]["train_successes"],
                cpu=run["cpu_seconds"],
            )
            by_task[(run["env"], run["algo"])].append(row)
            writer.writerow(
                [
                    run["algo"],
                    run["env"],
                    run["seed"],
                    run["steps"],
                    fmt(row["final"], 2),
                    fmt(row["last3"], 2),
                    fmt(row["train"], 2),
                    row["successes"],
                    run["first_success_episode"],
                    f"{run['cpu_seconds']:.1f}",
                    f"{run['wall_seconds']:.1f}",
                ]
            )
    with open(out / "learning_table.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            [
                "env",
                "algo",
                "n_seeds",
                "final_eval_mean",
                "final_eval_std",
                "last3_eval_mean",
                "all_evals_mean",
                "train_last20_mean",
                "train_successes_mean",
                "cpu_s_mean",
            ]
        )
        for (env, algo), rows in sorted(by_task.items()):
            finals = [r["final"] for r in rows]
            writer.writerow(
                [
                    env,
                    algo,
                    len(rows),
                    fmt(np.mean(finals)),
                    fmt(np.std(finals)),
                    fmt(np.mean([r["last3"] for r in rows])),
                    fmt(np.mean([r["all_evals"] for r in rows])),
                    fmt(np.mean([r["train"] for r in rows])),
                    f"{np.mean([r['successes'] for r in rows]):.1f}",
                    f"{np.mean([r['cpu'] for r in rows]):.0f}",
                ]
            )
            print(env, algo, len(rows), f"final {fmt(np.mean(finals))} +- {fmt(np.std(finals))}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    envs = sorted({run["env"] for run in runs})
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for algo in NAMES:
            curves = [run["curve"] for run in runs if run["env"] == env and run["algo"] == algo]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            steps = np.array([p["timesteps"] for p in curves[0][:length]])
            values = np.array([[p["eval_mean_return"] for p in c[:length]] for c in curves])
            mean, std = values.mean(0), values.std(0)
            ax.plot(steps, mean, label=f"{NAMES[algo]} ({len(curves)} seeds)")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.set_title(env)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("evaluation return (mean weights)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder.parent.parent / "learning_curves.png", dpi=110)


if __name__ == "__main__":
    main()
