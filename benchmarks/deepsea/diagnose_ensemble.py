"""
Why an ensemble stops short of the treasure: the posterior diagnostic of BayesianDQN's ``"ensemble"`` head on DeepSea.

With one member drawn per episode (Thompson sampling over the ensemble), the chance that an episode reaches the
treasure is the share of members whose greedy walk down the diagonal goes right in every one of the N cells. This
script trains BayesianDQN under the suite's settings (``benchmarks.deepsea.suite.build_model``: the YAML section of
the size, ``--set`` overrides) and every ``--every`` episodes records, from the online network:

- per member, the depth of its greedy walk: how many diagonal cells in a row it goes right from the start (N: it
  reaches the treasure);
- the deepest diagonal cell the agent has stood in so far (the frontier of its data);
- on the diagonal, the ensemble's mean and standard deviation of the advantage of "right", ``Q_k(s, right) -
  Q_k(s, left)``, in the cells already visited and in the cells beyond the frontier. Deep exploration needs the members
  to disagree beyond the frontier: if every member's walk ends at the frontier, the prior's spread there has been
  unlearned, and new members are not drawn to go further.

python -m benchmarks.deepsea.diagnose_ensemble --size 30 --seed 0 --episodes 3000 --every 250 --set batch_size=32 \
    --out benchmarks/deepsea/results/diagnose_ensemble/N30_s0.json
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from benchmarks.common import Timer, repo_path, result_record, write_result
from benchmarks.deepsea.suite import SuiteRecorder, build_model
from sb3_bayes import BayesianDQN
from sb3_bayes.envs.deep_sea import DeepSeaEnv, bsuite_criterion


def diagonal_snapshot(model: BayesianDQN, env: DeepSeaEnv, frontier: int) -> dict[str, Any]:
    """
    The members' greedy walks down the diagonal and the advantage of "right" there (see the module docstring).

    :param model: A BayesianDQN with the ``"ensemble"`` head.
    :param env: The (unwrapped) DeepSea it trains on, for its action mapping.
    :param frontier: The deepest diagonal row visited so far.
    :return: Walk depths per member, and the advantage statistics within and beyond the frontier.
    """
    size = env.size
    observations = np.zeros((size, size * size), dtype=np.float32)
    observations[np.arange(size), np.arange(size) * size + np.arange(size)] = 1.0  # the diagonal cells (r, r)
    right = torch.as_tensor([env.right_action(r, r) for r in range(size)])
    with torch.no_grad():
        q_values = model.q_net.member_q_values(torch.as_tensor(observations))  # [K, N, 2]
    rows = torch.arange(size)
    q_right = q_values[:, rows, right]
    q_left = q_values[:, rows, 1 - right]
    advantage = (q_right - q_left).numpy()  # [K, N]
    goes_right = advantage > 0
    # Depth of each member's greedy walk: the first diagonal cell where it goes left (N: none).
    depths = [int(np.argmin(row)) if not row.all() else size for row in goes_right]
    within, beyond = advantage[:, : frontier + 1], advantage[:, frontier + 1 :]
    return dict(
        depths=depths,
        members_reaching_treasure=int(sum(d == size for d in depths)),
        frontier=frontier,
        advantage_mean_within=float(within.mean()),
        advantage_std_within=float(within.std(axis=0).mean()),
        advantage_mean_beyond=float(beyond.mean()) if beyond.size else None,
        advantage_std_beyond=float(beyond.std(axis=0).mean()) if beyond.size else None,
        share_right_per_row=[round(float(x), 3) for x in goes_right.mean(axis=0)],
    )


class DiagnosingRecorder(SuiteRecorder):
    """:class:`SuiteRecorder` that takes a :func:`diagonal_snapshot` every ``every`` episodes."""

    def __init__(self, size: int, cap: int, every: int) -> None:
        threshold, min_episodes = bsuite_criterion(deterministic=True)
        super().__init__(size, cap=cap, margin=0, threshold=threshold, min_episodes=min_episodes)
        self.every = every
        self.snapshots: list[dict[str, Any]] = []

    def on_episode(self, record: dict[str, Any]) -> None:
        super().on_episode(record)
        n = len(self.episodes)
        if n % self.every == 0:
            frontier = max((r for r, c in self.cells if r == c and r < self.size), default=0)
            env = self.training_env.envs[0].unwrapped  # type: ignore[attr-defined]
            snapshot = {"episode": n, **diagonal_snapshot(self.model, env, frontier)}  # type: ignore[arg-type]
            self.snapshots.append(snapshot)
            print(
                f"episode {n}: frontier {frontier}, member depths {sorted(snapshot['depths'])}, advantage of right "
                f"within {snapshot['advantage_mean_within']:+.4f} (std {snapshot['advantage_std_within']:.4f}), beyond "
                f"{snapshot['advantage_mean_beyond']} (std {snapshot['advantage_std_beyond']})",
                flush=True,
            )

    def keep_going(self) -> bool:
        return len(self.episodes) < self.budget  # the whole budget: the snapshots after a solve are part of the picture


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=3000)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--set", action="append", default=[], help="override, e.g. batch_size=32 or policy_kwargs.n_heads=20")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    model, config = build_model("bayes_dqn", args.size, args.seed, False, args.set)
    recorder = DiagnosingRecorder(args.size, args.episodes, args.every)
    with Timer() as timer:
        model.learn(total_timesteps=args.size * args.episodes, callback=recorder)
    summary = {**recorder.summary(), "solved_episode": recorder.solved}
    record = result_record(
        benchmark="deepsea",
        experiment="diagnose_ensemble",
        algorithm="bayes_dqn-ensemble",
        env=f"DeepSea-v0(size={args.size})",
        seed=args.seed,
        config={**vars(args), "out": repo_path(args.out), **config},
        results=dict(summary=summary, snapshots=recorder.snapshots),
        cpu_seconds=timer.cpu_seconds,
        wall_seconds=timer.wall_seconds,
    )
    write_result(args.out, record)
    print(summary)


if __name__ == "__main__":
    main()
