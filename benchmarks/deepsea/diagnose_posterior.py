"""
Does PSDRL's last-layer posterior know what the agent has not tried? A diagnostic on DeepSea.

Trains PSDRL with the settings of `hyperparams/psdrl.yml` (section `DeepSea<N>-v0`, optionally overridden) for a number
of episodes, then, for every start state in the replay and both actions, computes the posterior predictive standard
deviation of the sampled reward, ``sqrt(s_r phi^T A^-1 phi)`` (`BayesianLinearRegression.predictive_variance`), and
groups it by whether that (cell, action) pair occurs in the replay ("tried") or not ("untried"). Posterior sampling
explores deeply only if untried pairs are far more uncertain than tried ones (tabular PSRL: prior width against ~0).

python -m benchmarks.deepsea.diagnose_posterior --size 10 --episodes 60 --seed 0 \
    --out benchmarks/deepsea/results/diagnose_N10_s0.json [--set policy_kwargs.ridge=0.01 ...]
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.common import Timer, result_record, write_result
from benchmarks.deepsea.exploration import tried_pairs
from benchmarks.deepsea.run_psdrl import build_model, load_settings, run_arguments


def main() -> None:
    p = run_arguments()
    p.add_argument("--out", required=True)
    args = p.parse_args()

    model = build_model(args.size, args.seed, load_settings(args.size, args.set))
    with Timer() as timer:
        model.learn(total_timesteps=args.size * args.episodes)

    policy, buffer = model.policy, model.replay_buffer
    assert buffer is not None
    episodes = list(buffer.all_episodes())
    # The observation is the one-hot cell, so its argmax names the cell; a start state names its observation by its
    # content key (one start state per transition, or per distinct history with distinct_histories).
    cell_of_key = {
        int(key): int(cell)
        for episode in episodes
        for key, cell in zip(episode.observation_keys()[:-1], episode.observations[:-1].reshape(len(episode), -1).argmax(1))
    }
    tried = tried_pairs(episodes)
    with torch.no_grad():
        parts = list(model._replay_features())
        ordered_cells = [cell_of_key[int(key)] for *_, start in parts for key in start.observation_keys]
        starts = torch.cat([start.states for *_, start in parts])
        projections = torch.cat([start.projections for *_, start in parts]) if policy.prior_kernel is not None else None
        latent, hidden = starts[:, : policy.transition.latent_dim], starts[:, policy.transition.latent_dim :]
        groups: dict[str, list[float]] = {"tried": [], "untried": []}
        for action in range(policy.transition.n_actions):
            one_hot = policy.one_hot(torch.full((len(starts),), action))
            features = policy.bayesian_features(policy.transition.step(latent, one_hot, hidden).features, projections, one_hot)
            reward_std = policy.posterior.predictive_variance(features)[:, -1].sqrt()
            for cell, std in zip(ordered_cells, reward_std.tolist()):
                groups["tried" if (int(cell), action) in tried else "untried"].append(std)
    summary = {
        name: dict(n=len(values), mean_std=float(np.mean(values)) if values else None) for name, values in groups.items()
    }
    n_cells = len({c for c, _ in tried})
    successes = sum(float(e.rewards.sum()) > 0.5 for e in episodes)
    print(f"N={args.size} seed {args.seed} after {args.episodes} episodes: {n_cells} cells visited, {successes} goals")
    print(f"reward predictive std: {summary}  ({timer.cpu_seconds:.0f} CPU s)")
    results = dict(
        cells_visited=n_cells, cells_total=args.size * (args.size + 1) // 2, goals=successes, reward_predictive_std=summary
    )
    write_result(
        args.out,
        result_record(
            benchmark="deepsea",
            experiment="diagnose_posterior",
            algorithm="PSDRL",
            env=f"DeepSea{args.size}-v0",
            seed=args.seed,
            config=dict(size=args.size, episodes=args.episodes, overrides=args.set),
            results=results,
            cpu_seconds=round(timer.cpu_seconds, 2),
            wall_seconds=round(timer.wall_seconds, 2),
        ),
    )


if __name__ == "__main__":
    main()
