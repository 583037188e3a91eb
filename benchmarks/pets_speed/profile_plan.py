"""torch.profiler breakdown of planning calls (op-level self CPU time), for either implementation.

  .venv-mbrl/bin/python profile_plan.py mbrl
  /work/venv/bin/python profile_plan.py ours --dtype float32|bfloat16
Profiles --n-actions planning calls after --n-warmup untimed ones, one thread; prints the top ops by self CPU
time (with input shapes) and writes the table to --out if given.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("impl", choices=["mbrl", "ours"])
    p.add_argument("--dtype", default="float32")
    p.add_argument("--n-actions", type=int, default=2)
    p.add_argument("--n-warmup", type=int, default=1)
    p.add_argument("--row-limit", type=int, default=25)
    p.add_argument("--shapes", action="store_true", help="group by input shapes")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.impl == "mbrl":
        import bench_mbrl

        agent, _ = bench_mbrl.build_agent(0)
        act = agent.act
    else:
        import bench_ours

        model, _ = bench_ours.build_model(args.dtype, 0)
        act = bench_ours.act_fn(model)
    obs = np.array([0.3, 0.95, 0.5], dtype=np.float32)
    for _ in range(args.n_warmup):
        act(obs)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
        for _ in range(args.n_actions):
            act(obs)
    ka = prof.key_averages(group_by_input_shape=args.shapes)
    table = ka.table(sort_by="self_cpu_time_total", row_limit=args.row_limit, max_name_column_width=40,
                     max_shapes_column_width=60)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
