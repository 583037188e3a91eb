"""iCEM (Pinneri et al., CoRL 2020) against a plain re-implementation of the paper's Algorithm 1, and its coloured noise."""

import math

import numpy as np
import pytest
import torch as th

from sb3_bayes.common.trajectory_optimizers import ICEMOptimizer, colored_noise
from sb3_bayes.common.validation import HyperparameterTypeError, HyperparameterValueError


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0, 3.0])
def test_colored_noise_has_the_requested_power_law_spectrum(beta: float) -> None:
    th.manual_seed(0)
    length = 64
    noise = colored_noise(beta, (4000,), length, th.device("cpu"))
    assert noise.shape == (4000, length)
    # Unit variance at every time step (the normalisation is exact in expectation).
    th.testing.assert_close(noise.var(dim=0), th.ones(length), atol=0.12, rtol=0)
    # Periodogram averaged over the series; the slope of log power over log frequency is -beta (DC and the Nyquist
    # frequency, which are real coefficients, left out).
    power = th.fft.rfft(noise.double(), dim=-1).abs().pow(2).mean(dim=0)[1:-1]
    frequencies = th.fft.rfftfreq(length).double()[1:-1]
    slope = np.polyfit(np.log(frequencies.numpy()), np.log(power.numpy()), 1)[0]
    assert slope == pytest.approx(-beta, abs=0.1)


def test_white_noise_is_uncorrelated_in_time() -> None:
    th.manual_seed(1)
    noise = colored_noise(0.0, (20_000,), 15, th.device("cpu"))
    correlation = th.corrcoef(noise.T)
    th.testing.assert_close(correlation, th.eye(15), atol=0.03, rtol=0)
    smooth = colored_noise(2.0, (20_000,), 15, th.device("cpu"))
    assert float(th.corrcoef(smooth.T)[0, 1]) > 0.5  # coloured noise: neighbouring steps are alike


def reference_icem(
    objective,
    mean: th.Tensor,
    elites: th.Tensor | None,
    low: th.Tensor,
    high: th.Tensor,
    popsize: int,
    num_elites: int,
    iterations: int,
    alpha: float,
    beta: float,
    decay: float,
    keep_frac: float,
    execute: str,
):
    """
    Algorithm 1 of the paper for one control step, written for one environment at a time with Python loops and
    sorting, drawing the noise for all environments at once (the draws the optimiser makes). Returns the executed
    sequences, the final means and the kept elites.
    """
    n_envs, horizon, action_dim = mean.shape
    mean = mean.clone()
    std = ((high - low) / 4).expand(n_envs, horizon, action_dim).clone()
    n_keep = math.ceil(keep_frac * num_elites)
    kept = [None if elites is None else elites[e] for e in range(n_envs)]
    best = [None] * n_envs
    best_value = [-math.inf] * n_envs
    for i in range(iterations):
        n_i = max(math.ceil(popsize * decay**-i), 2 * num_elites)
        noise = colored_noise(beta, (n_envs, n_i, action_dim), horizon, mean.device).transpose(2, 3)
        population = []
        for e in range(n_envs):
            samples = [th.clamp(mean[e] + std[e] * noise[e, j], low, high) for j in range(n_i)]
            if kept[e] is not None:
                samples += list(kept[e])  # shifted elites of the last step (i = 0), or this step's (i > 0)
            if i == iterations - 1:
                samples.append(mean[e].clone())  # the mean joins the last iteration
            population.append(th.stack(samples))
        values = objective(th.stack(population))
        for e in range(n_envs):
            order = sorted(range(len(population[e])), key=lambda j: -float(values[e, j]))[:num_elites]
            elite_set = population[e][order]
            mean[e] = alpha * mean[e] + (1 - alpha) * elite_set.mean(dim=0)
            std[e] = (alpha * std[e].pow(2) + (1 - alpha) * elite_set.var(dim=0, unbiased=False)).sqrt()
            kept[e] = elite_set[:n_keep]
            if float(values[e, order[0]]) > best_value[e]:
                best_value[e], best[e] = float(values[e, order[0]]), elite_set[0]
    executed = th.stack(best) if execute == "best" else mean
    return executed, mean, th.stack(kept)  # type: ignore[arg-type]


def quadratic(targets: th.Tensor):
    def objective(candidates: th.Tensor) -> th.Tensor:
        return -(candidates - targets.unsqueeze(1)).pow(2).sum(dim=(2, 3))

    return objective


