"""
Continual learning runner: one model learns a sequence of tasks in order and is evaluated on every task after each one.

For task ``i = 0 .. T-1``: ``set_env(task_i)`` (from the second task on), optionally empty the replay buffer (Continual
World's default: the old tasks' data are gone, so only the consolidation can protect them),
``learn(n_timesteps, reset_num_timesteps=False)``, ``consolidate()`` if the model has one (BayesianDDPG, BayesianDQN:
EWC anchors or VCL prior; plain SB3 algorithms have none and just keep training), then ``evaluate_policy`` on every
task. The result is the matrix ``R[i, j]`` = mean return on task ``j`` after learning task ``i`` (the forgetting
matrix), and the forgetting of task ``j``: ``max_{i < T-1} R[i, j] - R[T-1, j]`` (Chaudhry et al., 2018, eq. 2).

A task is a Gymnasium id with keyword arguments for ``gym.make`` and attributes set on the unwrapped environment
after it is made (for physics constants that are not constructor arguments, such as CartPole's pole length); Atari
``NoFrameskip`` ids get SB3's Atari wrappers and a 4-frame stack.
"""

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack


@dataclass(frozen=True)
class Task:
    """
    One task of a sequence.

    :param env_id: Gymnasium id.
    :param env_kwargs: Keyword arguments of ``gym.make`` (e.g. ``{"g": 4.0}`` for Pendulum's gravity,
        ``{"full_action_space": True}`` for Atari).
    :param attributes: Attributes set on ``env.unwrapped`` after ``gym.make`` (e.g. ``{"length": 1.0}`` for CartPole).
    :param name: Label in the matrix (default: built from the id and the settings).
    """

    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        settings = [f"{k}={v}" for k, v in {**self.env_kwargs, **self.attributes}.items() if k != "full_action_space"]
        return self.env_id + (f"({','.join(settings)})" if settings else "")

    @property
    def is_atari(self) -> bool:
        return "NoFrameskip" in self.env_id

    @classmethod
    def parse(cls, spec: str) -> "Task":
        """
        Parse ``ENV_ID[:key=value,...][@attribute=value,...]``, e.g. ``Pendulum-v1:g=4.0`` or
        ``CartPole-v1@length=1.0``. Values are read as JSON where possible (numbers, booleans), else kept as strings.

        :param spec: The task string.
        :return: The task.
        """
        spec, _, attr_part = spec.partition("@")
        env_id, _, kwarg_part = spec.partition(":")
        if not env_id:
            raise ValueError(f"Task spec {spec!r} has no environment id.")
        return cls(env_id, _parse_assignments(kwarg_part), _parse_assignments(attr_part))


def _parse_assignments(text: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"Expected key=value in a task spec, got {item!r}.")
        try:
            result[key] = json.loads(value.lower() if value in ("True", "False") else value)
        except json.JSONDecodeError:
            result[key] = value
    return result


def _set_attributes(env: gym.Env, attributes: dict[str, Any]) -> gym.Env:
    unwrapped = env.unwrapped
    for key, value in attributes.items():
        if not hasattr(unwrapped, key):
            raise ValueError(f"{type(unwrapped).__name__} has no attribute {key!r} to set.")
        setattr(unwrapped, key, value)
    # CartPole caches masspole * length; keep it consistent with a changed length or pole mass.
    if {"length", "masspole"} & set(attributes) and hasattr(unwrapped, "polemass_length"):
        unwrapped.polemass_length = unwrapped.masspole * unwrapped.length  # type: ignore[attr-defined]
    return env


#: Named sequences. The Pendulum and CartPole ones are cheap enough for a CPU; the Atari one is the original project's
#: setting (Space Invaders, Breakout, Tennis) with the full 18-action space, so that one network serves all games.
SEQUENCES: dict[str, list[Task]] = {
    "pendulum-gravity": [Task("Pendulum-v1", {"g": g}) for g in (10.0, 4.0, 16.0)],
    "cartpole-length": [Task("CartPole-v1", attributes={"length": length}) for length in (0.5, 2.0, 0.25)],
    "atari-full-action": [
        Task(f"{game}NoFrameskip-v4", {"full_action_space": True}) for game in ("SpaceInvaders", "Breakout", "Tennis")
    ],
}


