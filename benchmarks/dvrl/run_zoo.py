"""One learning run through the unmodified rl-zoo3 command line, recorded as JSON.

Runs ``python -m rl_zoo3.train`` (one torch thread, no evaluation callback) in a scratch log folder, then reads the
Monitor files rl-zoo3 writes (one per environment) and stores every finished episode with the global environment step
at which it ended (the environments step in lock-step, so that is ``n_envs * (steps of that environment so far)``).

    python -m benchmarks.dvrl.run_zoo --method dvrl --env MountainHikeNoise0p2-v0 --seed 0 --steps 30000 \
        --out benchmarks/dvrl/results/dvrl_MountainHikeNoise0p2-v0_s0.json

Methods:
  dvrl       rl-zoo3 ``--algo dvrl`` with hyperparams/dvrl.yml (DVRL, particle filter)
  rnn        the same with ``-params use_particle_filter:False`` (the paper's RNN baseline: same encoders, one GRU)
  ppo_lstm   sb3-contrib RecurrentPPO (``--algo ppo_lstm``): rl-zoo3's own tuned YAML for the *NoVel envs,
             benchmarks/dvrl/ppo_lstm_mountain_hike.yml (``-conf``) for Mountain Hike
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks.common import REPO_ROOT, Timer, machine_info, result_record, write_result

PPO_MH_CONF = "benchmarks/dvrl/ppo_lstm_mountain_hike.yml"  # relative to the repository root (the working directory)


def zoo_command(method: str, env: str, seed: int, steps: int, log_folder: str, extra: list[str]) -> list[str]:
    algo = "ppo_lstm" if method == "ppo_lstm" else "dvrl"
    cmd = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", env, "--seed", str(seed), "-n", str(steps),
        "-f", log_folder, "--num-threads", "1", "--eval-freq", "-1", "--gym-packages", "sb3_bayes.envs",
        "--log-interval", "-1",
    ]  # fmt: skip
    if method == "ppo_lstm" and env.startswith("MountainHike"):
        cmd += ["-conf", PPO_MH_CONF]
    params = list(extra)
    if method == "rnn":
        params = ["use_particle_filter:False", *params]
    if params:
        cmd += ["-params", *params]
    return cmd


def read_monitors(run_dir: str) -> tuple[list[dict[str, Any]], int]:
    """Episodes from ``<rank>.monitor.csv`` files, ordered by the global step at which they ended."""
    files = sorted(glob.glob(os.path.join(run_dir, "*.monitor.csv")), key=lambda f: int(os.path.basename(f).split(".")[0]))
    n_envs = len(files)
    episodes = []
    for rank, path in enumerate(files):
        with open(path) as f:
            f.readline()  # JSON header
            local = 0
            for row in csv.DictReader(f):
                local += int(row["l"])
                episodes.append(
                    dict(rank=rank, ret=float(row["r"]), length=int(row["l"]), end_step=local * n_envs, t=float(row["t"]))
                )
    episodes.sort(key=lambda e: (e["end_step"], e["rank"]))
    return episodes, n_envs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=["dvrl", "rnn", "ppo_lstm"], required=True)
    p.add_argument("--env", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--params", nargs="*", default=[], help="extra rl-zoo3 -params overrides (key:value)")
    args = p.parse_args()

    load_average_start = list(os.getloadavg())
    log_folder = tempfile.mkdtemp(prefix="dvrl_bench_")
    cmd = zoo_command(args.method, args.env, args.seed, args.steps, log_folder, args.params)
    print(" ".join(cmd), flush=True)
    with Timer(children=True) as timer:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"rl_zoo3.train exited {proc.returncode}")
    algo = "ppo_lstm" if args.method == "ppo_lstm" else "dvrl"
    run_dirs = glob.glob(os.path.join(log_folder, algo, f"{args.env}_*"))
    assert len(run_dirs) == 1, run_dirs
    episodes, n_envs = read_monitors(run_dirs[0])
    config_path = os.path.join(run_dirs[0], args.env, "config.yml")
    config_yml = open(config_path).read() if os.path.exists(config_path) else ""
    shutil.rmtree(log_folder, ignore_errors=True)
    print(f"done: {len(episodes)} episodes, wall {timer.wall_seconds:.0f}s, cpu {timer.cpu_seconds:.0f}s", flush=True)

    config = dict(
        steps=args.steps,
        n_envs=n_envs,
        extra_params=list(args.params),
        zoo_command=" ".join(["python", *cmd[1:]]).replace(log_folder, "<logs>"),
        config_yml=config_yml,
    )
    record = result_record(
        benchmark="dvrl",
        experiment="run_zoo",
        algorithm=args.method,
        env=args.env,
        seed=args.seed,
        config=config,
        results=dict(episodes=episodes),
        cpu_seconds=round(timer.cpu_seconds, 2),
        wall_seconds=round(timer.wall_seconds, 2),
        machine=machine_info(load_average_start=load_average_start),
    )
    write_result(args.out, record)


if __name__ == "__main__":
    main()
