"""Print the ratio table of the PETS planning-speed benchmark from the JSON files written by run_all.sh.

Usage: python -m benchmarks.pets_speed.compare [RESULTS_DIR]   (default: benchmarks/pets_speed/results)
Needs only the standard library.
"""

from __future__ import annotations

import glob
import os
import sys

from benchmarks.common import read_result, read_results, timing_stats

GOALS = {"float32": 0.5, "bfloat16": 0.25}


def merge(pattern):
    """Pool the per-action timings of several rounds (run_all.sh interleaves the implementations round by round)."""
    runs = read_results(pattern)
    wall = [w for x in runs for w in x["results"]["wall_all_s"]]
    cpu = [c for x in runs for c in x["results"]["cpu_all_s"]]
    first = runs[0]
    return dict(
        impl=first["config"]["impl"],
        mbrl_version=first["config"].get("mbrl_version", ""),
        dtype=first["config"]["dtype"],
        machine=first["machine"],
        rounds=len(runs),
        **timing_stats(wall, cpu),
    )


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "results")
    ref = merge(os.path.join(d, "mbrl_r*.json"))
    rows = [ref]
    for dt in ("float32", "bfloat16"):
        if glob.glob(os.path.join(d, f"ours_{dt}_r*.json")):
            rows.append(merge(os.path.join(d, f"ours_{dt}_r*.json")))

    hdr = (
        "impl",
        "dtype",
        "N",
        "wall mean s",
        "wall median s",
        "cpu median s",
        "cpu min s",
        "ratio wall(med)",
        "ratio cpu(med)",
        "ratio cpu(min)",
        "goal",
        "met (cpu med)",
    )
    lines = [hdr]
    for r in rows:
        is_ref = r["impl"] == "mbrl-lib"
        rw = r["wall_median_s"] / ref["wall_median_s"]
        rc = r["cpu_median_s"] / ref["cpu_median_s"]
        rm = r["cpu_min_s"] / ref["cpu_min_s"]
        goal = None if is_ref else GOALS[r["dtype"]]
        lines.append(
            (
                f"{r['impl']}" + (f" {r.get('mbrl_version', '')}" if is_ref else ""),
                r["dtype"],
                str(r["n_actions"]),
                f"{r['wall_mean_s']:.3f}",
                f"{r['wall_median_s']:.3f}",
                f"{r['cpu_median_s']:.3f}",
                f"{r['cpu_min_s']:.3f}",
                f"{rw:.3f}x",
                f"{rc:.3f}x",
                f"{rm:.3f}x",
                "-" if goal is None else f"<= {goal}x",
                "-" if goal is None else ("yes" if rc <= goal else "NO"),
            )
        )
    widths = [max(len(l[i]) for l in lines) for i in range(len(hdr))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(l, widths)) + " |" for l in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\n".join(out))
    print(
        f"ratio = ours / mbrl-lib per-action planning time, pooled over {ref['rounds']} interleaved rounds; lower is better."
    )

    p = os.path.join(d, "dtype_diff.json")
    if os.path.exists(p):
        x = read_result(p)["results"]
        a, b = x["bf16_vs_fp32_same_seed"], x["fp32_vs_fp32_other_seed"]
        print(
            f"\nbf16 vs fp32 first action, same seed, {x['n_obs']} observations (action range {x['action_range']}): "
            f"mean |diff| {a['mean_abs']:.4f}, median {a['median_abs']:.4f}, max {a['max_abs']:.4f}\n"
            f"fp32 vs fp32, other seed (planner noise, for scale):          "
            f"mean |diff| {b['mean_abs']:.4f}, median {b['median_abs']:.4f}, max {b['max_abs']:.4f}"
        )
    e = ref["machine"]
    print(
        f"\nCPU: {e['cpu_model']} ({e['nproc']} cores), torch {e['torch']}, python {e['python']}, "
        f"threads {e['torch_threads']}"
    )


if __name__ == "__main__":
    main()
