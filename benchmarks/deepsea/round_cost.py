"""
What the posterior refit of one PSDRL round costs on DeepSea with a random-feature prior of ``K`` features: a replay of
random-play episodes, then the refit with the prior's Gram block kept per stored episode (as in training: the block is
built once, then only the episodes that enter or leave the replay change it) against the refit that sums the whole
Gram matrix over every transition, the refit over the replay's distinct histories with their counts
(``distinct_histories=True``: the same posterior, see ``docs/psdrl.md``), and the value fit on the new sample.
Random play is the least repetitive replay there is, so the saving of the distinct histories here is a lower bound.

python -m benchmarks.deepsea.round_cost --size 20 --episodes 1000 --features 512 2048 \
    --out benchmarks/deepsea/results/round_cost_N20.json
python -m benchmarks.deepsea.round_cost --size 25 --episodes 1000 --features 1024 \
    --out benchmarks/deepsea/results/round_cost_N25.json
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import numpy as np
import torch

from benchmarks.common import Timer, result_record, write_result
from benchmarks.deepsea.run_psdrl import build_model, load_settings
from sb3_bayes import PSDRL
from sb3_bayes.common.rollout import final_observations
from sb3_bayes.psdrl.psdrl import history_tree


def fill_with_random_play(model: PSDRL, episodes: int, seed: int) -> int:
    """Store ``episodes`` episodes of uniformly random moves in the model's replay; returns the transitions stored."""
    model._setup_learn(1, None)
    buffer, env, rng = model._ensure_replay_buffer(), model.env, np.random.default_rng(seed)
    assert env is not None
    obs, finished = env.reset(), 0
    while finished < episodes:
        actions = rng.integers(0, 2, size=1)
        new_obs, rewards, dones, infos = env.step(actions)
        next_obs, terminations = final_observations(new_obs, dones, infos)
        buffer.add(obs, actions, rewards, next_obs, dones, terminations)
        obs, finished = new_obs, finished + int(dones[0])
    return buffer.n_transitions()


def refit_summing_everything(model: PSDRL) -> None:
    """The refit without the kept block: the whole Gram matrix from every transition's features."""
    model.policy.posterior.fit((features, targets) for features, targets, _ in model._replay_features())


def seconds(fn: Callable[[], object]) -> tuple[float, float]:
    """The wall time and the process CPU time of ``fn()`` (one torch thread: the CPU time is the work, however many
    other processes share the cores)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - start_cpu


def measure(size: int, episodes: int, n_features: int) -> dict:
    """
    The times of one prior size (wall ``*_s`` and CPU ``*_cpu_s``): the refits, building the prior's block, the new
    sample and value fit (seed 0), first over every transition, then over the distinct histories.
    """
    model = build_model(size, 0, load_settings(size, [f"policy_kwargs.prior_features={n_features}"]))
    model.distinct_histories = False  # the original refit first, whatever the YAML says
    transitions = fill_with_random_play(model, episodes, seed=0)
    times: dict[str, tuple[float, float]] = {}
    with torch.no_grad():
        times["refit_building_the_block"] = seconds(model._fit_posterior)  # builds the prior's block over the replay
        times["refit_with_kept_prior_block"] = seconds(model._fit_posterior)  # the block is up to date: a round's cost
        times["refit_summing_everything"] = seconds(functools.partial(refit_summing_everything, model))
    model._start_states = model._fit_posterior()
    times["resample_and_value_fit"] = seconds(model._resample_and_fit_value)
    mean = model.policy.posterior.mean.clone()
    assert model.replay_buffer is not None
    episodes_now = list(model.replay_buffer.all_episodes())
    model.distinct_histories = True
    with torch.no_grad():
        times["of_which_building_the_history_tree"] = seconds(functools.partial(history_tree, episodes_now))
        times["refit_distinct_histories"] = seconds(model._fit_posterior)  # the prior's block is kept, as above
        difference = float((model.policy.posterior.mean - mean).abs().max())
    model._start_states = model._fit_posterior()
    times["resample_and_value_fit_distinct_histories"] = seconds(model._resample_and_fit_value)
    row: dict = dict(
        prior_features=n_features,
        transitions=transitions,
        distinct_histories=len(history_tree(episodes_now).counts),
        posterior_mean_max_abs_difference=difference,
    )
    for name, (wall, cpu) in times.items():
        row[f"{name}_s"], row[f"{name}_cpu_s"] = round(wall, 3), round(cpu, 3)
    return row


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=20)
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--features", type=int, nargs="+", default=[512, 2048])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    rows = []
    timer = Timer()
    for n_features in args.features:
        with timer:
            row = measure(args.size, args.episodes, n_features)
        print(row, flush=True)
        rows.append(row)
    write_result(
        args.out,
        result_record(
            benchmark="deepsea",
            experiment="round_cost",
            algorithm="PSDRL",
            env=f"DeepSea{args.size}-v0",
            seed=0,
            config=dict(size=args.size, episodes=args.episodes, features=args.features),
            results=dict(rows=rows),
            cpu_seconds=round(timer.cpu_seconds, 2),
            wall_seconds=round(timer.wall_seconds, 2),
        ),
    )


if __name__ == "__main__":
    main()
