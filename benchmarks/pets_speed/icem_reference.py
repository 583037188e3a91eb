"""
Our iCEM (``sb3_bayes.common.trajectory_optimizers.ICEMOptimizer``) against mbrl-lib 0.2.0's ``ICEMOptimizer`` on fixed
objectives that need no model, so that only the optimisers differ:

- ``tracking``: one call from the midpoint of the bounds, maximising ``-sum_t ||a_t - r_t||^2`` for a smooth reference
  ``r_t = 0.8 sin(2 pi t / H + d)`` per action dimension ``d`` (optimum 0);
- ``integrator``: model-predictive control of a 2-D double integrator (``p += 0.1 v``, ``v += 0.1 a``, reward
  ``-(|p|^2 + 0.01 |a|^2)`` per step, start ``p = (1, -0.5)``, ``v = 0``), 40 control steps, the exact dynamics as the
  planning objective, each library warm-starting the next step as its own MPC wrapper does (ours: the shifted mean and
  iCEM's shifted elites, as ``PETSPolicy.plan``; mbrl-lib: its ``TrajectoryOptimizer`` with ``keep_last_solution``,
  the returned sequence shifted, elites kept inside the optimiser). The score is the realised return.

Same settings on both sides: population 100, 10 elites (mbrl-lib: ``elite_ratio=0.1``), 3 iterations, decay 1.25,
coloured-noise exponent 2, 30% of the elites kept, ``alpha=0.1``, horizon 15, 2 action dimensions in ``[-1, 1]``,
executing the best sequence found (mbrl-lib: ``return_mean_elites=False``). Random streams differ, so the comparison
is of the score distributions over seeds (mean and standard error).

From the repository root::

  PY=${PY:-python}; MBRL_PY=${MBRL_PY:-benchmarks/pets_speed/.venv-mbrl/bin/python}
  $PY -m benchmarks.pets_speed.icem_reference --impl ours --out benchmarks/pets_speed/results_icem/ours.json
  $MBRL_PY -m benchmarks.pets_speed.icem_reference --impl mbrl --out benchmarks/pets_speed/results_icem/mbrl.json
  $PY -m benchmarks.pets_speed.icem_reference --impl ours-colorednoise \
      --out benchmarks/pets_speed/results_icem/ours_colorednoise.json   # ours with mbrl-lib's noise normalisation
  $PY -m benchmarks.pets_speed.icem_reference --compare benchmarks/pets_speed/results_icem

Only torch and the standard library are needed besides the optimiser under test (the mbrl-lib venv has no sb3_bayes).
"""

from __future__ import annotations

import argparse
import functools
import glob
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch as th

from benchmarks import common

HORIZON = 15
ACTION_DIM = 2
SETTINGS: dict[str, Any] = dict(
    popsize=100, num_elites=10, iterations=3, population_decay=1.25, noise_beta=2.0, keep_elites_frac=0.3, alpha=0.1
)
MPC_STEPS = 40
DT = 0.1
#: --impl values and the names in the results.
IMPLEMENTATIONS = {
    "ours": "sb3-bayes",
    "ours-colorednoise": "sb3-bayes, colorednoise-1.x noise",
    "mbrl": "mbrl-lib 0.2.0",
}

Objective = Callable[[th.Tensor], th.Tensor]  # [..., horizon, action_dim] -> [...]


def tracking_objective() -> Objective:
    t = th.arange(HORIZON, dtype=th.float32)[:, None]
    reference = 0.8 * th.sin(2 * math.pi * t / HORIZON + th.arange(ACTION_DIM, dtype=th.float32)[None, :])
    return lambda actions: -((actions - reference) ** 2).sum(dim=(-2, -1))


