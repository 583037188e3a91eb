"""Per-episode CSV (results/episodes.csv), per-run CSV (results/runs.csv) and the markdown tables of README.md
(results/tables.md) from the result JSONs."""

from __future__ import annotations

import csv
import os

import numpy as np

from benchmarks.common import read_results

HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.join(HERE, "results")


def runs(pattern: str) -> list[dict]:
    return [r for r in read_results(os.path.join(RES, pattern)) if not r["config"].get("overrides")]


def episodes(run: dict) -> list[dict]:
    return run["results"]["episodes"]


def budget(run: dict) -> int:
    return run["config"]["steps"]


def latest(run: dict, step: int) -> float | None:
    done = [e for e in episodes(run) if e["end_step"] <= step]
    return done[-1]["ret"] if done else None


def window_mean(run: dict, lo: int, hi: int) -> float | None:
    eps = [e["ret"] for e in episodes(run) if lo < e["end_step"] <= hi]
    return float(np.mean(eps)) if eps else None


def fmt(x, nd=0) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def mean_of(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def main() -> None:  # noqa: C901  (one linear report, section by section)
    all_runs = runs("*.json")
    with open(os.path.join(RES, "episodes.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["algo", "env", "seed", "episode", "end_step", "return", "length", "wall_s", "cpu_s"])
        for r in all_runs:
            for e in episodes(r):
                w.writerow(
                    [
                        r["algorithm"],
                        r["env"],
                        r["seed"],
                        e["index"],
                        e["end_step"],
                        e["ret"],
                        e["length"],
                        e["wall_s"],
                        e["cpu_s"],
                    ]
                )
    with open(os.path.join(RES, "runs.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["algo", "env", "seed", "steps", "episodes", "wall_s", "cpu_s", "hyperparams_section"])
        for r in all_runs:
            w.writerow(
                [
                    r["algorithm"],
                    r["env"],
                    r["seed"],
                    budget(r),
                    len(episodes(r)),
                    r["wall_seconds"],
                    r["cpu_seconds"],
                    r["config"]["yaml_section"],
                ]
            )

    lines: list[str] = []
    # Pendulum: by episode index (200 steps each).
    pets, sac = runs("pets_Pendulum-v1_s*.json"), runs("sac_Pendulum-v1_s*.json")
    lines += [
        "### Pendulum-v1: return per episode (200 steps each)",
        "",
        "| algo | seed | ep 0 (200) | ep 1 (400) | ep 2 (600) | ep 3 (800) | ep 4 (1000) | >= -200 by ep 3? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in (("PETS", pets), ("SAC", sac)):
        cols = []
        for r in rs:
            rets = [e["ret"] for e in episodes(r)[:5]]
            cols.append(rets + [None] * (5 - len(rets)))
            met = "yes" if any(x is not None and x >= -200 for x in rets[:4]) else "no"
            lines.append(f"| {name} | {r['seed']} | " + " | ".join(fmt(x) for x in cols[-1]) + f" | {met} |")
        if rs:
            lines.append(f"| {name} | **mean** | " + " | ".join(fmt(mean_of(c)) for c in zip(*cols)) + " | |")
    lines += ["", "(Episode 0 of PETS is random. 'by ep 3' = any of episodes 0-3, i.e. within 800 steps.)", ""]
    if sac:
        lines += [
            "SAC (rl-zoo3 Pendulum-v1 hyperparameters) for reference, longer:",
            "",
            "| seed | return at 1k steps | 5k | 10k | last episode (20k) | mean of last 5 episodes (19k-20k) |",
            "|---|---|---|---|---|---|",
        ]
        for r in sac:
            lines.append(
                f"| {r['seed']} | {fmt(latest(r, 1000))} | {fmt(latest(r, 5000))} | {fmt(latest(r, 10000))} | "
                f"{fmt(latest(r, budget(r)))} | {fmt(window_mean(r, budget(r) - 1000, budget(r)))} |"
            )
        lines.append(
            f"| **mean** | {fmt(mean_of(latest(r, 1000) for r in sac))} | {fmt(mean_of(latest(r, 5000) for r in sac))} "
            f"| {fmt(mean_of(latest(r, 10000) for r in sac))} | {fmt(mean_of(latest(r, budget(r)) for r in sac))} | "
            f"{fmt(mean_of(window_mean(r, budget(r) - 1000, budget(r)) for r in sac))} |"
        )
        lines.append("")

    # InvertedPendulum: by steps (episode lengths vary, max 1000).
    pets, sac = runs("pets_InvertedPendulum-v5_s*.json"), runs("sac_InvertedPendulum-v5_s*.json")
    if pets or sac:
        marks = [500, 1000, 1500, 2000, 2500, 3000]
        lines += [
            "### InvertedPendulum-v5: return of the latest finished episode at N environment steps (max 1000)",
            "",
            "| algo | seed | " + " | ".join(f"{m}" for m in marks) + " | episodes by 3k | first 1000-return at step |",
            "|---|---|" + "---|" * len(marks) + "---|---|",
        ]
        for name, rs in (("PETS", pets), ("SAC", sac)):
            for r in rs:
                first = next((e["end_step"] for e in episodes(r) if e["ret"] >= 1000), None)
                n3k = sum(1 for e in episodes(r) if e["end_step"] <= 3000)
                lines.append(
                    f"| {name} | {r['seed']} | " + " | ".join(fmt(latest(r, m)) for m in marks) + f" | {n3k} | {fmt(first)} |"
                )
            if rs:
                lines.append(
                    f"| {name} | **mean** | " + " | ".join(fmt(mean_of(latest(r, m) for r in rs)) for m in marks) + " | | |"
                )
        lines.append("")
        if sac and max(budget(r) for r in sac) > 3000:
            lines += [
                "SAC (defaults) for reference, longer: latest episode return at N steps",
                "",
                "| seed | 3k | 5k | 7.5k | 10k |",
                "|---|---|---|---|---|",
            ]
            for r in sac:
                lines.append(f"| {r['seed']} | " + " | ".join(fmt(latest(r, m)) for m in (3000, 5000, 7500, 10000)) + " |")
            lines.append("")

    lines += [
        "### Wall and CPU time per run (s)",
        "",
        "| algo | env | seed | steps | wall | CPU | CPU per step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in all_runs:
        lines.append(
            f"| {r['algorithm']} | {r['env']} | {r['seed']} | {budget(r)} | {r['wall_seconds']:.0f} | "
            f"{r['cpu_seconds']:.0f} | {r['cpu_seconds'] / budget(r):.3f} |"
        )
    text = "\n".join(lines) + "\n"
    open(os.path.join(RES, "tables.md"), "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
