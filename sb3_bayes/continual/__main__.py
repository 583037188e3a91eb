"""``python -m sb3_bayes.continual``: learn a task sequence with one model and write its forgetting matrix."""

import argparse
import json
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

from sb3_bayes.continual.runner import SEQUENCES, Task, make_task_env, run_sequence, save_result

#: Short names of the algorithms the command knows; any ``package.module:Class`` path works as well.
ALGOS = {
    "bayes_ddpg": "sb3_bayes.bayes_ddpg:BayesianDDPG",
    "bayes_dqn": "sb3_bayes.bayes_dqn:BayesianDQN",
    "td3": "stable_baselines3:TD3",
    "ddpg": "stable_baselines3:DDPG",
    "sac": "stable_baselines3:SAC",
    "dqn": "stable_baselines3:DQN",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sb3_bayes.continual",
        description="Train one model on a sequence of tasks, consolidating after each (EWC/VCL when the algorithm has "
        "consolidate()), and evaluate every task after each one (forgetting matrix as CSV, PNG and JSON).",
    )
    parser.add_argument("--algo", default="bayes_ddpg", help=f"one of {sorted(ALGOS)} or a 'module:Class' path")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--sequence", choices=sorted(SEQUENCES), default="pendulum-gravity", help="a named sequence")
    group.add_argument(
        "--tasks", nargs="+", help="tasks as ENV_ID[:kwarg=value,...][@attribute=value,...], e.g. Pendulum-v1:g=4.0"
    )
    parser.add_argument("--n-timesteps", type=int, nargs="+", default=[20_000], help="steps per task (one, or one per task)")
    parser.add_argument("--policy", default=None, help="policy name (default: CnnPolicy for Atari, else MlpPolicy)")
    parser.add_argument("--hyperparams", default="{}", help="JSON dict of constructor arguments")
    parser.add_argument("--consolidation", choices=["none", "ewc", "vcl"], default=None)
    parser.add_argument("--ewc-lambda", type=float, default=None)
    parser.add_argument("--ewc-online", action="store_true", help="online EWC (with --ewc-decay)")
    parser.add_argument("--ewc-decay", type=float, default=None)
    parser.add_argument("--action-noise", type=float, default=0.0, help="std of Gaussian action noise (continuous actions)")
    parser.add_argument("--consolidate-samples", type=int, default=10_000)
    parser.add_argument("--keep-buffer", action="store_true", help="keep the replay buffer across tasks")
    parser.add_argument("--n-envs", type=int, default=1)
    parser.add_argument("--n-eval-episodes", type=int, default=5)
    parser.add_argument("--stochastic-eval", action="store_true", help="evaluate with posterior samples / stochastic actions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="continual_results")
    parser.add_argument("--name", default=None, help="base name of the output files")
    parser.add_argument("--verbose", type=int, default=0)
    return parser.parse_args(argv)


def build_kwargs(args: argparse.Namespace, action_space: spaces.Space) -> dict[str, Any]:
    """Constructor arguments from ``--hyperparams`` and the consolidation / noise flags."""
    kwargs: dict[str, Any] = json.loads(args.hyperparams)
    if not isinstance(kwargs, dict):
        raise ValueError(f"--hyperparams must be a JSON object, got {args.hyperparams!r}.")
    for key, value in (("consolidation", args.consolidation), ("ewc_lambda", args.ewc_lambda), ("ewc_decay", args.ewc_decay)):
        if value is not None:
            kwargs[key] = value
    if args.ewc_online:
        kwargs["ewc_online"] = True
    if args.action_noise > 0:
        if not isinstance(action_space, spaces.Box):
            raise ValueError("--action-noise needs a continuous (Box) action space.")
        from stable_baselines3.common.noise import NormalActionNoise

        dim = int(np.prod(action_space.shape))
        kwargs["action_noise"] = NormalActionNoise(np.zeros(dim), args.action_noise * np.ones(dim))
    return kwargs


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the command; returns the summary that is also written as JSON."""
    args = parse_args(argv)
    th.set_num_threads(args.threads)
    tasks = [Task.parse(spec) for spec in args.tasks] if args.tasks else SEQUENCES[args.sequence]
    algo_class = pkgutil.resolve_name(ALGOS.get(args.algo, args.algo))
    env = make_task_env(tasks[0], n_envs=args.n_envs, seed=args.seed)
    policy = args.policy or ("CnnPolicy" if tasks[0].is_atari else "MlpPolicy")
    kwargs = build_kwargs(args, env.action_space)
    model = algo_class(policy, env, seed=args.seed, device=args.device, verbose=args.verbose, **kwargs)
    n_timesteps = args.n_timesteps[0] if len(args.n_timesteps) == 1 else args.n_timesteps
    result = run_sequence(
        model,
        tasks,
        n_timesteps,
        n_eval_episodes=args.n_eval_episodes,
        deterministic=not args.stochastic_eval,
        reset_buffer=not args.keep_buffer,
        consolidate_samples=args.consolidate_samples,
        n_envs=args.n_envs,
        seed=args.seed,
    )
    consolidation = kwargs.get("consolidation", "none") if hasattr(model, "consolidate") else "none"
    name = args.name or f"{args.algo.replace(':', '_').replace('.', '_')}_{consolidation}_s{args.seed}"
    paths = save_result(result, args.out, name, title=f"{args.algo} ({consolidation}), seed {args.seed}")
    summary = {**result.summary(), "command": " ".join(["python -m sb3_bayes.continual", *(argv or sys.argv[1:])])}
    with open(paths["json"], "w") as file:
        json.dump(summary, file, indent=2)
    print(f"wrote {paths['csv']}, {paths['png']}, {paths['json']}")
    print(
        f"average final return {summary['average_final_return']:.1f}, average forgetting {summary['average_forgetting']:.1f}"
    )
    return summary


if __name__ == "__main__":
    main()