def integrator_return(position: th.Tensor, velocity: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """Return of action sequences ``[..., horizon, action_dim]`` from one state (``[action_dim]`` each)."""
    p = position.expand(*actions.shape[:-2], -1)
    v = velocity.expand(*actions.shape[:-2], -1)
    total = th.zeros(actions.shape[:-2])
    for step in range(actions.shape[-2]):
        a = actions[..., step, :]
        total = total - (p**2).sum(-1) - 0.01 * (a**2).sum(-1)
        p, v = p + DT * v, v + DT * a
    return total


def colorednoise_1x(beta: float, shape: tuple[int, ...], length: int, device: th.device) -> th.Tensor:
    """
    Coloured noise as mbrl-lib's ``powerlaw_psd_gaussian`` (and the ``colorednoise`` 1.x package the original iCEM
    used) makes it: the DC coefficient is not doubled, and the normalisation leaves the DC term out, so every sample
    has a standard deviation slightly above 1 (1.08 at horizon 15, beta 2) and less of its power at f = 0 than ours.
    ``--impl ours-colorednoise`` swaps it into our iCEM to show what the difference in the noise does.
    """
    frequencies = th.fft.rfftfreq(length, device=device)
    frequencies[0] = 1.0 / length
    scale = frequencies.pow(-beta / 2)
    weights = scale[1:].clone()
    weights[-1] *= (1 + length % 2) / 2.0
    sigma = 2 * weights.pow(2).sum().sqrt() / length
    real = th.randn(*shape, len(frequencies), device=device) * scale
    imaginary = th.randn(*shape, len(frequencies), device=device) * scale
    if length % 2 == 0:
        imaginary[..., -1] = 0.0
    imaginary[..., 0] = 0.0
    return th.fft.irfft(th.complex(real, imaginary), n=length) / sigma


class OursPlanner:
    """Our iCEM, warm-started as ``PETSPolicy.plan`` does (one environment)."""

    def __init__(self) -> None:
        from sb3_bayes.common.trajectory_optimizers import ICEMOptimizer

        bound = th.ones(ACTION_DIM)
        self.optimizer = ICEMOptimizer(
            -bound,
            bound,
            HORIZON,
            popsize=SETTINGS["popsize"],
            num_elites=SETTINGS["num_elites"],
            max_iters=SETTINGS["iterations"],
            alpha=SETTINGS["alpha"],
            noise_beta=SETTINGS["noise_beta"],
            population_decay=SETTINGS["population_decay"],
            keep_elites_frac=SETTINGS["keep_elites_frac"],
            execute="best",
        )
        self.warm_start = self.optimizer.initial_solution(1)
        self.elites: th.Tensor | None = None

    def act(self, objective: Objective) -> th.Tensor:
        solution = self.optimizer.solve(objective, self.warm_start, self.elites)
        self.warm_start = self.optimizer.shift(solution.mean)
        self.elites = self.optimizer.shift_elites(solution.elites)
        return solution.plan[0]


class MbrlPlanner:
    """mbrl-lib's iCEM, warm-started as its ``TrajectoryOptimizer(keep_last_solution=True, replan_freq=1)`` does."""

    def __init__(self) -> None:
        from mbrl.planning.trajectory_opt import ICEMOptimizer

        bounds = [[1.0] * ACTION_DIM] * HORIZON
        self.optimizer = ICEMOptimizer(
            num_iterations=SETTINGS["iterations"],
            elite_ratio=SETTINGS["num_elites"] / SETTINGS["popsize"],
            population_size=SETTINGS["popsize"],
            population_decay_factor=SETTINGS["population_decay"],
            colored_noise_exponent=SETTINGS["noise_beta"],
            lower_bound=[[-b for b in row] for row in bounds],
            upper_bound=bounds,
            keep_elite_frac=SETTINGS["keep_elites_frac"],
            alpha=SETTINGS["alpha"],
            device=th.device("cpu"),
            return_mean_elites=False,
        )
        self.initial = th.zeros(HORIZON, ACTION_DIM)
        self.previous = self.initial.clone()

    def act(self, objective: Objective) -> th.Tensor:
        best = self.optimizer.optimize(objective, x0=self.previous)
        self.previous = best.roll(-1, dims=0)
        self.previous[-1:] = self.initial[0]
        return best


def make_planner(impl: str) -> OursPlanner | MbrlPlanner:
    return MbrlPlanner() if impl == "mbrl" else OursPlanner()


def run(impl: str, n_tracking: int, n_mpc: int) -> tuple[dict[str, Any], float, float]:
    th.set_num_threads(1)
    if impl == "ours-colorednoise":
        import sb3_bayes.common.trajectory_optimizers as trajectory_optimizers

        trajectory_optimizers.colored_noise = colorednoise_1x  # type: ignore[assignment]
    cpu0, wall0 = common.cpu_seconds(), time.perf_counter()
    objective = tracking_objective()
    tracking, solve_cpu = [], []
    for seed in range(n_tracking):
        th.manual_seed(seed)
        planner = make_planner(impl)
        start = common.cpu_seconds()
        plan = planner.act(objective)
        solve_cpu.append(common.cpu_seconds() - start)
        tracking.append(float(objective(plan)))
    returns = []
    for seed in range(n_mpc):
        th.manual_seed(10_000 + seed)
        planner = make_planner(impl)
        position, velocity, total = th.tensor([1.0, -0.5]), th.zeros(ACTION_DIM), 0.0
        for _ in range(MPC_STEPS):
            action = planner.act(functools.partial(integrator_return, position, velocity))[0]
            total += float(integrator_return(position, velocity, action[None, :]))
            position, velocity = position + DT * velocity, velocity + DT * action
        returns.append(total)
    results = dict(
        tracking_values=tracking,
        integrator_returns=returns,
        solve_cpu_seconds_median=statistics.median(solve_cpu),
    )
    return results, common.cpu_seconds() - cpu0, time.perf_counter() - wall0


def summary(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


def compare(folder: str) -> None:
    records = {
        record["algorithm"]: record for record in map(common.read_result, sorted(glob.glob(os.path.join(folder, "*.json"))))
    }
    print("| objective | implementation | runs | mean | standard error |")
    print("|---|---|---|---|---|")
    for key, name in (("tracking_values", "tracking (one call; optimum 0)"), ("integrator_returns", "integrator MPC return")):
        for impl, record in records.items():
            mean, se = summary(record["results"][key])
            print(f"| {name} | {impl} | {len(record['results'][key])} | {mean:.4f} | {se:.4f} |")
    for impl, record in records.items():
        print(f"\n{impl}: median CPU s per solve {record['results']['solve_cpu_seconds_median']:.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", choices=IMPLEMENTATIONS)
    parser.add_argument("--tracking-seeds", type=int, default=300)
    parser.add_argument("--mpc-seeds", type=int, default=100)
    parser.add_argument("--out", default=None)
    parser.add_argument("--compare", metavar="FOLDER", default=None, help="print the table of the results in FOLDER")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare)
        return
    if args.impl is None:
        parser.error("--impl or --compare is needed")
    results, cpu, wall = run(args.impl, args.tracking_seeds, args.mpc_seeds)
    record = common.result_record(
        benchmark="pets_speed",
        experiment="icem_reference",
        algorithm=IMPLEMENTATIONS[args.impl],
        env=None,
        seed=None,
        config=dict(SETTINGS, horizon=HORIZON, action_dim=ACTION_DIM, mpc_steps=MPC_STEPS, dt=DT),
        results=results,
        cpu_seconds=cpu,
        wall_seconds=wall,
    )
    common.write_result(args.out, record)
    for key in ("tracking_values", "integrator_returns"):
        mean, se = summary(results[key])
        print(f"{args.impl} {key}: {mean:.4f} +- {se:.4f}")


if __name__ == "__main__":
    main()
