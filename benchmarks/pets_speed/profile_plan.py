"""torch.profiler breakdown of planning calls (op-level self CPU time), for either implementation.

  benchmarks/pets_speed/.venv-mbrl/bin/python -m benchmarks.pets_speed.profile_plan mbrl
  python -m benchmarks.pets_speed.profile_plan ours --dtype float32|bfloat16
  python -m benchmarks.pets_speed.profile_plan ours-breakdown      # wall-clock split of one float32 plan (see below)
(from the repository root)
Profiles --n-actions planning calls after --n-warmup untimed ones, one thread; prints the top ops by self CPU
time (with input shapes) and writes the table to --out if given.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

warnings.filterwarnings("ignore")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("impl", choices=["mbrl", "ours", "ours-breakdown"])
    p.add_argument("--dtype", default="float32")
    p.add_argument("--n-actions", type=int, default=2)
    p.add_argument("--n-warmup", type=int, default=1)
    p.add_argument("--row-limit", type=int, default=25)
    p.add_argument("--shapes", action="store_true", help="group by input shapes")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.impl == "ours-breakdown":
        return breakdown(args)
    if args.impl == "mbrl":
        from benchmarks.pets_speed import bench_mbrl

        agent, _ = bench_mbrl.build_agent(0)
        act = agent.act
    else:
        from benchmarks.pets_speed import bench_ours

        model, _ = bench_ours.build_model(args.dtype, 0)
        act = bench_ours.act_fn(model)
    obs = np.array([0.3, 0.95, 0.5], dtype=np.float32)
    for _ in range(args.n_warmup):
        act(obs)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
        for _ in range(args.n_actions):
            act(obs)
    ka = prof.key_averages(group_by_input_shape=args.shapes)
    table = ka.table(
        sort_by="self_cpu_time_total", row_limit=args.row_limit, max_name_column_width=40, max_shapes_column_width=60
    )
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)


def breakdown(args):
    """Split float32 plans of our PETS into the network (GaussianEnsembleMLP._trunk, whatever its current
    implementation) and everything else, by re-running each plan with the network's output served from a cache.
    Process CPU seconds; interleaved so that background load hits both alike."""
    import statistics
    import time

    from benchmarks.pets_speed import bench_ours

    model, _ = bench_ours.build_model("float32", 0)
    net = model.policy.dynamics.network
    original_trunk = net._trunk
    cache = {}

    def cached_trunk(x):
        if tuple(x.shape) not in cache:
            cache[tuple(x.shape)] = original_trunk(x)
        return cache[tuple(x.shape)]

    obs = np.array([0.3, 0.95, 0.5], dtype=np.float32)
    model.policy.predict(obs)  # warm-up
    totals, rest = [], []
    for _ in range(args.n_actions):
        t0 = time.process_time()
        model.policy.predict(obs)
        totals.append(time.process_time() - t0)
        net._trunk = cached_trunk
        t0 = time.process_time()
        model.policy.predict(obs)
        rest.append(time.process_time() - t0)
        del net._trunk  # back to the class method
    total, r = statistics.median(totals), statistics.median(rest)
    text = (
        f"our PETS, float32, one plan: {total:.3f} CPU s (median of {len(totals)})\n"
        f"  network (GaussianEnsembleMLP._trunk)  {total - r:6.3f} s  {100 * (total - r) / total:5.1f}%\n"
        f"  everything outside the network        {r:6.3f} s  {100 * r / total:5.1f}%"
    )
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
