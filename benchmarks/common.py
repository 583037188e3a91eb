"""
What every benchmark shares: machine information, CPU and wall time, the result schema (one JSON file per run), an
episode recorder, a fixed-seed evaluation loop and the loading of rl-zoo3 hyperparameter files.

Every benchmark script runs from the repository root as a module, e.g.
``python -m benchmarks.deepsea.run_dqn --size 10 --seed 0 --episodes 1000 --out /tmp/dqn.json``; the schema is
described in ``benchmarks/README.md``.

Only the standard library is imported at module level: ``benchmarks/pets_speed`` also imports this module in the
mbrl-lib virtual environment, which has neither stable-baselines3 nor sb3_bayes.
"""

from __future__ import annotations

import glob
import importlib.metadata
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

try:
    from stable_baselines3.common.callbacks import BaseCallback
except ImportError:  # the mbrl-lib venv of benchmarks/pets_speed: no recorder there, the rest works
    BaseCallback = object  # type: ignore[assignment,misc]

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

#: Version of the result schema written by :func:`result_record` (``benchmarks/README.md``).
SCHEMA_VERSION = 1
#: The keys of every result file, in this order.
RESULT_KEYS = (
    "schema_version",
    "benchmark",
    "experiment",
    "algorithm",
    "env",
    "seed",
    "command",
    "config",
    "machine",
    "cpu_seconds",
    "wall_seconds",
    "results",
)
#: The keys of ``machine`` (a value is null where it is unknown, e.g. in files converted from older runs).
MACHINE_KEYS = (
    "cpu_model",
    "cpu_flags",
    "nproc",
    "torch_threads",
    "python",
    "torch",
    "numpy",
    "gymnasium",
    "sb3",
    "sb3_contrib",
    "rl_zoo3",
    "sb3_bayes",
    "git_commit",
    "uncommitted_changes",
    "load_average",
)
#: The CPU flags that decide which kernels torch can use (bfloat16 needs avx512_bf16 or AMX to be fast).
CPU_FLAGS = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
#: Distribution names of the versions in ``machine``.
_DISTRIBUTIONS = dict(
    torch="torch",
    numpy="numpy",
    gymnasium="gymnasium",
    sb3="stable-baselines3",
    sb3_contrib="sb3-contrib",
    rl_zoo3="rl_zoo3",
    sb3_bayes="sb3-bayes",
)
#: The evaluation environment of a run with seed ``s`` is seeded with ``s + EVAL_SEED_OFFSET``.
EVAL_SEED_OFFSET = 1000


# ----------------------------------------------------------------------------------------------------------------------
# Time and machine


def cpu_seconds() -> float:
    """CPU seconds (user + system, all threads) this process has used: ``time.process_time()``."""
    return time.process_time()


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) of the finished child processes this process waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Timer:
    """
    Wall and CPU seconds spent inside ``with timer:`` blocks, summed over the blocks (``children=True``: the CPU of
    child processes that finished meanwhile, e.g. an ``rl_zoo3.train`` subprocess).
    """

    def __init__(self, children: bool = False) -> None:
        self.wall_seconds = 0.0
        self.cpu_seconds = 0.0
        self._cpu: Callable[[], float] = children_cpu_seconds if children else cpu_seconds
        self._start = (0.0, 0.0)

    def __enter__(self) -> Timer:
        self._start = (time.perf_counter(), self._cpu())
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_seconds += time.perf_counter() - self._start[0]
        self.cpu_seconds += self._cpu() - self._start[1]


def timing_stats(wall: list[float], cpu: list[float]) -> dict[str, Any]:
    """Mean, median and minimum of per-call wall and CPU seconds."""
    import statistics

    return dict(
        n_actions=len(wall),
        wall_mean_s=statistics.fmean(wall),
        wall_median_s=statistics.median(wall),
        wall_min_s=min(wall),
        cpu_mean_s=statistics.fmean(cpu),
        cpu_median_s=statistics.median(cpu),
        cpu_min_s=min(cpu),
    )


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """The repository's commit and the uncommitted changes to the code a benchmark runs (package, YAMLs, scripts)."""
    head = _git("rev-parse", "HEAD")
    status = _git("status", "--short", "--", "sb3_bayes", "zoo_plugins", "hyperparams", "benchmarks/*.py")
    return dict(
        git_commit=head.strip() if head else None,
        uncommitted_changes=None if status is None else [line for line in status.splitlines() if line.strip()],
    )


# Taken at import, i.e. before a script imports sb3_bayes (whose editable source may change while a run goes on).
CODE_VERSION = code_version()