@pytest.mark.parametrize("execute", ["best", "mean"])
def test_icem_matches_algorithm_1_draw_for_draw(execute: str) -> None:
    low, high = th.tensor([-1.0, -2.0]), th.tensor([1.0, 2.0])
    targets = th.tensor([[[0.3, -0.5]] * 6, [[-0.7, 1.5]] * 6])
    settings: dict = dict(popsize=40, num_elites=6, alpha=0.1)
    icem = ICEMOptimizer(
        low, high, 6, max_iters=4, noise_beta=1.5, population_decay=1.5, keep_elites_frac=0.5, execute=execute, **settings
    )
    objective = quadratic(targets)
    warm, elites = icem.initial_solution(2), None
    for _ in range(2):  # two control steps: the second starts from the shifted mean and elites of the first
        th.manual_seed(7)
        solution = icem.solve(objective, warm, elites)
        th.manual_seed(7)
        algorithm_1 = dict(iterations=4, beta=1.5, decay=1.5, keep_frac=0.5, execute=execute, **settings)
        executed, mean, kept = reference_icem(objective, warm, elites, low, high, **algorithm_1)
        th.testing.assert_close(solution.plan, executed)
        th.testing.assert_close(solution.mean, mean)
        th.testing.assert_close(solution.elites, kept)
        assert solution.elites.shape == (2, 3, 6, 2)  # ceil(0.5 * 6) elites kept
        warm, elites = icem.shift(solution.mean), icem.shift_elites(solution.elites)
        th.testing.assert_close(elites[:, :, :-1], solution.elites[:, :, 1:])
        assert bool((elites >= low).all()) and bool((elites <= high).all())


def test_icem_population_shrinks_and_reuses_elites() -> None:
    sizes: list[int] = []

    def objective(candidates: th.Tensor) -> th.Tensor:
        sizes.append(candidates.shape[1])
        return -candidates.pow(2).sum(dim=(2, 3))

    icem = ICEMOptimizer(th.tensor([-1.0]), th.tensor([1.0]), 5, popsize=100, num_elites=10, max_iters=5, keep_elites_frac=0.3)
    solution = icem.solve(objective, icem.initial_solution(1))
    # ceil(100 * 1.25^-i) fresh samples, at least 2 * 10; 3 kept elites from the second iteration on; the mean last.
    assert sizes == [100, 80 + 3, 64 + 3, 52 + 3, 41 + 3 + 1]
    assert solution.elites.shape == (1, 3, 5, 1)
    sizes.clear()
    icem.solve(objective, icem.initial_solution(1), icem.shift_elites(solution.elites))
    assert sizes[0] == 103  # the shifted elites of the previous step join the first iteration
    sizes.clear()
    ICEMOptimizer(th.tensor([-1.0]), th.tensor([1.0]), 5, popsize=22, num_elites=10, max_iters=2, keep_elites_frac=0.0).solve(
        objective, th.zeros(1, 5, 1)
    )
    assert sizes == [
        22,
        20 + 1,
    ]  # ceil(17.6) is raised to 2 * num_elites; nothing kept with keep_elites_frac=0


def test_icem_finds_the_quadratic_optimum_inside_bounds() -> None:
    th.manual_seed(0)
    low, high = th.tensor([-1.0, -2.0]), th.tensor([1.0, 2.0])
    targets = th.tensor([[[0.3, -0.5]] * 4, [[-0.7, 1.5]] * 4])
    seen: list[th.Tensor] = []

    def objective(candidates: th.Tensor) -> th.Tensor:
        seen.append(candidates)
        return quadratic(targets)(candidates)

    for execute in ("best", "mean"):
        icem = ICEMOptimizer(low, high, 4, popsize=300, num_elites=30, max_iters=15, noise_beta=0.0, execute=execute)
        th.testing.assert_close(icem.optimize(objective, icem.initial_solution(2)), targets, atol=0.05, rtol=0)
    # Candidates are clipped to the bounds.
    assert all(bool((c >= low).all()) and bool((c <= high).all()) for c in seen)


@pytest.mark.parametrize(
    "kwargs, error, parameter",
    [
        (dict(noise_beta=-1.0), HyperparameterValueError, "noise_beta"),
        (dict(noise_beta="2"), HyperparameterTypeError, "noise_beta"),
        (dict(population_decay=0.9), HyperparameterValueError, "population_decay"),
        (dict(keep_elites_frac=1.5), HyperparameterValueError, "keep_elites_frac"),
        (dict(execute="first"), HyperparameterValueError, "execute"),
        (dict(num_elites=11), HyperparameterValueError, "num_elites"),
    ],
)
def test_icem_arguments_are_checked(kwargs: dict, error: type, parameter: str) -> None:
    with pytest.raises(error, match=rf"^ICEMOptimizer: {parameter} must be"):
        ICEMOptimizer(th.tensor([0.0]), th.tensor([1.0]), **{"horizon": 3, "popsize": 10, "num_elites": 2, **kwargs})
