"""Tables (markdown), CSVs and plots from the JSON results of run_learning.py and of the continual runner.

Usage: python -m benchmarks.bayes_ddpg.summarize  (writes results/tables.md, results/learning.csv, learning_curves.png,
and for the longer InvertedPendulum-v5 runs results/learning_10k.csv, learning_curves_10k.png)
"""

import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import read_result, read_results  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ALGOS = ("bayes_ddpg", "td3", "ddpg")


#: Result folders of run_learning.py: (folder, suffix of the CSV and PNG names, table heading).
LEARNING_DIRS = (
    ("learning", "", "Learning: return at equal steps (deterministic evaluation, 5 episodes per point)"),
    ("learning_10k", "_10k", "Learning, longer budget: InvertedPendulum-v5 at 10000 steps (same settings otherwise)"),
)


def learning(folder: str = "learning", suffix: str = "", heading: str = LEARNING_DIRS[0][2]) -> list[str]:
    runs = read_results(str(RESULTS / folder / "*.json"))
    by_env: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        by_env[run["env"]][run["algorithm"]].append(run)
    with open(RESULTS / f"learning{suffix}.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["env", "algo", "seed", "steps", "eval_mean", "eval_std"])
        for run in runs:
            for point in run["results"]["curve"]:
                mean, std = point["eval_mean_return"], point["eval_std_return"]
                writer.writerow([run["env"], run["algorithm"], run["seed"], point["timesteps"], f"{mean:.2f}", f"{std:.2f}"])
    lines = ["", f"## {heading}", ""]
    lines += ["| env | algorithm | seeds | steps | final return per seed | mean final return | best-of-curve mean | "
              "train CPU s / run | train wall s / run |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    envs = sorted(by_env)
    fig, axes = plt.subplots(1, max(len(envs), 1), figsize=(6 * max(len(envs), 1), 4), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for algo in ALGOS:
            algo_runs = sorted(by_env[env].get(algo, []), key=lambda r: r["seed"])
            if not algo_runs:
                continue
            finals = [r["results"]["final_eval_mean_return"] for r in algo_runs]
            n_points = min(len(r["results"]["curve"]) for r in algo_runs)
            steps = [p["timesteps"] for p in algo_runs[0]["results"]["curve"][:n_points]]
            curves = np.array([[p["eval_mean_return"] for p in r["results"]["curve"][:n_points]] for r in algo_runs])
            best = float(curves.mean(axis=0).max())
            cpu = np.mean([r["cpu_seconds"] for r in algo_runs])
            wall = np.mean([r["wall_seconds"] for r in algo_runs])
            lines.append(
                f"| {env} | {algo} | {len(algo_runs)} | {algo_runs[0]['results']['timesteps']} | "
                f"{', '.join(f'{f:.0f}' for f in finals)} | {np.mean(finals):.0f} ± {np.std(finals):.0f} | {best:.0f} | "
                f"{cpu:.0f} | {wall:.0f} |"
            )
            mean, std = curves.mean(axis=0), curves.std(axis=0)
            ax.plot(steps, mean, label=f"{algo} ({len(algo_runs)} seeds)")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.set_title(env)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("evaluation return (mean ± std over seeds)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / f"learning_curves{suffix}.png", dpi=100)
    for env in envs:
        first = next(iter(by_env[env].values()))[0]
        steps = [p["timesteps"] for p in first["results"]["curve"]]
        lines += ["", f"{env}: mean evaluation return over seeds at each evaluation point", ""]
        lines += ["| algorithm | " + " | ".join(str(x) for x in steps) + " |", "|---|" + "---|" * len(steps)]
        for algo in ALGOS:
            algo_runs = by_env[env].get(algo, [])
            if algo_runs:
                runs_curves = [r["results"]["curve"] for r in algo_runs]
                means = [np.mean([c[k]["eval_mean_return"] for c in runs_curves if len(c) > k]) for k in range(len(steps))]
                lines.append(f"| {algo} | " + " | ".join(f"{m:.0f}" for m in means) + " |")
    plt.close(fig)
    return lines


def forgetting() -> list[str]:
    lines = ["", "## Forgetting: Pendulum gravity sequence g = 10, 4, 16 (BayesianDDPG), one row per run", ""]
    lines += ["| consolidation | return on each task right after learning it | final return on each task | "
              "forgetting per task (tasks 1, 2) | average forgetting | average final return | CPU s |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    by_variant: dict[str, list[dict]] = defaultdict(list)
    for path in sorted((RESULTS / "forgetting").glob("*.json")):
        s = read_result(str(path))["results"]
        by_variant[path.stem.rsplit("_s", 1)[0]].append(s)
        lines.append(
            f"| {path.stem} | {', '.join(f'{v:.0f}' for v in s['return_when_learned'])} | "
            f"{', '.join(f'{v:.0f}' for v in s['final_returns'])} | {', '.join(f'{v:.0f}' for v in s['forgetting'])} | "
            f"{s['average_forgetting']:.0f} | {s['average_final_return']:.0f} | {sum(s['cpu_time_s']):.0f} |"
        )
    lines += ["", "## Forgetting: the return matrix of each run (cell (i, j): return on task j after learning task i)", ""]
    lines += ["| run | task 1 after tasks 1 / 2 / 3 | task 2 after tasks 2 / 3 | task 3 after task 3 | average forgetting |",
              "|---|---|---|---|---|"]  # fmt: skip
    for path in sorted((RESULTS / "forgetting").glob("*.csv")):
        with open(path, newline="") as file:
            matrix = np.array([[float(v) for v in row[1:]] for row in list(csv.reader(file))[1:]])
        forgetting_j = [matrix[j : len(matrix) - 1, j].max() - matrix[-1, j] for j in range(len(matrix) - 1)]
        cells = [" / ".join(f"{v:.0f}" for v in matrix[j:, j]) for j in range(len(matrix))]
        lines.append(f"| {path.stem} | {' | '.join(cells)} | {np.mean(forgetting_j):.0f} |")
    lines += ["", "## Forgetting: mean ± std over the seeds of each variant", ""]
    lines += ["| variant | seeds | return right after learning each task | final return on each task | "
              "forgetting per task (tasks 1, 2) | average forgetting | average final return |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip

    def mean_std(summaries: list[dict], key: str, index: int | None = None) -> str:
        values = np.array([s[key] if index is None else s[key][index] for s in summaries])
        return f"{values.mean():.0f} ± {values.std():.0f}" if len(values) > 1 else f"{values[0]:.0f}"

    for variant, summaries in sorted(by_variant.items()):
        n_tasks = len(summaries[0]["labels"])
        lines.append(
            f"| {variant} | {len(summaries)} | "
            f"{', '.join(mean_std(summaries, 'return_when_learned', j) for j in range(n_tasks))} | "
            f"{', '.join(mean_std(summaries, 'final_returns', j) for j in range(n_tasks))} | "
            f"{', '.join(mean_std(summaries, 'forgetting', j) for j in range(n_tasks - 1))} | "
            f"{mean_std(summaries, 'average_forgetting')} | {mean_std(summaries, 'average_final_return')} |"
        )
    return lines


def main() -> None:
    lines = ["# BayesianDDPG benchmark results (generated by summarize.py)", ""]
    for folder, suffix, heading in LEARNING_DIRS:
        if (RESULTS / folder).is_dir():
            lines += learning(folder, suffix, heading)
    if (RESULTS / "forgetting").is_dir():
        lines += forgetting()
    (RESULTS / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
