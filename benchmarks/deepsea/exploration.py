"""Shared pieces of the DeepSea benchmark: episode recording, CPU time, run metadata."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def record_cells(infos: list[dict[str, Any]], cells: set[tuple[int, int]]) -> None:
    """Adds the grid cells the agents stand in after this step (``info["position"]``; rows past the grid excluded)."""
    for info in infos:
        row, column = info["position"]
        if row >= 0 and column >= 0:
            cells.add((int(row), int(column)))


def coverage(cells: set[tuple[int, int]], size: int) -> dict[str, int]:
    """Distinct cells visited (of ``N (N + 1) / 2`` reachable ones, the start included) and the rightmost column."""
    inside = {(row, column) for row, column in cells if row < size} | {(0, 0)}
    return dict(cells_visited=len(inside), cells_reachable=size * (size + 1) // 2, rightmost_column=max(c for _, c in inside))


def tried_pairs(episodes: list[Any]) -> set[tuple[int, int]]:
    """
    The (cell, action) pairs of a PSDRL replay's episodes (:class:`~sb3_bayes.common.episode_buffer.Episode`); the
    observation is the one-hot cell, so its argmax names the cell (``row * N + column``).
    """
    pairs = set()
    for episode in episodes:
        cells = episode.observations[:-1].reshape(len(episode), -1).argmax(axis=1)
        pairs.update((int(cell), int(action)) for cell, action in zip(cells, episode.actions))
    return pairs


class EpisodeRecorder(BaseCallback):
    """
    Records the return of every finished episode (from the Monitor's ``info["episode"]``) and its end step, and the
    DeepSea cells visited.
    """

    def __init__(self, stop_after_success: int = 0) -> None:
        super().__init__()
        self.episodes: list[dict[str, float]] = []
        self.cells: set[tuple[int, int]] = set()
        self.stop_after_success = stop_after_success

    def _on_step(self) -> bool:
        record_cells(self.locals["infos"], self.cells)
        for info in self.locals["infos"]:
            if "episode" in info:
                self.episodes.append(dict(ret=round(float(info["episode"]["r"]), 4), step=int(self.num_timesteps)))
        return True


def summarize_episodes(returns: list[float]) -> dict[str, Any]:
    """First episode (1-based) that reached the goal (return > 0.5), successes, success rate of the last 100."""
    success = [r > 0.5 for r in returns]
    first = next((i + 1 for i, s in enumerate(success) if s), None)
    last = success[-100:]
    return dict(
        episodes=len(returns),
        first_success_episode=first,
        n_successes=int(sum(success)),
        success_rate_last_100=round(sum(last) / max(len(last), 1), 3),
    )


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import gymnasium
    import stable_baselines3
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return dict(
        cpu=model,
        n_cpus=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        python=platform.python_version(),
        torch=torch.__version__,
        sb3=stable_baselines3.__version__,
        gymnasium=gymnasium.__version__,
        git_commit=commit,
    )


def save_json(path: str, data: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
