"""Shared pieces of the PETS vs SAC learning benchmark: YAML loading, episode recording, run metadata."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import time
from typing import Any

import yaml
from stable_baselines3.common.callbacks import BaseCallback

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def load_section(path: str, env_id: str, fallback: str | None = None) -> tuple[str, dict[str, Any]]:
    """Return (name of the section used, a copy of it) from an rl-zoo3 style hyperparameter file."""
    with open(path) as f:
        data = yaml.load(f, Loader=yaml.UnsafeLoader)  # rl-zoo3 files use anchors and !!float
    for name in (env_id, fallback):
        if name is not None and name in data:
            return name, dict(data[name])
    return "<library defaults>", {}


def eval_policy_kwargs(hp: dict[str, Any]) -> None:
    """Evaluate the policy_kwargs string the way rl-zoo3 does (with `nn` in scope)."""
    if isinstance(hp.get("policy_kwargs"), str):
        from torch import nn  # noqa: F401  (used by the eval'd string)

        hp["policy_kwargs"] = eval(hp["policy_kwargs"])


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def code_version() -> dict[str, Any]:
    """Git commit of the repository and the uncommitted changes to the package, when the run starts."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--short", "sb3_bayes"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.split("\n")
        return dict(git_commit=head, uncommitted_package_changes=[d for d in dirty if d.strip()])
    except OSError:
        return {}


# Captured at import, i.e. just before the scripts import sb3_bayes (its editable source may change during a run).
CODE_VERSION = code_version()


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import torch

    return dict(
        cpu_model=model,
        nproc=os.cpu_count(),
        python=platform.python_version(),
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        hostname=platform.node(),
        code=CODE_VERSION,
    )


class EpisodeRecorder(BaseCallback):
    """Record every finished episode (Monitor info): return, length, env steps so far, wall and CPU time."""

    def __init__(self) -> None:
        super().__init__()
        self.episodes: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()
        self.c0 = cpu_seconds()

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            ep = info.get("episode")
            if ep is not None:
                self.episodes.append(
                    dict(
                        index=len(self.episodes),
                        ret=float(ep["r"]),
                        length=int(ep["l"]),
                        end_step=int(self.num_timesteps),
                        wall_s=round(time.perf_counter() - self.t0, 3),
                        cpu_s=round(cpu_seconds() - self.c0, 3),
                        terminated=not info.get("TimeLimit.truncated", False),
                        terminal_obs=[round(float(x), 4) for x in info.get("terminal_observation", [])],
                    )
                )
                if self.verbose:
                    e = self.episodes[-1]
                    print(
                        f"  ep {e['index']}: return {e['ret']:.1f} len {e['length']} step {e['end_step']} "
                        f"wall {e['wall_s']:.0f}s",
                        flush=True,
                    )
        return True


def save_json(path: str, payload: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
