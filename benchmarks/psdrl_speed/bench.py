"""
Time one PSDRL training round per component, and acting, at the paper's sizes on a Pong replay of random play.

python -m benchmarks.psdrl_speed.bench --transitions 800 --threads 1 --out benchmarks/psdrl_speed/results/round_800.json

Settings: `hyperparams/psdrl.yml`, section `atari` (CnnPolicy: latent 1536, GRU 756, heads 2292 / 1536; batch 125 x 250
steps; 3 autoencoder, 3 model and 3 value iterations; the PSDRLAtariWrapper preprocessing of the YAML). The replay is filled
with uniformly random actions until it holds at least `--transitions` transitions and one finished episode.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th

from benchmarks.common import Timer, hyperparams_path, load_zoo_section, result_record, write_result


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

    import ale_py
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    from sb3_bayes import PSDRL
    from sb3_bayes.common.wrappers import PSDRLAtariWrapper

    gym.register_envs(ale_py)
    _, section = load_zoo_section(hyperparams_path("psdrl.yml"), "atari")
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

    def timed(key: str, fn: Callable[[], Any], **extra: Any) -> Any:
        """Runs ``fn``, stores its wall and CPU seconds and ``extra`` as ``results[key]``, returns what it returned."""
        with Timer() as t:
            value = fn()
        results[key] = dict(wall_s=t.wall_seconds, cpu_s=t.cpu_seconds, **extra)
        return value

    if "autoencoder" in components:
        loss = timed("autoencoder", model._train_autoencoder, iterations=model.autoencoder_iterations)
        results["autoencoder"]["loss"] = loss
        print("autoencoder", results["autoencoder"], flush=True)
    if "model" in components:
        losses = timed("transition_terminal", model._train_transition_and_terminal, iterations=model.model_iterations)
        results["transition_terminal"]["losses"] = losses
        print("transition_terminal", results["transition_terminal"], flush=True)
    if "posterior" in components or "value" in components:
        start = timed("posterior", model._fit_posterior)
        results["posterior"]["n_start_states"] = int(start.states.shape[0])
        print("posterior", results["posterior"], flush=True)
        if "value" in components:
            policy.resample()
            loss = timed("value", lambda: model._fit_value(start), iterations=model.value_iterations)
            results["value"]["loss"] = loss
            print("value", results["value"], flush=True)
    policy.set_training_mode(False)
    if "act" in components:
        hidden = policy.initial_hidden(1)
        obs_t = th.as_tensor(obs, device=model.device)
        policy.act(obs_t, hidden)  # warm-up
        with Timer() as t:
            for _ in range(args.actions):
                _, hidden = policy.act(obs_t, hidden)
        results["act"] = dict(
            ms_per_action_wall=1000 * t.wall_seconds / args.actions, ms_per_action_cpu=1000 * t.cpu_seconds / args.actions
        )
        print("act", results["act"], flush=True)
    round_keys = [k for k in ("autoencoder", "transition_terminal", "posterior", "value") if k in results]
    results["round"] = dict(
        wall_s=sum(results[k]["wall_s"] for k in round_keys), cpu_s=sum(results[k]["cpu_s"] for k in round_keys)
    )
    replay = dict(
        transitions=buffer.n_transitions(),
        episode_lengths=episodes,
        replay_bytes=replay_bytes,
        bytes_per_transition=replay_bytes / buffer.n_transitions(),
        n_parameters=n_parameters,
        build_s=t_build.wall_seconds,
        collect_s=t_collect.wall_seconds,
    )
    record = result_record(
        benchmark="psdrl_speed",
        experiment="round_time",
        algorithm="PSDRL",
        env="PongNoFrameskip-v4",
        seed=args.seed,
        config={k: v for k, v in vars(args).items() if k != "out"},
        results=dict(replay, components=results),
        cpu_seconds=results["round"]["cpu_s"],
        wall_seconds=results["round"]["wall_s"],
    )
    write_result(args.out, record)
    print(json.dumps(results["round"]), flush=True)


if __name__ == "__main__":
    main()
