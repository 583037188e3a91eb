"""
CPU cost per environment step of BayesianDQN's ``"ensemble"`` head on DeepSea, two implementation choices, each timed
against its alternative (``--compare``):

* ``adam``: PyTorch's default Adam (one kernel per tensor and operation) against its fused kernel
  (``optimizer_kwargs=dict(fused=True)``, the DeepSea sections of ``hyperparams/bayes_dqn.yml``). On one-hot
  observations of size N^2 the members' first layers hold most of the parameters (20 x 900 x 50 at N = 30), and
  Adam's elementwise passes over them take a large share of a step; the fused kernel does the same update in one pass.
* ``input``: the members' first layer as one batched matrix product over the whole input (``dense_input``) against
  the sum of the weight rows of its nonzero entries (``sparse_input``, what
  :meth:`sb3_bayes.common.ensemble.EnsembleLinear.forward_shared` does for inputs with at most
  ``SPARSE_INPUT_DENSITY`` nonzero entries, such as DeepSea's one-hot grid). Both with the section's fused Adam.

The variants are interleaved round by round (``--rounds``) so that load from other work hits them alike; each round
builds a fresh model as the DeepSea suite does (``benchmarks.deepsea.suite.build_model``: the section of the size,
``--set`` overrides as there), warms up for ``--warmup`` steps and times ``--steps`` more (CPU seconds of this process,
one torch thread).

python -m benchmarks.bayes_dqn.step_cost --size 30 --rounds 3
python -m benchmarks.bayes_dqn.step_cost --size 30 --set batch_size=32 --out benchmarks/bayes_dqn/results/step_cost_b32.json
python -m benchmarks.bayes_dqn.step_cost --compare input --size 40 --out benchmarks/bayes_dqn/results/step_cost_input_N40.json
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np
import torch

import sb3_bayes.common.ensemble as ensemble
from benchmarks.common import Timer, repo_path, result_record, write_result
from benchmarks.deepsea.suite import build_model

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "step_cost.json")
#: What each comparison times: its variants, each an ``optimizer_kwargs`` override (None: the section's) and the
#: largest input density of the first layer's sparse path (-1: never taken), baseline first.
COMPARISONS: dict[str, dict[str, tuple[dict[str, Any] | None, float]]] = {
    "adam": {"adam": ({}, ensemble.SPARSE_INPUT_DENSITY), "adam_fused": ({"fused": True}, ensemble.SPARSE_INPUT_DENSITY)},
    "input": {"dense_input": (None, -1.0), "sparse_input": (None, ensemble.SPARSE_INPUT_DENSITY)},
}


def time_variant(
    size: int, overrides: list[str], variant: tuple[dict[str, Any] | None, float], warmup: int, steps: int, seed: int
) -> tuple[float, dict[str, Any]]:
    """CPU milliseconds per environment step (collection and one gradient step) of one fresh model, and its settings."""
    optimizer_kwargs, sparse_input_density = variant
    # The suite's model: the DeepSea section of the size, the overrides, then the variant's optimiser settings.
    optimizer = [] if optimizer_kwargs is None else [f"policy_kwargs.optimizer_kwargs={optimizer_kwargs!r}"]
    model, config = build_model("bayes_dqn", size, seed, stochastic=False, overrides=[*overrides, *optimizer])
    default_density = ensemble.SPARSE_INPUT_DENSITY
    ensemble.SPARSE_INPUT_DENSITY = sparse_input_density
    try:
        model.learn(warmup)
        with Timer() as timer:
            model.learn(steps, reset_num_timesteps=False)
    finally:
        ensemble.SPARSE_INPUT_DENSITY = default_density
    return 1e3 * timer.cpu_seconds / steps, {**config, "sparse_input_density": sparse_input_density}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compare", choices=sorted(COMPARISONS), default="adam", help="what to time (see above)")
    p.add_argument("--size", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=500, help="steps before timing (past learning_starts)")
    p.add_argument("--steps", type=int, default=3000, help="timed steps per round and variant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="override, e.g. batch_size=128")
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args()
    torch.set_num_threads(1)
    variants = COMPARISONS[args.compare]
    per_round: dict[str, list[float]] = {variant: [] for variant in variants}
    configs: dict[str, dict[str, Any]] = {}
    with Timer() as total:
        for _ in range(args.rounds):
            for variant, setting in variants.items():
                cpu_ms, configs[variant] = time_variant(args.size, args.set, setting, args.warmup, args.steps, args.seed)
                per_round[variant].append(cpu_ms)
                print(f"{variant}: {per_round[variant][-1]:.2f} CPU ms per step", flush=True)
    median = {variant: float(np.median(values)) for variant, values in per_round.items()}
    baseline, alternative = variants
    ratio_name = "fused_over_default" if args.compare == "adam" else "sparse_over_dense"
    results = {
        "cpu_ms_per_step": per_round,
        "median_cpu_ms_per_step": median,
        ratio_name: median[alternative] / median[baseline],
    }
    record = result_record(
        benchmark="bayes_dqn",
        experiment="step_cost",
        algorithm="bayes_dqn-ensemble",
        env=f"DeepSea-v0(size={args.size})",
        seed=args.seed,
        config={**vars(args), "out": repo_path(args.out), "variants": configs},
        results=results,
        cpu_seconds=total.cpu_seconds,
        wall_seconds=total.wall_seconds,
    )
    write_result(args.out, record, echo=False)
    print(f"median CPU ms per step: {median}; {ratio_name}: {results[ratio_name]:.2f}")


if __name__ == "__main__":
    main()
