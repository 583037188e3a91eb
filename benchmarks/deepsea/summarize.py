"""Table of the DeepSea runs in results/: episodes until the goal was first reached, seeds solved within the budget.

python -m benchmarks.deepsea.summarize > benchmarks/deepsea/results/summary.md
python -m benchmarks.deepsea.summarize results/learned_features_only   # the runs in a subfolder (with the DQN runs)
"""

from __future__ import annotations

import os
import sys

from benchmarks.common import read_results

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    psdrl_dir = os.path.join(HERE, sys.argv[1] if len(sys.argv) > 1 else "results")
    runs = read_results(os.path.join(HERE, "results", "dqn_*.json"), os.path.join(psdrl_dir, "psdrl_*.json"))
    for r in runs:  # the fields of the tables
        r.update(size=r["config"]["size"], algo=r["algorithm"], episode_budget=r["config"]["episode_budget"])
    runs.sort(key=lambda r: (r["size"], r["algo"], r["seed"]))
    print(
        "| N | algo | seed | episode budget | episodes run | first goal at episode | goals | goal rate after the first "
        "| cells visited | CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        s = r["results"]["summary"]
        returns = r["results"]["returns"]
        first = s["first_success_episode"]
        after = returns[first:] if first is not None else []
        rate = f"{sum(x > 0.5 for x in after) / len(after):.2f} ({len(after)} ep.)" if after else "-"
        cells = f"{s['cells_visited']} / {s['cells_reachable']}" if "cells_visited" in s else "-"
        print(
            f"| {r['size']} | {r['algo']} | {r['seed']} | {r['episode_budget']} | {len(returns)} | {first or '-'} | "
            f"{s['n_successes']} | {rate} | {cells} | {r['cpu_seconds']:.0f} |"
        )
    print()
    print("| N | algo | seeds | reached the goal within the budget | first goal at episode (per seed) |")
    print("|---|---|---|---|---|")
    groups: dict[tuple[int, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["size"], r["algo"]), []).append(r)
    for (size, algo), rs in sorted(groups.items()):
        firsts = [r["results"]["summary"]["first_success_episode"] for r in rs]
        solved = sum(f is not None for f in firsts)
        budget = rs[0]["episode_budget"]
        print(
            f"| {size} | {algo} | {len(rs)} | {solved}/{len(rs)} (budget {budget}) | "
            f"{', '.join(str(f or '-') for f in firsts)} |"
        )
    # The same budget for both methods: the smaller of their budgets at each size (a run's returns hold every episode,
    # so "reached the goal within B episodes" is read off a longer run too).
    print()
    print("| N | equal budget B (episodes) | algo | seeds | reached the goal within B |")
    print("|---|---|---|---|---|")
    for size in sorted({size for size, _ in groups}):
        algos = {algo: rs for (n, algo), rs in groups.items() if n == size}
        if len(algos) < 2:
            continue
        budget = min(r["episode_budget"] for rs in algos.values() for r in rs)
        for algo, rs in sorted(algos.items()):
            within = sum(any(x > 0.5 for x in r["results"]["returns"][:budget]) for r in rs)
            print(f"| {size} | {budget} | {algo} | {len(rs)} | {within}/{len(rs)} |")


if __name__ == "__main__":
    main()
