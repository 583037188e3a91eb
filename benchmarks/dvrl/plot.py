"""Learning curves of the DVRL benchmark (one panel per environment) -> benchmarks/dvrl/dvrl_learning.png.

The curve of a run at step t is the mean return of its training episodes that ended in (t - 5000, t]; thick lines are
the mean over seeds, thin lines single seeds. Mountain Hike panels show the observation-free references of
results/open_loop_reference.json (uniform random actions; the best fixed walk) as dotted lines.

    python -m benchmarks.dvrl.plot
    python -m benchmarks.dvrl.plot --results benchmarks/dvrl/results/unscaled_actions \
        --out benchmarks/dvrl/results/unscaled_actions/dvrl_learning.png
"""

from __future__ import annotations

import argparse
import os
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import read_result  # noqa: E402
from benchmarks.dvrl.summarize import METHODS, NAMES, RESULTS, group, group_order, load_runs, window_return  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
COLORS = {"dvrl": "tab:blue", "rnn": "tab:orange", "ppo_lstm": "tab:green"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--out", default=os.path.join(HERE, "dvrl_learning.png"))
    args = p.parse_args()
    reference_path = os.path.join(RESULTS, "open_loop_reference.json")
    reference = read_result(reference_path)["results"] if os.path.exists(reference_path) else None
    runs = load_runs(args.results)
    by_env = group(runs)
    envs = sorted(by_env, key=group_order)
    ncols = min(3, len(envs))
    nrows = (len(envs) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(envs) :]:
        ax.axis("off")
    for ax, env in zip(axes.flat, envs):
        budget = min(r["steps"] for m in by_env[env].values() for r in m)
        grid = np.arange(2500, budget + 1, 500)
        for method in METHODS:
            mine = by_env[env].get(method, [])
            if not mine:
                continue
            curves = np.array([[window_return(r, t) for t in grid] for r in mine])
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)  # no episode ended yet
            for c in curves:
                ax.plot(grid, c, color=COLORS[method], lw=0.7, alpha=0.35)
            ax.plot(
                grid,
                np.nanmean(curves, axis=0),
                color=COLORS[method],
                lw=2,
                label=f"{NAMES[method].split(' (')[0]} ({len(mine)})",
            )
        if reference is not None and env.startswith("MountainHike"):
            ax.axhline(reference["best_open_loop_mean"], color="gray", ls=":", lw=1, label="best fixed walk")
            ax.axhline(reference["random_mean"], color="silver", ls=":", lw=1, label="random actions")
        ax.set_title(env, fontsize=9)
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("training return (last 5k steps)")
    for ax in axes.flat[: len(envs)]:
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
