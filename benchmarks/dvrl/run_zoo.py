"""One learning run through the unmodified rl-zoo3 command line, recorded as JSON.

Runs ``python -m rl_zoo3.train`` (one torch thread, no evaluation callback) in a scratch log folder, then reads the
Monitor files rl-zoo3 writes (one per environment) and stores every finished episode with the global environment step
at which it ended (the environments step in lock-step, so that is ``n_envs * (steps of that environment so far)``).

    python -m benchmarks.dvrl.run_zoo --method dvrl --env MountainHikeNoise0p2-v0 --seed 0 --steps 30000 \
        --out benchmarks/dvrl/results/dvrl_MountainHikeNoise0p2-v0_s0.json

With ``--eval-episodes N`` the trained model (and its VecNormalize statistics, rewards unnormalised) is then evaluated
on N episodes seeded 0 ... N-1 (+ ``--eval-seed``), the same for every method and run, with deterministic actions
(``results.eval_returns``) and again with sampled ones (``results.eval_returns_stochastic``), the belief (recurrent
state) carried through each episode; with ``--train-log`` the ``train/`` values of the
algorithm's logger (ELBO, explained variance, effective sample size, gradient norms) are recorded over training
(``train_log.py``). Both go into the result file (``results.eval_returns*``, ``results.train_log``), with the CPU
seconds of the evaluation apart from those of training.

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
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.common import REPO_ROOT, Timer, machine_info, result_record, write_result

PPO_MH_CONF = "benchmarks/dvrl/ppo_lstm_mountain_hike.yml"  # relative to the repository root (the working directory)


def zoo_command(
    method: str,
    env: str,
    seed: int,
    steps: int,
    log_folder: str,
    extra: list[str],
    train_log: str | None = None,
    train_log_every: int = 2000,
) -> list[str]:
    algo = "ppo_lstm" if method == "ppo_lstm" else "dvrl"
    cmd = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", env, "--seed", str(seed), "-n", str(steps),
        "-f", log_folder, "--num-threads", "1", "--eval-freq", "-1", "--gym-packages", "sb3_bayes.envs",
        "--log-interval", "-1",
    ]  # fmt: skip
    if method == "ppo_lstm" and env.startswith(("MountainHike", "NoisyPosition")):
        cmd += ["-conf", PPO_MH_CONF]
    params = list(extra)
    if method == "rnn":
        params = ["use_particle_filter:False", *params]
    if train_log is not None:
        params.append(
            f"callback:[{{'benchmarks.dvrl.train_log.TrainLogCallback':dict(path={train_log!r},every={train_log_every})}}]"
        )
    if params:
        cmd += ["-params", *params]
    return cmd


def evaluate(method: str, env_id: str, run_dir: str, episodes: int, seed: int, deterministic: bool = True) -> list[float]:
    """
    Returns of the trained model of an rl-zoo3 run on ``episodes`` episodes seeded ``seed, seed + 1, ...``.

    The env is rebuilt the way ``rl_zoo3.enjoy`` does (the run's wrappers and env_kwargs, its VecNormalize statistics
    frozen, rewards unnormalised); the recurrent state (DVRL's belief, the LSTM's) is carried through the episode.
    Torch is seeded, since DVRL's belief samples particles (and stochastic actions sample).

    :param method: ``dvrl``, ``rnn`` or ``ppo_lstm``.
    :param env_id: The env id.
    :param run_dir: rl-zoo3's run folder (``<log folder>/<algo>/<env>_1``).
    :param episodes: Number of episodes.
    :param seed: Seed of the first episode.
    :param deterministic: The mode of the action distribution (True) or a sample (False, as in training).
    :return: The true (Monitor) returns.
    """
    import torch as th
    from rl_zoo3.utils import create_test_env, get_saved_hyperparams

    if method == "ppo_lstm":
        from sb3_contrib import RecurrentPPO as algo_class
    else:
        from sb3_bayes.dvrl import DVRL as algo_class  # type: ignore[assignment]

    hyperparams, stats_path = get_saved_hyperparams(os.path.join(run_dir, env_id), norm_reward=False, test_mode=True)
    env_kwargs = hyperparams.pop("env_kwargs", None) or {}
    env = create_test_env(
        env_id, n_envs=1, stats_path=stats_path, seed=seed, should_render=False, hyperparams=hyperparams, env_kwargs=env_kwargs
    )
    model = algo_class.load(os.path.join(run_dir, f"{env_id}.zip"), device="cpu")
    th.set_num_threads(1)  # as the training process (--num-threads 1): small networks, a shared machine
    th.manual_seed(seed)
    results = []
    for episode in range(episodes):
        env.seed(seed + episode)  # used by the next reset: the same episodes for every method and run
        obs = env.reset()
        state, start, done, total = None, np.ones(1, dtype=bool), False, 0.0
        while not done:
            action, state = model.predict(obs, state=state, episode_start=start, deterministic=deterministic)  # type: ignore[arg-type]
            obs, reward, dones, infos = env.step(action)
            total += float(reward[0])
            start, done = dones, bool(dones[0])
        results.append(float(infos[0]["episode"]["r"]) if "episode" in infos[0] else total)
    env.close()
    return results


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
    p.add_argument("--eval-episodes", type=int, default=0, help="evaluation episodes of the final model (0: none)")
    p.add_argument("--eval-seed", type=int, default=0, help="seed of the first evaluation episode")
    p.add_argument("--train-log", action="store_true", help="record the logger's train/ values over training")
    p.add_argument("--train-log-every", type=int, default=2000, help="environment steps between two train/ records")
    args = p.parse_args()

    load_average_start = list(os.getloadavg())
    log_folder = tempfile.mkdtemp(prefix="dvrl_bench_")
    train_log_path = os.path.join(log_folder, "train_log.json") if args.train_log else None
    cmd = zoo_command(
        args.method, args.env, args.seed, args.steps, log_folder, args.params, train_log_path, args.train_log_every
    )
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
    print(f"done: {len(episodes)} episodes, wall {timer.wall_seconds:.0f}s, cpu {timer.cpu_seconds:.0f}s", flush=True)
    results: dict[str, Any] = dict(episodes=episodes)
    if train_log_path is not None:
        with open(train_log_path) as file:
            results["train_log"] = json.load(file)
    if args.eval_episodes > 0:
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        results["eval_returns"] = evaluate(args.method, args.env, run_dirs[0], args.eval_episodes, args.eval_seed)
        # The same episodes with sampled actions, as in training (the deterministic and the training policy can differ).
        results["eval_returns_stochastic"] = evaluate(
            args.method, args.env, run_dirs[0], args.eval_episodes, args.eval_seed, deterministic=False
        )
        results["eval_cpu_seconds"] = round(time.process_time() - cpu_start, 2)
        results["eval_wall_seconds"] = round(time.perf_counter() - wall_start, 2)
        deterministic, stochastic = np.mean(results["eval_returns"]), np.mean(results["eval_returns_stochastic"])
        print(f"evaluation ({args.eval_episodes} episodes): {deterministic:.1f}, stochastic {stochastic:.1f}", flush=True)
    shutil.rmtree(log_folder, ignore_errors=True)

    config = dict(
        steps=args.steps,
        n_envs=n_envs,
        extra_params=list(args.params),
        eval_episodes=args.eval_episodes,
        eval_seed=args.eval_seed,
        eval_actions=["deterministic", "stochastic"],
        train_log_every=args.train_log_every if args.train_log else None,
        zoo_command=" ".join(["python", *cmd[1:]]).replace(log_folder, "<logs>"),
        config_yml=config_yml.replace(log_folder, "<logs>"),
    )
    record = result_record(
        benchmark="dvrl",
        experiment="run_zoo",
        algorithm=args.method,
        env=args.env,
        seed=args.seed,
        config=config,
        results=results,
        cpu_seconds=round(timer.cpu_seconds, 2),
        wall_seconds=round(timer.wall_seconds, 2),
        machine=machine_info(load_average_start=load_average_start),
    )
    write_result(args.out, record)


if __name__ == "__main__":
    main()
