"""The table of the action probes (``results/action_probe/``), one row per run; in docs/dvrl.md, "The remedy" and
"The actor's statistics, and a penalty on its pre-activation".

Each row: the settings that differ from the YAML (``run_zoo.py --params``), the seed, whether the CPU has AVX-512 (runs of
one seed on CPUs with different vector units follow different floating-point paths and so different trajectories), the
training return at the end and its worst 5k-step window after 100k steps (a collapse shows as a window near -455), the
final evaluation (deterministic / sampled, 100 episodes), and from the train log the policy's standard deviation, the
clipped fraction of the sampled actions and the mean ``|u|`` of the action head's raw output (pre-``tanh`` with the
bounded mean) at the end and at its largest. From the repository root::

    python -m benchmarks.dvrl.probe_table benchmarks/dvrl/results/action_probe/dvrl_boundedmean_ent0.0_*.json
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from benchmarks.common import read_result
from benchmarks.dvrl.summarize import WINDOW, window_return

#: Windows before this step are not searched for the worst one (every run starts far below its final return).
SETTLED_STEP = 100_000


def window_returns(episodes: list[dict[str, Any]], steps: int) -> np.ndarray:
    """
    Mean training return per ``WINDOW``-step window (summarize.py's :func:`window_return` at every window's end).

    :param episodes: The run's ``results.episodes`` (``end_step``: the steps of all environments together when the
        episode ended).
    :param steps: The run's budget.
    :return: ``[steps // WINDOW]`` means (NaN where no episode ended).
    """
    run = {"episodes": episodes}
    return np.array([window_return(run, (index + 1) * WINDOW) for index in range(steps // WINDOW)])


def row(run: dict[str, Any]) -> list[str]:
    """One table row of a run_zoo result."""
    results, config = run["results"], run["config"]
    windows = window_returns(results["episodes"], int(config["steps"]))
    settled = windows[SETTLED_STEP // WINDOW :]
    log = results.get("train_log") or []
    last = log[-1] if log else {}
    peak_u = max((float(record.get("actor_output_abs_mean", np.nan)) for record in log), default=np.nan)
    flags = run["machine"].get("cpu_flags") or {}

    def number(value: Any, digits: int = 1) -> str:
        return "-" if value is None or not np.isfinite(value) else f"{float(value):.{digits}f}"

    return [
        run["algorithm"],
        " ".join(config.get("extra_params") or []) or "(YAML)",
        str(run["seed"]),
        "yes" if flags.get("avx512f") else "no",
        number(np.nanmean(windows[-10:])),
        number(np.nanmin(settled) if settled.size else np.nan),
        f"{number(np.mean(results['eval_returns']))} / {number(np.mean(results['eval_returns_stochastic']))}",
        number(last.get("std"), 2),
        number(last.get("clipped_fraction"), 2),
        f"{number(last.get('actor_output_abs_mean'), 2)} / {number(peak_u, 2)}",
        number(run["cpu_seconds"], 0),
    ]


HEADER = [
    "algorithm",
    "settings beyond the YAML",
    "seed",
    "AVX-512",
    "training return, last 50k",
    "worst 5k window after 100k",
    "evaluation, deterministic / sampled",
    "std at the end",
    "clipped fraction at the end",
    "mean abs(u) at the end / largest",
    "CPU s",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="run_zoo.py result files (with --eval-episodes and --train-log)")
    args = parser.parse_args()
    rows = [row(read_result(path)) for path in sorted(args.results, key=os.path.basename)]
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
