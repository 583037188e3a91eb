"""One SB3 SAC run with rl-zoo3's tuned hyperparameters for the env (SAC defaults where it has none).

python benchmarks/pets_learning/run_sac.py --env Pendulum-v1 --seed 0 --steps 20000 --out results/x.json
"""

from __future__ import annotations

import argparse
import os
import time

import torch

torch.set_num_threads(1)

import rl_zoo3  # noqa: E402
from common import EpisodeRecorder, cpu_seconds, eval_policy_kwargs, load_section, machine_info, save_json  # noqa: E402
from rl_zoo3.utils import linear_schedule  # noqa: E402
from stable_baselines3 import SAC  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

SAC_YML = os.path.join(os.path.dirname(rl_zoo3.__file__), "hyperparams", "sac.yml")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="default: n_timesteps of the YAML")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    # InvertedPendulum-v5: fall back to the -v4 entry if rl-zoo3 has one, else SAC's own defaults.
    fallback = args.env.replace("-v5", "-v4") if args.env.endswith("-v5") else None
    section, hp = load_section(SAC_YML, args.env, fallback=fallback)
    yaml_raw = {k: str(v) for k, v in hp.items()}
    steps = args.steps if args.steps is not None else int(hp.get("n_timesteps", 3000))
    hp.pop("n_timesteps", None)
    policy = hp.pop("policy", "MlpPolicy")
    env_kwargs = hp.pop("env_kwargs", None) or {}
    for key in ("learning_rate",):
        if isinstance(hp.get(key), str) and hp[key].startswith("lin_"):
            hp[key] = linear_schedule(float(hp[key][4:]))
    unsupported = [k for k in ("normalize", "env_wrapper", "callback", "frame_stack", "n_envs") if k in hp]
    assert not unsupported, f"not handled here: {unsupported}"
    eval_policy_kwargs(hp)

    env = make_vec_env(args.env, n_envs=1, seed=args.seed, env_kwargs=env_kwargs)
    model = SAC(policy, env, seed=args.seed, verbose=0, **hp)
    rec = EpisodeRecorder()
    rec.verbose = 1
    print(f"SAC {args.env} seed {args.seed} steps {steps} section {section}", flush=True)
    t0, c0 = time.perf_counter(), cpu_seconds()
    model.learn(total_timesteps=steps, callback=rec)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    print(f"done: wall {wall:.0f}s cpu {cpu:.0f}s", flush=True)
    save_json(
        args.out,
        dict(
            algo="SAC",
            env=args.env,
            seed=args.seed,
            steps=steps,
            yaml=SAC_YML,
            yaml_section=section,
            yaml_entry=yaml_raw,
            env_kwargs=env_kwargs,
            episodes=rec.episodes,
            wall_s=round(wall, 2),
            cpu_s=round(cpu, 2),
            machine=machine_info(),
        ),
    )


if __name__ == "__main__":
    main()
