"""The recommended planners of hyperparams/pets.yml against mbrl-lib's CEM at the paper configuration, per env.

Two modes, run from the repository root (``bash benchmarks/pets_speed/run_recommended.sh`` runs both):

    python -m benchmarks.pets_speed.recommended floor --out benchmarks/pets_speed/results_recommended/floor.json
    python -m benchmarks.pets_speed.recommended table [RESULTS_DIR]
    python -m benchmarks.pets_speed.recommended learning [RESULTS_DIR]   # RESULTS_DIR/learning{,_paper}/*.json
    python -m benchmarks.pets_speed.recommended learning --until-step 2000   # the same, episodes ended by step 2000

``floor`` measures this machine's one-thread float32 matrix-product throughput (an sgemm 2048^3 and the paper
network's hidden-layer ``bmm``, [5, 2000, 200] x [5, 200, 200]) and from it the *matmul floor* of one paper-configuration
plan per env: the plan's multiply-add FLOPs (5 CEM iterations x horizon 15 x 500 candidates x 20 particles through the
ensemble 3 x 200) divided by the measured ``bmm`` throughput. No implementation of that plan can take less CPU time on
this machine with float32 matrix products. ``table`` prints, per env: mbrl-lib's CEM (paper config), our CEM at the
identical config (float32) and our recommended YAML planner, as CPU seconds per action (median over the pooled rounds)
and their ratio to mbrl-lib, with the goals (recommended <= 0.25x, identical config <= 0.75x) and the floor.
``learning`` prints the learning runs of the recommended sections (``run_recommended.sh learning``, config
"recommended") and of the same sections with the paper's CEM and members (``run_recommended.sh learning-paper``, config
"paper CEM"), env by env: returns per
episode, the final return (mean of the last 3 finished episodes; and of the last 10), the first step with a return of at least
``--solved`` (per env), CPU and wall seconds and the planner's seconds per action (the logger's
``planner/seconds_per_action``, wall time, averaged over the steps between training rounds).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

from benchmarks.common import read_result, read_results, result_record, timing_stats, write_result

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DIR = os.path.join(HERE, "results_recommended")
#: Goals of the issue: (impl, config) -> largest ratio to mbrl-lib's paper-config CPU seconds per action.
GOALS = {("sb3-bayes", "recommended"): 0.25, ("sb3-bayes", "paper"): 0.75}


# ----------------------------------------------------------------------------------------------------------------------
# floor


def plan_flops(obs_dim: int, act_dim: int, cfg: dict) -> float:
    """Multiply-add FLOPs (2 per MAC) of the network forward passes of one plan at ``cfg`` (no step-0 dedup)."""
    h = cfg["hidden"]
    dims = [obs_dim + act_dim, *h, 2 * obs_dim]
    macs_per_row = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    rows = cfg["popsize"] * cfg["n_particles"]
    return 2.0 * macs_per_row * rows * cfg["plan_horizon"] * cfg["cem_iters"]


def gflops(fn, flops: float, repeats: int) -> float:
    """Best-of-``repeats`` throughput of ``fn()`` (one call = ``flops``), in GFLOP/s of CPU time."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        c0 = time.process_time()
        fn()
        best = min(best, time.process_time() - c0)
    return flops / best / 1e9


def floor(args: argparse.Namespace) -> None:
    import gymnasium as gym
    import torch

    from benchmarks.pets_speed import timing

    torch.set_num_threads(1)
    torch.manual_seed(0)
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    sgemm = gflops(lambda: torch.mm(a, b), 2.0 * n**3, args.repeats)
    e, rows, h = 5, 2000, 200  # the paper's hidden layer: 5 members x (500 candidates x 20 particles / 5) rows
    x, w = torch.randn(e, rows, h), torch.randn(e, h, h)
    out = torch.empty(e, rows, h)
    bmm = gflops(lambda: torch.bmm(x, w, out=out), 2.0 * e * rows * h * h, args.repeats)
    per_env = {}
    for env_id in timing.ENVS:
        env = gym.make(env_id)
        cfg = timing.paper_config(env_id)
        flops = plan_flops(env.observation_space.shape[0], env.action_space.shape[0], cfg)
        per_env[env_id] = dict(
            plan_gflop=flops / 1e9, floor_cpu_s_at_bmm=flops / 1e9 / bmm, floor_cpu_s_at_sgemm=flops / 1e9 / sgemm
        )
    results = dict(sgemm_2048_gflops=sgemm, bmm_5x2000x200x200_gflops=bmm, repeats=args.repeats, per_env=per_env)
    record = result_record(
        benchmark="pets_speed",
        experiment="matmul_floor",
        algorithm=None,
        env=None,
        seed=None,
        config=dict(paper=timing.CONFIG, dtype="float32", threads=1, note="FLOPs of the network matrix products only"),
        results=results,
        cpu_seconds=None,
        wall_seconds=None,
    )
    write_result(args.out, record, echo=True)


