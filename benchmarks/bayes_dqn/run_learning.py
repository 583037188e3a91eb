"""BayesianDQN (any head) vs SB3 DQN at equal environment steps: one run, one JSON with the evaluation curve and timings.

Every algorithm gets the same settings (network, learning rate, replay, batch, target updates, training frequency):
the ``hyperparams/bayes_dqn.yml`` section of the environment. DQN adds its epsilon-greedy schedule (rl-zoo3's
CartPole schedule; bsuite's DQN epsilon 0.05 for DeepSea); BayesianDQN explores by Thompson sampling (epsilon 0.001).

Usage: python -m benchmarks.bayes_dqn.run_learning --algo bbb --env CartPole-v1 --seed 0 --steps 15000 --out DIR
    [--set "dict(bootstrap_prob=1.0)" --name ensemble_p1]
"""

import argparse
import json
import os
from typing import Any

import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback

import sb3_bayes.envs  # noqa: F401  (registers DeepSea{N}-v0)
from benchmarks.common import (
    hyperparams_path,
    learn_with_evaluation,
    load_zoo_section,
    make_env,
    make_eval_env,
    result_record,
    write_result,
)
from sb3_bayes.bayes_dqn import BayesianDQN

#: DQN's exploration schedule per task (the Bayesian agents use none beyond epsilon 0.001).
DQN_EXPLORATION = {
    "CartPole-v1": dict(exploration_fraction=0.16, exploration_final_eps=0.04),  # rl-zoo3 dqn.yml
    "DeepSea": dict(exploration_fraction=0.0, exploration_initial_eps=0.05, exploration_final_eps=0.05),  # bsuite DQN
}
#: The ensemble head's network settings (``policy_kwargs``), which DQN has not.
ENSEMBLE_POLICY_KWARGS = ("n_heads", "prior_scale")
BAYES_ONLY = (
    "head",
    "kl_weight",
    "resample_every",
    "blr_prior_var",
    "blr_noise_var",
    "posterior_update_freq",
    "posterior_window",
    "bootstrap_prob",
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
    """The model's arguments: the section of ``hyperparams/bayes_dqn.yml``, without its run settings."""
    _, section = load_zoo_section(hyperparams_path("bayes_dqn.yml"), env_id)
    section.pop("n_timesteps")
    section.pop("policy")
    policy_kwargs = section.pop("policy_kwargs", {})
    return dict(section, policy_kwargs=policy_kwargs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--algo", choices=["bbb", "blr", "ensemble", "dqn"], required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--eval-freq", type=int, default=1000)
    parser.add_argument("--n-eval-episodes", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/bayes_dqn/results/learning")
    parser.add_argument("--set", default="{}", help="overrides of the YAML settings, a Python dict")
    parser.add_argument("--name", help="the run's name in the results (default: --algo)")
    args = parser.parse_args()
    name = args.name or args.algo
    th.set_num_threads(1)
    kwargs = {**settings_for(args.env), **eval(args.set)}
    env = make_env(args.env, args.seed)
    eval_env = make_eval_env(args.env, args.seed)
    if args.algo == "dqn":
        for key in BAYES_ONLY:
            kwargs.pop(key, None)
        for key in ENSEMBLE_POLICY_KWARGS:
            kwargs["policy_kwargs"].pop(key, None)
        kwargs.update(DQN_EXPLORATION["DeepSea" if args.env.startswith("DeepSea") else args.env])
        model: DQN = DQN("MlpPolicy", env, seed=args.seed, **kwargs)
    else:
        kwargs["head"] = args.algo
        model = BayesianDQN("MlpPolicy", env, seed=args.seed, **kwargs)
    successes = CountSuccesses()
    # Deterministic evaluation: greedy w.r.t. the posterior mean (BayesianDQN) / the Q-network (DQN, no epsilon).
    curve, training = learn_with_evaluation(
        model,
        args.steps,
        args.eval_freq,
        eval_env,
        n_eval_episodes=args.n_eval_episodes,
        callback=successes,
        point_extras=lambda: dict(train_episodes=successes.episodes, train_successes=successes.successes),
        label=f"{name} {args.env} {args.seed}",
    )
    config = dict(
        steps=args.steps,
        eval_freq=args.eval_freq,
        n_eval_episodes=args.n_eval_episodes,
        settings={k: (str(v) if not isinstance(v, (int, float, str)) else v) for k, v in kwargs.items()},
    )
    results = dict(
        curve=curve,
        first_success_episode=successes.first_success_episode,
        final_eval_mean_return=curve[-1]["eval_mean_return"],
        last_train_returns=[float(ep["r"]) for ep in list(model.ep_info_buffer)[-20:]],
    )
    record = result_record(
        benchmark="bayes_dqn",
        experiment="learning",
        algorithm=name,
        env=args.env,
        seed=args.seed,
        config=config,
        results=results,
        cpu_seconds=training.cpu_seconds,
        wall_seconds=training.wall_seconds,
    )
    write_result(os.path.join(args.out, f"{name}_{args.env}_s{args.seed}.json"), record)
    print(json.dumps({k: v for k, v in results.items() if k != "curve"}), flush=True)


if __name__ == "__main__":
    main()