def cpu_info() -> tuple[str | None, dict[str, bool] | None]:
    """The CPU model and which of :data:`CPU_FLAGS` it has (from ``/proc/cpuinfo``; None where it cannot be read)."""
    model, flags = None, None
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags" and flags is None:
                    flags = set(value.split())
    except OSError:
        pass
    return model, None if flags is None else {flag: flag in flags for flag in CPU_FLAGS}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(**extra: Any) -> dict[str, Any]:
    """The machine, the software and the code of a run (keys :data:`MACHINE_KEYS`, then ``extra``)."""
    model, flags = cpu_info()
    try:
        import torch

        threads: int | None = torch.get_num_threads()
    except ImportError:
        threads = None
    info: dict[str, Any] = dict(cpu_model=model, cpu_flags=flags, nproc=os.cpu_count(), torch_threads=threads)
    info["python"] = platform.python_version()
    info.update({key: _version(distribution) for key, distribution in _DISTRIBUTIONS.items()})
    info.update(CODE_VERSION)
    info["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    info.update(extra)
    return info


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this process, as run from the repository root (``python -m benchmarks...``)."""
    argv = sys.argv if argv is None else argv
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        head = f"python -m {spec.name.removesuffix('.__main__')}"
    else:
        head = "python " + os.path.relpath(os.path.abspath(argv[0]), REPO_ROOT)
    return " ".join([head, *(shlex.quote(arg) for arg in argv[1:])])


def repo_path(path: str) -> str:
    """``path`` relative to the repository root (results and commands name no machine's directories)."""
    return os.path.relpath(os.path.abspath(path), REPO_ROOT)


# ----------------------------------------------------------------------------------------------------------------------
# The result schema


def result_record(
    *,
    benchmark: str,
    experiment: str,
    algorithm: str | None,
    env: str | None,
    seed: int | None,
    config: dict[str, Any],
    results: dict[str, Any],
    cpu_seconds: float | None,
    wall_seconds: float | None,
    command: str | None = "",
    machine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """
    One result in the schema of ``benchmarks/README.md``. ``command`` defaults to this process's command line,
    ``machine`` to :func:`machine_info` now.
    """
    return dict(
        schema_version=SCHEMA_VERSION,
        benchmark=benchmark,
        experiment=experiment,
        algorithm=algorithm,
        env=env,
        seed=seed,
        command=command_line() if command == "" else command,
        config=config,
        machine=machine_info() if machine is None else machine,
        cpu_seconds=cpu_seconds,
        wall_seconds=wall_seconds,
        results=results,
    )


def write_result(path: str | None, record: dict[str, Any], echo: bool = False) -> None:
    """Write ``record`` as JSON to ``path`` (folders created; None: nowhere); ``echo``: print it as well."""
    missing = [key for key in RESULT_KEYS if key not in record]
    if missing:
        raise ValueError(f"a result needs the keys {missing}")
    text = json.dumps({key: record[key] for key in RESULT_KEYS}, indent=1) + "\n"
    if echo:
        print(text, end="", flush=True)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as file:
            file.write(text)


def read_result(path: str) -> dict[str, Any]:
    """A result file of this schema version."""
    with open(path) as file:
        record = json.load(file)
    if not isinstance(record, dict) or record.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path} is not a result of schema version {SCHEMA_VERSION} (see benchmarks/README.md)")
    return record


def read_results(*patterns: str) -> list[dict[str, Any]]:
    """The results of the files that match the glob ``patterns``, in sorted path order."""
    paths = sorted({path for pattern in patterns for path in glob.glob(pattern)})
    return [read_result(path) for path in paths]


# ----------------------------------------------------------------------------------------------------------------------
# Training runs: episodes, evaluation, hyperparameter files


class EpisodeRecorder(BaseCallback):
    """
    Records every finished episode (from the Monitor's ``info["episode"]``) as a dict: ``index``, ``ret`` (return),
    ``length``, ``end_step`` (environment steps so far), ``wall_s`` and ``cpu_s`` since the recorder was made and
    ``terminated`` (not cut by a time limit), plus what :meth:`episode_extras` adds. Subclasses react to an episode
    in :meth:`on_episode` (``verbose=1``: print it) and stop a run by overriding :meth:`keep_going`.
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.episodes: list[dict[str, Any]] = []
        self._start = (time.perf_counter(), cpu_seconds())

    def episode_extras(self, info: dict[str, Any]) -> dict[str, Any]:
        """More fields of the episode that ended with ``info``."""
        return {}

    def on_episode(self, record: dict[str, Any]) -> None:
        """Called with every episode recorded (``verbose=1``: prints it)."""
        if self.verbose:
            print(
                f"  ep {record['index']}: return {record['ret']:.1f} len {record['length']} step {record['end_step']} "
                f"wall {record['wall_s']:.0f}s",
                flush=True,
            )

    def keep_going(self) -> bool:
        """False stops the run (checked after every step)."""
        return True

    @property
    def returns(self) -> list[float]:
        return [episode["ret"] for episode in self.episodes]

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            episode = info.get("episode")
            if episode is None:
                continue
            record = dict(
                index=len(self.episodes),
                ret=float(episode["r"]),
                length=int(episode["l"]),
                end_step=int(self.num_timesteps),
                wall_s=round(time.perf_counter() - self._start[0], 3),
                cpu_s=round(cpu_seconds() - self._start[1], 3),
                terminated=not info.get("TimeLimit.truncated", False),
                **self.episode_extras(info),
            )
            self.episodes.append(record)
            self.on_episode(record)
        return self.keep_going()


def make_env(env_id: str, seed: int, n_envs: int = 1, **kwargs: Any) -> Any:
    """SB3's ``make_vec_env`` (Monitor-wrapped environments) seeded with ``seed``."""
    from stable_baselines3.common.env_util import make_vec_env

    return make_vec_env(env_id, n_envs=n_envs, seed=seed, **kwargs)


def make_eval_env(env_id: str, seed: int, **kwargs: Any) -> Any:
    """The evaluation environment of a run with seed ``seed``: one environment seeded ``seed + EVAL_SEED_OFFSET``."""
    return make_env(env_id, seed + EVAL_SEED_OFFSET, **kwargs)


def learn_with_evaluation(
    model: Any,
    total_timesteps: int,
    eval_freq: int,
    eval_env: Any,
    n_eval_episodes: int = 5,
    callback: Any = None,
    point_extras: Callable[[], dict[str, Any]] | None = None,
    label: str = "",
) -> tuple[list[dict[str, Any]], Timer]:
    """
    Train ``model`` in chunks of ``eval_freq`` steps (the last one up to ``total_timesteps``) and after each chunk
    evaluate it for ``n_eval_episodes`` deterministic episodes on ``eval_env`` (seeded once, at creation: the same
    episodes for every algorithm of a seed). Returns the curve, one point per evaluation (``timesteps``,
    ``eval_mean_return``, ``eval_std_return`` and what ``point_extras()`` adds), and the :class:`Timer` of the training
    chunks alone.
    """
    import numpy as np
    from stable_baselines3.common.evaluation import evaluate_policy

    curve: list[dict[str, Any]] = []
    training = Timer()
    while model.num_timesteps < total_timesteps:
        with training:
            model.learn(min(eval_freq, total_timesteps - model.num_timesteps), reset_num_timesteps=False, callback=callback)
        returns, _ = evaluate_policy(
            model, eval_env, n_eval_episodes=n_eval_episodes, deterministic=True, return_episode_rewards=True
        )
        point = dict(
            timesteps=int(model.num_timesteps),
            eval_mean_return=float(np.mean(returns)),
            eval_std_return=float(np.std(returns)),
        )
        if point_extras is not None:
            point.update(point_extras())
        curve.append(point)
        print(label, point, f"train cpu {training.cpu_seconds:.0f}s", flush=True)
    return curve, training


def load_zoo_section(path: str, *names: str | None, evaluate: bool = True) -> tuple[str, dict[str, Any]]:
    """
    The first of the sections ``names`` of an rl-zoo3 hyperparameter file, as (its name, a copy of it), with
    ``policy_kwargs`` evaluated the way rl-zoo3 does (``evaluate=False``: left a string); ("<library defaults>", {}) if
    the file has none of them.
    """
    import yaml

    with open(path) as file:
        data = yaml.load(file, Loader=yaml.UnsafeLoader)  # rl-zoo3 files use anchors and !!float
    for name in names:
        if name is not None and name in data:
            section = dict(data[name])
            if evaluate:
                eval_policy_kwargs(section)
            return name, section
    return "<library defaults>", {}


def eval_policy_kwargs(hyperparams: dict[str, Any]) -> None:
    """Evaluate a ``policy_kwargs`` string in place, the way rl-zoo3 does (with ``nn`` in scope)."""
    if isinstance(hyperparams.get("policy_kwargs"), str):
        from torch import nn

        hyperparams["policy_kwargs"] = eval(hyperparams["policy_kwargs"], {"nn": nn})


def hyperparams_path(name: str) -> str:
    """A YAML of the repository's ``hyperparams/`` folder."""
    return os.path.join(REPO_ROOT, "hyperparams", name)


def zoo_hyperparams_path(algo: str) -> tuple[str, str]:
    """rl-zoo3's own hyperparameter file of ``algo``: its path and that path relative to the site-packages folder."""
    import rl_zoo3

    path = os.path.join(os.path.dirname(rl_zoo3.__file__), "hyperparams", f"{algo}.yml")
    return path, os.path.relpath(path, os.path.dirname(os.path.dirname(rl_zoo3.__file__)))