# ----------------------------------------------------------------------------------------------------------------------
# table


def pooled(runs: list[dict]) -> dict:
    wall = [w for x in runs for w in x["results"]["wall_all_s"]]
    cpu = [c for x in runs for c in x["results"]["cpu_all_s"]]
    return dict(rounds=len(runs), **timing_stats(wall, cpu))


def table(directory: str) -> str:
    runs = [r for r in read_results(os.path.join(directory, "*.json")) if r["experiment"] == "planning_time"]
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in runs:
        key = (r["env"], r["config"]["impl"], r["config"].get("config_name", "paper"))
        groups.setdefault(key, []).append(r)
    floor_path = os.path.join(directory, "floor.json")
    fl = read_result(floor_path)["results"] if os.path.exists(floor_path) else None

    hdr = (
        "env",
        "impl",
        "config",
        "planner",
        "N",
        "cpu median s",
        "cpu min s",
        "wall median s",
        "ratio cpu(med)",
        "per round",
        "goal",
        "met",
    )
    lines = [hdr]
    envs = sorted(
        {k[0] for k in groups},
        key=lambda e: (
            ["Pendulum-v1", "InvertedPendulum-v5", "Reacher-v5"].index(e)
            if e in ("Pendulum-v1", "InvertedPendulum-v5", "Reacher-v5")
            else 9
        ),
    )
    for env in envs:
        ref_runs = groups.get((env, "mbrl-lib", "paper"))
        ref = pooled(ref_runs) if ref_runs else None
        for impl, config in (("mbrl-lib", "paper"), ("sb3-bayes", "paper"), ("sb3-bayes", "recommended")):
            rs = groups.get((env, impl, config))
            if not rs:
                continue
            p = pooled(rs)
            planner = rs[0]["config"]["planner"]
            desc = (
                f"{planner.get('planner', 'cem')} pop {planner['popsize']}/{planner['num_elites']} it {planner['cem_iters']} "
                f"H {planner['plan_horizon']} P {planner['n_particles']} {planner['ensemble_size']}x{list(planner['hidden'])}"
            )
            ratio = p["cpu_median_s"] / ref["cpu_median_s"] if ref else None
            # the same ratio within each round (files sorted by path: round r of both rows)
            per_round = (
                [pooled([a])["cpu_median_s"] / pooled([b])["cpu_median_s"] for a, b in zip(rs, ref_runs)]
                if ref_runs and len(rs) == len(ref_runs) and impl != "mbrl-lib"
                else []
            )
            goal = GOALS.get((impl, config))
            lines.append(
                (
                    env,
                    impl + (f" {rs[0]['config'].get('mbrl_version', '')}" if impl == "mbrl-lib" else ""),
                    config + (f" ({rs[0]['config']['dtype']})" if impl == "sb3-bayes" else ""),
                    desc,
                    str(p["n_actions"]),
                    f"{p['cpu_median_s']:.4f}",
                    f"{p['cpu_min_s']:.4f}",
                    f"{p['wall_median_s']:.4f}",
                    "-" if ratio is None else f"{ratio:.3f}x",
                    " ".join(f"{x:.2f}" for x in per_round) or "-",
                    "-" if goal is None else f"<= {goal}x",
                    "-" if goal is None or ratio is None else ("yes" if ratio <= goal else "NO"),
                )
            )
        if fl and env in fl["per_env"]:
            f = fl["per_env"][env]
            fr = f["floor_cpu_s_at_bmm"] / ref["cpu_median_s"] if ref else None
            lines.append(
                (
                    env,
                    "matmul floor",
                    "paper (float32)",
                    f"{f['plan_gflop']:.1f} GFLOP / {fl['bmm_5x2000x200x200_gflops']:.0f} GFLOP/s",
                    "-",
                    f"{f['floor_cpu_s_at_bmm']:.4f}",
                    "-",
                    "-",
                    "-" if fr is None else f"{fr:.3f}x",
                    "-",
                    "-",
                    "-",
                )
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(hdr))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join(out)
    text += (
        "\nratio = CPU seconds per action (median of the pooled timed actions) / mbrl-lib's at the paper config, same env;"
        " the implementations are interleaved round by round. planner: pop = popsize/elites (iCEM: first iteration's"
        " population), it = iterations, H = horizon, P = particles, members x hidden layers. per round: the ratio of the"
        " medians within each interleaved round."
    )
    if fl:
        text += (
            f"\nmatmul floor: network FLOPs of one paper-config plan / this machine's one-thread float32 bmm throughput"
            f" ({fl['bmm_5x2000x200x200_gflops']:.0f} GFLOP/s on [5,2000,200]x[5,200,200]; sgemm 2048^3:"
            f" {fl['sgemm_2048_gflops']:.0f} GFLOP/s)."
        )
    if runs:
        m = runs[0]["machine"]
        flags = m.get("cpu_flags") or {}
        text += (
            f"\nCPU: {m['cpu_model']} ({m['nproc']} cores), flags: "
            + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())
            + f"; torch {m['torch']}, python {m['python']}, threads {m['torch_threads']};"
            f" load average {min(r['machine']['load_average'][0] for r in runs):.1f}-"
            f"{max(r['machine']['load_average'][0] for r in runs):.1f} (1 min, at the end of each timing process)"
        )
    return text


