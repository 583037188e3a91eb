"""
How many random features does the random-feature prior need on DeepSea N? A closed-form check, no training.

The prior's features of DeepSea's (cell, action) pairs are ``c psi([one-hot cell, one-hot action])`` with ``K`` random
Fourier features. With ``K`` features, at most ``K`` pairs can be independent a priori: once many pairs are tried,
the untried ones' features lie partly in the span of the tried ones and the regression becomes confident about them.
For the reachable pairs of DeepSea N, this script marks a random subset as tried (once each), fits the posterior of the
prior block alone with the YAML's ridge, noise precision and scales, and reports the predictive reward std of tried and
untried pairs (tabular ideal: ``sqrt(s c^2 / ridge)`` untried, ``sqrt(s c^2 / (ridge + beta c^2))`` tried).

python -m benchmarks.deepsea.prior_rank --size 20 --features 512 1024 2048 --tried 200 380 \
    --out benchmarks/deepsea/results/prior_rank_N20.json
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import Timer, result_record, write_result
from sb3_bayes.common.blr import BayesianLinearRegression
from sb3_bayes.common.random_features import RandomFourierFeatures


def measure(args: argparse.Namespace) -> dict:
    """The untried and tried pairs' reward std for each number of features and of tried pairs, and the tabular ideal."""
    n = args.size
    inputs = []
    for row in range(n):
        for column in range(row + 1):  # the reachable cells: column <= row
            for action in range(2):
                x = torch.zeros(n * n + 2)
                x[row * n + column] = 1.0
                x[n * n + action] = 1.0
                inputs.append(x)
    pairs = torch.stack(inputs)
    rows = []
    for n_features in args.features:
        torch.manual_seed(args.seed)
        psi = args.scale * RandomFourierFeatures(n * n + 2, n_features, args.lengthscale)(pairs).double()
        for n_tried in args.tried:
            order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(args.seed))
            tried, untried = order[:n_tried], order[n_tried:]
            regression = BayesianLinearRegression(
                n_features, 1, args.ridge, args.noise_precision, prior_scale=args.reward_prior_scale
            )
            regression.fit([(psi[tried], torch.zeros(n_tried, 1, dtype=torch.float64))])
            std = regression.predictive_variance(psi)[:, 0].sqrt()
            row = dict(
                features=n_features,
                pairs=len(pairs),
                tried=n_tried,
                untried_std=round(float(std[untried].mean()), 4),
                tried_std=round(float(std[tried].mean()), 4),
            )
            print(row, flush=True)
            rows.append(row)
    ideal_untried = (args.reward_prior_scale * args.scale**2 / args.ridge) ** 0.5
    ideal_tried = (args.reward_prior_scale * args.scale**2 / (args.ridge + args.noise_precision * args.scale**2)) ** 0.5
    print(f"tabular ideal: untried {ideal_untried:.4f}, tried once {ideal_tried:.4f}")
    return dict(ideal=dict(untried_std=round(ideal_untried, 4), tried_std=round(ideal_tried, 4)), rows=rows)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=20)
    p.add_argument("--features", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--tried", type=int, nargs="+", default=[200, 380])
    p.add_argument("--lengthscale", type=float, default=0.5)
    p.add_argument("--scale", type=float, default=10.0, help="prior_feature_scale c")
    p.add_argument("--ridge", type=float, default=100.0)
    p.add_argument("--noise-precision", type=float, default=100.0)
    p.add_argument("--reward-prior-scale", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    with Timer() as timer:
        results = measure(args)
    write_result(
        args.out,
        result_record(
            benchmark="deepsea",
            experiment="prior_rank",
            algorithm=None,
            env=f"DeepSea{args.size}-v0",
            seed=args.seed,
            config={k: v for k, v in vars(args).items() if k != "out"},
            results=results,
            cpu_seconds=round(timer.cpu_seconds, 2),
            wall_seconds=round(timer.wall_seconds, 2),
        ),
    )


if __name__ == "__main__":
    main()
