"""Return vs environment steps, PETS vs SAC, one panel per env (mean over seeds and each seed) -> pets_vs_sac.png.

The curve of a run at step t is the return of its latest finished episode (a step function); the mean is taken over
seeds on a common grid of steps.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import read_results  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ENVS = ["Pendulum-v1", "InvertedPendulum-v5"]
COLORS = {"PETS": "tab:blue", "SAC": "tab:orange"}


def load(algo: str, env: str) -> list[dict]:
    runs = read_results(os.path.join(HERE, "results", f"{algo.lower()}_{env}_s*.json"))
    return [r for r in runs if not r["config"].get("overrides")]


def episodes(run: dict) -> list[dict]:
    return run["results"]["episodes"]


def step_curve(run: dict, grid: np.ndarray) -> np.ndarray:
    ends = np.array([e["end_step"] for e in episodes(run)])
    rets = np.array([e["ret"] for e in episodes(run)])
    idx = np.searchsorted(ends, grid, side="right") - 1
    out = np.where(idx >= 0, rets[np.clip(idx, 0, None)], np.nan)
    return np.where(grid <= run["config"]["steps"], out, np.nan)


def main() -> None:
    fig, axes = plt.subplots(1, len(ENVS), figsize=(13, 4.8))
    for ax, env in zip(axes, ENVS):
        for algo in ("PETS", "SAC"):
            runs = load(algo, env)
            if not runs:
                continue
            max_steps = max(r["config"]["steps"] for r in runs)
            grid = np.unique(
                np.concatenate(
                    [np.linspace(1, max_steps, 2000).astype(int), [e["end_step"] for r in runs for e in episodes(r)]]
                )
            )
            curves = np.stack([step_curve(r, grid) for r in runs])
            for r, c in zip(runs, curves):
                ax.plot(grid, c, color=COLORS[algo], lw=0.8, alpha=0.35, drawstyle="steps-post")
                if algo == "PETS" and env == "Pendulum-v1":
                    ax.plot(
                        [e["end_step"] for e in episodes(r)],
                        [e["ret"] for e in episodes(r)],
                        "o",
                        color=COLORS[algo],
                        ms=3,
                        alpha=0.5,
                    )
            valid = ~np.isnan(curves).any(axis=0)
            ax.plot(
                grid[valid],
                curves[:, valid].mean(axis=0),
                color=COLORS[algo],
                lw=2.2,
                drawstyle="steps-post",
                label=f"{algo} (mean of {len(runs)} seeds; thin: per seed)",
            )
        if env == "Pendulum-v1":
            ax.set_xscale("log")
            ax.axhline(-200, color="gray", ls="--", lw=1, label="goal -200")
            ax.axvline(800, color="gray", ls=":", lw=1)
        ax.set_title(env)
        ax.set_xlabel("environment steps" + (" (log scale)" if env == "Pendulum-v1" else ""))
        ax.set_ylabel("episode return (latest finished episode)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = os.path.join(HERE, "pets_vs_sac.png")
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()
