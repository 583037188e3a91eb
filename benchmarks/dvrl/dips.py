"""DVRL's dips, window by window: each low 5k-step window of training beside what the train log recorded of the acting
policy at its end; in docs/dvrl.md, "The dips at noise 0.5, window by window".

For every run (run_zoo.py results with ``--train-log``) and every train-log record after ``SETTLED_STEP``, the mean
return of the training episodes that ended in the ``WINDOW`` steps up to the record is paired with the record's
statistics of that rollout: the norm of the actor's input features (for DVRL the particle GRU's final state, at most
``sqrt(h_dim)``; for the RNN its GRU state), the particles' effective sample size (DVRL only), the mean ``|u|`` of the
action head's raw output, the clipped fraction of the sampled actions and the A2C gradient norm. Printed: the windows
below ``--below`` per run, and per method and environment the correlation over all pairs of the window return with
each statistic. A walk out of the action box shows as a clipped fraction near 1 and a large ``|u|``; saturated
features as a norm near ``sqrt(h_dim)``. From the repository root::

    python -m benchmarks.dvrl.dips benchmarks/dvrl/results/belief/*_MountainHikeNoise0p5-v0_s*.json
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from typing import Any

import numpy as np

from benchmarks.common import read_result
from benchmarks.dvrl.probe_table import SETTLED_STEP
from benchmarks.dvrl.summarize import WINDOW, window_return

#: The train log's statistics paired with each window, in the order they are printed.
STATISTICS = ("actor_feature_norm", "ess", "actor_output_abs_mean", "clipped_fraction", "grad_norm_a2c")


def window_pairs(run: dict[str, Any]) -> list[tuple[float, float, dict[str, float]]]:
    """
    The (log step, window return, statistics) of every train-log record after ``SETTLED_STEP`` whose window holds an
    episode.

    :param run: A run_zoo result.
    :return: One entry per record, in the order of the log.
    """
    results = run["results"]
    episodes = {"episodes": results["episodes"]}
    pairs = []
    for record in results.get("train_log") or []:
        step = float(record["step"])
        if step <= SETTLED_STEP:
            continue
        mean = window_return(episodes, int(step))
        if np.isfinite(mean):
            pairs.append((step, mean, {name: float(record.get(name, np.nan)) for name in STATISTICS}))
    return pairs


def correlations(pairs: list[tuple[float, float, dict[str, float]]]) -> dict[str, float]:
    """
    Pearson correlation of the window return with each statistic, over the pairs where the statistic is finite.

    :param pairs: :func:`window_pairs` of one or more runs.
    :return: ``{statistic: r}`` (NaN with fewer than 3 pairs or no spread).
    """
    out = {}
    for name in STATISTICS:
        kept = [(ret, stats[name]) for _, ret, stats in pairs if np.isfinite(stats[name])]
        if len(kept) < 3:
            out[name] = float("nan")
            continue
        returns, values = np.array(kept).T
        out[name] = float(np.corrcoef(returns, values)[0, 1]) if returns.std() > 0 and values.std() > 0 else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="run_zoo.py result files (with --train-log)")
    parser.add_argument("--below", type=float, default=-230.0, help="list the windows whose mean return is below this")
    args = parser.parse_args()
    pooled: dict[tuple[str, str], list[tuple[float, float, dict[str, float]]]] = defaultdict(list)
    print(f"#### Windows below {args.below:g} after {SETTLED_STEP // 1000}k steps ({WINDOW}-step windows)\n")
    print("| run | seed | windows | below | step: return (" + ", ".join(STATISTICS) + ") |")
    print("|---|---|---|---|---|")
    for path in sorted(args.results, key=os.path.basename):
        run = read_result(path)
        pairs = window_pairs(run)
        pooled[(run["algorithm"], run["env"])].extend(pairs)
        low = [
            f"{step / 1000:.0f}k: {ret:.0f} ({', '.join(f'{stats[name]:.2f}' for name in STATISTICS)})"
            for step, ret, stats in pairs
            if ret < args.below
        ]
        label = f"{run['algorithm']} {run['env']}"
        print(f"| {label} | {run['seed']} | {len(pairs)} | {len(low)} | {'; '.join(low) or '-'} |")
    print("\n#### Correlation of the window return with the train log's statistics (all windows of all seeds)\n")
    print("| method | environment | windows | " + " | ".join(STATISTICS) + " |")
    print("|---|---|---|" + "---|" * len(STATISTICS))
    for (algorithm, env), pairs in sorted(pooled.items()):
        r = correlations(pairs)
        print(f"| {algorithm} | {env} | {len(pairs)} | " + " | ".join(f"{r[name]:.2f}" for name in STATISTICS) + " |")


if __name__ == "__main__":
    main()
