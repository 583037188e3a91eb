"""One PETS learning run with the settings of hyperparams/pets.yml for the env; per-episode returns to JSON.

    python benchmarks/pets_learning/run_pets.py --env Pendulum-v1 --seed 0 --steps 1000 --out results/x.json

`--set key=value` overrides one YAML entry (Python literal; for the investigation runs only).
"""

from __future__ import annotations

import argparse
import ast
import os
import time

import torch

torch.set_num_threads(1)

from common import (  # noqa: E402  (after pinning torch to one thread)
    REPO_ROOT,
    EpisodeRecorder,
    cpu_seconds,
    eval_policy_kwargs,
    load_section,
    machine_info,
    save_json,
)  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.logger import KVWriter, Logger  # noqa: E402

from sb3_bayes import PETS  # noqa: E402


class CaptureWriter(KVWriter):
    """Keep what PETS logs after each training round (model loss, state MSE on all data, log-variance bounds)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def write(self, key_values, key_excluded, step=0) -> None:
        self.rows.append({k: (float(v) if isinstance(v, (int, float)) else str(v)) for k, v in key_values.items()})

    def close(self) -> None:
        pass


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="default: n_timesteps of the YAML")
    p.add_argument("--out", required=True)
    p.add_argument("--yaml", default=os.path.join(REPO_ROOT, "hyperparams", "pets.yml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()

    section, hp = load_section(args.yaml, args.env, fallback="default")
    yaml_raw = dict(hp)
    for kv in args.set:
        k, v = kv.split("=", 1)
        try:
            hp[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            hp[k] = v
    steps = args.steps if args.steps is not None else int(hp["n_timesteps"])
    hp.pop("n_timesteps", None)
    policy = hp.pop("policy", "MlpPolicy")
    env_kwargs = hp.pop("env_kwargs", None) or {}
    eval_policy_kwargs(hp)

    env = make_vec_env(args.env, n_envs=1, seed=args.seed, env_kwargs=env_kwargs)
    model = PETS(policy, env, seed=args.seed, verbose=0, **hp)
    writer = CaptureWriter()
    model.set_logger(Logger(folder=None, output_formats=[writer]))

    # Time the training rounds apart from planning.
    train_times: list[float] = []
    orig_train = model.train

    def timed_train() -> None:
        t = time.perf_counter()
        orig_train()
        train_times.append(time.perf_counter() - t)

    model.train = timed_train  # type: ignore[method-assign]

    rec = EpisodeRecorder()
    rec.verbose = 1
    print(f"PETS {args.env} seed {args.seed} steps {steps} section {section} overrides {args.set}", flush=True)
    t0, c0 = time.perf_counter(), cpu_seconds()
    model.learn(total_timesteps=steps, callback=rec)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    print(f"done: wall {wall:.0f}s cpu {cpu:.0f}s", flush=True)
    save_json(
        args.out,
        dict(
            algo="PETS",
            env=args.env,
            seed=args.seed,
            steps=steps,
            yaml=os.path.relpath(args.yaml, REPO_ROOT),
            yaml_section=section,
            yaml_entry=yaml_raw,
            overrides=args.set,
            env_kwargs=env_kwargs,
            episodes=rec.episodes,
            train_rounds=writer.rows,
            train_wall_s=[round(t, 3) for t in train_times],
            wall_s=round(wall, 2),
            cpu_s=round(cpu, 2),
            machine=machine_info(),
        ),
    )


if __name__ == "__main__":
    main()
