"""
The DeepSea suite under bsuite's protocol (Osband et al., "Behaviour Suite for RL", ICLR 2020, deep_sea experiment):
sizes N, an episode cap (bsuite: 10k), and per (algorithm, N, seed) the episode at which the run counts as solved,
the first episode where fewer than 90 % of the episodes so far were bad (``info["bad_episode"]``,
:func:`sb3_bayes.envs.deep_sea.bsuite_solved_episode`); in the stochastic variant, as bsuite's deep_sea_stochastic
analysis, fewer than 80 % and not before episode 100 (:func:`sb3_bayes.envs.deep_sea.bsuite_criterion`). A run
stops ``--margin`` episodes after it is solved, or at the cap. One JSON per run (the schema of
``benchmarks/README.md``), then ``summary.md`` and ``scaling.png`` (episodes to solve against N on log-log axes, with
the fitted exponent per algorithm and the ``2^N`` of dithering exploration).

python -m benchmarks.deepsea.suite --algo bayes_dqn --sizes 10 20 30 40 50 --seeds 3
python -m benchmarks.deepsea.suite --algo bayes_dqn --label bayes_dqn-blr --set "head='blr'" --sizes 10 20 --seeds 3
python -m benchmarks.deepsea.suite --algo dqn --sizes 10 20 --seeds 3 --cap 2000 --stochastic
python -m benchmarks.deepsea.suite --report            # summary.md and scaling.png of the runs in --out-dir

Algorithms: ``dqn`` (SB3 DQN with the epsilon-greedy settings of ``run_dqn.py``, exploration over 16 % of the cap) and
every key of ``zoo_plugins.registry.REGISTRY`` (``psdrl``, ``bayes_dqn``, ...) with the settings of its YAML: the section
``DeepSea<N>-v0``, else ``DeepSea-v0``, else the ``DeepSea<M>-v0`` of the largest ``M <= N`` (sizes without a section
of their own, e.g. 40 and 50), else ``default``; the environment is ``DeepSea-v0`` with ``size=N`` passed as a keyword
(``deterministic=False`` with ``--stochastic``). PSDRL's per-size settings (``sequence_length``, ``warmup_freq``: one
training round per episode) are set to N when the section is not the size's own.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

import sb3_bayes.envs  # noqa: F401  (registers DeepSea)
from benchmarks.common import (
    Timer,
    eval_policy_kwargs,
    hyperparams_path,
    make_env,
    read_result,
    repo_path,
    result_record,
    write_result,
)
from benchmarks.deepsea.exploration import DeepSeaRecorder
from benchmarks.deepsea.run_dqn import HYPERPARAMS as DQN_HYPERPARAMS
from sb3_bayes.envs.deep_sea import bsuite_criterion, bsuite_solved_at, bsuite_solved_episode, fit_scaling_exponent

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "suite")
# rl-zoo3 keys of a YAML section that are not constructor arguments of the algorithm.
ZOO_ONLY_KEYS = ("n_timesteps", "policy", "env_wrapper", "env_kwargs", "normalize", "n_envs", "frame_stack", "callback")
# Settings tied to the episode length N, set to N when the section is not DeepSea<N>-v0's own (PSDRL: a training
# sequence is one episode, and a round after every episode, as in every DeepSea section of hyperparams/psdrl.yml).
SIZE_KEYS = {"psdrl": ("sequence_length", "warmup_freq")}


class SuiteRecorder(DeepSeaRecorder):
    """
    A DeepSea run under bsuite's protocol: records every episode's ``bad_episode`` flag, and stops ``margin`` episodes
    after the run is solved (:func:`bsuite_solved_episode`) or at ``cap`` episodes.

    :param size: N.
    :param cap: Episode cap (bsuite: 10,000).
    :param margin: Episodes run after the solving one.
    :param threshold: bsuite's threshold on the running fraction of bad episodes.
    :param min_episodes: Episodes before which a run cannot count as solved.
    :param max_seconds: Wall-time limit of the run (0: none); a run stopped by it is marked ``timed_out``.
    """

    def __init__(
        self, size: int, cap: int, margin: int, threshold: float, min_episodes: int, max_seconds: float = 0.0
    ) -> None:
        super().__init__(size, budget=cap, max_seconds=max_seconds)
        self.margin, self.threshold, self.min_episodes = margin, threshold, min_episodes
        self.solved: int | None = None
        self._n_bad = 0

    def episode_extras(self, info: dict[str, Any]) -> dict[str, Any]:
        return {**super().episode_extras(info), "bad": bool(info["bad_episode"])}

    def on_episode(self, record: dict[str, Any]) -> None:
        super().on_episode(record)
        n = len(self.episodes)
        self._n_bad += record["bad"]
        if self.solved is None and bsuite_solved_at(self._n_bad, n, self.threshold, self.min_episodes):
            self.solved = n
            print(f"solved at episode {n}", flush=True)

    def keep_going(self) -> bool:
        n = len(self.episodes)
        if self.out_of_time():
            return False
        return n < self.budget and (self.solved is None or n < self.solved + self.margin)


def section_for(yaml_path: str, size: int) -> tuple[str, dict[str, Any]]:
    """The YAML section a size runs with (see the module docstring) and a copy of it."""
    import yaml

    with open(yaml_path) as file:
        data = yaml.load(file, Loader=yaml.UnsafeLoader)  # rl-zoo3 files use anchors and !!float
    sized = {int(m.group(1)): name for name in data if (m := re.fullmatch(r"DeepSea(\d+)-v0", name))}
    smaller = [n for n in sized if n <= size]
    candidates = [f"DeepSea{size}-v0", "DeepSea-v0", sized[max(smaller)] if smaller else None, "default"]
    for name in candidates:
        if name is not None and name in data:
            section = dict(data[name])
            eval_policy_kwargs(section)
            return name, section
    return "<library defaults>", {}


def build_model(
    algo: str, size: int, seed: int, stochastic: bool, overrides: Sequence[str], yaml_path: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """
    The model of one run and the settings it was built with (one torch thread). DQN's epsilon decays over 16 % of
    ``learn``'s steps (``exploration_fraction``), as in ``run_dqn.py``: here the cap's ``N * cap`` steps.

    :param yaml_path: The hyperparameter file (None: the algorithm's ``hyperparams/<algo>.yml``).
    """
    torch.set_num_threads(1)
    env = make_env("DeepSea-v0", seed, env_kwargs=dict(size=size, deterministic=not stochastic))
    if algo == "dqn":
        from stable_baselines3 import DQN

        settings: dict[str, Any] = dict(DQN_HYPERPARAMS, policy="MlpPolicy")
        section, algo_class = "run_dqn.HYPERPARAMS (exploration over 16 % of the cap)", DQN
    else:
        from zoo_plugins.registry import REGISTRY, resolve

        if algo not in REGISTRY:
            raise SystemExit(f"unknown algorithm {algo!r}: dqn or one of {', '.join(REGISTRY)}")
        entry = REGISTRY[algo]
        assert entry.yaml is not None
        yaml_path = yaml_path or hyperparams_path(entry.yaml)
        section, settings = section_for(yaml_path, size)
        section = f"{repo_path(yaml_path)}: {section}"
        if not section.endswith(f": DeepSea{size}-v0"):
            settings.update({key: size for key in SIZE_KEYS.get(algo, ())})
        algo_class = resolve(entry.algo_class)
    for item in overrides:
        key, value = item.split("=", 1)
        if key.startswith("policy_kwargs."):
            settings.setdefault("policy_kwargs", {})[key.split(".", 1)[1]] = eval(value)
        else:
            settings[key] = eval(value)
    kwargs = {k: v for k, v in settings.items() if k not in ZOO_ONLY_KEYS}
    model = algo_class(settings.get("policy", "MlpPolicy"), env, seed=seed, verbose=0, **kwargs)
    return model, dict(section=section, settings={k: str(v) for k, v in settings.items()})


def run_one(args: argparse.Namespace, size: int, seed: int, path: str) -> None:
    """One run of ``args.algo`` at size ``size`` and seed ``seed``, written to ``path``."""
    model, config = build_model(args.algo, size, seed, args.stochastic, args.set, args.yaml)
    recorder = SuiteRecorder(size, args.cap, args.margin, args.threshold, args.min_episodes, args.max_wall_seconds)
    with Timer() as timer:
        model.learn(total_timesteps=size * args.cap, callback=recorder)
    bad = [int(episode["bad"]) for episode in recorder.episodes[: args.cap]]
    returns = recorder.returns[: args.cap]
    solved = bsuite_solved_episode(bad, args.threshold, args.min_episodes)
    summary = {**recorder.summary(), "solved_episode": solved, "bad_episodes": int(sum(bad))}
    print(f"{args.label} N={size} seed {seed}: solved at {solved} cpu {timer.cpu_seconds:.0f}s {summary}", flush=True)
    protocol = dict(
        cap=args.cap,
        margin=args.margin,
        threshold=args.threshold,
        min_episodes=args.min_episodes,
        max_wall_seconds=args.max_wall_seconds,
    )
    write_result(
        path,
        result_record(
            benchmark="deepsea",
            experiment="suite",
            algorithm=args.label,
            env=f"DeepSea-v0(size={size}, deterministic={not args.stochastic})",
            seed=seed,
            config=dict(size=size, stochastic=args.stochastic, algo=args.algo, overrides=args.set, **protocol, **config),
            results=dict(solved_episode=solved, summary=summary, bad=bad, returns=returns),
            cpu_seconds=round(timer.cpu_seconds, 2),
            wall_seconds=round(timer.wall_seconds, 2),
        ),
    )


def unfinished(run: dict[str, Any]) -> bool:
    """Whether an unsolved run was stopped by its wall-time limit before the cap (its episodes are a lower bound)."""
    summary = run["results"]["summary"]
    unsolved = run["results"]["solved_episode"] is None
    return unsolved and bool(summary.get("timed_out")) and summary["episodes"] < run["config"]["cap"]


def criterion_text(config: dict[str, Any]) -> str:
    """The solved criterion of a run, e.g. ``bad < 0.8 from episode 100``."""
    text = f"bad < {config['threshold']:g}"
    return text if config.get("min_episodes", 1) <= 1 else f"{text} from episode {config['min_episodes']}"


def report(out_dir: str) -> None:
    """``summary.md`` and ``scaling.png`` of the runs in ``out_dir`` (one table row per algorithm and size)."""
    runs = [read_result(path) for path in sorted(glob.glob(os.path.join(out_dir, "*.json")))]
    groups: dict[tuple[str, bool], dict[int, list[dict[str, Any]]]] = {}
    for run in runs:
        key = (run["algorithm"], bool(run["config"]["stochastic"]))
        groups.setdefault(key, {}).setdefault(int(run["config"]["size"]), []).append(run)
    lines = [
        "| algorithm | variant | N | cap | criterion | seeds solved | episodes to solve (per seed; - not within the cap) "
        "| median | CPU s (per seed) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fits: dict[tuple[str, bool], tuple[float, float] | None] = {}
    for (label, stochastic), by_size in sorted(groups.items()):
        points: list[tuple[int, int]] = []
        for size, rs in sorted(by_size.items()):
            rs.sort(key=lambda r: r["seed"])
            solved = [r["results"]["solved_episode"] for r in rs]
            points += [(size, s) for s in solved if s is not None]
            done = [s for s in solved if s is not None]
            # An unsolved run: "-" (the cap reached), or "> episodes run" when a wall-time limit stopped it first.
            texts = [
                str(s) if s is not None else f"> {r['results']['summary']['episodes']} (time)" if unfinished(r) else "-"
                for s, r in zip(solved, rs)
            ]
            median = f"{np.median(done):.0f}" if len(done) == len(solved) else "-"
            cpu = ", ".join(f"{r['cpu_seconds']:.0f}" for r in rs)
            criteria = sorted({criterion_text(r["config"]) for r in rs})
            lines.append(
                f"| {label} | {'stochastic' if stochastic else 'deterministic'} | {size} | {rs[0]['config']['cap']} | "
                f"{'; '.join(criteria)} | {len(done)}/{len(rs)} | {', '.join(texts)} | {median} | "
                f"{cpu} |"
            )
        sizes = {size for size, _ in points}
        fits[(label, stochastic)] = fit_scaling_exponent(*zip(*points)) if len(sizes) >= 2 else None
    lines += ["", "| algorithm | variant | fitted exponent (episodes to solve ~ N^k, solved runs) |", "|---|---|---|"]
    for (label, stochastic), fit in sorted(fits.items()):
        text = f"{fit[0]:.2f}" if fit is not None else "- (solved at fewer than two sizes)"
        lines.append(f"| {label} | {'stochastic' if stochastic else 'deterministic'} | {text} |")
    with open(os.path.join(out_dir, "summary.md"), "w") as file:
        file.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(groups, fits, os.path.join(out_dir, "scaling.png"))


def plot(
    groups: dict[tuple[str, bool], dict[int, list[dict[str, Any]]]],
    fits: dict[tuple[str, bool], tuple[float, float] | None],
    path: str,
) -> None:
    """
    Episodes to solve against N, log-log: solved runs filled, unsolved runs hollow at the episodes they ran (the cap,
    or fewer when a wall-time limit stopped them: a lower bound either way).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    all_sizes = sorted({size for by_size in groups.values() for size in by_size}) or [10]
    for i, ((label, stochastic), by_size) in enumerate(sorted(groups.items())):
        color = f"C{i}"
        name = f"{label}{' (stochastic)' if stochastic else ''}"
        fit = fits[(label, stochastic)]
        for size, rs in by_size.items():
            for r in rs:
                solved = r["results"]["solved_episode"]
                y = solved if solved is not None else r["results"]["summary"]["episodes"]
                ax.scatter(size, y, color=color, facecolors=color if solved is not None else "none", zorder=3)
        if fit is not None:
            grid = np.geomspace(min(by_size), max(by_size), 50)
            ax.plot(grid, fit[1] * grid ** fit[0], color=color, label=f"{name}: N^{fit[0]:.2f}")
        else:
            ax.plot([], [], color=color, marker="o", label=f"{name} (no fit)")
    grid = np.geomspace(min(all_sizes), max(all_sizes), 50)
    ax.plot(grid, 2.0**grid, "k--", label="2^N (dithering)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("DeepSea size N")
    ax.set_ylabel("episodes to solve (bsuite: bad fraction < 0.9; stochastic < 0.8)")
    ax.set_title("DeepSea (bsuite protocol); hollow: not solved, at the episodes run", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {repo_path(path)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", help="dqn or a key of zoo_plugins.registry.REGISTRY (psdrl, bayes_dqn, ...)")
    p.add_argument("--label", help="the algorithm's name in the results (default: --algo), e.g. bayes_dqn-blr")
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 30, 40, 50])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. SEEDS-1")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--cap", type=int, default=10_000, help="episode cap (bsuite: 10,000)")
    p.add_argument("--margin", type=int, default=100, help="episodes run after the solving one")
    p.add_argument("--threshold", type=float, help="bad-fraction threshold (default: bsuite's, 0.9; stochastic 0.8)")
    p.add_argument("--min-episodes", type=int, help="first episode that may count as solved (default: 1; stochastic 100)")
    p.add_argument("--stochastic", action="store_true", help="bsuite's deep_sea_stochastic (deterministic=False)")
    p.add_argument("--yaml", help="hyperparameter file (default: hyperparams/<algo>.yml)")
    p.add_argument("--skip-existing", action="store_true", help="skip the runs whose JSON exists")
    p.add_argument("--set", action="append", default=[], help="override, e.g. head='blr' or policy_kwargs.gamma=0.9")
    p.add_argument("--max-wall-seconds", type=float, default=0.0, help="wall-time limit per run (0: none)")
    p.add_argument("--out-dir", default=DEFAULT_OUT)
    p.add_argument("--report", action="store_true", help="only write summary.md and scaling.png of --out-dir")
    args = p.parse_args()
    threshold, min_episodes = bsuite_criterion(deterministic=not args.stochastic)
    args.threshold = threshold if args.threshold is None else args.threshold
    args.min_episodes = min_episodes if args.min_episodes is None else args.min_episodes
    if not args.report:
        if args.algo is None:
            p.error("--algo is required (or --report)")
        args.label = args.label or args.algo
        for size in args.sizes:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                name = f"{args.label}{'_stochastic' if args.stochastic else ''}_N{size}_s{seed}.json"
                path = os.path.join(args.out_dir, name)
                if not (args.skip_existing and os.path.exists(path)):
                    run_one(args, size, seed, path)
    report(args.out_dir)


if __name__ == "__main__":
    main()
