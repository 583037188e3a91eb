"""Learning curves of the DVRL benchmark (one panel per environment) -> benchmarks/dvrl/dvrl_learning.png.

The curve of a run at step t is the mean return of its training episodes that ended in (t - 5000, t]; thick lines are
the mean over seeds, thin lines single seeds. With ``<results>/references.json`` (references.py) every panel shows its
env's references (oracle, two frames, best memoryless, blind walk) as dotted lines and the runs' final evaluation
returns as markers with error bars (mean ± std over seeds) at the budget; without it, Mountain Hike panels show the
observation-free references of results/open_loop_reference.json (uniform random actions; the best fixed walk).
``--diagnostics PNG`` also draws the training diagnostics (ELBO, explained variance, effective sample size) of runs
with a training log, one row per environment.

    python -m benchmarks.dvrl.plot
    python -m benchmarks.dvrl.plot --results benchmarks/dvrl/results/belief --out benchmarks/dvrl/belief_learning.png \
        --diagnostics benchmarks/dvrl/belief_diagnostics.png
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
from benchmarks.dvrl.summarize import (  # noqa: E402
    DIAGNOSTICS,
    METHODS,
    NAMES,
    REFERENCES,
    RESULTS,
    group,
    group_order,
    load_references,
    load_runs,
    window_return,
)

HERE = os.path.dirname(os.path.abspath(__file__))
COLORS = {"dvrl": "tab:blue", "rnn": "tab:orange", "ppo_lstm": "tab:green"}
REFERENCE_STYLES = {"oracle": "black", "two_frames": "dimgray", "memoryless": "gray", "blind": "silver", "random": None}


def plot_diagnostics(by_env: dict, envs: list[str], out: str) -> None:
    """
    The training diagnostics of the runs with a training log: one row per environment, one column per quantity.

    :param by_env: Runs by environment group and method (``summarize.group``).
    :param envs: The environment groups, in order.
    :param out: The PNG file.
    """
    logged = [env for env in envs if any(r["results"].get("train_log") for m in by_env[env].values() for r in m)]
    if not logged:
        return
    fig, axes = plt.subplots(len(logged), len(DIAGNOSTICS), figsize=(4.2 * len(DIAGNOSTICS), 3.0 * len(logged)), squeeze=False)
    for row, env in zip(axes, logged):
        for ax, (key, name) in zip(row, DIAGNOSTICS.items()):
            for method in METHODS:
                for i, run in enumerate(by_env[env].get(method, [])):
                    log = [r for r in run["results"].get("train_log") or [] if key in r]
                    if log:
                        label = NAMES[method].split(" (")[0] if i == 0 else None
                        ax.plot([r["step"] for r in log], [r[key] for r in log], color=COLORS[method], lw=0.8, label=label)
            ax.set_title(f"{env.split(' (')[0]}: {name}", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        row[0].set_ylabel("last update's value")
    for ax in axes[-1]:
        ax.set_xlabel("environment steps")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--out", default=os.path.join(HERE, "dvrl_learning.png"))
    p.add_argument("--diagnostics", default=None, help="PNG of the training diagnostics (ELBO, explained variance, ESS)")
    args = p.parse_args()
    references = load_references(args.results)
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
        for method in METHODS:
            finals = [
                np.mean(r["results"]["eval_returns"]) for r in by_env[env].get(method, []) if "eval_returns" in r["results"]
            ]
            if finals:
                ax.errorbar(budget, np.mean(finals), yerr=np.std(finals), color=COLORS[method], marker="o", ms=4, capsize=3)
        env_references = references.get(env.split(" (")[0], {})
        for name, title in REFERENCES.items():
            if name in env_references and REFERENCE_STYLES[name] is not None:
                ax.axhline(env_references[name]["mean"], color=REFERENCE_STYLES[name], ls=":", lw=1, label=title)
        if reference is not None and not references and env.startswith("MountainHike"):
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
    if args.diagnostics:
        plot_diagnostics(by_env, envs, args.diagnostics)


if __name__ == "__main__":
    main()
