"""Table of the PSDRL speed runs in results/ against the original's times on the same kind of machine.

python -m benchmarks.psdrl_speed.summarize > benchmarks/psdrl_speed/results/summary.md
"""

from __future__ import annotations

import os

from benchmarks.common import read_result

HERE = os.path.dirname(os.path.abspath(__file__))
# The original implementation on a 2-core CPU of this kind, Pong, paper sizes, 763-transition replay (measured before
# this project, see README.md): seconds per pass (one iteration) of each component, and per action.
ORIGINAL = dict(autoencoder=266.0, transition_terminal=202.0, posterior=91.0, value=440.0, act_ms=126.0)


def load(name: str) -> dict | None:
    """A run of results/, with its components' times in ``"components"`` (None if it is not there)."""
    path = os.path.join(HERE, "results", name)
    if not os.path.exists(path):
        return None
    record = read_result(path)
    return dict(record, components=record["results"]["components"])


def main() -> None:
    names = (
        "round_800_fp32",
        "round_800_bf16",
        "round_10k_fp32",
        "round_10k_model",
        "round_10k_autoencoder",
        "act_quiet_1thread",
        "act_quiet_2thread",
    )
    runs = {name: load(f"{name}.json") for name in names}
    # The 10k column merges the separate runs at 10,000 transitions (each run measured some components).
    parts_10k = [runs[name] for name in ("round_10k_fp32", "round_10k_model", "round_10k_autoencoder") if runs[name]]
    merged_10k = None
    if parts_10k:
        merged_10k = dict(components={k: v for run in parts_10k for k, v in run["components"].items() if k != "round"})
    original_round = (
        3 * (ORIGINAL["autoencoder"] + ORIGINAL["transition_terminal"] + ORIGINAL["value"]) + ORIGINAL["posterior"]
    )
    print(
        "| component | original, 763 transitions (s per round) | ours, 846 transitions: CPU s (wall s) | speed-up (CPU) "
        "| ours, 10k transitions: CPU s (wall s) |"
    )
    print("|---|---|---|---|---|")
    small, large = runs["round_800_fp32"], merged_10k
    total_small = total_large = 0.0
    for key, label in (
        ("autoencoder", "autoencoder (3 iterations)"),
        ("transition_terminal", "transition + terminal (3 iterations)"),
        ("posterior", "Bayesian linear regression (whole replay)"),
        ("value", "value fit (3 passes)"),
    ):
        original = ORIGINAL[key] * (1 if key == "posterior" else 3)
        cells = []
        for run, scale_to_three in ((small, False), (large, True)):
            if run is None or key not in run["components"]:
                cells.append("-")
                continue
            r = run["components"][key]
            factor = 3 / r["iterations"] if scale_to_three and key in ("autoencoder", "transition_terminal") else 1
            cpu, wall = r["cpu_s"] * factor, r["wall_s"] * factor
            note = " (1 iteration x 3)" if factor != 1 else ""
            cells.append(f"{cpu:.0f} ({wall:.0f}){note}")
            if run is small:
                total_small += cpu
            else:
                total_large += cpu
        speedup = "-"
        if small is not None and key in small["components"]:
            speedup = f"{original / small['components'][key]['cpu_s']:.1f}x"
        print(f"| {label} | {original:.0f} | {cells[0]} | {speedup} | {cells[1]} |")
    speedup_round = f"{original_round / total_small:.1f}x" if total_small else "-"
    complete_large = large is not None and all(
        k in large["components"] for k in ("autoencoder", "transition_terminal", "posterior", "value")
    )
    large_cell = f"{total_large:.0f}" if complete_large else "- (not all parts measured)"
    print(f"| **round** | {original_round:.0f} | {total_small:.0f} | {speedup_round} | {large_cell} |")
    print()
    print("| acting | original | ours float32: CPU ms (wall ms) | speed-up (CPU) | ours bfloat16 autocast: CPU ms (wall ms) |")
    print("|---|---|---|---|---|")
    cells = []
    for run in (small, runs["round_800_bf16"]):
        act = run["components"].get("act") if run is not None else None
        cells.append(f"{act['ms_per_action_cpu']:.0f} ({act['ms_per_action_wall']:.0f})" if act else "-")
    speed = "-"
    if small is not None and "act" in small["components"]:
        speed = f"{ORIGINAL['act_ms'] / small['components']['act']['ms_per_action_cpu']:.1f}x"
    print(f"| ms per action | {ORIGINAL['act_ms']:.0f} | {cells[0]} | {speed} | {cells[1]} |")
    quiet = [(name, runs[name]) for name in ("act_quiet_1thread", "act_quiet_2thread") if runs[name] is not None]
    if quiet:
        print()
        print("Acting with the other jobs on the machine paused (float32):")
        print()
        print("| threads | CPU ms per action | wall ms per action | speed-up (wall) against 126 ms |")
        print("|---|---|---|---|")
        for _, run in quiet:
            act = run["components"]["act"]
            print(
                f"| {run['config']['threads']} | {act['ms_per_action_cpu']:.1f} | {act['ms_per_action_wall']:.1f} "
                f"| {ORIGINAL['act_ms'] / act['ms_per_action_wall']:.2f}x |"
            )
    bf16 = runs["round_800_bf16"]
    if bf16 is not None and small is not None and "value" in bf16["components"]:
        print()
        print(
            f"Value fit (3 passes, 846 transitions): float32 {small['components']['value']['cpu_s']:.0f} CPU s, "
            f"bfloat16 autocast {bf16['components']['value']['cpu_s']:.0f} CPU s."
        )
    print()
    for name, run in runs.items():
        if run is not None:
            replay = run["results"]
            print(
                f"- `{name}`: {replay['transitions']} transitions (episodes {replay['episode_lengths']}), replay "
                f"{replay['replay_bytes']} bytes = {replay['bytes_per_transition']:.0f} bytes per transition, "
                f"{replay['n_parameters']:,} parameters, load average at the end {run['machine']['load_average']}; "
                f"`{run['command']}`"
            )


if __name__ == "__main__":
    main()
