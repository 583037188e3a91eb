"""
BayesianDQN on DeepSea with the settings of ``hyperparams/bayes_dqn.yml`` (the ``DeepSea{N}-v0`` section, else
``DeepSea-v0`` with the size as an environment argument): episodes to the first goal and bsuite's solved episode.

bsuite's deep_sea analysis calls a size solved at the first episode where the running fraction of bad episodes (the
agent left the optimal diagonal, ``info["bad_episode"]``) drops below 0.9. A run stops there (``--after-solved`` more
episodes), at ``--episodes`` or after ``--max-wall-seconds`` (the result then says so: ``stopped_by_wall_clock``).

python -m benchmarks.bayes_dqn.deepsea --size 10 --seed 0 --episodes 2000 --out benchmarks/bayes_dqn/results/deepsea
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import torch as th

import sb3_bayes.envs  # noqa: F401  (registers DeepSea)
from benchmarks.common import Timer, hyperparams_path, load_zoo_section, make_env, result_record, write_result
from benchmarks.deepsea.exploration import DeepSeaRecorder
from sb3_bayes.bayes_dqn import BayesianDQN

#: bsuite's deep_sea analysis: solved once the running fraction of bad episodes is below this.
SOLVED_BAD_FRACTION = 0.9


class SolvedRecorder(DeepSeaRecorder):
    """:class:`DeepSeaRecorder` that also records bad episodes and stops ``after_solved`` episodes after bsuite's solve."""

    def __init__(self, size: int, budget: int, after_solved: int, max_wall_seconds: float = 0.0) -> None:
        super().__init__(size, budget=budget)
        self.after_solved = after_solved
        self.max_wall_seconds = max_wall_seconds
        self.stopped_by_wall_clock = False
        self.n_bad = 0
        self.solved: int | None = None

    def episode_extras(self, info: dict[str, Any]) -> dict[str, Any]:
        return dict(bad=bool(info.get("bad_episode", True)))

    def on_episode(self, record: dict[str, Any]) -> None:
        super().on_episode(record)
        self.n_bad += record["bad"]
        n = len(self.episodes)
        if self.solved is None and self.n_bad / n < SOLVED_BAD_FRACTION:
            self.solved = n

    def keep_going(self) -> bool:
        if self.solved is not None and len(self.episodes) >= self.solved + self.after_solved:
            return False
        if self.max_wall_seconds and time.perf_counter() - self.t0 > self.max_wall_seconds:
            self.stopped_by_wall_clock = True
            return False
        return super().keep_going()


def settings_for(size: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The YAML section's name, the model's arguments (without the run settings) and the environment's arguments."""
    name, section = load_zoo_section(hyperparams_path("bayes_dqn.yml"), f"DeepSea{size}-v0", "DeepSea-v0")
    for key in ("n_timesteps", "policy"):
        section.pop(key, None)
    return name, section, ({} if name == f"DeepSea{size}-v0" else dict(size=size))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, required=True, help="episode budget")
    parser.add_argument("--after-solved", type=int, default=0, help="episodes to go on after bsuite's solved episode")
    parser.add_argument("--max-wall-seconds", type=float, default=0.0, help="stop after this long (0: never)")
    parser.add_argument("--set", default="{}", help="overrides of the YAML settings, a Python dict")
    parser.add_argument("--name", default="ensemble")
    parser.add_argument("--out", default="benchmarks/bayes_dqn/results/deepsea")
    args = parser.parse_args()
    th.set_num_threads(1)
    section_name, kwargs, env_kwargs = settings_for(args.size)
    kwargs.update(eval(args.set))
    env_id = "DeepSea-v0" if env_kwargs else f"DeepSea{args.size}-v0"
    model = BayesianDQN("MlpPolicy", make_env(env_id, args.seed, env_kwargs=env_kwargs), seed=args.seed, **kwargs)
    recorder = SolvedRecorder(args.size, args.episodes, args.after_solved, args.max_wall_seconds)
    with Timer() as timer:
        model.learn(total_timesteps=args.size * args.episodes, callback=recorder)
    summary = dict(
        recorder.summary(),
        solved_episode=recorder.solved,
        bad_episodes=recorder.n_bad,
        stopped_by_wall_clock=recorder.stopped_by_wall_clock,
    )
    print(f"{args.name} N={args.size} seed {args.seed}: {summary} wall {timer.wall_seconds:.0f}s", flush=True)
    write_result(
        os.path.join(args.out, f"{args.name}_N{args.size}_s{args.seed}.json"),
        result_record(
            benchmark="bayes_dqn",
            experiment="deepsea",
            algorithm=f"BayesianDQN ({args.name})",
            env=f"DeepSea{args.size}",
            seed=args.seed,
            config=dict(
                size=args.size,
                episode_budget=args.episodes,
                after_solved=args.after_solved,
                max_wall_seconds=args.max_wall_seconds,
                section=section_name,
                settings={k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in kwargs.items()},
            ),
            results=dict(summary=summary, returns=recorder.returns, bad=[ep["bad"] for ep in recorder.episodes]),
            cpu_seconds=round(timer.cpu_seconds, 2),
            wall_seconds=round(timer.wall_seconds, 2),
        ),
    )


if __name__ == "__main__":
    main()