# ----------------------------------------------------------------------------------------------------------------------
# learning

#: The return that counts as solved, per env (InvertedPendulum-v5: the maximum).
SOLVED = {"Pendulum-v1": -200.0, "InvertedPendulum-v5": 1000.0, "Reacher-v5": -6.0}


#: Result subdirectory -> the name of its configuration in the table. ``learning_previous/`` holds the runs of sections
#: that were replaced (Reacher-v5: the iCEM section of before 2026-12-07, 5000 steps), kept to compare with.
LEARNING_CONFIGS = {"learning": "recommended", "learning_paper": "paper CEM", "learning_previous": "previous section"}


def learning(directory: str, until_step: int | None = None) -> str:
    """
    The table of the learning runs under ``directory`` (``learning/``, ``learning_paper/``, ``learning_previous/``).

    :param directory: The results folder of ``run_recommended.sh``.
    :param until_step: Only the episodes that ended by this step (None: all), to compare runs of different lengths at
        equal steps; the ``steps`` column then reads ``<until_step> of <steps>``, and CPU and wall seconds stay those of
        the whole run.
    :return: The table in Markdown.
    """
    runs = [
        (name, run)
        for subdir, name in LEARNING_CONFIGS.items()
        if glob.glob(os.path.join(directory, subdir, "*.json"))
        for run in read_results(os.path.join(directory, subdir, "*.json"))
    ]
    hdr = (
        "env",
        "config",
        "seed",
        "steps",
        "episodes",
        "returns (first 5 ... last 5)",
        "best",
        "final (last 3)",
        "last 10",
        "first solved at",
        "CPU s",
        "wall s",
        "CPU s/step",
        "planner s/action",
    )
    lines = [hdr]
    order = list(LEARNING_CONFIGS.values())
    for config_name, r in sorted(runs, key=lambda x: (x[1]["env"], order.index(x[0]), x[1]["seed"])):
        eps = [e for e in r["results"]["episodes"] if until_step is None or e["end_step"] <= until_step]
        if not eps:
            raise ValueError(f"{r['env']} seed {r['seed']} ({config_name}) has no episode that ended by step {until_step}")
        rets = [e["ret"] for e in eps]
        solved = SOLVED.get(r["env"])
        first = next((e["end_step"] for e in eps if solved is not None and e["ret"] >= solved), None)
        spa = [
            row["planner/seconds_per_action"]
            for row in r["results"].get("train_rounds", [])
            if "planner/seconds_per_action" in row
        ]
        fmt = (lambda v: f"{v:.0f}") if max(abs(x) for x in rets) >= 100 else (lambda v: f"{v:.1f}")
        shown = (
            " ".join(fmt(v) for v in rets)
            if len(rets) <= 10
            else (" ".join(fmt(v) for v in rets[:5]) + " ... " + " ".join(fmt(v) for v in rets[-5:]))
        )
        lines.append(
            (
                r["env"],
                config_name,
                str(r["seed"]),
                str(r["config"]["steps"]) if until_step is None else f"{until_step} of {r['config']['steps']}",
                str(len(eps)),
                shown,
                fmt(max(rets)),
                fmt(sum(rets[-3:]) / len(rets[-3:])),
                fmt(sum(rets[-10:]) / len(rets[-10:])),
                "-" if first is None else f"{first} (>= {solved:g})",
                f"{r['cpu_seconds']:.0f}",
                f"{r['wall_seconds']:.0f}",
                f"{r['cpu_seconds'] / r['config']['steps']:.3f}",
                "-" if not spa else f"{sum(spa) / len(spa):.4f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(hdr))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("floor")
    f.add_argument("--out", default=None)
    f.add_argument("--repeats", type=int, default=5)
    t = sub.add_parser("table")
    t.add_argument("dir", nargs="?", default=DEFAULT_DIR)
    lp = sub.add_parser("learning")
    lp.add_argument("dir", nargs="?", default=DEFAULT_DIR)
    lp.add_argument("--until-step", type=int, default=None, help="only the episodes that ended by this step")
    args = p.parse_args()
    if args.mode == "floor":
        floor(args)
    elif args.mode == "learning":
        print(learning(args.dir, args.until_step))
    else:
        if not glob.glob(os.path.join(args.dir, "*.json")):
            sys.exit(f"no result files in {args.dir}")
        print(table(args.dir))


if __name__ == "__main__":
    main()
