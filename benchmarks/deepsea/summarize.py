"""Table of the DeepSea runs in results/: episodes until the goal was first reached, seeds solved within the budget.

python benchmarks/deepsea/summarize.py > benchmarks/deepsea/results/summary.md
"""

from __future__ import annotations

import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    runs = []
    for path in sorted(glob.glob(os.path.join(HERE, "results", "*.json"))):
        with open(path) as f:
            runs.append(json.load(f))
    runs.sort(key=lambda r: (r["size"], r["algo"], r["seed"]))
    print(
        "| N | algo | seed | episode budget | episodes run | first goal at episode | goals | goal rate after the first "
        "| CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        s = r["summary"]
        returns = r["returns"]
        first = s["first_success_episode"]
        after = returns[first:] if first is not None else []
        rate = f"{sum(x > 0.5 for x in after) / len(after):.2f} ({len(after)} ep.)" if after else "-"
        print(
            f"| {r['size']} | {r['algo']} | {r['seed']} | {r['episode_budget']} | {len(returns)} | {first or '-'} | "
            f"{s['n_successes']} | {rate} | {r['cpu_s']:.0f} |"
        )
    print()
    print("| N | algo | seeds | reached the goal within the budget | first goal at episode (per seed) |")
    print("|---|---|---|---|---|")
    groups: dict[tuple[int, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["size"], r["algo"]), []).append(r)
    for (size, algo), rs in sorted(groups.items()):
        firsts = [r["summary"]["first_success_episode"] for r in rs]
        solved = sum(f is not None for f in firsts)
        budget = rs[0]["episode_budget"]
        print(
            f"| {size} | {algo} | {len(rs)} | {solved}/{len(rs)} (budget {budget}) | "
            f"{', '.join(str(f or '-') for f in firsts)} |"
        )


if __name__ == "__main__":
    main()
