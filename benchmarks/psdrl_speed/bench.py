"""
Time one PSDRL training round per component, and acting, at the paper's sizes on a Pong replay of random play.

python benchmarks/psdrl_speed/bench.py --transitions 800 --threads 1 --out benchmarks/psdrl_speed/results/round_800.json

Settings: `hyperparams/psdrl.yml`, section `atari` (CnnPolicy: latent 1536, GRU 756, heads 2292 / 1536; batch 125 x 250
steps; 3 autoencoder, 3 model and 3 value iterations; the PSDRLAtariWrapper preprocessing of the YAML). The replay is filled
with uniformly random actions until it holds at least `--transitions` transitions and one finished episode.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch as th
import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Timer:
    """Wall and CPU seconds of a block."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *args: Any) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, cpu_seconds() - self.cpu


def atari_section() -> dict[str, Any]:
    with open(os.path.join(REPO, "hyperparams", "psdrl.yml")) as f:
        section = dict(yaml.load(f, Loader=yaml.UnsafeLoader)["atari"])
    section["policy_kwargs"] = eval(section["policy_kwargs"])
    return section


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--transitions", type=int, default=800)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--actions", type=int, default=200, help="actions timed")
    p.add_argument("--inference-dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--components", default="autoencoder,model,posterior,value,act")
    p.add_argument("--value-max-states", type=int, default=None)
    p.add_argument(
        "--train-iterations", type=int, default=None, help="override the 3 autoencoder and 3 model iterations (not value)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    th.set_num_threads(args.threads)
    # The code measured: the commit at the start and whether the package had uncommitted changes.
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--short", "sb3_bayes"], cwd=REPO, capture_output=True, text=True).stdout

    import ale_py
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    from sb3_bayes import PSDRL
    from sb3_bayes.common.wrappers import PSDRLAtariWrapper

    gym.register_envs(ale_py)
    section = atari_section()
    env = make_vec_env(
        "PongNoFrameskip-v4",
        n_envs=1,
        seed=args.seed,
        env_kwargs=section["env_kwargs"],
        wrapper_class=PSDRLAtariWrapper,
        wrapper_kwargs=section["env_wrapper"][0]["sb3_bayes.common.wrappers.PSDRLAtariWrapper"],
    )
    hp = {k: v for k, v in section.items() if k not in ("env_wrapper", "env_kwargs", "n_timesteps", "policy")}
    hp["policy_kwargs"]["inference_dtype"] = args.inference_dtype
    hp["value_max_states"] = args.value_max_states
    if args.train_iterations is not None:
        hp.update(autoencoder_iterations=args.train_iterations, model_iterations=args.train_iterations)
    with Timer() as t_build:
        model = PSDRL("CnnPolicy", env, seed=args.seed, **hp)
    model.set_logger(configure(None, [""]))
    n_parameters = sum(p.numel() for p in model.policy.parameters())

    # Fill the replay with random play, stored as `learn` stores it (tanh rewards, final observations).
    from sb3_bayes.common.rollout import final_observations

    buffer = model._ensure_replay_buffer()
    venv = model.get_env()
    obs = venv.reset()
    rng = np.random.default_rng(args.seed)
    with Timer() as t_collect:
        while buffer.n_transitions() < args.transitions or buffer.n_complete_episodes() < 1:
            actions = rng.integers(venv.action_space.n, size=1)
            new_obs, rewards, dones, infos = venv.step(actions)
            next_obs, terminations = final_observations(new_obs, dones, infos)
            buffer.add(obs, actions, np.tanh(rewards), next_obs, dones, terminations)
            obs = new_obs
    episodes = [len(e) for e in buffer.all_episodes()]
    replay_bytes = sum(e.observations.nbytes + e.actions.nbytes + e.rewards.nbytes for e in buffer.all_episodes())
    print(f"replay: {buffer.n_transitions()} transitions, episodes {episodes}, {replay_bytes} bytes", flush=True)

    results: dict[str, Any] = {}
    components = args.components.split(",")
    policy = model.policy
    policy.set_training_mode(True)
    if "autoencoder" in components:
        with Timer() as t:
            loss = model._train_autoencoder()
        results["autoencoder"] = dict(wall_s=t.wall, cpu_s=t.cpu, iterations=model.autoencoder_iterations, loss=loss)
        print("autoencoder", results["autoencoder"], flush=True)
    if "model" in components:
        with Timer() as t:
            losses = model._train_transition_and_terminal()
        results["transition_terminal"] = dict(wall_s=t.wall, cpu_s=t.cpu, iterations=model.model_iterations, losses=losses)
        print("transition_terminal", results["transition_terminal"], flush=True)
    if "posterior" in components or "value" in components:
        with Timer() as t:
            start = model._fit_posterior()
        results["posterior"] = dict(wall_s=t.wall, cpu_s=t.cpu, n_start_states=int(start.states.shape[0]))
        print("posterior", results["posterior"], flush=True)
        if "value" in components:
            policy.resample()
            with Timer() as t:
                loss = model._fit_value(start)
            results["value"] = dict(wall_s=t.wall, cpu_s=t.cpu, iterations=model.value_iterations, loss=loss)
            print("value", results["value"], flush=True)
    policy.set_training_mode(False)
    if "act" in components:
        hidden = policy.initial_hidden(1)
        obs_t = th.as_tensor(obs, device=model.device)
        policy.act(obs_t, hidden)  # warm-up
        with Timer() as t:
            for _ in range(args.actions):
                _, hidden = policy.act(obs_t, hidden)
        results["act"] = dict(ms_per_action_wall=1000 * t.wall / args.actions, ms_per_action_cpu=1000 * t.cpu / args.actions)
        print("act", results["act"], flush=True)
    round_keys = [k for k in ("autoencoder", "transition_terminal", "posterior", "value") if k in results]
    results["round"] = dict(
        wall_s=sum(results[k]["wall_s"] for k in round_keys), cpu_s=sum(results[k]["cpu_s"] for k in round_keys)
    )
    with open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    out = dict(
        command=" ".join(["python", *sys.argv]),
        transitions=buffer.n_transitions(),
        episode_lengths=episodes,
        replay_bytes=replay_bytes,
        bytes_per_transition=replay_bytes / buffer.n_transitions(),
        n_parameters=n_parameters,
        build_s=t_build.wall,
        collect_s=t_collect.wall,
        threads=args.threads,
        inference_dtype=args.inference_dtype,
        value_max_states=args.value_max_states,
        results=results,
        machine=dict(
            cpu=cpu,
            n_cpus=os.cpu_count(),
            torch=th.__version__,
            python=platform.python_version(),
            load_average=os.getloadavg(),
            git_commit=commit,
            uncommitted_package_changes=dirty.split("\n")[:-1],
        ),
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out["results"]["round"]), flush=True)


if __name__ == "__main__":
    main()
