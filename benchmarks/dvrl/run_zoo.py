"""One learning run through the unmodified rl-zoo3 command line, recorded as JSON.

Runs ``python -m rl_zoo3.train`` (one torch thread, no evaluation callback) in a scratch log folder, then reads the
Monitor files rl-zoo3 writes (one per environment) and stores every finished episode with the global environment step
at which it ended (the environments step in lock-step, so that is ``n_envs * (steps of that environment so far)``).

    python benchmarks/dvrl/run_zoo.py --method dvrl --env MountainHikeNoise0p2-v0 --seed 0 --steps 30000 \
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
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
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


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--short", "sb3_bayes", "hyperparams"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    return dict(
        cpu_model=model,
        nproc=os.cpu_count(),
        python=platform.python_version(),
        git_commit=head,
        uncommitted=[d for d in dirty.stdout.splitlines() if d.strip()],
        loadavg_start=os.getloadavg(),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=["dvrl", "rnn", "ppo_lstm"], required=True)
    p.add_argument("--env", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--params", nargs="*", default=[], help="extra rl-zoo3 -params overrides (key:value)")
    args = p.parse_args()

    info = machine_info()
    log_folder = tempfile.mkdtemp(prefix="dvrl_bench_")
    cmd = zoo_command(args.method, args.env, args.seed, args.steps, log_folder, args.params)
    print(" ".join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"rl_zoo3.train exited {proc.returncode}")
    algo = "ppo_lstm" if args.method == "ppo_lstm" else "dvrl"
    run_dirs = glob.glob(os.path.join(log_folder, algo, f"{args.env}_*"))
    assert len(run_dirs) == 1, run_dirs
    episodes, n_envs = read_monitors(run_dirs[0])
    config_path = os.path.join(run_dirs[0], args.env, "config.yml")
    config = open(config_path).read() if os.path.exists(config_path) else ""
    shutil.rmtree(log_folder, ignore_errors=True)
    print(f"done: {len(episodes)} episodes, wall {wall:.0f}s, cpu {cpu:.0f}s", flush=True)

    payload = dict(
        method=args.method,
        env=args.env,
        seed=args.seed,
        steps=args.steps,
        n_envs=n_envs,
        extra_params=list(args.params),
        command=" ".join(["python", *cmd[1:]]).replace(log_folder, "<logs>"),
        config_yml=config,
        wall_s=round(wall, 2),
        cpu_s=round(cpu, 2),
        loadavg_end=os.getloadavg(),
        machine=info,
        episodes=episodes,
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(payload, f, indent=0)


if __name__ == "__main__":
    main()