def make_task_env(task: Task, n_envs: int = 1, seed: int | None = None, frame_stack: int = 4) -> VecEnv:
    """
    The vectorised environment of a task (Monitor-wrapped, so evaluation reports whole-episode returns).

    :param task: The task.
    :param n_envs: Number of environments.
    :param seed: Seed of the environments.
    :param frame_stack: Frames stacked for Atari tasks.
    :return: The environment.
    """
    if task.is_atari:
        if task.attributes:
            raise ValueError("Atari tasks take no attributes.")
        import ale_py  # registers the ALE ids (bundled ROMs); imported here so that non-Atari runs do not need it

        gym.register_envs(ale_py)
        env = make_atari_env(task.env_id, n_envs=n_envs, seed=seed, env_kwargs=dict(task.env_kwargs))
        return VecFrameStack(env, n_stack=frame_stack)

    def make() -> gym.Env:
        return _set_attributes(gym.make(task.env_id, **task.env_kwargs), task.attributes)

    return make_vec_env(make, n_envs=n_envs, seed=seed)


@dataclass
class ContinualResult:
    """
    Outcome of a sequence run.

    :param labels: Task labels.
    :param returns: ``[T, T]`` mean evaluation return on task ``j`` (column) after learning task ``i`` (row).
    :param returns_std: Standard deviations of those returns over the evaluation episodes.
    :param consolidated: Whether a consolidation took place after each task (``consolidate()`` with a method other
        than ``"none"``).
    :param wall_time: Seconds per task (learning, consolidation and evaluation).
    :param cpu_time: Process CPU seconds per task.
    :param consolidation: The model's ``consolidation`` setting (``"ewc"``, ``"vcl"``, ``"none"``); ``"none"`` for a
        model without ``consolidate()`` (plain SB3 algorithms), ``"consolidate"`` for one with that method but no
        ``consolidation`` attribute.
    """

    labels: list[str]
    returns: np.ndarray
    returns_std: np.ndarray
    consolidated: list[bool]
    wall_time: list[float]
    cpu_time: list[float]
    consolidation: str = "none"

    def forgetting(self) -> np.ndarray:
        """
        Forgetting of every task but the last: ``max_{i < T-1} R[i, j] - R[T-1, j]`` over rows after task ``j`` was
        learned (Chaudhry et al., 2018); positive values are forgetting.

        :return: ``[T - 1]`` array.
        """
        n_tasks = len(self.labels)
        return np.array([self.returns[j : n_tasks - 1, j].max() - self.returns[-1, j] for j in range(n_tasks - 1)])

    def summary(self) -> dict[str, Any]:
        """:return: Final returns, average final return, per-task and average forgetting, timings."""
        forgetting = self.forgetting()
        return {
            "labels": self.labels,
            "final_returns": self.returns[-1].tolist(),
            "average_final_return": float(self.returns[-1].mean()),
            "return_when_learned": [float(self.returns[j, j]) for j in range(len(self.labels))],
            "forgetting": forgetting.tolist(),
            "average_forgetting": float(forgetting.mean()) if len(forgetting) else math.nan,
            "consolidation": self.consolidation,
            "consolidated": self.consolidated,
            "wall_time_s": self.wall_time,
            "cpu_time_s": self.cpu_time,
        }

    def to_csv(self, path: str | Path) -> None:
        """
        Write the matrix: one row per learned task (``after_task``), one column per evaluated task.

        :param path: CSV file.
        """
        with open(path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["after_task", *self.labels])
            for label, row in zip(self.labels, self.returns):
                writer.writerow([label, *(f"{value:.3f}" for value in row)])

    def plot(self, path: str | Path, title: str = "") -> None:
        """
        Heat map of the matrix with the returns written in the cells.

        :param path: Image file (PNG).
        :param title: Figure title.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n_tasks = len(self.labels)
        fig, ax = plt.subplots(figsize=(1.6 * n_tasks + 2.5, 1.2 * n_tasks + 1.5))
        image = ax.imshow(self.returns, cmap="viridis")
        ax.set_xticks(range(n_tasks), self.labels, rotation=30, ha="right")
        ax.set_yticks(range(n_tasks), [f"after {label}" for label in self.labels])
        ax.set_xlabel("evaluated on")
        for i in range(n_tasks):
            for j in range(n_tasks):
                ax.text(j, i, f"{self.returns[i, j]:.0f}", ha="center", va="center", color="w", fontsize=9)
        fig.colorbar(image, ax=ax, label="mean return")
        ax.set_title(title or "return on each task after learning each task")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def run_sequence(
    model: BaseAlgorithm,
    tasks: Sequence[Task],
    n_timesteps: int | Sequence[int],
    n_eval_episodes: int = 5,
    deterministic: bool = True,
    reset_buffer: bool = True,
    consolidate_samples: int = 10_000,
    n_envs: int = 1,
    seed: int | None = None,
    learn_kwargs: dict[str, Any] | None = None,
    on_task_end: Callable[[int, BaseAlgorithm], None] | None = None,
) -> ContinualResult:
    """
    Train ``model`` on ``tasks`` in order and evaluate it on every task after each one.

    :param model: The model, created on the first task's environment (``make_task_env(tasks[0])``) or any environment
        with the same spaces.
    :param tasks: The sequence.
    :param n_timesteps: Environment steps per task (one value for all, or one per task).
    :param n_eval_episodes: Evaluation episodes per task and matrix cell.
    :param deterministic: Deterministic evaluation (posterior mean weights for the Bayesian agents).
    :param reset_buffer: Empty the replay buffer at every task switch (if the model has one).
    :param consolidate_samples: Transitions ``consolidate(n_samples)`` estimates the Fisher on.
    :param n_envs: Training environments per task.
    :param seed: Seed of the task environments (evaluation environments get ``seed + 1000``).
    :param learn_kwargs: Extra arguments of ``learn`` (``callback``, ``log_interval``, ...).
    :param on_task_end: Called with ``(task_index, model)`` after each task's consolidation.
    :return: The forgetting matrix and timings.
    """
    if not tasks:
        raise ValueError("run_sequence needs at least one task.")
    steps = [int(n_timesteps)] * len(tasks) if isinstance(n_timesteps, (int, np.integer)) else [int(n) for n in n_timesteps]
    if len(steps) != len(tasks) or min(steps) < 1:
        raise ValueError(f"n_timesteps must be a positive int or one per task ({len(tasks)}), got {n_timesteps}.")
    consolidate = getattr(model, "consolidate", None)
    # What consolidate() does is the model's `consolidation` setting ("none" is a no-op), not whether it has the method.
    consolidation = str(getattr(model, "consolidation", "consolidate")) if callable(consolidate) else "none"
    eval_seed = None if seed is None else seed + 1000
    eval_envs = [make_task_env(task, n_envs=1, seed=eval_seed) for task in tasks]
    for task, eval_env in zip(tasks, eval_envs):
        _check_same_spaces(model, eval_env, task)
    n_tasks = len(tasks)
    returns = np.full((n_tasks, n_tasks), np.nan)
    returns_std = np.full((n_tasks, n_tasks), np.nan)
    consolidated, wall_time, cpu_time = [], [], []
    for i, task in enumerate(tasks):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        if i > 0 or model.get_env() is None:
            model.set_env(make_task_env(task, n_envs=n_envs, seed=None if seed is None else seed + i))
        replay_buffer = getattr(model, "replay_buffer", None)
        if i > 0 and reset_buffer and replay_buffer is not None:
            replay_buffer.reset()
        model.learn(steps[i], reset_num_timesteps=False, **(learn_kwargs or {}))
        if callable(consolidate):
            consolidate(n_samples=consolidate_samples)
        consolidated.append(consolidation != "none")
        if on_task_end is not None:
            on_task_end(i, model)
        for j, eval_env in enumerate(eval_envs):
            episode_returns, _ = evaluate_policy(
                model, eval_env, n_eval_episodes=n_eval_episodes, deterministic=deterministic, return_episode_rewards=True
            )
            returns[i, j], returns_std[i, j] = np.mean(episode_returns), np.std(episode_returns)
        wall_time.append(time.perf_counter() - start_wall)
        cpu_time.append(time.process_time() - start_cpu)
    for eval_env in eval_envs:
        eval_env.close()
    labels = [task.label for task in tasks]
    return ContinualResult(labels, returns, returns_std, consolidated, wall_time, cpu_time, consolidation)


def _check_same_spaces(model: BaseAlgorithm, env: VecEnv, task: Task) -> None:
    # SB3's set_env asserts; a ValueError naming the task is clearer.
    if env.action_space != model.action_space:
        raise ValueError(
            f"Task {task.label} has the action space {env.action_space}, the model {model.action_space}: a sequence needs "
            "identical spaces (Atari: full_action_space=True)."
        )
    if env.observation_space.shape != model.observation_space.shape:
        raise ValueError(
            f"Task {task.label} has the observation space {env.observation_space}, the model {model.observation_space}."
        )


def save_result(result: ContinualResult, out_dir: str | Path, name: str, title: str = "") -> dict[str, Path]:
    """
    Write ``<name>.csv`` (matrix), ``<name>.png`` (heat map) and ``<name>.json`` (summary) into ``out_dir``.

    :param result: The run's result.
    :param out_dir: Folder (created).
    :param name: Base file name.
    :param title: Plot title.
    :return: The paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{name}.csv", "png": out / f"{name}.png", "json": out / f"{name}.json"}
    result.to_csv(paths["csv"])
    result.plot(paths["png"], title=title)
    with open(paths["json"], "w") as file:
        json.dump(result.summary(), file, indent=2)
    return paths
