"""BayesianDQN (both heads) vs SB3 DQN at equal environment steps: one run, one JSON with the evaluation curve and timings.

Every algorithm gets the same settings (network, learning rate, replay, batch, target updates, training frequency):
the ``hyperparams/bayes_dqn.yml`` section of the environment. DQN adds its epsilon-greedy schedule (rl-zoo3's
CartPole schedule; bsuite's DQN epsilon 0.05 for DeepSea); BayesianDQN explores by Thompson sampling (epsilon 0.001).

Usage: python benchmarks/bayes_dqn/run_learning.py --algo bbb --env CartPole-v1 --seed 0 --steps 15000 --out DIR
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch as th
import yaml
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

import sb3_bayes.envs  # noqa: F401  (registers DeepSea{N}-v0)
from sb3_bayes.bayes_dqn import BayesianDQN

YAML = Path(__file__).resolve().parents[2] / "hyperparams" / "bayes_dqn.yml"
#: DQN's exploration schedule per task (the Bayesian agents use none beyond epsilon 0.001).
DQN_EXPLORATION = {
    "CartPole-v1": dict(exploration_fraction=0.16, exploration_final_eps=0.04),  # rl-zoo3 dqn.yml
    "DeepSea": dict(exploration_fraction=0.0, exploration_initial_eps=0.05, exploration_final_eps=0.05),  # bsuite DQN
}
BAYES_ONLY = (
    "head",
    "kl_weight",
    "resample_every",
    "blr_prior_var",
    "blr_noise_var",
    "posterior_update_freq",
    "posterior_window",
)


class CountSuccesses(BaseCallback):
    """Counts training episodes and those with ``info["is_success"]`` (DeepSea: the treasure was reached)."""

    def __init__(self) -> None:
        super().__init__()
        self.episodes = 0
        self.successes = 0
        self.first_success_episode: int | None = None

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"]):
            if done:
                self.episodes += 1
                if info.get("is_success", False):
                    self.successes += 1
                    if self.first_success_episode is None:
                        self.first_success_episode = self.episodes
        return True


def settings_for(env_id: str) -> dict[str, Any]:
    sections = yaml.safe_load(YAML.read_text())
    section = dict(sections[env_id])
    section.pop("n_timesteps")
    section.pop("policy")
    policy_kwargs = eval(section.pop("policy_kwargs", "dict()"))  # noqa: S307  (the YAML's own rl-zoo3 string)
    return dict(section, policy_kwargs=policy_kwargs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--algo", choices=["bbb", "blr", "dqn"], required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--eval-freq", type=int, default=1000)
    parser.add_argument("--n-eval-episodes", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/bayes_dqn/results/learning")
    args = parser.parse_args()
    th.set_num_threads(1)
    kwargs = settings_for(args.env)
    env = make_vec_env(args.env, n_envs=1, seed=args.seed)
    eval_env = make_vec_env(args.env, n_envs=1, seed=args.seed + 1000)
    if args.algo == "dqn":
        for key in BAYES_ONLY:
            kwargs.pop(key, None)
        kwargs.update(DQN_EXPLORATION["DeepSea" if args.env.startswith("DeepSea") else args.env])
        model: DQN = DQN("MlpPolicy", env, seed=args.seed, **kwargs)
    else:
        kwargs["head"] = args.algo
        model = BayesianDQN("MlpPolicy", env, seed=args.seed, **kwargs)
    successes = CountSuccesses()
    curve = []
    train_wall = train_cpu = 0.0
    while model.num_timesteps < args.steps:
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        model.learn(min(args.eval_freq, args.steps - model.num_timesteps), reset_num_timesteps=False, callback=successes)
        train_wall += time.perf_counter() - t_wall
        train_cpu += time.process_time() - t_cpu
        # Deterministic evaluation: greedy w.r.t. the posterior mean (BayesianDQN) / the Q-network (DQN, no epsilon).
        mean_return, std_return = evaluate_policy(model, eval_env, n_eval_episodes=args.n_eval_episodes, deterministic=True)
        curve.append(
            dict(
                timesteps=model.num_timesteps,
                eval_mean_return=float(mean_return),
                eval_std_return=float(std_return),
                train_episodes=successes.episodes,
                train_successes=successes.successes,
            )
        )
        print(args.algo, args.env, args.seed, curve[-1], f"cpu {train_cpu:.0f}s", flush=True)
    result = dict(
        algo=args.algo,
        env=args.env,
        seed=args.seed,
        steps=args.steps,
        settings={k: (str(v) if not isinstance(v, (int, float, str)) else v) for k, v in kwargs.items()},
        curve=curve,
        first_success_episode=successes.first_success_episode,
        train_cpu_s=train_cpu,
        train_wall_s=train_wall,
        final_eval_mean_return=curve[-1]["eval_mean_return"],
        last_train_returns=[float(ep["r"]) for ep in list(model.ep_info_buffer)[-20:]],
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.algo}_{args.env}_s{args.seed}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("curve", "settings")}), flush=True)


if __name__ == "__main__":
    main()
