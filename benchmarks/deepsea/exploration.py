"""What the DeepSea benchmark measures of a run: the cells visited, the (cell, action) pairs tried, the goals reached."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import EpisodeRecorder


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
    pairs: set[tuple[int, int]] = set()
    for episode in episodes:
        cells = episode.observations[:-1].reshape(len(episode), -1).argmax(axis=1)
        pairs.update((int(cell), int(action)) for cell, action in zip(cells, episode.actions))
    return pairs


def summarize_episodes(returns: list[float], successes: list[bool] | None = None) -> dict[str, Any]:
    """
    First episode (1-based) that reached the treasure, successes, success rate of the last 100.

    :param returns: Episode returns.
    :param successes: Whether each episode reached the treasure (``info["is_success"]``); None: a return above 0.5, which
        is the same in the deterministic DeepSea but not in the stochastic one, whose noisy rewards at both bottom
        corners can exceed 0.5 without the treasure.
    """
    success = [r > 0.5 for r in returns] if successes is None else list(successes)
    first = next((i + 1 for i, s in enumerate(success) if s), None)
    last = success[-100:]
    return dict(
        episodes=len(success),
        first_success_episode=first,
        n_successes=int(sum(success)),
        success_rate_last_100=round(sum(last) / max(len(last), 1), 3),
    )


class DeepSeaRecorder(EpisodeRecorder):
    """
    The episodes of a DeepSea run and the cells it visited; stops the run at ``budget`` episodes (0: never),
    ``after_success`` episodes after the goal was first reached (0: never) or after ``max_seconds`` of wall time (0:
    never; ``timed_out`` then tells), and reports every 50 episodes.
    """

    def __init__(self, size: int, budget: int = 0, after_success: int = 0, max_seconds: float = 0.0) -> None:
        super().__init__()
        self.size, self.budget, self.after_success, self.max_seconds = size, budget, after_success, max_seconds
        self.timed_out = False
        self.cells: set[tuple[int, int]] = set()
        self.first: int | None = None
        self.t0 = time.perf_counter()

    @property
    def returns(self) -> list[float]:
        return [round(episode["ret"], 4) for episode in self.episodes]

    @property
    def successes(self) -> list[bool]:
        """Whether each episode reached the treasure (``info["is_success"]``)."""
        return [episode["success"] for episode in self.episodes]

    def episode_extras(self, info: dict[str, Any]) -> dict[str, Any]:
        return dict(success=bool(info["is_success"]))

    def _on_step(self) -> bool:
        record_cells(self.locals["infos"], self.cells)
        return super()._on_step()

    def on_episode(self, record: dict[str, Any]) -> None:
        n = len(self.episodes)
        if self.first is None and record["success"]:
            self.first = n
        if self.budget and n % 50 == 0:
            print(
                f"episode {n}: successes {sum(self.successes)} first {self.first} "
                f"cells {coverage(self.cells, self.size)['cells_visited']} "
                f"{time.perf_counter() - self.t0:.0f}s",
                flush=True,
            )

    def out_of_time(self) -> bool:
        """Whether the wall-time limit has passed (then the run stops, ``timed_out``)."""
        self.timed_out = self.timed_out or bool(self.max_seconds and time.perf_counter() - self.t0 > self.max_seconds)
        return self.timed_out

    def keep_going(self) -> bool:
        n = len(self.episodes)
        if (self.budget and n >= self.budget) or self.out_of_time():
            return False
        return not (self.after_success > 0 and self.first is not None and n >= self.first + self.after_success)

    def summary(self) -> dict[str, Any]:
        """:func:`summarize_episodes` and :func:`coverage`, and the goal rate after the first goal."""
        successes = self.successes
        summary = {
            **summarize_episodes(self.returns, successes),
            **coverage(self.cells, self.size),
            "timed_out": self.timed_out,
        }
        if self.first is not None:
            after = successes[self.first :]
            summary["success_rate_after_first"] = round(sum(after) / max(len(after), 1), 3)
        return summary
