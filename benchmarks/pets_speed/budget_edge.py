"""
Cost of the most expensive PETS configuration the CPU-bounded Optuna search space can sample (zoo_plugins/samplers.py,
``PETS_FLOPS_BUDGET``): samples ``--n-trials`` configurations with a seeded ``RandomSampler`` as on a CPU, takes the one
with the largest estimated FLOPs per action, trains it on one random Pendulum-v1 episode and times ``--n-actions``
planned actions (one torch thread). The estimate divided by the time is the rate the budget assumes (~30 GFLOP/s).

    python -m benchmarks.pets_speed.budget_edge --out benchmarks/pets_speed/results/budget_edge.json
"""

import argparse

import optuna
import torch

from benchmarks.common import Timer, result_record, write_result
from sb3_bayes import PETS
from zoo_plugins import samplers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-trials", type=int, default=200)
    parser.add_argument("--n-actions", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    samplers.planning_budget = lambda: samplers.PETS_FLOPS_BUDGET  # as on a CPU, even where CUDA is available
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
    largest: tuple[float, dict] = (0.0, {})
    for _ in range(args.n_trials):
        trial = study.ask()
        kwargs = samplers.sample_pets_params(trial, n_actions=1, n_envs=1, additional_args={})
        flops = trial.user_attrs["planning_flops_per_action"]
        largest = max(largest, (flops, kwargs), key=lambda pair: pair[0])
        study.tell(trial, 0.0)
    flops, kwargs = largest
    model = PETS("MlpPolicy", "Pendulum-v1", reward_fn="auto", seed=args.seed, n_epochs=25, device="cpu", **kwargs)
    training = Timer()
    with training:
        model.learn(200)  # the random episode and the first training round
    planning = Timer()
    with planning:
        model.learn(args.n_actions, reset_num_timesteps=False)
    seconds = planning.wall_seconds / args.n_actions
    results = dict(
        planning_flops_per_action=flops,
        budget=samplers.PETS_FLOPS_BUDGET,
        wall_seconds_per_action=seconds,
        cpu_seconds_per_action=planning.cpu_seconds / args.n_actions,
        gflops_per_second=flops / seconds / 1e9,
        first_round_wall_seconds=training.wall_seconds,
        estimated_cpu_minutes_for_800_planned_steps=planning.cpu_seconds / args.n_actions * 800 / 60,
    )
    record = result_record(
        benchmark="pets_speed",
        experiment="budget_edge",
        algorithm="pets",
        env="Pendulum-v1",
        seed=args.seed,
        config={**kwargs, "n_trials": args.n_trials, "n_actions": args.n_actions},
        results=results,
        cpu_seconds=training.cpu_seconds + planning.cpu_seconds,
        wall_seconds=training.wall_seconds + planning.wall_seconds,
    )
    write_result(args.out, record, echo=True)


if __name__ == "__main__":
    main()
